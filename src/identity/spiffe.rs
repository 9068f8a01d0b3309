//! SPIFFE IDs of the Istio form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Parsed strictly (SPIFFE ID spec plus Istio's path shape), without allocation: the hot path
//! parses every request's principal. Stricter than Dikastes' regex
//! `^spiffe://[^/]+/ns/([^/]+)/sa/([^/]+)$` (reference/dikastes-semantics.md §4), which lets
//! through percent-encoding, `..` segments and any trust-domain character.
//!
//! ```
//! use alp_authz::identity::spiffe::SpiffeRef;
//! let id = SpiffeRef::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
//! assert_eq!((id.trust_domain(), id.namespace(), id.service_account()),
//!            ("cluster.local", "shop", "frontend"));
//! assert!(SpiffeRef::parse("spiffe://cluster.local/ns/shop/sa/frontend/").is_err());
//! ```

use std::{fmt, str::FromStr};

/// The longest SPIFFE ID accepted, in bytes (the SPIFFE spec's limit for URIs in SVIDs).
pub const MAX_LEN: usize = 2048;
/// The longest trust domain accepted, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID of the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    /// Empty input.
    #[error("spiffe id is empty")]
    Empty,
    /// Too long.
    #[error("spiffe id is longer than {MAX_LEN} bytes")]
    TooLong,
    /// Wrong or missing scheme (the scheme is matched case-sensitively, as Dikastes does).
    #[error("spiffe id must start with `spiffe://`")]
    Scheme,
    /// Empty trust domain.
    #[error("trust domain is empty")]
    EmptyTrustDomain,
    /// Trust domain too long.
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    /// A character outside `[a-z0-9._-]` in the trust domain.
    #[error("trust domain `{0}` has a character outside [a-z0-9._-]")]
    TrustDomainChar(String),
    /// The path is not `/ns/<namespace>/sa/<service-account>`.
    #[error("expected `/ns/<namespace>/sa/<service-account>`, found `{0}`")]
    Shape(String),
    /// An empty path segment.
    #[error("empty path segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("path segment `{0}` is not allowed")]
    DotSegment(String),
    /// Percent-encoding anywhere in the path.
    #[error("percent-encoded characters are not allowed")]
    PercentEncoded,
    /// Any other character outside `[A-Za-z0-9._-]` in a path segment.
    #[error("path segment `{0}` has a character outside [A-Za-z0-9._-]")]
    SegmentChar(String),
}

/// A borrowed, validated SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeRef<'a> {
    trust_domain: &'a str,
    namespace: &'a str,
    service_account: &'a str,
}

impl<'a> SpiffeRef<'a> {
    /// Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub fn parse(s: &'a str) -> Result<SpiffeRef<'a>, SpiffeError> {
        if s.is_empty() {
            return Err(SpiffeError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(SpiffeError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeError::Scheme)?;
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        check_trust_domain(trust_domain)?;
        if path.contains('%') {
            return Err(SpiffeError::PercentEncoded);
        }
        let shape = || SpiffeError::Shape(path.to_owned());
        let path = path.strip_prefix("/ns/").ok_or_else(shape)?;
        let (namespace, path) = path.split_once('/').ok_or_else(shape)?;
        let service_account = path.strip_prefix("sa/").ok_or_else(shape)?;
        if service_account.contains('/') {
            return Err(shape());
        }
        for seg in [namespace, service_account] {
            check_segment(seg)?;
        }
        Ok(SpiffeRef {
            trust_domain,
            namespace,
            service_account,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &'a str {
        self.trust_domain
    }

    /// The namespace.
    pub fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &'a str {
        self.service_account
    }

    /// An owned copy.
    pub fn to_owned(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.trust_domain.into(),
            namespace: self.namespace.into(),
            service_account: self.service_account.into(),
        }
    }
}

impl fmt::Display for SpiffeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Checks a bare trust domain name (`cluster.local`) as the SPIFFE ID spec defines it.
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeError> {
    if td.is_empty() {
        return Err(SpiffeError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeError::TrustDomainTooLong);
    }
    // SPIFFE: "Trust domain names … MUST only contain lowercase letters, numbers, dots, dashes,
    // and underscores" (no port, no userinfo).
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeError::TrustDomainChar(td.to_owned()));
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), SpiffeError> {
    if seg.is_empty() {
        return Err(SpiffeError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(SpiffeError::DotSegment(seg.to_owned()));
    }
    // SPIFFE: path segments "MUST only contain letters, numbers, dots, dashes, and underscores".
    if !seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeError::SegmentChar(seg.to_owned()));
    }
    Ok(())
}

/// An owned SPIFFE ID; `FromStr` and `Display` round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: Box<str>,
    namespace: Box<str>,
    service_account: Box<str>,
}

impl SpiffeId {
    /// Builds an ID from its parts, validating them.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeError> {
        let s = format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}");
        SpiffeRef::parse(&s).map(|r| r.to_owned())
    }

    /// The borrowed view.
    pub fn as_ref(&self) -> SpiffeRef<'_> {
        SpiffeRef {
            trust_domain: &self.trust_domain,
            namespace: &self.namespace,
            service_account: &self.service_account,
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, SpiffeError> {
        SpiffeRef::parse(s).map(|r| r.to_owned())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    #[test_case("spiffe://cluster.local/ns/default/sa/steve", "cluster.local", "default", "steve"; "istio default")]
    #[test_case("spiffe://foo.bar.com/ns/sandwich/sa/bacon", "foo.bar.com", "sandwich", "bacon"; "dikastes test")]
    #[test_case("spiffe://td/ns/a/sa/b", "td", "a", "b"; "short")]
    #[test_case("spiffe://my-td_1.example/ns/kube-system/sa/coredns", "my-td_1.example", "kube-system", "coredns"; "dash underscore")]
    #[test_case("spiffe://td/ns/Mixed.Case_1/sa/S-A", "td", "Mixed.Case_1", "S-A"; "mixed case segments")]
    #[test_case("spiffe://td/ns/ns/sa/sa", "td", "ns", "sa"; "keywords as names")]
    #[test_case("spiffe://td/ns/.../sa/x", "td", "...", "x"; "three dots is a name")]
    fn valid(s: &str, td: &str, ns: &str, sa: &str) {
        let id = SpiffeRef::parse(s).unwrap();
        assert_eq!(
            (id.trust_domain(), id.namespace(), id.service_account()),
            (td, ns, sa)
        );
        assert_eq!(id.to_string(), s);
        assert_eq!(s.parse::<SpiffeId>().unwrap().to_string(), s);
    }

    #[test_case("", SpiffeError::Empty; "empty")]
    #[test_case("http://cluster.local/ns/a/sa/b", SpiffeError::Scheme; "http scheme")]
    #[test_case("SPIFFE://cluster.local/ns/a/sa/b", SpiffeError::Scheme; "upper case scheme")]
    #[test_case("spiffe:/cluster.local/ns/a/sa/b", SpiffeError::Scheme; "one slash")]
    #[test_case("cluster.local/ns/a/sa/b", SpiffeError::Scheme; "no scheme")]
    #[test_case(" spiffe://td/ns/a/sa/b", SpiffeError::Scheme; "leading space")]
    #[test_case("spiffe:///ns/a/sa/b", SpiffeError::EmptyTrustDomain; "empty trust domain")]
    #[test_case("spiffe://", SpiffeError::EmptyTrustDomain; "scheme only")]
    #[test_case("spiffe://Cluster.local/ns/a/sa/b", SpiffeError::TrustDomainChar("Cluster.local".into()); "upper case trust domain")]
    #[test_case("spiffe://td:8080/ns/a/sa/b", SpiffeError::TrustDomainChar("td:8080".into()); "port")]
    #[test_case("spiffe://user@td/ns/a/sa/b", SpiffeError::TrustDomainChar("user@td".into()); "userinfo")]
    #[test_case("spiffe://td?x/ns/a/sa/b", SpiffeError::TrustDomainChar("td?x".into()); "query in trust domain")]
    #[test_case("spiffe://tdé/ns/a/sa/b", SpiffeError::TrustDomainChar("tdé".into()); "unicode trust domain")]
    #[test_case("spiffe://td", SpiffeError::Shape(String::new()); "no path")]
    #[test_case("spiffe://td/", SpiffeError::Shape("/".into()); "root path")]
    #[test_case("spiffe://td/ns/a", SpiffeError::Shape("/ns/a".into()); "no sa")]
    #[test_case("spiffe://td/ns/a/sa", SpiffeError::Shape("/ns/a/sa".into()); "sa keyword only")]
    #[test_case("spiffe://td/sa/b/ns/a", SpiffeError::Shape("/sa/b/ns/a".into()); "swapped")]
    #[test_case("spiffe://td/NS/a/sa/b", SpiffeError::Shape("/NS/a/sa/b".into()); "upper case ns keyword")]
    #[test_case("spiffe://td/ns/a/sa/b/extra", SpiffeError::Shape("/ns/a/sa/b/extra".into()); "extra segment")]
    #[test_case("spiffe://td/ns/a/sa/b/", SpiffeError::Shape("/ns/a/sa/b/".into()); "trailing slash")]
    #[test_case("spiffe://td/x/ns/a/sa/b", SpiffeError::Shape("/x/ns/a/sa/b".into()); "prefix segment")]
    #[test_case("spiffe://td/ns//sa/b", SpiffeError::EmptySegment; "empty namespace")]
    #[test_case("spiffe://td/ns/a/sa/", SpiffeError::EmptySegment; "empty service account")]
    #[test_case("spiffe://td//ns/a/sa/b", SpiffeError::Shape("//ns/a/sa/b".into()); "double slash")]
    #[test_case("spiffe://td/ns/./sa/b", SpiffeError::DotSegment(".".into()); "dot namespace")]
    #[test_case("spiffe://td/ns/a/sa/..", SpiffeError::DotSegment("..".into()); "dot dot sa")]
    #[test_case("spiffe://td/ns/%2e%2e/sa/b", SpiffeError::PercentEncoded; "percent dots")]
    #[test_case("spiffe://td/ns/a/sa/b%2Fc", SpiffeError::PercentEncoded; "percent slash")]
    #[test_case("spiffe://td/ns/a/sa/b?x=1", SpiffeError::SegmentChar("b?x=1".into()); "query")]
    #[test_case("spiffe://td/ns/a/sa/b#f", SpiffeError::SegmentChar("b#f".into()); "fragment")]
    #[test_case("spiffe://td/ns/a b/sa/c", SpiffeError::SegmentChar("a b".into()); "space")]
    #[test_case("spiffe://td/ns/a/sa/b\0", SpiffeError::SegmentChar("b\0".into()); "nul")]
    #[test_case("spiffe://td/ns/ñ/sa/b", SpiffeError::SegmentChar("ñ".into()); "unicode segment")]
    #[test_case("spiffe://td/ns/a\\b/sa/c", SpiffeError::SegmentChar("a\\b".into()); "backslash")]
    #[test_case("spiffe://td/ns/a/sa/b\n", SpiffeError::SegmentChar("b\n".into()); "newline")]
    fn invalid(s: &str, err: SpiffeError) {
        assert_eq!(SpiffeRef::parse(s), Err(err));
    }

    #[test]
    fn length_limits() {
        let sa = "a".repeat(MAX_LEN - "spiffe://td/ns/n/sa/".len());
        let ok = format!("spiffe://td/ns/n/sa/{sa}");
        assert_eq!(ok.len(), MAX_LEN);
        assert!(SpiffeRef::parse(&ok).is_ok());
        assert_eq!(
            SpiffeRef::parse(&format!("{ok}a")),
            Err(SpiffeError::TooLong)
        );
        let td = "t".repeat(MAX_TRUST_DOMAIN_LEN + 1);
        assert_eq!(
            SpiffeRef::parse(&format!("spiffe://{td}/ns/a/sa/b")),
            Err(SpiffeError::TrustDomainTooLong)
        );
    }

    #[test]
    fn error_messages() {
        let e = SpiffeRef::parse("spiffe://td/ns/a/sa/b/c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected `/ns/<namespace>/sa/<service-account>`, found `/ns/a/sa/b/c`"
        );
        assert_eq!(
            SpiffeRef::parse("x").unwrap_err().to_string(),
            "spiffe id must start with `spiffe://`"
        );
    }

    #[test]
    fn new_validates_parts() {
        assert!(SpiffeId::new("td", "a", "b").is_ok());
        assert!(SpiffeId::new("td", "a/sa/b", "c").is_err());
        assert!(SpiffeId::new("TD", "a", "b").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(td in "[a-z0-9._-]{1,40}", ns in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}", sa in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}") {
            let id = SpiffeId::new(&td, &ns, &sa).unwrap();
            let again: SpiffeId = id.to_string().parse().unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(again.namespace(), ns.as_str());
        }

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = SpiffeRef::parse(&s);
        }

        #[test]
        fn never_panics_near_valid(s in "spiffe://[a-z.]{0,4}(/[a-z%./]{0,4}){0,6}") {
            if let Ok(id) = SpiffeRef::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}

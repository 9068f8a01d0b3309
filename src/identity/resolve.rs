//! Who is calling: the caller's SPIFFE ID from, in the configured order, the principal Envoy
//! verified, the forwarded peer certificate, and (only when turned on) XFCC.
//!
//! Rules:
//! - the first source that is *present* gives the identity;
//! - when both the principal and the certificate are present, they must name the same SPIFFE ID
//!   (otherwise: deny);
//! - a forwarded certificate that cannot be read, is outside its validity period, or (with a
//!   trust bundle) does not verify, is a deny, whatever the order;
//! - XFCC: only the last element (the one our own sidecar appended), only when its `By` is the
//!   asking proxy's identity (`destination.principal`; for a proxy without one, e.g. an ambient
//!   waypoint, one of `--xfcc-trusted-by`), and only a single SPIFFE `URI`;
//! - a trust-domain allow-list applies to whatever source won.

use std::{borrow::Cow, str::FromStr, sync::Arc, time::SystemTime};

use arc_swap::ArcSwapOption;
use rustls_pki_types::UnixTime;

use super::Rejection;
use super::{
    cert::{CertError, PeerCert, TrustBundle},
    spiffe::{SpiffeId, SpiffeRef},
    xfcc,
};

/// The XFCC request header (Envoy lower-cases header names).
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Where an identity may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `attributes.source.principal`, verified by Envoy.
    Principal,
    /// `attributes.source.certificate` (Envoy's `include_peer_certificate`).
    Certificate,
    /// The last element of `x-forwarded-client-cert`.
    Xfcc,
}

impl Source {
    /// The name `--identity-from` takes: `principal`, `certificate` or `xfcc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Principal => "principal",
            Source::Certificate => "certificate",
            Source::Xfcc => "xfcc",
        }
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "principal" => Ok(Source::Principal),
            "certificate" => Ok(Source::Certificate),
            "xfcc" => Ok(Source::Xfcc),
            _ => Err(format!("`{s}` is not `principal`, `certificate` or `xfcc`")),
        }
    }
}

/// How identities are resolved and which are accepted.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Sources, in precedence order.
    pub sources: Vec<Source>,
    /// Accepted trust domains; empty accepts any (as Dikastes does).
    pub trust_domains: Vec<String>,
    /// Roots that forwarded certificates must chain to (reloadable).
    pub trust_bundle: Option<Arc<ArcSwapOption<TrustBundle>>>,
    /// Proxies allowed to assert XFCC when the request carries no `destination.principal`.
    pub xfcc_trusted_by: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            sources: vec![Source::Principal, Source::Certificate],
            trust_domains: Vec::new(),
            trust_bundle: None,
            xfcc_trusted_by: Vec::new(),
        }
    }
}

/// What a request says about its caller, as plain fields (the `authz` layer reads them from
/// Envoy's `CheckRequest`; empty strings are absent fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The principal the proxy verified (`attributes.source.principal`).
    pub principal: &'a str,
    /// The URL-encoded PEM peer certificate (`attributes.source.certificate`).
    pub certificate: &'a str,
    /// The asking proxy's own identity (`attributes.destination.principal`).
    pub proxy_principal: &'a str,
    /// The `x-forwarded-client-cert` header.
    pub xfcc: Xfcc<'a>,
}

/// The `x-forwarded-client-cert` header of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Xfcc<'a> {
    /// Not sent (or not read: XFCC is not an enabled source).
    #[default]
    Absent,
    /// Its value; a header sent several times is one comma-separated list, in order.
    Value(Cow<'a, str>),
    /// Sent with a value that is not UTF-8.
    NotUtf8,
}

/// A resolved caller identity, borrowing from the request where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// No identity (plaintext, or no enabled source present).
    Absent,
    /// A principal that is not a valid SPIFFE ID.
    Invalid,
    /// Identity material that must not be used: deny.
    Rejected(Rejection),
    /// The principal, borrowed from the request.
    Borrowed(SpiffeRef<'a>),
    /// An identity read from a certificate or XFCC.
    Owned(SpiffeId),
}

impl IdentityConfig {
    /// Resolves the caller from what the request says about it.
    pub fn resolve<'a>(&self, caller: &Caller<'a>) -> Resolved<'a> {
        self.resolve_from(caller).0
    }

    /// [`IdentityConfig::resolve`], and the source that decided it (`None` when no source was
    /// present: [`Resolved::Absent`]). For the decision log: replay needs to know how the
    /// identity was decided, not only what it was.
    pub fn resolve_from<'a>(&self, caller: &Caller<'a>) -> (Resolved<'a>, Option<Source>) {
        let enabled = |s| self.sources.contains(&s);
        let principal = Some(caller.principal)
            .filter(|p| !p.is_empty() && enabled(Source::Principal))
            .map(|p| SpiffeRef::parse(p).ok());
        let certificate = Some(caller.certificate)
            .filter(|c| !c.is_empty() && enabled(Source::Certificate))
            .map(|c| self.certificate(c));

        if let Some(cert) = &certificate {
            match (cert, &principal) {
                (Err(e), _) => {
                    return (
                        Resolved::Rejected(Rejection::Certificate(*e)),
                        Some(Source::Certificate),
                    );
                }
                (Ok(c), Some(p)) if p.as_ref() != Some(&c.spiffe.as_ref()) => {
                    return (
                        Resolved::Rejected(Rejection::PrincipalCertificateMismatch),
                        Some(Source::Certificate),
                    );
                }
                _ => {}
            }
        }
        for s in &self.sources {
            match s {
                Source::Principal => match principal {
                    Some(Some(id)) => return (Resolved::Borrowed(id), Some(Source::Principal)),
                    Some(None) => return (Resolved::Invalid, Some(Source::Principal)),
                    None => {}
                },
                Source::Certificate => {
                    if let Some(Ok(c)) = certificate {
                        return (Resolved::Owned(c.spiffe), Some(Source::Certificate));
                    }
                }
                Source::Xfcc => {
                    if let Some(r) = self.xfcc(caller) {
                        return (r, Some(Source::Xfcc));
                    }
                }
            }
        }
        (Resolved::Absent, None)
    }

    fn certificate(&self, forwarded: &str) -> Result<PeerCert, CertError> {
        let cert = PeerCert::from_forwarded(forwarded)?;
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        cert.check_validity(secs)?;
        if let Some(bundle) = self.trust_bundle.as_ref().map(|b| b.load_full()) {
            // A configured bundle that failed to load verifies nothing: fail closed.
            let Some(bundle) = bundle else {
                return Err(CertError::Untrusted);
            };
            bundle.verify(
                &cert,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs as u64)),
            )?;
        }
        Ok(cert)
    }

    /// `None` when XFCC gives no answer (absent, or not appended by a trusted proxy).
    fn xfcc(&self, caller: &Caller<'_>) -> Option<Resolved<'static>> {
        let header = match &caller.xfcc {
            Xfcc::Absent => return None,
            Xfcc::NotUtf8 => return Some(Resolved::Rejected(Rejection::XfccMalformed)),
            Xfcc::Value(v) => v.as_ref(),
        };
        let elements = match xfcc::parse(header) {
            Ok(e) => e,
            Err(_) => return Some(Resolved::Rejected(Rejection::XfccMalformed)),
        };
        let last = elements.last()?;
        let asking = caller.proxy_principal;
        let trusted = if asking.is_empty() {
            last.by
                .iter()
                .any(|b| self.xfcc_trusted_by.iter().any(|t| t == b))
        } else {
            last.by.iter().any(|b| b == asking)
        };
        if !trusted {
            return None;
        }
        let mut spiffe = last.uri.iter().filter(|u| u.starts_with("spiffe://"));
        let uri = spiffe.next()?;
        if spiffe.next().is_some() {
            return Some(Resolved::Rejected(Rejection::XfccAmbiguous));
        }
        Some(match SpiffeRef::parse(uri) {
            Ok(id) => Resolved::Owned(id.to_owned()),
            Err(_) => Resolved::Invalid,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwapOption;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, SanType, date_time_ymd,
    };

    use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

    use super::*;
    use crate::{
        authz::{check::Checker, settings::Settings},
        policy::decision::Verdict,
        state::Shared,
    };

    struct Ca(CertifiedIssuer<'static, KeyPair>);

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
        }

        fn pem(&self) -> String {
            self.0.pem()
        }

        /// A leaf with the given SANs and validity years.
        fn leaf(&self, sans: Vec<SanType>, from: i32, to: i32) -> String {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.subject_alt_names = sans;
            p.not_before = date_time_ymd(from, 1, 1);
            p.not_after = date_time_ymd(to, 1, 1);
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            p.signed_by(&KeyPair::generate().unwrap(), &self.0)
                .unwrap()
                .pem()
        }

        fn svid(&self, id: &str) -> String {
            self.leaf(vec![uri(id)], 2020, 2090)
        }
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

    /// Envoy's URL encoding of a PEM certificate.
    fn url_encode(pem: &str) -> String {
        percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn request(
        principal: &str,
        certificate: Option<&str>,
        xfcc: Option<&str>,
        dst_principal: &str,
    ) -> CheckRequest {
        let mut r = crate::authz::descriptor::check_request_from_json(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/policies/requests/frontend-get-product.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let a = r.attributes.as_mut().unwrap();
        let src = a.source.as_mut().unwrap();
        src.principal = principal.into();
        src.certificate = certificate.map(url_encode).unwrap_or_default();
        a.destination.as_mut().unwrap().principal = dst_principal.into();
        let headers = &mut a.request.as_mut().unwrap().http.as_mut().unwrap().headers;
        if let Some(x) = xfcc {
            headers.insert(XFCC_HEADER.into(), x.into());
        }
        r
    }

    fn decide(cfg: IdentityConfig, req: &CheckRequest) -> (Verdict, String) {
        let state = Arc::new(Shared::new());
        let snap = state.publish(&crate::source::embedded::load().unwrap().store);
        let checker = Checker::new(
            state,
            Settings {
                identity: cfg,
                ..Settings::default()
            },
        );
        let d = checker.decide(&snap, req);
        (d.verdict, d.reason(&snap))
    }

    const ALLOWED: &str = "allowed by rule 0 of policy shop/productpage in tier default";
    const END_OF_TIER: &str = "denied at the end of tier default: no rule matched";
    const PP: &str = "spiffe://cluster.local/ns/shop/sa/productpage";

    fn with_certificate() -> IdentityConfig {
        IdentityConfig::default()
    }

    fn with_bundle(pem: &str) -> IdentityConfig {
        IdentityConfig {
            trust_bundle: Some(Arc::new(ArcSwapOption::from_pointee(
                TrustBundle::from_pem(pem.as_bytes()).unwrap(),
            ))),
            ..IdentityConfig::default()
        }
    }

    #[test]
    fn valid_svid_alone_identifies_the_caller() {
        let ca = Ca::new("root");
        let req = request("", Some(&ca.svid(FRONTEND)), None, PP);
        assert_eq!(
            decide(with_certificate(), &req),
            (Verdict::Allow, ALLOWED.into())
        );
        assert_eq!(
            decide(with_bundle(&ca.pem()), &req),
            (Verdict::Allow, ALLOWED.into())
        );
    }

    #[test]
    fn valid_svid_agreeing_with_the_principal() {
        let ca = Ca::new("root");
        let req = request(FRONTEND, Some(&ca.svid(FRONTEND)), None, PP);
        assert_eq!(decide(with_bundle(&ca.pem()), &req).0, Verdict::Allow);
    }

    #[test]
    fn certificate_source_can_be_turned_off() {
        let req = request("", Some("garbage"), None, PP);
        let cfg = IdentityConfig {
            sources: vec![Source::Principal],
            ..IdentityConfig::default()
        };
        // The certificate is ignored: the caller is simply unauthenticated.
        assert_eq!(decide(cfg, &req), (Verdict::Deny, END_OF_TIER.into()));
    }

    fn rejected(req: &CheckRequest, cfg: IdentityConfig, reason: &str) {
        assert_eq!(
            decide(cfg, req),
            (Verdict::Deny, format!("identity rejected: {reason}"))
        );
    }

    #[test]
    fn principal_and_certificate_disagree() {
        let ca = Ca::new("root");
        let req = request(
            "spiffe://cluster.local/ns/shop/sa/admin",
            Some(&ca.svid(FRONTEND)),
            None,
            PP,
        );
        rejected(
            &req,
            with_certificate(),
            "the principal and the forwarded certificate name different identities",
        );
        let req = request("not-a-spiffe-id", Some(&ca.svid(FRONTEND)), None, PP);
        rejected(
            &req,
            with_certificate(),
            "the principal and the forwarded certificate name different identities",
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let ca = Ca::new("root");
        let expired = request(
            FRONTEND,
            Some(&ca.leaf(vec![uri(FRONTEND)], 2019, 2020)),
            None,
            PP,
        );
        rejected(
            &expired,
            with_certificate(),
            "the forwarded certificate has expired",
        );
        rejected(
            &expired,
            with_bundle(&ca.pem()),
            "the forwarded certificate has expired",
        );
        let future = request(
            FRONTEND,
            Some(&ca.leaf(vec![uri(FRONTEND)], 2090, 2091)),
            None,
            PP,
        );
        rejected(
            &future,
            with_certificate(),
            "the forwarded certificate is not valid yet",
        );
    }

    #[test]
    fn not_x509_svids() {
        let ca = Ca::new("root");
        let two = ca.leaf(
            vec![
                uri(FRONTEND),
                uri("spiffe://cluster.local/ns/shop/sa/other"),
            ],
            2020,
            2090,
        );
        rejected(
            &request("", Some(&two), None, PP),
            with_certificate(),
            "the forwarded certificate has more than one URI SAN",
        );
        let mixed = ca.leaf(
            vec![uri(FRONTEND), uri("https://frontend.example")],
            2020,
            2090,
        );
        rejected(
            &request("", Some(&mixed), None, PP),
            with_certificate(),
            "the forwarded certificate has more than one URI SAN",
        );
        let none = ca.leaf(
            vec![SanType::DnsName("frontend.shop".try_into().unwrap())],
            2020,
            2090,
        );
        rejected(
            &request("", Some(&none), None, PP),
            with_certificate(),
            "the forwarded certificate has no URI SAN (not an X.509-SVID)",
        );
        let https = ca.leaf(vec![uri("https://frontend.example/x")], 2020, 2090);
        rejected(
            &request("", Some(&https), None, PP),
            with_certificate(),
            "the forwarded certificate's URI SAN is not a valid SPIFFE ID",
        );
    }

    #[test]
    fn malformed_pem_and_der() {
        rejected(
            &request("", Some("not pem at all"), None, PP),
            with_certificate(),
            "the forwarded certificate is not a PEM certificate",
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        rejected(
            &request("", Some(garbage), None, PP),
            with_certificate(),
            "the forwarded certificate is not valid X.509",
        );
        let truncated = Ca::new("root")
            .svid(FRONTEND)
            .replace("-----END CERTIFICATE-----", "");
        rejected(
            &request("", Some(&truncated), None, PP),
            with_certificate(),
            "the forwarded certificate is not a PEM certificate",
        );
    }

    #[test]
    fn chain_from_another_root() {
        let ca = Ca::new("root");
        let other = Ca::new("other root");
        let req = request(FRONTEND, Some(&other.svid(FRONTEND)), None, PP);
        rejected(
            &req,
            with_bundle(&ca.pem()),
            "the forwarded certificate does not chain to the trust bundle",
        );
        // Without a bundle, Envoy's verification is trusted and the certificate only has to agree.
        assert_eq!(decide(with_certificate(), &req).0, Verdict::Allow);
        // A bundle with both roots accepts it.
        assert_eq!(
            decide(with_bundle(&format!("{}{}", ca.pem(), other.pem())), &req).0,
            Verdict::Allow
        );
    }

    #[test]
    fn a_ca_certificate_is_not_an_svid() {
        let ca = Ca::new("root");
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.subject_alt_names = vec![uri(FRONTEND)];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2090, 1, 1);
        let inter = p
            .signed_by(&KeyPair::generate().unwrap(), &ca.0)
            .unwrap()
            .pem();
        rejected(
            &request("", Some(&inter), None, PP),
            with_bundle(&ca.pem()),
            "the forwarded certificate does not chain to the trust bundle",
        );
    }

    #[test]
    fn bundle_that_failed_to_load_fails_closed() {
        let ca = Ca::new("root");
        let cfg = IdentityConfig {
            trust_bundle: Some(Arc::new(ArcSwapOption::empty())),
            ..IdentityConfig::default()
        };
        rejected(
            &request(FRONTEND, Some(&ca.svid(FRONTEND)), None, PP),
            cfg,
            "the forwarded certificate does not chain to the trust bundle",
        );
        assert!(TrustBundle::from_pem(b"").is_err());
        assert!(
            TrustBundle::from_pem(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
    }

    #[test]
    fn wrong_trust_domain_is_unauthenticated() {
        let ca = Ca::new("root");
        let id = "spiffe://evil.example/ns/shop/sa/frontend";
        let cfg = IdentityConfig {
            trust_domains: vec!["cluster.local".into()],
            ..IdentityConfig::default()
        };
        let req = request("", Some(&ca.svid(id)), None, PP);
        assert_eq!(decide(cfg, &req), (Verdict::Deny, END_OF_TIER.into()));
    }

    fn xfcc_cfg() -> IdentityConfig {
        IdentityConfig {
            sources: vec![Source::Principal, Source::Certificate, Source::Xfcc],
            ..IdentityConfig::default()
        }
    }

    const ISTIO_XFCC: &str = "By=spiffe://cluster.local/ns/shop/sa/productpage;Hash=dd14782fa2f439724d271dbed846ef843ff40d3932b615da650d028db655fc8d;Subject=\"\";URI=spiffe://cluster.local/ns/shop/sa/frontend";

    #[test]
    fn xfcc_only_when_turned_on() {
        let req = request("", None, Some(ISTIO_XFCC), PP);
        assert_eq!(
            decide(IdentityConfig::default(), &req),
            (Verdict::Deny, END_OF_TIER.into())
        );
        assert_eq!(decide(xfcc_cfg(), &req), (Verdict::Allow, ALLOWED.into()));
    }

    #[test]
    fn xfcc_uses_the_last_element_only() {
        // A caller-forged element first, then our sidecar's: the last one counts.
        let forged = format!("By={PP};URI=spiffe://cluster.local/ns/ops/sa/oncall,{ISTIO_XFCC}");
        assert_eq!(
            decide(xfcc_cfg(), &request("", None, Some(&forged), PP)).0,
            Verdict::Allow
        );
        // Our element first, a forged one last (not appended by our proxy): ignored as forged.
        let appended =
            format!("{ISTIO_XFCC},By=spiffe://cluster.local/ns/shop/sa/other;URI={FRONTEND}");
        assert_eq!(
            decide(xfcc_cfg(), &request("", None, Some(&appended), PP)),
            (Verdict::Deny, END_OF_TIER.into())
        );
    }

    /// Regression (#13, item 9): with `header_map`, a caller's own XFCC header came first and
    /// was the one read; the proxy's (appended, last) must decide.
    #[test]
    fn xfcc_from_header_map_takes_the_last_entry() {
        use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
        let entry = |v: &str| HeaderValue {
            key: XFCC_HEADER.into(),
            value: String::new(),
            raw_value: v.as_bytes().to_vec(),
        };
        let with_map = |entries: Vec<HeaderValue>| {
            let mut req = request("", None, None, PP);
            let http = req
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
                .unwrap();
            http.headers.clear();
            http.header_map = Some(HeaderMap { headers: entries });
            req
        };
        // The forged entry (naming the asking proxy as By) first, the sidecar's genuine one
        // last: the genuine one decides (frontend, allowed).
        let forged = format!("By={PP};URI=spiffe://cluster.local/ns/ops/sa/oncall");
        let req = with_map(vec![entry(&forged), entry(ISTIO_XFCC)]);
        assert_eq!(decide(xfcc_cfg(), &req), (Verdict::Allow, ALLOWED.into()));
        // Reversed: the forged one is last, and it names an identity the genuine one does not.
        let oncall_last = with_map(vec![entry(ISTIO_XFCC), entry(&forged)]);
        assert_ne!(
            decide(xfcc_cfg(), &oncall_last),
            decide(xfcc_cfg(), &req),
            "the last entry decides"
        );
        // A `value` (not `raw_value`) entry is read too.
        let mut v = entry(ISTIO_XFCC);
        v.value = ISTIO_XFCC.into();
        v.raw_value.clear();
        let req = with_map(vec![entry(&forged), v]);
        assert_eq!(decide(xfcc_cfg(), &req), (Verdict::Allow, ALLOWED.into()));
    }

    #[test]
    fn xfcc_by_must_be_the_asking_proxy() {
        let req = request(
            "",
            None,
            Some(ISTIO_XFCC),
            "spiffe://cluster.local/ns/shop/sa/reviews",
        );
        assert_eq!(
            decide(xfcc_cfg(), &req),
            (Verdict::Deny, END_OF_TIER.into())
        );
    }

    #[test]
    fn xfcc_from_a_waypoint_needs_a_trusted_by() {
        let waypoint = "spiffe://cluster.local/ns/shop/sa/waypoint";
        let req = request("", None, Some(&format!("By={waypoint};URI={FRONTEND}")), "");
        assert_eq!(decide(xfcc_cfg(), &req).0, Verdict::Deny);
        let cfg = IdentityConfig {
            xfcc_trusted_by: vec![waypoint.into()],
            ..xfcc_cfg()
        };
        assert_eq!(decide(cfg, &req).0, Verdict::Allow);
    }

    #[test]
    fn xfcc_errors() {
        rejected(
            &request("", None, Some("By=x;;"), PP),
            xfcc_cfg(),
            "malformed x-forwarded-client-cert header",
        );
        let two = format!("By={PP};URI={FRONTEND};URI=spiffe://cluster.local/ns/ops/sa/oncall");
        rejected(
            &request("", None, Some(&two), PP),
            xfcc_cfg(),
            "the x-forwarded-client-cert element names more than one SPIFFE ID",
        );
        let bad = format!("By={PP};URI=spiffe://cluster.local/ns/shop/sa/");
        assert_eq!(
            decide(xfcc_cfg(), &request("", None, Some(&bad), PP)),
            (Verdict::Deny, END_OF_TIER.into())
        );
    }

    #[test]
    fn principal_wins_over_xfcc() {
        let req = request(
            "spiffe://cluster.local/ns/shop/sa/reviews",
            None,
            Some(ISTIO_XFCC),
            PP,
        );
        // The principal (reviews) decides, and disagrees with the pod at the source address.
        let (v, reason) = decide(xfcc_cfg(), &req);
        assert_eq!(v, Verdict::Deny);
        assert!(
            reason.starts_with(
                "identity mismatch: the source address belongs to pod shop/frontend-7d4b9"
            ),
            "{reason}"
        );
    }

    #[test]
    fn source_names_parse() {
        assert_eq!("xfcc".parse::<Source>(), Ok(Source::Xfcc));
        assert!("cert".parse::<Source>().is_err());
    }
}

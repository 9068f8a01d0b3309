//! The `x-forwarded-client-cert` header (Envoy's HTTP header manipulation docs).
//!
//! Comma-separated *elements*, one per proxy that appended; each a `;`-separated list of
//! `Key=Value` pairs. Keys are case-insensitive (`By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`,
//! `DNS`); a value containing `,`, `;` or `=` is double-quoted, with `\"` for a quote inside.
//! `By`, `URI` and `DNS` may repeat; the others may not. Unknown keys are skipped.
//!
//! The header is a request header, so a caller can forge any element but the one its own
//! sidecar appended: callers of [`parse`] use only the last element, and only when its `By` is
//! the identity of the proxy that is asking (see `identity::resolve`).

use std::borrow::Cow;

/// One element: what one proxy said about the client certificate it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element<'a> {
    /// URI SANs of the appending proxy's own certificate.
    pub by: Vec<Cow<'a, str>>,
    /// SHA-256 of the client certificate (hex).
    pub hash: Option<Cow<'a, str>>,
    /// The client certificate, URL-encoded PEM.
    pub cert: Option<Cow<'a, str>>,
    /// The client chain, URL-encoded PEM.
    pub chain: Option<Cow<'a, str>>,
    /// The client certificate's Subject.
    pub subject: Option<Cow<'a, str>>,
    /// URI SANs of the client certificate.
    pub uri: Vec<Cow<'a, str>>,
    /// DNS SANs of the client certificate.
    pub dns: Vec<Cow<'a, str>>,
}

/// Why a header value is not valid XFCC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// Nothing to parse.
    #[error("empty x-forwarded-client-cert header")]
    Empty,
    /// An empty element (e.g. `a=b,,c=d`).
    #[error("empty element at byte {0}")]
    EmptyElement(usize),
    /// A pair without `=`.
    #[error("expected `key=value` at byte {0}")]
    ExpectedPair(usize),
    /// An empty key.
    #[error("empty key at byte {0}")]
    EmptyKey(usize),
    /// A quoted value that does not end.
    #[error("unterminated quoted value at byte {0}")]
    Unterminated(usize),
    /// Something other than `;` or `,` after a quoted value.
    #[error("expected `;` or `,` after the quoted value at byte {0}")]
    AfterQuote(usize),
    /// A `"` inside an unquoted value.
    #[error("unexpected `\"` in an unquoted value at byte {0}")]
    StrayQuote(usize),
    /// A key that may appear once appeared twice in one element.
    #[error("`{0}` appears twice in one element")]
    Duplicate(&'static str),
}

/// Parses a whole header value into its elements, in order.
pub fn parse(header: &str) -> Result<Vec<Element<'_>>, XfccError> {
    let b = header.as_bytes();
    if header.trim().is_empty() {
        return Err(XfccError::Empty);
    }
    let mut elements = Vec::new();
    let mut current = Element::default();
    let mut pairs_in_element = 0usize;
    let mut i = 0;
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] == b',' {
            // An element ends where there is no pair.
            if pairs_in_element == 0 {
                return Err(XfccError::EmptyElement(i));
            }
        }
        let key_start = i;
        while i < b.len() && !matches!(b[i], b'=' | b';' | b',') {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(XfccError::ExpectedPair(key_start));
        }
        let key = header[key_start..i].trim_end();
        if key.is_empty() {
            return Err(XfccError::EmptyKey(key_start));
        }
        i += 1; // `=`
        let value: Cow<'_, str> = if b.get(i) == Some(&b'"') {
            let open = i;
            i += 1;
            let mut out = String::new();
            let mut seg = i;
            loop {
                match b.get(i) {
                    None => return Err(XfccError::Unterminated(open)),
                    Some(b'\\') if matches!(b.get(i + 1), Some(b'"' | b'\\')) => {
                        out.push_str(&header[seg..i]);
                        out.push(b[i + 1] as char);
                        i += 2;
                        seg = i;
                    }
                    Some(b'"') => {
                        out.push_str(&header[seg..i]);
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            if i < b.len() && !matches!(b[i], b';' | b',') {
                return Err(XfccError::AfterQuote(i));
            }
            Cow::Owned(out)
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b';' | b',') {
                if b[i] == b'"' {
                    return Err(XfccError::StrayQuote(i));
                }
                i += 1;
            }
            Cow::Borrowed(header[start..i].trim_end())
        };
        add(&mut current, key, value)?;
        pairs_in_element += 1;
        match b.get(i) {
            None => {
                elements.push(current);
                return Ok(elements);
            }
            Some(b',') => {
                elements.push(std::mem::take(&mut current));
                pairs_in_element = 0;
                i += 1;
            }
            _ => i += 1, // `;`
        }
    }
}

fn add<'a>(e: &mut Element<'a>, key: &str, value: Cow<'a, str>) -> Result<(), XfccError> {
    let once = |slot: &mut Option<Cow<'a, str>>, name: &'static str, v: Cow<'a, str>| {
        if slot.is_some() {
            return Err(XfccError::Duplicate(name));
        }
        *slot = Some(v);
        Ok(())
    };
    match key.to_ascii_lowercase().as_str() {
        "by" => e.by.push(value),
        "uri" => e.uri.push(value),
        "dns" => e.dns.push(value),
        "hash" => once(&mut e.hash, "Hash", value)?,
        "cert" => once(&mut e.cert, "Cert", value)?,
        "chain" => once(&mut e.chain, "Chain", value)?,
        "subject" => once(&mut e.subject, "Subject", value)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    #[test]
    fn istio_sidecar_element() {
        let h = "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash=dd14782fa2f439724d271dbed846ef843ff40d3932b615da650d028db655fc8d;Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep";
        let e = parse(h).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0],
            Element {
                by: vec!["spiffe://cluster.local/ns/foo/sa/httpbin".into()],
                hash: Some(
                    "dd14782fa2f439724d271dbed846ef843ff40d3932b615da650d028db655fc8d".into()
                ),
                subject: Some("".into()),
                uri: vec!["spiffe://cluster.local/ns/foo/sa/sleep".into()],
                ..Element::default()
            }
        );
    }

    #[test]
    fn envoy_docs_examples() {
        let one = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com";
        let e = parse(one).unwrap();
        assert_eq!(
            e[0].subject.as_deref(),
            Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        );
        let two = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com";
        let e = parse(two).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].by[0], "http://backend.lyft.com");
        assert_eq!(e[1].uri[0], "http://frontend.lyft.com");
    }

    #[test]
    fn waypoint_element() {
        let e = parse("By=spiffe://cluster.local/ns/foo/sa/waypoint;URI=spiffe://cluster.local/ns/foo/sa/sleep").unwrap();
        assert_eq!(e[0].by[0], "spiffe://cluster.local/ns/foo/sa/waypoint");
    }

    #[test]
    fn quoted_values_with_separators_and_escapes() {
        let e = parse(r#"Subject="CN=a, O=\"b;c\"";URI=x,By=y"#).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].subject.as_deref(), Some(r#"CN=a, O="b;c""#));
        assert_eq!(e[1].by[0], "y");
        let e = parse(r#"Subject="a\\b""#).unwrap();
        assert_eq!(e[0].subject.as_deref(), Some(r"a\b"));
    }

    #[test]
    fn repeated_uri_and_dns_and_case_insensitive_keys() {
        let e = parse("by=a;uri=spiffe://td/ns/a/sa/b;URI=https://x;Dns=a.example;DNS=b.example")
            .unwrap();
        assert_eq!(e[0].by, ["a"]);
        assert_eq!(e[0].uri, ["spiffe://td/ns/a/sa/b", "https://x"]);
        assert_eq!(e[0].dns, ["a.example", "b.example"]);
    }

    #[test]
    fn cert_and_chain() {
        let e = parse("Cert=\"-----BEGIN%20CERTIFICATE-----%0Aabc\";Chain=\"-----BEGIN%20CERTIFICATE-----%0Adef\";By=x").unwrap();
        assert_eq!(
            e[0].cert.as_deref(),
            Some("-----BEGIN%20CERTIFICATE-----%0Aabc")
        );
        assert!(e[0].chain.is_some());
    }

    #[test]
    fn spaces_after_separators_and_unknown_keys() {
        let e = parse("By=a; URI=b, By=c;Future=1").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uri, ["b"]);
        assert_eq!(e[1].by, ["c"]);
    }

    #[test_case("", XfccError::Empty; "empty")]
    #[test_case("   ", XfccError::Empty; "blank")]
    #[test_case("By", XfccError::ExpectedPair(0); "key only")]
    #[test_case("By=a;URI", XfccError::ExpectedPair(5); "second key only")]
    #[test_case("=a", XfccError::EmptyKey(0); "empty key")]
    #[test_case("By=a,,By=b", XfccError::EmptyElement(5); "empty element")]
    #[test_case("By=a,", XfccError::EmptyElement(5); "trailing comma")]
    #[test_case(",By=a", XfccError::EmptyElement(0); "leading comma")]
    #[test_case("By=a;;URI=b", XfccError::ExpectedPair(5); "empty pair")]
    #[test_case("Subject=\"abc", XfccError::Unterminated(8); "unterminated")]
    #[test_case("Subject=\"a\\\"", XfccError::Unterminated(8); "escaped closing quote")]
    #[test_case("Subject=\"a\"b", XfccError::AfterQuote(11); "text after quote")]
    #[test_case("URI=a\"b", XfccError::StrayQuote(5); "stray quote")]
    #[test_case("Hash=a;Hash=b", XfccError::Duplicate("Hash"); "duplicate hash")]
    #[test_case("Subject=\"\";subject=x", XfccError::Duplicate("Subject"); "duplicate subject")]
    #[test_case("Cert=a;cert=b", XfccError::Duplicate("Cert"); "duplicate cert")]
    fn rejects(h: &str, err: XfccError) {
        assert_eq!(parse(h), Err(err));
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_xfcc_like(s in "[A-Za-z=;,\" \\\\:/.]{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn quoting_round_trips(v in "[ -~]{0,20}") {
            let quoted = format!("Subject=\"{}\";By=x", v.replace('\\', "\\\\").replace('"', "\\\""));
            let e = parse(&quoted).unwrap();
            prop_assert_eq!(e[0].subject.as_deref(), Some(v.as_str()));
        }
    }
}

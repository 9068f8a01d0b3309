//! HTTP path normalization and `http.paths` matching, as Dikastes does it today
//! (`app-policy/checker/match.go` normalizeHTTPPath; reference/dikastes-semantics.md §5.2):
//!
//! 1. cut at the first `?` or `#`;
//! 2. percent-decode once (Go's `url.PathUnescape`: a `%` not followed by two hex digits is an
//!    error; `+` stays `+`);
//! 3. a decoded path that still contains `%2e`, `%2f` or `%5c` (any case) was double-encoded:
//!    reject;
//! 4. a NUL byte: reject;
//! 5. `\` becomes `/`;
//! 6. it must start with `/`;
//! 7. `;params` are cut from every segment;
//! 8. Go's `path.Clean`: `//` collapsed, `.` dropped, `..` removes the segment before it (clamped
//!    at the root), trailing `/` dropped.
//!
//! A request path that cannot be normalized matches no path criterion. Unlike Go, a path that
//! decodes to bytes that are not UTF-8 is also rejected (rule paths are UTF-8, and `http` is
//! only allowed on Allow rules, so rejecting only narrows access).

use std::borrow::Cow;

/// The longest rule path Calico accepts.
pub const MAX_RULE_PATH_LEN: usize = 1024;

/// Normalizes a request path; `None` when it cannot be normalized. Borrows when the path needed
/// no change but cutting the query.
pub fn normalize(path: &str) -> Option<Cow<'_, str>> {
    let cut = path.find(['?', '#']).map_or(path, |i| &path[..i]);
    if is_clean(cut) {
        return Some(Cow::Borrowed(cut));
    }
    let decoded = percent_decode(cut)?;
    let decoded = String::from_utf8(decoded).ok()?;
    let lower = decoded.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || decoded.contains('\0')
    {
        return None;
    }
    let slashed = decoded.replace('\\', "/");
    if !slashed.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in slashed.split('/') {
        let seg = seg.find(';').map_or(seg, |i| &seg[..i]);
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut clean = String::with_capacity(slashed.len());
    for seg in &out {
        clean.push('/');
        clean.push_str(seg);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    Some(Cow::Owned(clean))
}

/// True when the normalization steps would leave `p` unchanged.
fn is_clean(p: &str) -> bool {
    if !p.starts_with('/') || p.contains(['%', '\\', ';', '\0']) {
        return false;
    }
    if p == "/" {
        return true;
    }
    !p.ends_with('/') && p[1..].split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// Go's `url.PathUnescape`.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a rule path is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/`.
    #[error("path `{0}` must start with `/`")]
    NotAbsolute(String),
    /// Contains `?`, `#` or a space.
    #[error("path `{0}` must not contain `?`, `#` or spaces")]
    BadChar(String),
    /// Longer than 1024 bytes.
    #[error("path is longer than {MAX_RULE_PATH_LEN} bytes")]
    TooLong,
    /// Cannot be normalized.
    #[error("path `{0}` cannot be normalized (bad or double percent-encoding, or NUL)")]
    Unnormalizable(String),
}

/// A compiled `http.paths` entry, holding the normalized rule path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The normalized request path equals this.
    Exact(Box<str>),
    /// The normalized request path is this, or under it (segment-aligned).
    Prefix(Box<str>),
}

impl PathMatch {
    /// An `exact` entry.
    pub fn exact(rule: &str) -> Result<PathMatch, PathError> {
        validate(rule).map(PathMatch::Exact)
    }

    /// A `prefix` entry.
    pub fn prefix(rule: &str) -> Result<PathMatch, PathError> {
        validate(rule).map(PathMatch::Prefix)
    }

    /// Matches a normalized request path (see [`normalize`]).
    pub fn matches(&self, normalized_request: &str) -> bool {
        match self {
            PathMatch::Exact(p) => **p == *normalized_request,
            PathMatch::Prefix(p) => {
                &**p == "/"
                    || normalized_request
                        .strip_prefix(&**p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

/// Calico's API validation of a rule path, then normalization.
fn validate(rule: &str) -> Result<Box<str>, PathError> {
    if rule.len() > MAX_RULE_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !rule.starts_with('/') {
        return Err(PathError::NotAbsolute(rule.to_owned()));
    }
    if rule.contains(['?', '#', ' ']) {
        return Err(PathError::BadChar(rule.to_owned()));
    }
    normalize(rule)
        .map(|p| p.into_owned().into_boxed_str())
        .ok_or_else(|| PathError::Unnormalizable(rule.to_owned()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    #[test_case("/", Some("/"); "root")]
    #[test_case("/a/b", Some("/a/b"); "clean")]
    #[test_case("/a/b/", Some("/a/b"); "trailing slash")]
    #[test_case("//a//b//", Some("/a/b"); "double slashes")]
    #[test_case("/a/./b", Some("/a/b"); "dot")]
    #[test_case("/a/../b", Some("/b"); "dot dot")]
    #[test_case("/a/../../b", Some("/b"); "dot dot clamped")]
    #[test_case("/..", Some("/"); "dot dot at root")]
    #[test_case("/.", Some("/"); "dot at root")]
    #[test_case("/a/b/..", Some("/a"); "trailing dot dot")]
    #[test_case("/a/b/.", Some("/a/b"); "trailing dot")]
    #[test_case("/a/.b/..c", Some("/a/.b/..c"); "dotted names")]
    #[test_case("/a?x=1", Some("/a"); "query")]
    #[test_case("/a#frag", Some("/a"); "fragment")]
    #[test_case("/a?x=/../b", Some("/a"); "query with traversal")]
    #[test_case("/a#x?y", Some("/a"); "fragment before question mark")]
    #[test_case("/a;v=1/b", Some("/a/b"); "matrix param")]
    #[test_case("/a/b;jsessionid=1", Some("/a/b"); "matrix param on leaf")]
    #[test_case("/;x/a", Some("/a"); "segment of only params")]
    #[test_case("/admin/..;/x", Some("/x"); "dot dot with params")]
    #[test_case("/a/%2e%2e/b", Some("/b"); "encoded dot dot")]
    #[test_case("/%2e%2e/admin", Some("/admin"); "encoded dot dot at root")]
    #[test_case("/a%2Fb", Some("/a/b"); "encoded slash decoded once")]
    #[test_case("/a%5cb", Some("/a/b"); "encoded backslash")]
    #[test_case("/a\\b", Some("/a/b"); "backslash")]
    #[test_case("\\a", Some("/a"); "leading backslash")]
    #[test_case("/a%20b", Some("/a b"); "encoded space")]
    #[test_case("/a+b", Some("/a+b"); "plus stays")]
    #[test_case("/caf%C3%A9", Some("/café"); "utf8 escape")]
    #[test_case("/café", Some("/café"); "raw unicode")]
    #[test_case("/%252e%252e/", None; "double encoded dots")]
    #[test_case("/a%252fb", None; "double encoded slash")]
    #[test_case("/a%255Cb", None; "double encoded backslash upper")]
    #[test_case("/a%00b", None; "nul")]
    #[test_case("/a%zz", None; "bad escape")]
    #[test_case("/a%4", None; "short escape")]
    #[test_case("/a%", None; "lone percent")]
    #[test_case("/a%ff", None; "not utf8")]
    #[test_case("a/b", None; "relative")]
    #[test_case("", None; "empty")]
    #[test_case("*", None; "asterisk form")]
    #[test_case("?x", None; "only query")]
    #[test_case("http://h/a", None; "absolute form")]
    #[test_case("%2fa", Some("/a"); "encoded leading slash")]
    fn normalize_table(input: &str, expected: Option<&str>) {
        assert_eq!(normalize(input).as_deref(), expected);
    }

    #[test]
    fn clean_paths_are_borrowed() {
        assert!(matches!(
            normalize("/api/items"),
            Some(Cow::Borrowed("/api/items"))
        ));
        assert!(matches!(
            normalize("/api/items?q=1"),
            Some(Cow::Borrowed("/api/items"))
        ));
        assert!(matches!(normalize("/a/"), Some(Cow::Owned(_))));
    }

    #[test_case("/path", "/path", true; "exact equal")]
    #[test_case("/path", "/path/", true; "exact trailing slash")]
    #[test_case("/path", "/pathlong", false; "exact longer")]
    #[test_case("/path", "/path?x=1", true; "exact with query")]
    #[test_case("/a/b", "/a/./b", true; "exact dot")]
    #[test_case("/a/b", "/a/b;x", true; "exact params")]
    #[test_case("/", "/", true; "exact root")]
    fn exact(rule: &str, request: &str, expected: bool) {
        let m = PathMatch::exact(rule).unwrap();
        assert_eq!(normalize(request).is_some_and(|p| m.matches(&p)), expected);
    }

    #[test_case("/pub", "/pub", true; "equal")]
    #[test_case("/pub", "/pub/a", true; "under")]
    #[test_case("/pub", "/public", false; "sibling")]
    #[test_case("/pub/", "/pub/a", true; "rule trailing slash")]
    #[test_case("/pub/", "/pub", true; "rule trailing slash equal")]
    #[test_case("/", "/anything/at/all", true; "root prefix")]
    #[test_case("/pub", "/pub/../admin", false; "escape by dot dot")]
    #[test_case("/pub", "/pub/%2e%2e/admin", false; "escape by encoded dot dot")]
    #[test_case("/pub", "/pub/..%2fadmin", false; "escape by encoded slash")]
    #[test_case("/pub", "/pub/%252e%252e/admin", false; "double encoding")]
    #[test_case("/pub", "/pub;x/a", true; "matrix params under prefix")]
    #[test_case("/pub", "/PUB/a", false; "case-sensitive")]
    #[test_case("/a/b", "/a//b/c", true; "collapsed slashes")]
    fn prefix(rule: &str, request: &str, expected: bool) {
        let m = PathMatch::prefix(rule).unwrap();
        assert_eq!(normalize(request).is_some_and(|p| m.matches(&p)), expected);
    }

    #[test_case("path", PathError::NotAbsolute("path".into()); "relative")]
    #[test_case("/a?b", PathError::BadChar("/a?b".into()); "question mark")]
    #[test_case("/a#b", PathError::BadChar("/a#b".into()); "hash")]
    #[test_case("/a b", PathError::BadChar("/a b".into()); "space")]
    #[test_case("/a%zz", PathError::Unnormalizable("/a%zz".into()); "bad escape")]
    fn rule_errors(rule: &str, err: PathError) {
        assert_eq!(PathMatch::exact(rule), Err(err.clone()));
        assert_eq!(PathMatch::prefix(rule), Err(err));
    }

    #[test]
    fn rule_length_limit() {
        let ok = format!("/{}", "a".repeat(MAX_RULE_PATH_LEN - 1));
        assert!(PathMatch::exact(&ok).is_ok());
        assert_eq!(PathMatch::exact(&format!("{ok}a")), Err(PathError::TooLong));
    }

    proptest! {
        #[test]
        fn normalized_paths_are_fixed_points(p in "[/a.%2ef;\\\\?#]{0,24}") {
            if let Some(n) = normalize(&p) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"));
                prop_assert!(!n.contains("/./") && !n.ends_with("/."));
                prop_assert!(!n.contains("/../") && !n.ends_with("/.."));
                prop_assert!(n == "/" || !n.ends_with('/'));
                // Idempotent on paths without `%` (a decoded `%` would be decoded again).
                if !n.contains('%') {
                    let again = normalize(&n);
                    prop_assert_eq!(again.as_deref(), Some(&*n));
                }
            }
        }

        #[test]
        fn never_panics(p in any::<String>()) {
            let _ = normalize(&p);
        }
    }
}

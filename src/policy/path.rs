//! HTTP paths: rule paths normalized as Dikastes does, request paths read every way an upstream
//! may read them ([`readings`], SEMANTICS.md §4), and `http.paths` matching.
//!
//! Rule paths are normalized as Dikastes does (`app-policy/checker/match.go`
//! normalizeHTTPPath; reference/dikastes-semantics.md §5.2):
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
//! Unlike Go, a rule path that decodes to bytes that are not UTF-8 is also rejected.
//!
//! Request paths are never normalized that way: Dikastes resolves `..`, strips `;params` and
//! decodes `%2F` before matching, but the upstream may not, and `/admin/..;/products/42` is then
//! allowed as `/products/42` while Flask and Node route it to their admin handler. A request
//! path is read every way an upstream may read it (see [`readings`]), and a criterion matches
//! only when it matches every reading.

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

/// Paths longer than this that are not plain (they hold one of `% ; \\ //` or a dot
/// segment) are not read (they are [`RequestPath::Undecodable`]): each reading is a copy, and
/// a path router serves nothing that long. Plain paths have one reading at any length.
pub const MAX_READ_PATH_LEN: usize = 16 * 1024;

/// A request path as upstreams may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPath<'a> {
    /// Every upstream reads it the same way (borrowed on the fast path).
    One(Cow<'a, str>),
    /// The distinct readings (two or more).
    Many(Box<[Box<str>]>),
    /// Cannot be decoded (an invalid escape, NUL, a double encoding, bytes that are not UTF-8),
    /// does not start with `/` (`OPTIONS *`, `http://…`), or is too long to read
    /// ([`MAX_READ_PATH_LEN`], when not plain).
    Undecodable,
}

/// How a request path fares against a list of path criteria.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOutcome {
    /// Every reading matches some criterion.
    Match,
    /// No reading matches any.
    NoMatch,
    /// Some readings match and some do not, or the path cannot be read: the request is denied
    /// when it reaches such a rule (reason `ambiguous path`).
    Ambiguous,
}

impl RequestPath<'_> {
    /// Matches the readings against `criteria` (OR).
    pub fn outcome(&self, criteria: &[PathMatch]) -> PathOutcome {
        let any = |p: &str| criteria.iter().any(|m| m.matches(p));
        match self {
            RequestPath::One(p) => {
                if any(p) {
                    PathOutcome::Match
                } else {
                    PathOutcome::NoMatch
                }
            }
            RequestPath::Many(all) => {
                let hits = all.iter().filter(|p| any(p)).count();
                if hits == all.len() {
                    PathOutcome::Match
                } else if hits == 0 {
                    PathOutcome::NoMatch
                } else {
                    PathOutcome::Ambiguous
                }
            }
            RequestPath::Undecodable => PathOutcome::Ambiguous,
        }
    }

    /// The readings (none when undecodable).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&str>, &[Box<str>]) = match self {
            RequestPath::One(p) => (Some(p), &[]),
            RequestPath::Many(all) => (None, all),
            RequestPath::Undecodable => (None, &[]),
        };
        one.into_iter().chain(many.iter().map(|p| &**p))
    }
}

/// The ways upstreams read a path, each on or off: strip `;params` from each segment; decode
/// `%2F`, `%5C` (and `%3B`) into the delimiters they encode; `\` as `/`; merge `//`; resolve
/// `.` and `..` (clamped at the root).
const STRIP_PARAMS: u8 = 1;
const DECODE_DELIMITERS: u8 = 2;
const BACKSLASH_AS_SLASH: u8 = 4;
const MERGE_SLASHES: u8 = 8;
const RESOLVE_DOTS: u8 = 16;
const ALL_READINGS: u8 = 32;

/// Every reading an upstream may give a request path (SEMANTICS.md §4): each combination of
/// the five ways above, on top of what every upstream does (cut the query and fragment, decode
/// escapes of everything but the delimiters, drop a trailing `/`).
///
/// The fast path, a path with none of `% ; \ //` and no dot segment, has one reading and is
/// answered without allocating.
pub fn readings(raw: &str) -> RequestPath<'_> {
    let cut = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
    if let Some(one) = single_reading(cut) {
        return RequestPath::One(Cow::Borrowed(one));
    }
    if !cut.starts_with('/') || cut.len() > MAX_READ_PATH_LEN {
        return RequestPath::Undecodable;
    }
    let Some(base) = decode_but_delimiters(cut) else {
        return RequestPath::Undecodable;
    };
    // Only the ways that can change something are tried.
    let lower = base.to_ascii_lowercase();
    let has = |n: &str| lower.contains(n);
    let escaped = has("%2f") || has("%5c") || has("%3b");
    let mut relevant = 0;
    if base.contains(';') || has("%3b") {
        relevant |= STRIP_PARAMS;
    }
    if escaped {
        relevant |= DECODE_DELIMITERS;
    }
    if base.contains('\\') || has("%5c") {
        relevant |= BACKSLASH_AS_SLASH;
    }
    if base.contains("//") || escaped || base.contains(['\\', ';']) {
        relevant |= MERGE_SLASHES;
    }
    if base.contains('.') {
        relevant |= RESOLVE_DOTS;
    }
    let mut all: Vec<Box<str>> = Vec::new();
    for ways in 0..ALL_READINGS {
        if ways & !relevant != 0 {
            continue;
        }
        let r = read(&base, ways);
        if !all.contains(&r) {
            all.push(r);
        }
    }
    match all.len() {
        1 => RequestPath::One(Cow::Owned(all.pop().map(String::from).unwrap_or_default())),
        _ => RequestPath::Many(all.into_boxed_slice()),
    }
}

/// The one reading of a path that no way changes (none of `% ; \ //`, no dot segment), with
/// at most its trailing `/` dropped; `None` when the path needs the slow path.
fn single_reading(p: &str) -> Option<&str> {
    if !p.starts_with('/') || p.contains(['%', '\\', ';', '\0']) || p.contains("//") {
        return None;
    }
    if p[1..].split('/').any(|s| matches!(s, "." | "..")) {
        return None;
    }
    Some(match p.strip_suffix('/') {
        Some("") | None => p,
        Some(trimmed) => trimmed,
    })
}

/// Decodes every escape but those of `/`, `\\` and `;` (kept as written, upper-cased), which
/// upstreams disagree on; `None` for what no upstream should be asked to read: an invalid
/// escape, NUL, bytes that are not UTF-8, or a double encoding of `.`, `/`, `\\`, `;` or `%`
/// (`%252e`: an upstream that decodes twice reads `.`).
fn decode_but_delimiters(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let c = hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?;
            match c {
                b'/' | b'\\' | b';' => {
                    out.push(b'%');
                    out.extend(b[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
                }
                b'%' => {
                    let next = (
                        b.get(i + 3).copied().and_then(hex),
                        b.get(i + 4).copied().and_then(hex),
                    );
                    if let (Some(hi), Some(lo)) = next
                        && matches!(hi << 4 | lo, b'.' | b'/' | b'\\' | b';' | b'%')
                    {
                        return None;
                    }
                    out.push(c);
                }
                0 => return None,
                _ => out.push(c),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}

/// One reading of a path decoded by [`decode_but_delimiters`].
fn read(base: &str, ways: u8) -> Box<str> {
    let on = |w: u8| ways & w != 0;
    let mut p = base.to_owned();
    if on(DECODE_DELIMITERS) {
        p = p
            .replace("%2F", "/")
            .replace("%5C", "\\")
            .replace("%3B", ";");
    }
    if on(BACKSLASH_AS_SLASH) {
        p = p.replace('\\', "/");
    }
    let mut out: Vec<&str> = Vec::new();
    // INVARIANT: `base` starts with `/`, so the first piece is empty.
    for seg in p.split('/').skip(1) {
        let seg = if on(STRIP_PARAMS) {
            seg.find(';').map_or(seg, |i| &seg[..i])
        } else {
            seg
        };
        match seg {
            "" if on(MERGE_SLASHES) => {}
            "." if on(RESOLVE_DOTS) => {}
            ".." if on(RESOLVE_DOTS) => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    // A trailing `/` is dropped (all of them, when `//` is not merged).
    while out.last() == Some(&"") {
        out.pop();
    }
    let mut r = String::with_capacity(p.len());
    for seg in &out {
        r.push('/');
        r.push_str(seg);
    }
    if r.is_empty() {
        r.push('/');
    }
    r.into_boxed_str()
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

    use PathOutcome::{Ambiguous, Match, NoMatch};

    #[test_case("/path", "/path", Match; "exact equal")]
    #[test_case("/path", "/path/", Match; "exact trailing slash")]
    #[test_case("/path", "/pathlong", NoMatch; "exact longer")]
    #[test_case("/path", "/path?x=1", Match; "exact with query")]
    #[test_case("/a/b", "/a/./b", Ambiguous; "exact dot")]
    #[test_case("/a/b", "/a/b;x", Ambiguous; "exact params")]
    #[test_case("/a%20b", "/a%20b", Match; "exact encoded space")]
    #[test_case("/café", "/caf%C3%A9", Match; "exact utf8 escape")]
    #[test_case("/api", "/%61pi", Match; "unreserved escape decoded")]
    #[test_case("/", "/", Match; "exact root")]
    fn exact(rule: &str, request: &str, expected: PathOutcome) {
        let m = PathMatch::exact(rule).unwrap();
        assert_eq!(readings(request).outcome(&[m]), expected);
    }

    #[test_case("/pub", "/pub", Match; "equal")]
    #[test_case("/pub", "/pub/a", Match; "under")]
    #[test_case("/pub", "/public", NoMatch; "sibling")]
    #[test_case("/pub/", "/pub/a", Match; "rule trailing slash")]
    #[test_case("/pub/", "/pub", Match; "rule trailing slash equal")]
    #[test_case("/", "/anything/at/all", Match; "root prefix")]
    #[test_case("/", "/a/../../b;c/%2e%2e%2f", Match; "root prefix matches every reading")]
    #[test_case("/pub", "/pub/../admin", Ambiguous; "escape by dot dot")]
    #[test_case("/pub", "/pub/%2e%2e/admin", Ambiguous; "escape by encoded dot dot")]
    #[test_case("/pub", "/pub/..%2fadmin", Ambiguous; "escape by encoded slash")]
    #[test_case("/pub", "/pub/..;/admin", Ambiguous; "escape by params")]
    #[test_case("/pub", "/pub/..\\admin", Ambiguous; "escape by backslash")]
    #[test_case("/pub", "/pub/%252e%252e/admin", Ambiguous; "double encoding")]
    #[test_case("/pub", "/pub;x/a", Ambiguous; "matrix params on the prefix segment")]
    #[test_case("/pub", "/pub/a;x", Match; "matrix params under the prefix")]
    #[test_case("/pub", "/pub/a%2Fb", Match; "encoded slash under the prefix")]
    #[test_case("/pub", "/pub//a", Match; "double slash under the prefix")]
    #[test_case("/pub", "/PUB/a", NoMatch; "case-sensitive")]
    #[test_case("/a/b", "/a//b/c", Ambiguous; "collapsed slashes")]
    #[test_case("/products", "/admin/..;/products/42", Ambiguous; "issue 13 params")]
    #[test_case("/products", "/admin/..%2Fproducts/42", Ambiguous; "issue 13 encoded slash")]
    #[test_case("/products", "/admin/..%5Cproducts/42", Ambiguous; "issue 13 encoded backslash")]
    #[test_case("/products", "/admin/../products/42", Ambiguous; "issue 13 dot dot")]
    #[test_case("/admin", "/admin/..;/products/42", Ambiguous; "deny rule on admin sees it too")]
    #[test_case("/products", "/admin/x", NoMatch; "no reading under the prefix")]
    #[test_case("/products", "*", Ambiguous; "asterisk form")]
    #[test_case("/products", "/a%zz", Ambiguous; "invalid escape")]
    #[test_case("/products", "/a%00", Ambiguous; "nul")]
    fn prefix(rule: &str, request: &str, expected: PathOutcome) {
        let m = PathMatch::prefix(rule).unwrap();
        assert_eq!(readings(request).outcome(&[m]), expected);
    }

    fn sorted(p: &RequestPath<'_>) -> Vec<String> {
        let mut v: Vec<String> = p.iter().map(str::to_owned).collect();
        v.sort();
        v
    }

    #[test_case("/a/b", &["/a/b"]; "clean")]
    #[test_case("/a/b/", &["/a/b"]; "trailing slash dropped")]
    #[test_case("/a?x=/../b", &["/a"]; "query cut")]
    #[test_case("/a%20b", &["/a b"]; "escape decoded")]
    #[test_case("/a/../b", &["/a/../b", "/b"]; "dot dot")]
    #[test_case("/a/..;/b", &["/a/../b", "/a/..;/b", "/b"]; "params then dots")]
    #[test_case("/a%2Fb", &["/a%2Fb", "/a/b"]; "encoded slash")]
    #[test_case("/a%2fb", &["/a%2Fb", "/a/b"]; "encoded slash lower case")]
    #[test_case("/a\\b", &["/a/b", "/a\\b"]; "backslash")]
    #[test_case("/a//b", &["/a//b", "/a/b"]; "double slash")]
    #[test_case("/..", &["/", "/.."]; "dot dot at root")]
    fn reading_sets(raw: &str, expected: &[&str]) {
        assert_eq!(sorted(&readings(raw)), expected);
    }

    #[test_case("*"; "asterisk form")]
    #[test_case(""; "empty")]
    #[test_case("a/b"; "relative")]
    #[test_case("http://h/a"; "absolute form")]
    #[test_case("%2fa"; "encoded leading slash")]
    #[test_case("/a%zz"; "bad escape")]
    #[test_case("/a%4"; "short escape")]
    #[test_case("/a%"; "lone percent")]
    #[test_case("/a%ff"; "not utf8")]
    #[test_case("/a%00b"; "encoded nul")]
    #[test_case("/a\0b"; "raw nul")]
    #[test_case("/%252e%252e/"; "double encoded dots")]
    #[test_case("/a%252fb"; "double encoded slash")]
    #[test_case("/a%255Cb"; "double encoded backslash")]
    #[test_case("/a%253bb"; "double encoded semicolon")]
    #[test_case("/a%25252e"; "triple encoded dot")]
    fn undecodable(raw: &str) {
        assert_eq!(readings(raw), RequestPath::Undecodable);
    }

    #[test]
    fn long_ambiguous_paths_are_not_read() {
        let ok = format!("/a/../{}", "b".repeat(MAX_READ_PATH_LEN - 6));
        assert!(matches!(readings(&ok), RequestPath::Many(_)));
        assert_eq!(readings(&format!("{ok}b")), RequestPath::Undecodable);
        // One reading: any length, borrowed.
        let clean = format!("/{}", "a".repeat(4 * MAX_READ_PATH_LEN));
        assert!(matches!(
            readings(&clean),
            RequestPath::One(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn one_reading_paths_are_borrowed() {
        for p in [
            "/api/items",
            "/api/items?q=/../x",
            "/api/items/",
            "/",
            "/a.b/.c/..d",
        ] {
            assert!(
                matches!(readings(p), RequestPath::One(Cow::Borrowed(_))),
                "{p}"
            );
        }
        assert!(matches!(
            readings("/a%20b"),
            RequestPath::One(Cow::Owned(_))
        ));
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
        fn readings_never_panic(p in any::<String>()) {
            let _ = readings(&p);
        }

        #[test]
        fn readings_are_absolute_and_end_without_slash(p in "/[/a.%2ef5cC;\\\\?#]{0,24}") {
            for r in readings(&p).iter() {
                prop_assert!(r.starts_with('/'));
                prop_assert!(r == "/" || !r.ends_with('/'), "{r}");
            }
        }

        /// Dikastes' normalization is one of the readings: what it matches, we match only if
        /// every other reading matches too.
        #[test]
        fn dikastes_reading_is_one_of_them(p in "/[/a.%2ef5cC;\\\\]{0,24}") {
            let r = readings(&p);
            if let (Some(n), false) = (normalize(&p), r == RequestPath::Undecodable) {
                prop_assert!(r.iter().any(|x| x == n), "{n} not in {:?}", r);
            }
        }

        /// A path whose literal reading is under `/admin` never matches `/products` outright,
        /// however it is dressed up to read as `/products` after normalization.
        #[test]
        fn admin_paths_never_match_another_prefix(tail in "[/a.%2F5Cc;\\\\]{0,16}") {
            let m = PathMatch::prefix("/products").unwrap();
            let p = format!("/admin/{tail}/products/42");
            prop_assert_ne!(readings(&p).outcome(std::slice::from_ref(&m)), Match);
        }

        /// Clean paths take the fast path: one borrowed reading.
        #[test]
        fn clean_paths_have_one_borrowed_reading(p in "(/[a-z0-9_-][a-z0-9._-]{0,6}){1,5}") {
            prop_assume!(!p.split('/').any(|s| s == "." || s == ".."));
            prop_assert!(matches!(readings(&p), RequestPath::One(Cow::Borrowed(_))));
        }
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

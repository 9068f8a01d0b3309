//! The selector cases of `tests/data/cases/selectors.json`, one row each: the policy's
//! `source.selector`, the caller pod's labels, and the expected answer. A valid selector allows
//! exactly when it matches; an invalid one makes the policy invalid, so the call is denied.
//! Each `deny` row says which of the two it is, so a wrongly rejected selector cannot pass as
//! a deny.

use test_case::test_case;

use super::{Selector, repeat};

/// What the case expects of the selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `allow`: the selector is valid and matches.
    Allow,
    /// `deny`: the selector is valid and does not match.
    NoMatch,
    /// `deny`: the selector is invalid.
    Invalid,
}

use Outcome::{Allow, Invalid, NoMatch};

/// The labels Calico adds to every workload endpoint (reference/calico-selectors.md §5); the
/// cases run the caller `src` in namespace `default` as service account `src`.
const SYNTHETIC: [(&str, &str); 3] = [
    ("projectcalico.org/namespace", "default"),
    ("projectcalico.org/orchestrator", "k8s"),
    ("projectcalico.org/serviceaccount", "src"),
];

#[test_case(r#"a == "b""#, &[("a", "b")], Allow; "selector-0")]
#[test_case(r#"a == "b""#, &[("a", "c")], NoMatch; "selector-3")]
#[test_case(r#"a == "b" && c == "d""#, &[], NoMatch; "selector-6")]
#[test_case(r#"a == "b" && c == "d""#, &[("c", "d")], NoMatch; "selector-9")]
#[test_case(r#"a == "b" || c == "d""#, &[("a", "b")], Allow; "selector-12")]
#[test_case(r#"a == "b" || c == "d""#, &[("a", "e"), ("c", "e")], NoMatch; "selector-15")]
#[test_case(r#"a in {"'", '"', "c"}"#, &[("a", "c")], Allow; "selector-18")]
#[test_case(r#"a in {"'", '"', "c"}"#, &[], NoMatch; "selector-21")]
#[test_case(r#"a not in {"'", '"', "c"}"#, &[("a", "e")], Allow; "selector-24")]
#[test_case("a == 'a'", &[], NoMatch; "selector-30")]
#[test_case(r#"a != "a""#, &[], Allow; "selector-33")]
#[test_case(r#"a contains "a""#, &[("a", "a")], Allow; "selector-36")]
#[test_case(r#"a contains "a""#, &[], NoMatch; "selector-39")]
#[test_case(r#"a starts with "a""#, &[("a", "a")], Allow; "selector-42")]
#[test_case(r#"a starts with "a""#, &[], NoMatch; "selector-45")]
#[test_case(r#"a starts with "a""#, &[("b", "aaa")], NoMatch; "selector-48")]
#[test_case(r#"a ends with "a""#, &[("a", "aaa"), ("b", "c")], Allow; "selector-51")]
#[test_case(r#"a ends with "a""#, &[("a", "aab")], NoMatch; "selector-54")]
#[test_case(r#"a in {"a"}"#, &[("a", "b")], NoMatch; "selector-57")]
#[test_case(r#"a in {"a", "b"}"#, &[("a", "b")], Allow; "selector-60")]
#[test_case(r#"a not in {"a"}"#, &[("a", "a")], NoMatch; "selector-63")]
#[test_case("!has(a)", &[("a", "b")], NoMatch; "selector-66")]
#[test_case("! has(a)", &[("a", "b")], NoMatch; "selector-69")]
#[test_case("!! ! has(a)", &[("a", "b")], NoMatch; "selector-72")]
#[test_case("", &[("a", "b")], Allow; "selector-75")]
#[test_case(" all()", &[], Allow; "selector-78")]
#[test_case("a == 'a1' && b != 'b1'", &[("a", "a1"), ("b", "b1")], NoMatch; "selector-84")]
#[test_case("a != 'a1' && !b == 'b1'", &[("a", "a1"), ("b", "b1")], NoMatch; "selector-87")]
#[test_case("!has(b) && has(a)", &[("a", "a")], Allow; "selector-90")]
#[test_case("a == 'a1' || b == 'b1'", &[("a", "a1"), ("b", "b1")], Allow; "selector-93")]
#[test_case("a != 'a1' || b != 'b1'", &[("a", "a1"), ("b", "b1")], NoMatch; "selector-96")]
#[test_case(r#"a=="b""#, &[("a", "c")], NoMatch; "selector-99")]
#[test_case(r#"(a=="b")"#, &[("a", "b")], Allow; "selector-102")]
#[test_case("contains contains 'contains'", &[("contains", "xcontainsx")], Allow; "selector-105")]
#[test_case(r#"label startswith "value""#, &[("label", "1value")], NoMatch; "selector-108")]
#[test_case(r#"label starts  with "value""#, &[("label", "valueX")], Allow; "selector-111")]
#[test_case(r#"label ends  with "value""#, &[("label", "Xvalue")], Allow; "selector-114")]
#[test_case(r#"calico/k8s_ns == "kube-system" && k8s-app == "kube-dns""#, &[("calico/k8s_ns", "kube-system"), ("k8s-app", "kube-dns")], Allow; "selector-117")]
#[test_case("a not in {}", &[("a", "a")], Allow; "selector-120")]
#[test_case("global( )", &[], Allow; "selector-123")]
#[test_case("! (has( b)||! has(a ))", &[("a", "x")], Allow; "selector-126")]
#[test_case(r#"! (a == "b"&&! c != "d")"#, &[("a", "b")], Allow; "selector-129")]
#[test_case("a in {'a',}", &[("a", "a")], Allow; "selector-135")]
#[test_case("a == ''", &[("a", "")], Allow; "selector-138")]
#[test_case("a == 'B'", &[("a", "b")], NoMatch; "selector-141")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", &[("b", "y")], NoMatch; "selector-144")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x"), ("c", "z")], Allow; "selector-147")]
#[test_case("b contains b", &[], Invalid; "selector-156")]
#[test_case("'b1' == b", &[], Invalid; "selector-159")]
#[test_case("!", &[], Invalid; "selector-162")]
#[test_case("foo != ||", &[], Invalid; "selector-165")]
#[test_case(r#""FOO"#, &[], Invalid; "selector-168")]
#[test_case("(", &[], Invalid; "selector-171")]
#[test_case("()", &[], Invalid; "selector-174")]
#[test_case(r#"a == "b" || %"#, &[], Invalid; "selector-177")]
#[test_case(&format!("{} == \"value\"", repeat('a', 513)), &[], Invalid; "selector-180")]
#[test_case(r#"label = "value""#, &[], Invalid; "selector-183")]
#[test_case("has()", &[], Invalid; "selector-186")]
#[test_case(r#"a == "b" & has(foo)"#, &[], Invalid; "selector-189")]
#[test_case(r#"label inf "value""#, &[], Invalid; "selector-192")]
#[test_case(r#"label squiggles "value""#, &[], Invalid; "selector-195")]
#[test_case("has (a)", &[], Invalid; "selector-198")]
#[test_case("a in {,}", &[], Invalid; "selector-201")]
#[test_case("&& a == 'b'", &[], Invalid; "selector-204")]
fn selectors_json(selector: &str, pod_labels: &[(&str, &str)], outcome: Outcome) {
    let labels: Vec<(&str, &str)> = pod_labels.iter().copied().chain(SYNTHETIC).collect();
    match (Selector::parse(selector), outcome) {
        (Ok(sel), Allow) => assert!(
            sel.matches(labels.as_slice()),
            "`{sel}` should match {labels:?}"
        ),
        (Ok(sel), NoMatch) => assert!(
            !sel.matches(labels.as_slice()),
            "`{sel}` should not match {labels:?}"
        ),
        (Err(_), Invalid) => {}
        (Ok(sel), Invalid) => panic!("{selector:?} should be rejected, parsed as `{sel}`"),
        (Err(e), _) => panic!("{selector:?} should parse: {}", e.render(selector)),
    }
}

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use test_case::test_case;

use super::*;

fn eval(sel: &str, labels: &[(&str, &str)]) -> bool {
    Selector::parse(sel)
        .unwrap_or_else(|e| panic!("{sel:?}: {e}"))
        .matches(labels)
}

const NONE: &[(&str, &str)] = &[];
const AB: &[(&str, &str)] = &[("a", "b")];
const AC: &[(&str, &str)] = &[("a", "c")];
const AEMPTY: &[(&str, &str)] = &[("a", "")];
const ABCD: &[(&str, &str)] = &[("a", "b"), ("c", "d")];

// Equality and inequality.
#[test_case(r#"a == "b""#, AB, true; "eq match")]
#[test_case(r#"a == "b""#, AC, false; "eq other value")]
#[test_case(r#"a == "b""#, NONE, false; "eq absent")]
#[test_case("a == 'b'", AB, true; "eq single quotes")]
#[test_case(r#"a=="b""#, AB, true; "eq no spaces")]
#[test_case("a\t==\t'b'", AB, true; "eq tabs")]
#[test_case(r#"a == "B""#, AB, false; "eq case-sensitive")]
#[test_case(r#"a == """#, AEMPTY, true; "eq empty value present")]
#[test_case(r#"a == """#, NONE, false; "eq empty value absent")]
#[test_case(r#"a != "b""#, AB, false; "ne same")]
#[test_case(r#"a != "b""#, AC, true; "ne other")]
#[test_case(r#"a != "b""#, NONE, true; "ne absent")]
#[test_case("a!='b'", AC, true; "ne no spaces")]
// Sets.
#[test_case(r#"a in {"b"}"#, AB, true; "in single")]
#[test_case(r#"a in {"x", "b"}"#, AB, true; "in second")]
#[test_case(r#"a in {"x"}"#, AB, false; "in miss")]
#[test_case(r#"a in {"b"}"#, NONE, false; "in absent")]
#[test_case("a in {}", AB, false; "in empty set")]
#[test_case("a in {'b',}", AB, true; "in trailing comma")]
#[test_case(r#"a in {"b","b"}"#, AB, true; "in duplicates")]
#[test_case(r#"a in {"'", '"', "b"}"#, AB, true; "in mixed quotes")]
#[test_case(r#"a not in {"b"}"#, AB, false; "not in member")]
#[test_case(r#"a not in {"x"}"#, AB, true; "not in non member")]
#[test_case(r#"a not in {"b"}"#, NONE, true; "not in absent")]
#[test_case("a not in {}", AB, true; "not in empty set")]
#[test_case(r#"a notin {"b"}"#, AC, true; "notin without space")]
#[test_case(r#"a not  in {"b"}"#, AB, false; "not in two spaces")]
#[test_case(r#"a in{"b"}"#, AB, true; "in touching brace")]
// has, all, global.
#[test_case("has(a)", AB, true; "has present")]
#[test_case("has(a)", AEMPTY, true; "has empty value")]
#[test_case("has(a)", NONE, false; "has absent")]
#[test_case("has( a )", AB, true; "has inner spaces")]
#[test_case("!has(a)", NONE, true; "not has absent")]
#[test_case("!has(a)", AB, false; "not has present")]
#[test_case("all()", NONE, true; "all")]
#[test_case("all( )", NONE, true; "all with space")]
#[test_case("", AB, true; "empty is all")]
#[test_case("   ", AB, true; "blank is all")]
#[test_case("\t", NONE, true; "tab only is all")]
#[test_case("global()", NONE, true; "global plain evaluation")]
#[test_case("global( )", NONE, true; "global with space")]
// String operators.
#[test_case(r#"a contains "b""#, &[("a", "abc")], true; "contains")]
#[test_case(r#"a contains "x""#, &[("a", "abc")], false; "contains miss")]
#[test_case(r#"a contains """#, AEMPTY, true; "contains empty present")]
#[test_case(r#"a contains """#, NONE, false; "contains empty absent")]
#[test_case(r#"a starts with "ab""#, &[("a", "abc")], true; "starts with")]
#[test_case(r#"a starts with "bc""#, &[("a", "abc")], false; "starts with miss")]
#[test_case(r#"a startswith "ab""#, &[("a", "abc")], true; "startswith without space")]
#[test_case(r#"a starts  with "ab""#, &[("a", "abc")], true; "starts two spaces with")]
#[test_case(r#"a starts with "a""#, &[("b", "aaa")], false; "starts with absent")]
#[test_case(r#"a ends with "bc""#, &[("a", "abc")], true; "ends with")]
#[test_case(r#"a ends with "ab""#, &[("a", "abc")], false; "ends with miss")]
#[test_case(r#"a endswith "c""#, &[("a", "abc")], true; "endswith without space")]
#[test_case(r#"a ends	with "c""#, &[("a", "abc")], true; "ends tab with")]
#[test_case("contains contains 'contains'", &[("contains", "xcontainsx")], true; "keyword as label")]
#[test_case("in in {'in'}", &[("in", "in")], true; "in as label")]
#[test_case("has == 'x'", &[("has", "x")], true; "has as label")]
#[test_case("all == 'x'", &[("all", "x")], true; "all as label")]
// Labels.
#[test_case("calico/k8s_ns == 'kube-system'", &[("calico/k8s_ns", "kube-system")], true; "label with slash")]
#[test_case("app.kubernetes.io/name == 'x'", &[("app.kubernetes.io/name", "x")], true; "dotted label")]
#[test_case("123 == 'x'", &[("123", "x")], true; "numeric label")]
#[test_case("-x == 'y'", &[("-x", "y")], true; "dash label")]
#[test_case(".a == 'y'", &[(".a", "y")], true; "dot label")]
#[test_case("A == 'y'", &[("a", "y")], false; "labels case-sensitive")]
// Boolean structure.
#[test_case(r#"a == "b" && c == "d""#, ABCD, true; "and both")]
#[test_case(r#"a == "b" && c == "d""#, AB, false; "and one")]
#[test_case(r#"a == "b" && c == "d""#, NONE, false; "and none")]
#[test_case(r#"a == "b" || c == "d""#, AB, true; "or one")]
#[test_case(r#"a == "x" || c == "x""#, ABCD, false; "or none")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", &[("b", "y")], false; "and binds tighter")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", &[("a", "x")], true; "or of and")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x"), ("c", "z")], true; "parentheses")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x")], false; "parentheses miss")]
#[test_case("((a == 'b'))", AB, true; "double parentheses")]
#[test_case("!a == 'b'", AB, false; "not binds to comparison")]
#[test_case("!a == 'b' && has(c)", ABCD, false; "not then and")]
#[test_case("!a == 'x' && has(c)", ABCD, true; "not then and true")]
#[test_case("!!has(a)", AB, true; "double not")]
#[test_case("!! ! has(a)", AB, false; "triple not")]
#[test_case("! has(a)", AB, false; "not space")]
#[test_case("!(has(a) && has(c))", AB, true; "not group")]
#[test_case("! (has( b)||! has(a ))", &[("a", "x")], true; "calico canonicalisation example")]
#[test_case("! (a == \"b\"&&! c != \"d\")", AB, true; "calico nested example")]
#[test_case("a != 'a1' && !b == 'b1'", &[("a", "a1"), ("b", "b1")], false; "calico and of nots")]
#[test_case("has(a) && has(c) && !has(e)", ABCD, true; "three way and")]
#[test_case("has(x) || has(y) || has(c)", ABCD, true; "three way or")]
#[test_case("all() && has(a)", AB, true; "all in and")]
#[test_case("!all()", AB, false; "not all")]
fn evaluates(sel: &str, labels: &[(&str, &str)], expected: bool) {
    assert_eq!(eval(sel, labels), expected);
}

#[test_case("a", "expected operator after label, found end of selector", 2; "label alone")]
#[test_case("a ", "expected operator after label, found end of selector", 3; "label and space")]
#[test_case("b == b", "expected string literal", 6; "bare word value")]
#[test_case("b contains b", "expected string literal", 12; "contains bare word")]
#[test_case("b starts with b", "expected string literal", 15; "starts with bare word")]
#[test_case("b ends with b", "expected string literal", 13; "ends with bare word")]
#[test_case("'b1' == b", "unexpected token", 1; "string on the left")]
#[test_case("a b", "expected operator after label", 3; "two labels")]
#[test_case("!", "unexpected token, found end of selector", 2; "lone not")]
#[test_case("foo == \"bar\" &", "expected &&", 14; "single ampersand")]
#[test_case("foo == \"bar\" |", "expected ||", 14; "single pipe")]
#[test_case("a == \"b\" & has(foo)", "expected &&", 10; "ampersand before has")]
#[test_case("a == \"b\" | has(foo)", "expected ||", 10; "pipe before has")]
#[test_case("foo != ||", "expected string literal", 8; "ne then or")]
#[test_case("foo in {\"\", ||", "expected string literal in set", 13; "unclosed set")]
#[test_case("foo in \"\"", "expected set literal", 8; "in string")]
#[test_case("\"FOO", "unterminated string literal", 1; "unterminated double")]
#[test_case("\"FOO'", "unterminated string literal", 1; "mismatched quotes")]
#[test_case("'FOO", "unterminated string literal", 1; "unterminated single")]
#[test_case("a == 'b", "unterminated string literal", 6; "unterminated value")]
#[test_case("(", "unexpected token, found end of selector", 2; "lone open paren")]
#[test_case("(a == \"foo\"", "expected ), found end of selector", 12; "unclosed paren")]
#[test_case(")", "unexpected token", 1; "lone close paren")]
#[test_case("()", "unexpected token", 2; "empty parens")]
#[test_case("%", "unexpected character", 1; "percent")]
#[test_case("a == \"b\" && %", "unexpected character", 13; "and percent")]
#[test_case("a == \"b\" || %", "unexpected character", 13; "or percent")]
#[test_case("has(foo) &&", "unexpected token, found end of selector", 12; "dangling and")]
#[test_case("label = \"value\"", "expected ==", 7; "single equals")]
#[test_case("all(", "expected ) after all(", 1; "all unclosed")]
#[test_case("global(", "expected ) after global(", 1; "global unclosed")]
#[test_case("has()", "expected label in has()", 1; "has empty")]
#[test_case("has(foo", "expected ) after has(label", 1; "has unclosed")]
#[test_case("has( foo ", "expected ) after has(label", 1; "has unclosed spaces")]
#[test_case("has (a)", "expected operator after label", 5; "has space paren")]
#[test_case("all ()", "expected operator after label", 5; "all space paren")]
#[test_case("label starts foo \"value\"", "expected operator after label", 7; "starts foo")]
#[test_case("label inf \"value\"", "expected operator after label", 7; "inf")]
#[test_case("label ends foo \"value\"", "expected operator after label", 7; "ends foo")]
#[test_case("label ends withs \"value\"", "expected operator after label", 7; "ends withs")]
#[test_case("label squiggles \"value\"", "expected operator after label", 7; "squiggles")]
#[test_case("a in {,}", "expected string literal in set", 7; "set comma only")]
#[test_case("a in {\"a\" \"b\"}", "expected , or } in set", 11; "set missing comma")]
#[test_case("a in {\"a\",,}", "expected string literal in set", 11; "set double comma")]
#[test_case("&& a == 'b'", "unexpected token", 1; "leading and")]
#[test_case("a == 'b' b == 'c'", "unexpected content at end of selector", 10; "two expressions")]
#[test_case("a == 'b'\n", "unexpected character", 9; "newline")]
#[test_case("a\n== 'b'", "unexpected character", 2; "newline after label")]
#[test_case("a == 'b' )", "unexpected content at end of selector", 10; "extra close paren")]
#[test_case("é == 'b'", "unexpected character", 1; "non ascii label")]
#[test_case("a == 'é' && ü", "unexpected character", 13; "column counts characters")]
#[test_case("a == 'b' &&& c == 'd'", "expected &&", 12; "triple ampersand")]
fn rejects(sel: &str, message: &str, column: usize) {
    let e = Selector::parse(sel).unwrap_err();
    assert_eq!((e.message.as_str(), e.column), (message, column), "{sel:?}");
}

#[test]
fn label_length_limit() {
    let ok = format!("{} == 'v'", "a".repeat(512));
    assert!(Selector::parse(&ok).is_ok());
    let long = format!("{} == 'v'", "a".repeat(513));
    let e = Selector::parse(&long).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.column, e.span.clone()),
        ("label is longer than 512 characters", 1, 0..513)
    );
    assert!(Selector::parse(&format!("has({})", "a".repeat(513))).is_err());
}

#[test]
fn error_display_and_render() {
    let e = Selector::parse("app == 'web' && tier = 'db'").unwrap_err();
    assert_eq!(e.to_string(), "expected == at column 22");
    assert_eq!(
        e.render("app == 'web' && tier = 'db'"),
        "app == 'web' && tier = 'db'\n                     ^ expected =="
    );
}

#[test_case("", "all()"; "empty")]
#[test_case(" all()", "all()"; "all")]
#[test_case("a=='b'", "a == \"b\""; "eq")]
#[test_case("a == '\"'", "a == '\"'"; "value with double quote")]
#[test_case("a != \"x\"", "a != \"x\""; "ne")]
#[test_case("a in {'c','b','c',}", "a in {\"b\", \"c\"}"; "set sorted dedup")]
#[test_case("a not in {}", "a not in {}"; "empty set")]
#[test_case("a startswith 'x'", "a starts with \"x\""; "starts with")]
#[test_case("a endswith 'x'", "a ends with \"x\""; "ends with")]
#[test_case("a contains 'x'", "a contains \"x\""; "contains")]
#[test_case("has( a )", "has(a)"; "has")]
#[test_case("a == 'x' && b == 'y'", "(a == \"x\" && b == \"y\")"; "and")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", "(a == \"x\" || (b == \"y\" && c == \"z\"))"; "precedence")]
#[test_case("! (has( b)||! has(a ))", "!(has(b) || !has(a))"; "calico example")]
#[test_case("!!has(a)", "has(a)"; "double not collapses")]
#[test_case("!(!has(a))", "!(!has(a))"; "parenthesised double not")]
#[test_case("global( )", "global()"; "global")]
fn canonical(input: &str, expected: &str) {
    let s = Selector::parse(input).unwrap();
    assert_eq!(s.to_string(), expected);
    assert_eq!(
        Selector::parse(expected).unwrap(),
        s,
        "canonical form re-parses"
    );
}

/// The selector conformance cases: each is a policy that allows the caller only when its pod
/// labels match the selector; an invalid selector makes the policy invalid (deny).
#[test]
fn shared_selector_cases() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cases/selectors.json");
    let text = std::fs::read_to_string(&path).expect("shared/cases/selectors.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let mut checked = 0;
    for case in cases {
        let state = case["state"].as_array().unwrap();
        let gnp = state
            .iter()
            .find(|o| o["kind"] == "GlobalNetworkPolicy")
            .unwrap();
        let Some(sel) = gnp["spec"]["ingress"][0]["source"]["selector"].as_str() else {
            continue;
        };
        let src_ip = case["request"]["attributes"]["source"]["address"]["socketAddress"]["address"]
            .as_str()
            .unwrap();
        let src = state
            .iter()
            .find(|o| o["kind"] == "Pod" && o["status"]["podIP"] == src_ip)
            .unwrap();
        let labels: BTreeMap<String, String> =
            serde_json::from_value(src["metadata"]["labels"].clone()).unwrap_or_default();
        let allowed = case["expected"] == "allow";
        match Selector::parse(sel) {
            Ok(s) => {
                // A valid selector on source labels (plus Calico's synthetic ones, which no
                // case selects on): allowed exactly when it matches.
                assert_eq!(s.matches(&labels), allowed, "{}", case["name"]);
            }
            Err(e) => assert!(
                !allowed,
                "{}: valid in Calico but rejected: {e}",
                case["name"]
            ),
        }
        checked += 1;
    }
    assert!(checked >= 60, "{checked}");
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]",
        "[a-c][a-z0-9_./-]{0,5}",
        Just("in".to_string()),
        Just("contains".to_string())
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[a-c]{0,3}", "[a-c ']{0,3}", "[a-c \"]{0,3}"]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        label().prop_map(Expr::Has),
        (label(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (label(), prop::collection::btree_set(value(), 0..3)).prop_map(|(k, s)| Expr::In(k, s)),
        (label(), prop::collection::btree_set(value(), 0..3)).prop_map(|(k, s)| Expr::NotIn(k, s)),
        (label(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label(), value(), 0..4)
}

proptest! {
    #[test]
    fn display_parse_round_trip(e in expr()) {
        let printed = e.to_string();
        let parsed = Selector::parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
        prop_assert_eq!(parsed.expr(), &e, "{}", printed);
    }

    #[test]
    fn negation(e in expr(), l in labels()) {
        let s = e.to_string();
        let not = Selector::parse(&format!("!({s})")).unwrap();
        prop_assert_eq!(not.matches(&l), !Selector::parse(&s).unwrap().matches(&l));
    }

    #[test]
    fn parser_never_panics(s in any::<String>()) {
        let _ = Selector::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_selector_like_input(s in "[a-c !=&|(){},'\"_./-]{0,30}|has\\(.{0,4}|[a-z ]{0,6}(starts|ends|not|in|contains)[ a-z]{0,6}") {
        if let Ok(sel) = Selector::parse(&s) {
            // Whatever parses prints to something that parses to the same thing.
            prop_assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }
    }
}

#[test]
fn set_semantics_are_exact() {
    let s = Selector::parse("a in {'b'}").unwrap();
    assert!(!s.matches(&[("a", "bb")][..]));
    let e = Expr::In("a".into(), BTreeSet::from(["x".to_string()]));
    assert_eq!(e.to_string(), "a in {\"x\"}");
}

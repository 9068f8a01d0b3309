//! Parse-and-evaluate table: every operator, the absent-label column of
//! reference/calico-selectors.md §3, quoting, sets, precedence, `!` parity, keyword-named
//! labels, label characters and lengths, and whitespace.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use test_case::test_case;

use super::{Expr, Selector, eq, has, not, parse_ok, repeat};
use crate::policy::selector::Labels;

const NONE: &[(&str, &str)] = &[];
const AB: &[(&str, &str)] = &[("a", "b")];
const AC: &[(&str, &str)] = &[("a", "c")];
const A_EMPTY: &[(&str, &str)] = &[("a", "")];
const ABCD: &[(&str, &str)] = &[("a", "b"), ("c", "d")];
const CD: &[(&str, &str)] = &[("c", "d")];
const HELLO: &[(&str, &str)] = &[("v", "hello")];

/// Parses `sel` and evaluates it against `labels`; the canonical form must agree.
#[test_case(r#"a == "b""#, AB, true; "eq match")]
#[test_case(r#"a == "b""#, AC, false; "eq other value")]
#[test_case(r#"a == "b""#, NONE, false; "eq absent label")]
#[test_case(r#"a == "b""#, CD, false; "eq other label only")]
#[test_case("a == 'b'", AB, true; "eq single quotes")]
#[test_case(r#"a=="b""#, AB, true; "eq without spaces")]
#[test_case("a\t==\t'b'", AB, true; "eq with tabs")]
#[test_case(r#"a == "B""#, AB, false; "eq value is case sensitive")]
#[test_case(r#"A == "b""#, AB, false; "eq label is case sensitive")]
#[test_case(r#"a == """#, A_EMPTY, true; "eq empty value present")]
#[test_case(r#"a == """#, NONE, false; "eq empty value absent")]
#[test_case(r#"a == ''"#, A_EMPTY, true; "eq empty single-quoted value")]
#[test_case(r#"a == "b ""#, AB, false; "eq does not trim")]
#[test_case(r#"a != "b""#, AB, false; "ne same value")]
#[test_case(r#"a != "b""#, AC, true; "ne other value")]
#[test_case(r#"a != "b""#, NONE, true; "ne absent label")]
#[test_case("a!='b'", AC, true; "ne touching bang equals")]
#[test_case(r#"a != """#, A_EMPTY, false; "ne empty value present")]
#[test_case(r#"a != """#, NONE, true; "ne empty value absent")]
#[test_case(r#"a in {"b", "c"}"#, AB, true; "in first")]
#[test_case(r#"a in {"b", "c"}"#, AC, true; "in second")]
#[test_case(r#"a in {"x", "y"}"#, AB, false; "in miss")]
#[test_case(r#"a in {"b"}"#, NONE, false; "in absent label")]
#[test_case("a in {}", AB, false; "in empty set")]
#[test_case("a in {}", NONE, false; "in empty set absent label")]
#[test_case(r#"a in {"b",}"#, AB, true; "in trailing comma")]
#[test_case(r#"a in {'b', "b", 'b'}"#, AB, true; "in duplicates")]
#[test_case(r#"a in {""}"#, A_EMPTY, true; "in empty value")]
#[test_case(r#"a in{"b"}"#, AB, true; "in touching brace")]
#[test_case("a in {'c' ,'b'}", AB, true; "in space before comma")]
#[test_case(r#"a not in {"b", "c"}"#, AB, false; "not in hit")]
#[test_case(r#"a not in {"x"}"#, AB, true; "not in miss")]
#[test_case(r#"a not in {"b"}"#, NONE, true; "not in absent label")]
#[test_case("a not in {}", AB, true; "not in empty set")]
#[test_case("a not in {}", NONE, true; "not in empty set absent label")]
#[test_case(r#"a notin {"b"}"#, AB, false; "notin without space")]
#[test_case("a not\t in {'x'}", AB, true; "not in with tab")]
#[test_case("has(a)", AB, true; "has present")]
#[test_case("has(a)", NONE, false; "has absent")]
#[test_case("has(a)", A_EMPTY, true; "has empty value")]
#[test_case("!has(a)", NONE, true; "not has absent")]
#[test_case("!has(a)", AB, false; "not has present")]
#[test_case("has( a )", AB, true; "has with spaces")]
#[test_case("has(\ta\t)", AB, true; "has with tabs")]
#[test_case(r#"a contains "b""#, AB, true; "contains whole")]
#[test_case(r#"v contains "ell""#, HELLO, true; "contains middle")]
#[test_case(r#"a contains "x""#, AB, false; "contains miss")]
#[test_case(r#"a contains """#, A_EMPTY, true; "contains empty present")]
#[test_case(r#"a contains """#, NONE, false; "contains empty absent")]
#[test_case(r#"v starts with "he""#, HELLO, true; "starts with hit")]
#[test_case(r#"v starts with "lo""#, HELLO, false; "starts with miss")]
#[test_case(r#"v starts with "hello!""#, HELLO, false; "starts with longer than value")]
#[test_case(r#"v starts with """#, NONE, false; "starts with empty absent")]
#[test_case(r#"v starts with """#, HELLO, true; "starts with empty present")]
#[test_case(r#"v startswith "h""#, HELLO, true; "startswith without space")]
#[test_case("v starts \t with 'h'", HELLO, true; "starts with space and tab")]
#[test_case(r#"v ends with "lo""#, HELLO, true; "ends with hit")]
#[test_case(r#"v ends with "he""#, HELLO, false; "ends with miss")]
#[test_case(r#"v endswith "o""#, HELLO, true; "endswith without space")]
#[test_case(r#"v ends with """#, NONE, false; "ends with empty absent")]
#[test_case("", NONE, true; "empty selector")]
#[test_case(" \t ", AB, true; "blank selector")]
#[test_case("all()", NONE, true; "all")]
#[test_case("all( )", AB, true; "all with space")]
#[test_case("global()", NONE, true; "global is true")]
#[test_case("global(\t)", AB, true; "global with tab")]
#[test_case("!all()", AB, false; "not all")]
#[test_case("!global()", NONE, false; "not global")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", &[("b", "y")], false; "and binds tighter than or")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", &[("a", "x")], true; "or of and")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x")], false; "parentheses group or")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x"), ("c", "z")], true; "parentheses group or hit")]
#[test_case("!a == 'b' && c == 'd'", ABCD, false; "not binds to one comparison")]
#[test_case("!a == 'b' && c == 'd'", CD, true; "not comparison absent label")]
#[test_case("!(a == 'b' && c == 'd')", AB, true; "not group")]
#[test_case("!(a == 'b' && c == 'd')", ABCD, false; "not group hit")]
#[test_case("a == 'x' || a == 'b' && c == 'x'", ABCD, false; "or then and")]
#[test_case("a == 'b' && c == 'd' || a == 'x'", ABCD, true; "and then or")]
#[test_case("a == 'b' && c == 'd' && has(a)", ABCD, true; "three way and")]
#[test_case("a == 'x' || c == 'x' || has(c)", ABCD, true; "three way or")]
#[test_case("(a == 'b') && ((c == 'd'))", ABCD, true; "redundant parentheses")]
#[test_case("a != 'b' || c != 'd'", ABCD, false; "or of ne")]
#[test_case("!(a in {'b'})", AB, false; "not in via negation")]
#[test_case("!(a in {'b'})", NONE, true; "negated in absent label")]
#[test_case("!(a == 'b')", NONE, true; "negated eq absent label")]
#[test_case("!!has(a)", AB, true; "double negation")]
#[test_case("!!!has(a)", AB, false; "triple negation")]
#[test_case("! ! ! ! has(a)", AB, true; "spaced quadruple negation")]
#[test_case("!(!has(a))", AB, true; "negation across parentheses")]
#[test_case("!!(!has(a))", NONE, true; "negations inside and outside parentheses")]
#[test_case("contains contains 'contains'", &[("contains", "xcontainsx")], true; "keyword contains as label and value")]
#[test_case("in in {'in'}", &[("in", "in")], true; "keyword in as label")]
#[test_case("not not in {'not'}", &[("not", "yes")], true; "keyword not as label")]
#[test_case("starts starts with 'with'", &[("starts", "withers")], true; "keyword starts as label")]
#[test_case("ends ends with 'ends'", &[("ends", "legends")], true; "keyword ends as label")]
#[test_case("has == 'x'", &[("has", "x")], true; "has as label")]
#[test_case("all != 'x'", NONE, true; "all as label")]
#[test_case("global == ''", &[("global", "")], true; "global as label")]
#[test_case("has(has)", &[("has", "x")], true; "has of has")]
#[test_case("a.b/c == 'x'", &[("a.b/c", "x")], true; "label with dot and slash")]
#[test_case("a.b/c == 'x'", &[("a.b", "x"), ("c", "x")], false; "label is one key")]
#[test_case("123 == 'x'", &[("123", "x")], true; "label starting with digit")]
#[test_case("-x == 'y'", &[("-x", "y")], true; "label starting with hyphen")]
#[test_case(".a == 'z'", &[(".a", "z")], true; "label starting with dot")]
#[test_case("_ == 'z'", &[("_", "z")], true; "underscore label")]
#[test_case("calico/k8s_ns == 'kube-system' && k8s-app == 'kube-dns'", &[("calico/k8s_ns", "kube-system"), ("k8s-app", "kube-dns")], true; "realistic labels")]
#[test_case(&format!("{} == 'x'", repeat('a', 512)), &[(&*repeat('a', 512), "x")], true; "512 character label")]
#[test_case(&format!("has({})", repeat('a', 512)), &[(&*repeat('a', 512), "x")], true; "512 character label in has")]
#[test_case(r#"a == "it's""#, &[("a", "it's")], true; "single quote inside double quotes")]
#[test_case(r#"a == 'say "hi"'"#, &[("a", "say \"hi\"")], true; "double quotes inside single quotes")]
#[test_case("a == '\\n'", &[("a", "\\n")], true; "no escapes in literals")]
#[test_case("a == 'x && y || !z'", &[("a", "x && y || !z")], true; "operators inside a literal")]
#[test_case("a == 'new\nline'", &[("a", "new\nline")], true; "newline inside a literal")]
#[test_case("a == 'é'", &[("a", "é")], true; "non-ascii value")]
#[test_case(r#"a in {"'", '"', "c"}"#, &[("a", "\"")], true; "set of quotes")]
#[test_case("a contains '}'", &[("a", "{}")], true; "brace inside a literal")]
#[test_case("\ta == 'b'\t", AB, true; "leading and trailing tabs")]
#[test_case("  a  ==  'b'  ", AB, true; "extra spaces")]
fn evaluates(sel: &str, labels: &[(&str, &str)], expected: bool) {
    let parsed = parse_ok(sel);
    assert_eq!(parsed.matches(labels), expected, "{sel:?} on {labels:?}");
    let canonical = parse_ok(&parsed.to_string());
    assert_eq!(canonical, parsed, "canonical form `{parsed}`");
}

/// The tree the parser builds: precedence, n-ary groups, parity, nesting, sets.
#[test_case("a == 'x' && b == 'y' && c == 'z'", Expr::And(vec![eq("a", "x"), eq("b", "y"), eq("c", "z")]); "and is n-ary")]
#[test_case("a == 'x' || b == 'y' || c == 'z'", Expr::Or(vec![eq("a", "x"), eq("b", "y"), eq("c", "z")]); "or is n-ary")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", Expr::Or(vec![eq("a", "x"), Expr::And(vec![eq("b", "y"), eq("c", "z")])]); "and below or")]
#[test_case("!a == 'x' && b == 'y'", Expr::And(vec![not(eq("a", "x")), eq("b", "y")]); "not below and")]
#[test_case("(a == 'x' && b == 'y') && c == 'z'", Expr::And(vec![Expr::And(vec![eq("a", "x"), eq("b", "y")]), eq("c", "z")]); "parenthesised and stays nested")]
#[test_case("((has(a)))", has("a"); "parentheses around one operand vanish")]
#[test_case("!!!has(a)", not(has("a")); "odd bangs")]
#[test_case("!!!!has(a)", has("a"); "even bangs")]
#[test_case("!(!(has(a) && has(b)))", Expr::And(vec![has("a"), has("b")]); "bangs cancel across parentheses")]
#[test_case("!(!has(a) || has(b))", not(Expr::Or(vec![not(has("a")), has("b")])); "inner negation kept")]
#[test_case("a in {'z', 'a', 'z',}", Expr::In("a".into(), BTreeSet::from(["a".into(), "z".into()])); "set deduplicated")]
#[test_case("a not in {}", Expr::NotIn("a".into(), BTreeSet::new()); "empty set")]
#[test_case("a startswith 'x'", Expr::StartsWith("a".into(), "x".into()); "starts with")]
#[test_case("a ends with 'x'", Expr::EndsWith("a".into(), "x".into()); "ends with")]
#[test_case("a contains ''", Expr::Contains("a".into(), String::new()); "contains")]
#[test_case("a != ''", Expr::Ne("a".into(), String::new()); "ne")]
#[test_case("global( )", Expr::Global; "global")]
#[test_case("", Expr::All; "empty is all")]
fn builds(sel: &str, expected: Expr) {
    assert_eq!(parse_ok(sel).expr(), &expected);
}

#[test]
fn selector_accessors() {
    assert!(Selector::all().is_all());
    assert!(parse_ok("").is_all());
    assert!(parse_ok(" all( ) ").is_all());
    assert!(!parse_ok("!all()").is_all());
    assert!(!parse_ok("has(a)").is_all());
    assert!(parse_ok("global()").is_global());
    assert!(!parse_ok("global() && has(a)").is_global());
    assert!(!Selector::all().is_global());
    let parsed: Selector = "has(a)".parse().unwrap();
    assert_eq!(parsed, Selector::from_expr(has("a")));
    assert!("has(".parse::<Selector>().is_err());
}

#[test]
fn from_expr_normalises() {
    let nested = not(not(Expr::And(vec![Expr::Or(vec![has("a")])])));
    assert_eq!(Selector::from_expr(nested).expr(), &has("a"));
    assert!(Selector::from_expr(Expr::And(vec![])).is_all());
    assert_eq!(
        Selector::from_expr(Expr::Or(vec![])).expr(),
        &not(Expr::All)
    );
    let kept = Expr::And(vec![has("a"), Expr::And(vec![has("b"), has("c")])]);
    assert_eq!(Selector::from_expr(kept.clone()).expr(), &kept);
}

#[test]
fn empty_groups_evaluate_like_their_normal_form() {
    assert!(Expr::And(vec![]).matches(NONE));
    assert!(!Expr::Or(vec![]).matches(NONE));
}

#[test]
fn label_map_types() {
    let sel = parse_ok("a == 'b' && !has(c)");
    let btree = BTreeMap::from([("a".to_string(), "b".to_string())]);
    let hash: HashMap<String, String> = btree.clone().into_iter().collect();
    let arcs: BTreeMap<Arc<str>, Arc<str>> = BTreeMap::from([(Arc::from("a"), Arc::from("b"))]);
    let arc_hash: HashMap<Arc<str>, Arc<str>> = arcs.clone().into_iter().collect();
    let strs = BTreeMap::from([("a", "b")]);
    assert!(sel.matches(&btree));
    assert!(sel.matches(&hash));
    assert!(sel.matches(&arcs));
    assert!(sel.matches(&arc_hash));
    assert!(sel.matches(&strs));
    assert!(sel.matches(&[("a", "b")]));
    assert!(sel.matches(AB));
    assert!(sel.matches(&&btree));
    let with_c = BTreeMap::from([("a", "b"), ("c", "")]);
    assert!(!sel.matches(&with_c));
    assert_eq!(with_c.get_label("c"), Some(""));
    assert_eq!(AB.get_label("b"), None);
}

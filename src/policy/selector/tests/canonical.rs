//! Canonical forms (reference/calico-selectors.md §4, Calico's `canonicalisationTests`): the
//! printed form of a parsed selector, which must itself print unchanged after parsing again.

use test_case::test_case;

use super::parse_ok;

#[test_case("", "all()"; "empty")]
#[test_case(" \t", "all()"; "blank")]
#[test_case(" all() ", "all()"; "all with spaces")]
#[test_case(" (all() )", "all()"; "all in parentheses")]
#[test_case("global(\t)", "global()"; "global")]
#[test_case("! (has( b)||! has(a ))", "!(has(b) || !has(a))"; "calico negated or")]
#[test_case(r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#; "calico negated and")]
#[test_case(r#"a == "'""#, r#"a == "'""#; "single quote value keeps double quotes")]
#[test_case(r#"a == '"'"#, r#"a == '"'"#; "double quote value gets single quotes")]
#[test_case(r#"a contains '"'"#, r#"a contains '"'"#; "contains double quote")]
#[test_case(r#"a contains "'""#, r#"a contains "'""#; "contains single quote")]
#[test_case(r#"a startswith '"'"#, r#"a starts with '"'"#; "startswith")]
#[test_case(r#"a endswith "'""#, r#"a ends with "'""#; "endswith")]
#[test_case(r#"a!='"'"#, r#"a != '"'"#; "ne touching")]
#[test_case("a == 'b'", r#"a == "b""#; "single quotes become double")]
#[test_case(r#"a in {"d"}"#, r#"a in {"d"}"#; "set of one")]
#[test_case(r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#; "set sorted")]
#[test_case(r#"a in {"z", "z", "x", "y", "x", "a"}"#, r#"a in {"a", "x", "y", "z"}"#; "set sorted and deduplicated")]
#[test_case("a in {'a',}", r#"a in {"a"}"#; "set trailing comma")]
#[test_case("a in {}", "a in {}"; "empty set")]
#[test_case(r#"a not in {"'", '"'}"#, r#"a not in {'"', "'"}"#; "set of quotes sorted by byte")]
#[test_case("a notin{'x'}", r#"a not in {"x"}"#; "notin")]
#[test_case("a ends  with 'x'", r#"a ends with "x""#; "ends with two spaces")]
#[test_case("a contains'x'", r#"a contains "x""#; "contains touching")]
#[test_case("has( a )", "has(a)"; "has spaces")]
#[test_case("! has(a)", "!has(a)"; "bang space")]
#[test_case("!!has(a)", "has(a)"; "double bang")]
#[test_case("!!!has(a)", "!has(a)"; "triple bang")]
#[test_case("!(!has(a))", "has(a)"; "bangs across parentheses")]
#[test_case("!a == 'x'", r#"!a == "x""#; "negated comparison")]
#[test_case("!(a == 'x')", r#"!a == "x""#; "negated comparison in parentheses")]
#[test_case("!all()", "!all()"; "negated all")]
#[test_case("a == 'x' && b == 'y'", r#"(a == "x" && b == "y")"#; "and")]
#[test_case("a == 'x'&&b == 'y'&&c == 'z'", r#"(a == "x" && b == "y" && c == "z")"#; "three way and")]
#[test_case("a == 'x' || b == 'y' && c == 'z'", r#"(a == "x" || (b == "y" && c == "z"))"#; "precedence")]
#[test_case("(a == 'x' || b == 'y') && c == 'z'", r#"((a == "x" || b == "y") && c == "z")"#; "grouped or")]
#[test_case("(a == 'x' && b == 'y') && c == 'z'", r#"((a == "x" && b == "y") && c == "z")"#; "nested and kept")]
#[test_case("((a == 'x'))", r#"a == "x""#; "parentheses around one comparison")]
#[test_case("contains contains 'contains'", r#"contains contains "contains""#; "keyword label")]
#[test_case(
    "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
    r#"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#;
    "calico complex selector"
)]
fn canonicalises(input: &str, expected: &str) {
    let parsed = parse_ok(input);
    let printed = parsed.to_string();
    assert_eq!(printed, expected);
    let again = parse_ok(&printed);
    assert_eq!(again, parsed);
    assert_eq!(again.to_string(), printed);
}

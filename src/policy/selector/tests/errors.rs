//! Rejected selectors, with the exact message and column: every case of
//! reference/calico-selectors.md §7, plus the behaviour it reads from the code.

use test_case::test_case;

use super::{parse_err, parse_ok, repeat};
use crate::policy::selector::{ParseError, Selector, parser::MAX_DEPTH};

#[test_case(&format!("{} == \"value\"", repeat('a', 513)), "label too long", 1; "label of 513 characters")]
#[test_case(&format!("has({})", repeat('a', 513)), "label too long", 5; "label of 513 characters in has")]
#[test_case(r#"label == "value"#, "unterminated string literal", 10; "unterminated double quote")]
#[test_case(r#"label = "value""#, "expected ==", 7; "single equals")]
#[test_case("all(", "expected ) after all(", 5; "unclosed all")]
#[test_case("global(", "expected ) after global(", 8; "unclosed global")]
#[test_case("all( x)", "expected ) after all(", 6; "argument to all")]
#[test_case("has()", "expected label in has()", 5; "has without label")]
#[test_case("has(", "expected label in has()", 5; "has at end")]
#[test_case("has(é)", "expected label in has()", 5; "has of non-ascii")]
#[test_case("has(foo", "expected ) after label in has()", 8; "unclosed has")]
#[test_case("has( foo ", "expected ) after label in has()", 10; "unclosed has with spaces")]
#[test_case("has(a b)", "expected ) after label in has()", 7; "has of two labels")]
#[test_case(r#"a == "b" & has(foo)"#, "expected &&", 10; "single ampersand")]
#[test_case(r#"a == "b" | has(foo)"#, "expected ||", 10; "single pipe")]
#[test_case(r#"a == "b" &&& c == "d""#, "expected &&", 12; "triple ampersand")]
#[test_case(r#"label starts foo "value""#, "expected operator after label", 7; "starts without with")]
#[test_case(r#"label inf "value""#, "expected operator after label", 7; "in without word boundary")]
#[test_case(r#"label ends foo "value""#, "expected operator after label", 7; "ends without with")]
#[test_case(r#"label ends withs "value""#, "expected operator after label", 7; "with without word boundary")]
#[test_case(r#"label squiggles "value""#, "expected operator after label", 7; "unknown operator")]
#[test_case(r#"label containsx "value""#, "expected operator after label", 7; "contains without word boundary")]
#[test_case(r#"label nothing {}"#, "expected operator after label", 7; "not without in")]
#[test_case("label starts", "expected operator after label", 7; "starts at end")]
#[test_case("b == b", "expected string literal", 6; "label on the right of eq")]
#[test_case("b contains b", "expected string literal", 12; "label on the right of contains")]
#[test_case("b starts with b", "expected string literal", 15; "label on the right of starts with")]
#[test_case("b ends with b", "expected string literal", 13; "label on the right of ends with")]
#[test_case("a ==", "expected string literal", 5; "eq at end")]
#[test_case("'b1' == b", "unexpected token", 1; "literal on the left")]
#[test_case("b", "expected operator after label", 2; "bare label")]
#[test_case("a b", "expected operator after label", 3; "two labels")]
#[test_case("a ", "expected operator after label", 3; "label and space")]
#[test_case("a 'b'", "expected operator after label", 3; "label and literal")]
#[test_case("a ! = 'b'", "expected ==", 5; "bang space equals")]
#[test_case("a ! == 'b'", "expected operator after label", 3; "bang space double equals")]
#[test_case("a %", "expected operator after label", 3; "label and percent")]
#[test_case("aé == 'x'", "expected operator after label", 2; "non-ascii in label")]
#[test_case("!", "unexpected end of selector", 2; "lone bang")]
#[test_case("!!", "unexpected end of selector", 3; "two bangs")]
#[test_case(r#"foo == "bar" &"#, "expected &&", 14; "trailing ampersand")]
#[test_case(r#"foo == "bar" |"#, "expected ||", 14; "trailing pipe")]
#[test_case("foo != ||", "expected string literal", 8; "or instead of value")]
#[test_case(r#"foo in {"", ||"#, "expected string literal or }", 13; "or inside set")]
#[test_case(r#"foo in """#, "expected set literal", 8; "string instead of set")]
#[test_case("a in", "expected set literal", 5; "in at end")]
#[test_case(r#"a in {"a" "b"}"#, "expected , or }", 11; "set without comma")]
#[test_case("a in {,}", "expected string literal or }", 7; "set of only a comma")]
#[test_case("a in {'a',,}", "expected string literal or }", 11; "set with two commas")]
#[test_case("a in {'a'", "expected , or }", 10; "unclosed set")]
#[test_case("a in {a}", "expected string literal or }", 7; "label in set")]
#[test_case(r#""FOO"#, "unterminated string literal", 1; "unterminated double quote alone")]
#[test_case(r#""FOO'"#, "unterminated string literal", 1; "mismatched quotes")]
#[test_case("'FOO", "unterminated string literal", 1; "unterminated single quote")]
#[test_case("(", "unexpected end of selector", 2; "open parenthesis")]
#[test_case(r#"(a == "foo""#, "expected )", 12; "unclosed parenthesis")]
#[test_case(")", "unexpected token", 1; "close parenthesis")]
#[test_case("()", "unexpected token", 2; "empty parentheses")]
#[test_case("%", "unexpected character `%`", 1; "percent")]
#[test_case(r#"a == "b" && %"#, "unexpected character `%`", 13; "percent after and")]
#[test_case(r#"a == "b" || %"#, "unexpected character `%`", 13; "percent after or")]
#[test_case("has(foo) &&", "unexpected end of selector", 12; "and at end")]
#[test_case("a == 'b' || ", "unexpected end of selector", 13; "or at end")]
#[test_case("&& a == 'b'", "unexpected token", 1; "leading and")]
#[test_case(r#"a == "x" b == "y""#, "unexpected content at end of selector", 10; "two comparisons")]
#[test_case("a == 'x')", "unexpected content at end of selector", 9; "extra close parenthesis")]
#[test_case("a == 'b' 'c'", "unexpected content at end of selector", 10; "extra literal")]
#[test_case("has (a)", "expected operator after label", 5; "space after has")]
#[test_case("all ()", "expected operator after label", 5; "space after all")]
#[test_case("global ()", "expected operator after label", 8; "space after global")]
#[test_case("hasa(b)", "expected operator after label", 5; "has prefix of a label")]
#[test_case("a == 'b'\n", "unexpected character `\\n`", 9; "trailing newline")]
#[test_case("\na == 'b'", "unexpected character `\\n`", 1; "leading newline")]
#[test_case("a\n== 'b'", "expected operator after label", 2; "newline after label")]
#[test_case("a == 'b' &&\nc == 'd'", "unexpected character `\\n`", 12; "newline between operands")]
#[test_case("a == 'b'\r", "unexpected character `\\r`", 9; "carriage return")]
#[test_case("a ==\u{a0}'b'", "unexpected character `\\u{a0}`", 5; "non-breaking space")]
#[test_case("\u{3000}has(a)", "unexpected character `\\u{3000}`", 1; "ideographic space")]
#[test_case("é == 'x'", "unexpected character `é`", 1; "non-ascii label")]
#[test_case("a =! 'b'", "expected ==", 3; "equals bang")]
#[test_case("\ta = 'b'", "expected ==", 4; "tab counts as one column")]
#[test_case("a == 'é' &", "expected &&", 10; "column counts characters")]
fn rejects(sel: &str, message: &str, column: usize) {
    let err = parse_err(sel);
    assert_eq!(
        (err.message.as_str(), err.column),
        (message, column),
        "{}",
        err.render(sel)
    );
    assert_eq!(err.to_string(), format!("{message} at column {column}"));
}

#[test_case("a == 'é' &", 10..11; "byte offsets after a multi-byte character")]
#[test_case("label == \"value", 9..15; "unterminated literal runs to the end")]
#[test_case("label squiggles 'v'", 6..15; "the bad operator word")]
#[test_case("a ==", 4..4; "empty span at the end")]
#[test_case("x == 'é' || é", 13..15; "a whole non-ascii character")]
fn error_spans(sel: &str, span: std::ops::Range<usize>) {
    let err = parse_err(sel);
    assert_eq!(err.span, span, "{}", err.render(sel));
    assert!(
        sel.get(err.span.clone()).is_some(),
        "span on char boundaries"
    );
}

#[test]
fn nesting_limit() {
    let ok = format!("{}has(a){}", repeat('(', MAX_DEPTH), repeat(')', MAX_DEPTH));
    assert!(parse_ok(&ok).matches(&[("a", "")]));
    let deep = format!(
        "{}has(a){}",
        repeat('(', MAX_DEPTH + 1),
        repeat(')', MAX_DEPTH + 1)
    );
    let err = parse_err(&deep);
    assert_eq!(err.message, "parentheses nested too deeply");
    assert_eq!(err.column, MAX_DEPTH + 1);
    // Runs of `!` are a loop, not recursion, so they have no limit.
    let bangs = format!("{}has(a)", repeat('!', 100_001));
    assert_eq!(parse_ok(&bangs).to_string(), "!has(a)");
}

#[test]
fn lexical_errors_win_over_grammar_errors() {
    // Calico tokenizes the whole input first, so the `%` is reported, not the `)`.
    assert_eq!(parse_err(") %").message, "unexpected character `%`");
}

#[test_case("app = 'web'", "app = 'web'\n    ^ expected =="; "single character")]
#[test_case("a in \"x\"", "a in \"x\"\n     ^^^ expected set literal"; "whole token")]
#[test_case("has(a", "has(a\n     ^ expected ) after label in has()"; "end of input")]
#[test_case("\ta = 'b'", "\ta = 'b'\n\t  ^ expected =="; "tabs kept for alignment")]
#[test_case("é = 'b'", "é = 'b'\n^ unexpected character `é`"; "multi-byte character")]
#[test_case("a == 'x\ny' %", "y' %\n   ^ unexpected character `%`"; "line of the error only")]
#[test_case("a == 'b' &&\n", "a == 'b' &&\n           ^ unexpected character `\\n`"; "newline itself")]
fn render(sel: &str, expected: &str) {
    assert_eq!(parse_err(sel).render(sel), expected);
}

#[test]
fn render_tolerates_foreign_spans() {
    let err = ParseError {
        message: "odd".into(),
        span: 2..100,
        column: 3,
    };
    assert_eq!(err.render("aé"), "aé\n ^ odd");
    assert!(Selector::parse("a").is_err());
}

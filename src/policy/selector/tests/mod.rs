//! Tests of the selector language: operator and error tables, canonical forms, the shared
//! conformance cases, and property tests.

mod canonical;
mod conformance;
mod errors;
mod eval;
mod props;

use super::{Expr, ParseError, Selector};

/// Parses `s`, failing the test with the error if it does not parse.
fn parse_ok(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {}", e.render(s)))
}

/// Parses `s`, failing the test if it parses.
fn parse_err(s: &str) -> ParseError {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} should not parse, got `{sel}`"),
        Err(e) => e,
    }
}

/// `c` repeated `n` times: long labels.
fn repeat(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn eq(k: &str, v: &str) -> Expr {
    Expr::Eq(k.into(), v.into())
}

fn has(k: &str) -> Expr {
    Expr::Has(k.into())
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

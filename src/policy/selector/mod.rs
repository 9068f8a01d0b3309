//! The Calico selector language: `app == "web" && !has(legacy)` (`libcalico-go/lib/selector`;
//! grammar and semantics in reference/calico-selectors.md).
//!
//! Step one, `lexer`: text → tokens. Step two, `parser`: tokens → [`Expr`], normalised. Then
//! `eval` matches an [`Expr`] against [`Labels`] without allocating, and `display` prints the
//! canonical form, which parses back to the same [`Selector`].
//!
//! This module only knows about strings and label maps: it must not import anything else from
//! the crate (`policy::model`, `k8s`, `authz`), so that it can be tested and fuzzed alone.
//!
//! ```
//! use alp_authz::policy::selector::Selector;
//! use std::collections::BTreeMap;
//!
//! let s: Selector = r#"app == "web" && !has(legacy)"#.parse().unwrap();
//! let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
//! assert!(s.matches(&labels));
//! assert_eq!(s.to_string(), r#"(app == "web" && !has(legacy))"#);
//!
//! let err = Selector::parse("app = 'web'").unwrap_err();
//! assert_eq!(err.to_string(), "expected == at column 5");
//! ```

mod ast;
mod display;
mod error;
mod eval;
mod lexer;
mod parser;

use std::str::FromStr;

pub use ast::Expr;
pub use error::ParseError;
pub use eval::Labels;

/// A parsed selector: a [normalised](Expr::normalized) [`Expr`].
///
/// Its [`Display`](std::fmt::Display) is Calico's canonical form, and parsing that gives back an
/// equal selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// INVARIANT: normalised, so printing and parsing again gives the same tree.
    root: Expr,
}

impl Selector {
    /// Parses a selector. An empty string, or one of only spaces and tabs, is `all()`.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] pointing at the first offending character, for anything outside the
    /// language of reference/calico-selectors.md (exactly what Calico's `Validate` rejects),
    /// and for parentheses nested more than 128 deep.
    ///
    /// ```
    /// use alp_authz::policy::selector::{Expr, Selector};
    ///
    /// assert!(Selector::parse(" \t").unwrap().is_all());
    /// assert_eq!(
    ///     Selector::parse("!!!has(a)").unwrap().expr(),
    ///     &Expr::Not(Box::new(Expr::Has("a".into())))
    /// );
    /// assert_eq!(Selector::parse("has (a)").unwrap_err().column, 5);
    /// ```
    pub fn parse(s: &str) -> Result<Selector, ParseError> {
        parser::parse(s).map(|root| Selector { root })
    }

    /// `all()`: matches every label set.
    pub fn all() -> Selector {
        Selector { root: Expr::All }
    }

    /// Wraps an expression, [normalising](Expr::normalized) it first (double negations cancel,
    /// one-member groups become their member, empty groups become `all()` or `!all()`).
    pub fn from_expr(e: Expr) -> Selector {
        Selector {
            root: e.normalized(),
        }
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.root
    }

    /// Whether the labels match. Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.matches(labels)
    }

    /// Whether the selector is exactly `all()` (which includes the empty selector).
    pub fn is_all(&self) -> bool {
        self.root == Expr::All
    }

    /// Whether the selector is exactly `global()`.
    pub fn is_global(&self) -> bool {
        self.root == Expr::Global
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Selector::parse(s)
    }
}

#[cfg(test)]
mod tests;

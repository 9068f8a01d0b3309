//! The Calico selector language (`libcalico-go/lib/selector`; grammar and semantics in
//! reference/calico-selectors.md).
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
mod lexer;
mod parser;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    ops::Range,
    str::FromStr,
    sync::Arc,
};

pub use ast::Expr;

/// Label lookup used for evaluation.
pub trait Labels {
    /// The value of label `key`, if present.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for BTreeMap<Arc<str>, Arc<str>> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| &**v)
    }
}

impl Labels for [(&str, &str)] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    root: Expr,
}

impl Selector {
    /// Parses a selector; an empty (or all-whitespace) string is `all()`.
    pub fn parse(s: &str) -> Result<Selector, ParseError> {
        parser::parse(s).map(|root| Selector { root })
    }

    /// `all()`.
    pub fn all() -> Selector {
        Selector { root: Expr::All }
    }

    /// Wraps an expression.
    pub fn from_expr(root: Expr) -> Selector {
        Selector { root }
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.root
    }

    /// Whether the labels match. Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.matches(labels)
    }

    /// Whether the selector is exactly `all()` (or empty).
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

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

/// A selector syntax error, with the byte span and 1-based column it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Byte offsets into the input.
    pub span: Range<usize>,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
}

impl ParseError {
    fn new(input: &str, message: impl Into<String>, span: Range<usize>) -> Self {
        let start = span.start.min(input.len());
        let column = input
            .get(..start)
            .map_or(start, |prefix| prefix.chars().count())
            + 1;
        ParseError {
            message: message.into(),
            span,
            column,
        }
    }

    /// The input with a caret line under the span, for command-line output.
    pub fn render(&self, input: &str) -> String {
        let width = input
            .get(self.span.clone())
            .map_or(1, |s| s.chars().count().max(1));
        format!(
            "{input}\n{}{} {}",
            " ".repeat(self.column - 1),
            "^".repeat(width),
            self.message
        )
    }
}

#[cfg(test)]
mod tests;

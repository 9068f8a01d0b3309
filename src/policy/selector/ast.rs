//! The selector syntax tree ([`Expr`]) and its normal form.
//!
//! The tree is public so that callers can build selectors (Kubernetes label selectors converted
//! to Calico's form) and rewrite them (`all()` → `has(projectcalico.org/namespace)` in a
//! namespace selector). Evaluation lives in `eval.rs` and printing in `display.rs`.

use std::collections::BTreeSet;

/// A selector expression (reference/calico-selectors.md §2).
///
/// Labels and values are stored as written, without quotes. The parser only produces
/// [normalised](Expr::normalized) trees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()` and the empty selector: always true.
    All,
    /// `global()`: true in the plain evaluator; callers give it its namespace meaning.
    Global,
    /// `has(k)`: the label is present, whatever its value.
    Has(String),
    /// `k == "v"`: the label is present and equal to `v`.
    Eq(String, String),
    /// `k != "v"`: the label is absent or different from `v`.
    Ne(String, String),
    /// `k in {…}`: the label is present and its value is in the set.
    In(String, BTreeSet<String>),
    /// `k not in {…}`: the label is absent or its value is not in the set.
    NotIn(String, BTreeSet<String>),
    /// `k contains "s"`: the label is present and its value contains `s`.
    Contains(String, String),
    /// `k starts with "s"`: the label is present and its value starts with `s`.
    StartsWith(String, String),
    /// `k ends with "s"`: the label is present and its value ends with `s`.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Expr>),
    /// `e && e && …`: every child, left to right, short-circuiting.
    And(Vec<Expr>),
    /// `e || e || …`: any child, left to right, short-circuiting.
    Or(Vec<Expr>),
}

impl Expr {
    /// The negation of `self`, removing a negation instead of doubling it.
    pub fn negate(self) -> Expr {
        match self {
            Expr::Not(inner) => *inner,
            e => Expr::Not(Box::new(e)),
        }
    }

    /// The form the parser would give this expression after printing it: double negations
    /// cancel, a one-child `And`/`Or` becomes its child, an empty `And` becomes `all()` and an
    /// empty `Or` becomes `!all()`. Nested groups are kept, since printing parenthesises them.
    ///
    /// ```
    /// use alp_authz::policy::selector::Expr;
    ///
    /// let e = Expr::Not(Box::new(Expr::Not(Box::new(Expr::And(vec![Expr::Has("a".into())])))));
    /// assert_eq!(e.normalized(), Expr::Has("a".into()));
    /// assert_eq!(Expr::Or(vec![]).normalized(), Expr::Not(Box::new(Expr::All)));
    /// ```
    pub fn normalized(self) -> Expr {
        match self {
            Expr::Not(inner) => inner.normalized().negate(),
            Expr::And(children) => group(children, Expr::And, Expr::All),
            Expr::Or(children) => group(children, Expr::Or, Expr::Not(Box::new(Expr::All))),
            leaf => leaf,
        }
    }
}

/// Normalises an n-ary group: its children, then its arity.
fn group(children: Vec<Expr>, make: fn(Vec<Expr>) -> Expr, empty: Expr) -> Expr {
    let mut children: Vec<Expr> = children.into_iter().map(Expr::normalized).collect();
    match children.len() {
        0 => empty,
        1 => children.pop().unwrap_or(empty),
        _ => make(children),
    }
}

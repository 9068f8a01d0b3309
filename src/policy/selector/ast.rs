//! The selector AST, its evaluation against labels, and its canonical form.

use std::{collections::BTreeSet, fmt};

use super::Labels;

/// A selector expression. Public so callers can build and rewrite selectors (e.g. Kubernetes
/// label selectors converted to Calico's form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()` (and the empty selector): always true.
    All,
    /// `global()`: true in the plain evaluator (callers give it its namespace meaning).
    Global,
    /// `has(k)`: the label is present.
    Has(String),
    /// `k == "v"`: present and equal.
    Eq(String, String),
    /// `k != "v"`: absent or different.
    Ne(String, String),
    /// `k in {…}`: present and in the set.
    In(String, BTreeSet<String>),
    /// `k not in {…}`: absent or not in the set.
    NotIn(String, BTreeSet<String>),
    /// `k contains "s"`: present and contains.
    Contains(String, String),
    /// `k starts with "s"`: present and starts with.
    StartsWith(String, String),
    /// `k ends with "s"`: present and ends with.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Expr>),
    /// `e && e && …` (two or more).
    And(Vec<Expr>),
    /// `e || e || …` (two or more).
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates against a label set (reference/calico-selectors.md §3). Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.get_label(k).is_some(),
            Expr::Eq(k, v) => labels.get_label(k) == Some(v.as_str()),
            Expr::Ne(k, v) => labels.get_label(k) != Some(v.as_str()),
            Expr::In(k, set) => labels.get_label(k).is_some_and(|v| set.contains(v)),
            Expr::NotIn(k, set) => !labels.get_label(k).is_some_and(|v| set.contains(v)),
            Expr::Contains(k, s) => labels.get_label(k).is_some_and(|v| v.contains(s.as_str())),
            Expr::StartsWith(k, s) => labels
                .get_label(k)
                .is_some_and(|v| v.starts_with(s.as_str())),
            Expr::EndsWith(k, s) => labels.get_label(k).is_some_and(|v| v.ends_with(s.as_str())),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(v) => v.iter().all(|e| e.matches(labels)),
            Expr::Or(v) => v.iter().any(|e| e.matches(labels)),
        }
    }
}

struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains('"') {
            write!(f, "'{}'", self.0)
        } else {
            write!(f, "\"{}\"", self.0)
        }
    }
}

fn write_set(f: &mut fmt::Formatter<'_>, set: &BTreeSet<String>) -> fmt::Result {
    f.write_str("{")?;
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{}", Quoted(v))?;
    }
    f.write_str("}")
}

/// The canonical form (reference/calico-selectors.md §4): binary groups parenthesised, sets
/// sorted, `"…"` unless the value contains `"`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", Quoted(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", Quoted(v)),
            Expr::In(k, s) => {
                write!(f, "{k} in ")?;
                write_set(f, s)
            }
            Expr::NotIn(k, s) => {
                write!(f, "{k} not in ")?;
                write_set(f, s)
            }
            Expr::Contains(k, v) => write!(f, "{k} contains {}", Quoted(v)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", Quoted(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", Quoted(v)),
            // `!!x` would re-parse as `x`, so a double negation keeps its parentheses.
            Expr::Not(e) if matches!(**e, Expr::Not(_)) => write!(f, "!({e})"),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::And(v) | Expr::Or(v) => {
                let op = if matches!(self, Expr::And(_)) {
                    " && "
                } else {
                    " || "
                };
                f.write_str("(")?;
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
        }
    }
}

//! The canonical form of a selector (`String()` / `collectFragments` in Calico's `ast.go`,
//! reference/calico-selectors.md §4).
//!
//! "Binary groups are always parenthesised: `(a == "x" && b == "y")`. Negation prints as `!`
//! followed directly by the operand. Values use `"…"` unless they contain `"`, in which case
//! `'…'` is used. Sets are sorted and de-duplicated." The printed form parses back to the same
//! [normalised](Expr::normalized) expression, provided every label is a valid label and no value
//! holds both kinds of quote (neither can come out of the parser).

use std::{collections::BTreeSet, fmt};

use super::{Expr, Selector};

/// A value in quotes: `"…"` unless it contains `"`.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = if self.0.contains('"') { '\'' } else { '"' };
        write!(f, "{quote}{}{quote}", self.0)
    }
}

/// A set literal: `{"a", "b"}` (a `BTreeSet` is already sorted and de-duplicated).
struct Set<'a>(&'a BTreeSet<String>);

impl fmt::Display for Set<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", Quoted(v))?;
        }
        f.write_str("}")
    }
}

/// Prints the canonical form. A one-child group prints as its child, an empty `And` as `all()`
/// and an empty `Or` as `!all()`, matching [`Expr::normalized`].
///
/// ```
/// use alp_authz::policy::selector::Expr;
///
/// let e = Expr::And(vec![
///     Expr::Eq("app".into(), "web".into()),
///     Expr::Not(Box::new(Expr::Has("legacy".into()))),
/// ]);
/// assert_eq!(e.to_string(), r#"(app == "web" && !has(legacy))"#);
/// ```
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", Quoted(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", Quoted(v)),
            Expr::In(k, set) => write!(f, "{k} in {}", Set(set)),
            Expr::NotIn(k, set) => write!(f, "{k} not in {}", Set(set)),
            Expr::Contains(k, v) => write!(f, "{k} contains {}", Quoted(v)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", Quoted(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", Quoted(v)),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::And(children) => write_group(f, children, " && ", "all()"),
            Expr::Or(children) => write_group(f, children, " || ", "!all()"),
        }
    }
}

/// `(a op b op …)`; a single child prints bare, and no children print as `empty`.
fn write_group(
    f: &mut fmt::Formatter<'_>,
    children: &[Expr],
    op: &str,
    empty: &str,
) -> fmt::Result {
    match children {
        [] => f.write_str(empty),
        [only] => write!(f, "{only}"),
        [first, rest @ ..] => {
            write!(f, "({first}")?;
            for e in rest {
                write!(f, "{op}{e}")?;
            }
            f.write_str(")")
        }
    }
}

/// Prints the canonical form of the selector; the empty selector prints as `all()`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr())
    }
}

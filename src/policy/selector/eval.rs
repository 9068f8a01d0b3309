//! Evaluating a selector against a label set (`Evaluate` in Calico's `ast.go`,
//! reference/calico-selectors.md §3).
//!
//! Evaluation is on the request path: it only borrows, never allocates, and short-circuits
//! `&&` and `||` left to right.

use std::{
    collections::{BTreeMap, HashMap},
    hash::BuildHasher,
    sync::Arc,
};

use super::Expr;

/// Label lookup used for evaluation.
///
/// Implemented for the common map types, for `[(&str, &str)]` slices and arrays (handy in
/// tests), and for references to any of them.
pub trait Labels {
    /// The value of label `key`, if the label is present.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for BTreeMap<Arc<str>, Arc<str>> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| &**v)
    }
}

impl<S: BuildHasher> Labels for HashMap<Arc<str>, Arc<str>, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| &**v)
    }
}

impl Labels for BTreeMap<&str, &str> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).copied()
    }
}

impl Labels for [(&str, &str)] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<const N: usize> Labels for [(&str, &str); N] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_slice().get_label(key)
    }
}

impl Expr {
    /// Whether `labels` satisfy the expression. Does not allocate.
    ///
    /// "`!=` and `not in` are true when the label is absent"; `==`, `in`, `contains`,
    /// `starts with` and `ends with` are false when it is absent; `all()` and `global()` are
    /// always true (reference/calico-selectors.md §3).
    ///
    /// ```
    /// use alp_authz::policy::selector::Expr;
    ///
    /// let e = Expr::Ne("tier".into(), "db".into());
    /// assert!(e.matches(&[("app", "web")]));
    /// assert!(!e.matches(&[("tier", "db")]));
    /// ```
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
            Expr::And(children) => children.iter().all(|e| e.matches(labels)),
            Expr::Or(children) => children.iter().any(|e| e.matches(labels)),
        }
    }
}

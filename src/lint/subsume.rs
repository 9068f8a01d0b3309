//! When one compiled rule (or policy scope) matches everything another does: the test behind
//! the `shadowed-rule`, `shadowed-across-policies` and `unreachable-rule` findings.
//!
//! Every answer here is *sound*: `true` means that, in any cluster state, every request the
//! narrower rule matches the wider one matches too; `false` means "not known" (the check is
//! syntactic, so a shadowing that holds only for today's pods is not reported). Selectors are
//! compared by implication on their syntax trees ([`implies`]), CIDRs and port ranges by
//! containment, paths by `PathMatch` semantics (segment-aligned prefixes).

use crate::policy::{
    compile::{Action, Applies, Entity, Http, NamespaceMatch, PortMatch, Rule, ServiceAccounts},
    path::PathMatch,
    selector::{Expr, Selector},
};

/// Whether a request matched by `b` always reaches a decision at `a` when `a` comes first:
/// `a` is terminal (Allow, Deny, Pass) and matches every request `b` matches.
pub fn shadows(a: &Rule, b: &Rule) -> bool {
    if a.action == Action::Log {
        return false;
    }
    // Deny rules match identity criteria against the caller's network identity when it has
    // no principal; Allow and Pass rules do not match such a caller at all (SEMANTICS.md §1).
    // So a grant matches less than a Deny with the same source identity criteria: it can only
    // shadow a Deny when its own source side needs no identity.
    if a.action != Action::Deny && b.action == Action::Deny && needs_identity(&a.source) {
        return false;
    }
    covers(a, b)
}

/// Whether `a`'s criteria are a superset of `b`'s (ignoring actions).
pub fn covers(a: &Rule, b: &Rule) -> bool {
    protocol_covers(a, b)
        && entity_covers(&a.source, &b.source)
        && entity_covers(&a.destination, &b.destination)
        && http_covers(a.http.as_ref(), b.http.as_ref())
}

/// A terminal rule with no criterion that can fail: everything after it in its policy is
/// unreachable.
pub fn is_catch_all(r: &Rule) -> bool {
    r.action != Action::Log
        && r.protocol.is_none()
        && r.not_protocol.is_none()
        && entity_is_any(&r.source)
        && entity_is_any(&r.destination)
        && r.http.as_ref().is_none_or(http_is_any)
}

/// Whether every endpoint `b` applies to, `a` applies to as well, in any cluster state.
pub fn applies_covers(a: &Applies, b: &Applies) -> bool {
    let namespace = match (&a.namespace, &b.namespace) {
        (None, _) => true,
        (Some(x), Some(y)) => x == y,
        (Some(_), None) => false,
    };
    let namespace_selector = match (&a.namespace_selector, &b.namespace_selector) {
        (None, _) => true,
        (Some(x), _) if x.is_all() => true,
        (Some(x), Some(y)) => implies(y.expr(), x.expr()),
        (Some(_), None) => false,
    };
    let service_accounts = match (&a.service_account_selector, &b.service_account_selector) {
        (None, _) => true,
        (Some(x), Some(y)) => {
            x == y && a.service_account_selector_unlabelled == b.service_account_selector_unlabelled
        }
        (Some(_), None) => false,
    };
    namespace
        && namespace_selector
        && service_accounts
        && implies(b.selector.expr(), a.selector.expr())
}

/// Whether every label set `b` matches, `a` matches (sound, not complete).
pub fn implies(b: &Expr, a: &Expr) -> bool {
    if a == b || *a == Expr::All {
        return true;
    }
    if let Expr::Not(inner) = b
        && **inner == Expr::All
    {
        return true; // `b` matches nothing
    }
    match (b, a) {
        (_, Expr::And(v)) => v.iter().all(|a| implies(b, a)),
        (Expr::Or(v), _) => v.iter().all(|b| implies(b, a)),
        (Expr::And(v), _) if v.iter().any(|b| implies(b, a)) => true,
        (_, Expr::Or(v)) => v.iter().any(|a| implies(b, a)),
        (Expr::Eq(k, _) | Expr::In(k, _), Expr::Has(h)) => k == h,
        (Expr::Eq(k, v), Expr::In(h, set)) => k == h && set.contains(v),
        (Expr::In(k, s), Expr::In(h, set)) => k == h && s.is_subset(set),
        (Expr::Eq(k, v), Expr::Ne(h, w)) => k == h && v != w,
        (Expr::Eq(k, v), Expr::NotIn(h, set)) => k == h && !set.contains(v),
        (Expr::In(k, s), Expr::NotIn(h, set)) => k == h && s.is_disjoint(set),
        _ => false,
    }
}

fn selector_implies(b: Option<&Selector>, a: Option<&Selector>) -> bool {
    match (b, a) {
        (_, None) => true,
        (Some(b), Some(a)) => implies(b.expr(), a.expr()),
        (None, Some(_)) => false,
    }
}

fn protocol_covers(a: &Rule, b: &Rule) -> bool {
    let protocol = match (a.protocol, b.protocol) {
        (None, _) => true,
        (Some(x), Some(y)) => x == y,
        (Some(_), None) => false,
    };
    let not_protocol = match (a.not_protocol, b.not_protocol, b.protocol) {
        (None, _, _) => true,
        (Some(x), Some(y), _) if x == y => true,
        (Some(x), _, Some(p)) => x != p,
        _ => false,
    };
    protocol && not_protocol
}

/// Whether the source side needs the caller's identity (its principal, or its Pod).
fn needs_identity(e: &Entity) -> bool {
    e.selector.is_some()
        || e.not_selector.is_some()
        || e.service_accounts.is_some()
        || !matches!(e.namespace, NamespaceMatch::Any)
}

fn entity_is_any(e: &Entity) -> bool {
    e.nets.is_empty()
        && e.not_nets.is_empty()
        && e.ports.is_empty()
        && e.not_ports.is_empty()
        && !needs_identity(e)
        && e.services.is_none()
}

fn http_is_any(h: &Http) -> bool {
    (h.methods.is_empty() || h.any_method) && h.paths.is_empty() && h.skipped_paths == 0
}

fn entity_covers(a: &Entity, b: &Entity) -> bool {
    nets_cover(&a.nets, &b.nets)
        && a.not_nets
            .iter()
            .all(|x| b.not_nets.iter().any(|y| y.contains(x)))
        && ports_cover(&a.ports, &b.ports)
        && a.not_ports
            .iter()
            .all(|x| b.not_ports.iter().any(|y| port_covers(y, x)))
        && selector_implies(b.selector.as_ref(), a.selector.as_ref())
        && match (&a.not_selector, &b.not_selector) {
            (None, _) => true,
            // `b` excludes at least what `a` excludes.
            (Some(x), Some(y)) => implies(x.expr(), y.expr()),
            (Some(_), None) => false,
        }
        && namespace_covers(&a.namespace, &b.namespace)
        && service_accounts_cover(a.service_accounts.as_ref(), b.service_accounts.as_ref())
        && match (&a.services, &b.services) {
            (None, _) => true,
            (Some(x), Some(y)) => x == y,
            (Some(_), None) => false,
        }
}

fn nets_cover(a: &[ipnet::IpNet], b: &[ipnet::IpNet]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|y| a.iter().any(|x| x.contains(y))))
}

fn ports_cover(a: &[PortMatch], b: &[PortMatch]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|y| a.iter().any(|x| port_covers(x, y))))
}

/// Whether port entry `a` matches every port `b` does.
fn port_covers(a: &PortMatch, b: &PortMatch) -> bool {
    match (a, b) {
        (PortMatch::Range(lo, hi), PortMatch::Range(l, h)) => lo <= l && h <= hi,
        (PortMatch::Named(x), PortMatch::Named(y)) => x == y,
        _ => false,
    }
}

fn namespace_covers(a: &NamespaceMatch, b: &NamespaceMatch) -> bool {
    use NamespaceMatch as N;
    match (a, b) {
        (N::Any, _) => true,
        (N::AnyNamespaced, N::AnyNamespaced | N::Same(_) | N::Selector(_)) => true,
        (N::Global, N::Global) => true,
        (N::Same(x), N::Same(y)) => x == y,
        (N::Selector(x), N::Selector(y)) => implies(y.expr(), x.expr()),
        _ => false,
    }
}

fn service_accounts_cover(a: Option<&ServiceAccounts>, b: Option<&ServiceAccounts>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => {
            (a.names.is_empty()
                || (!b.names.is_empty() && b.names.iter().all(|n| a.names.contains(n))))
                && implies(b.selector.expr(), a.selector.expr())
        }
        (Some(_), None) => false,
    }
}

fn http_covers(a: Option<&Http>, b: Option<&Http>) -> bool {
    let Some(a) = a else { return true };
    let any = Http::default();
    let b = b.unwrap_or(&any);
    let methods = a.methods.is_empty()
        || a.any_method
        || (!b.methods.is_empty()
            && !b.any_method
            && b.methods.iter().all(|m| a.methods.contains(m)));
    // A rule whose every path entry was skipped matches no path (but still every TCP-level
    // check); `b` with no paths matches every path.
    let paths = if a.paths.is_empty() {
        a.skipped_paths == 0
    } else {
        !b.paths.is_empty()
            && b.paths
                .iter()
                .all(|q| a.paths.iter().any(|p| path_covers(p, q)))
    };
    methods && paths
}

/// Whether path entry `a` matches every normalized path `b` does.
fn path_covers(a: &PathMatch, b: &PathMatch) -> bool {
    match (a, b) {
        (PathMatch::Prefix(_), PathMatch::Exact(q)) => a.matches(q),
        (PathMatch::Prefix(_), PathMatch::Prefix(q)) => a.matches(q),
        (PathMatch::Exact(p), PathMatch::Exact(q)) => p == q,
        (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;
    use crate::policy::{compile, model::PolicyKind};

    /// The compiled ingress rules of a GlobalNetworkPolicy (or a NetworkPolicy in `shop` when
    /// `namespaced`).
    fn rules(namespaced: bool, yaml: &str) -> Vec<Rule> {
        let kind = if namespaced {
            PolicyKind::NetworkPolicy
        } else {
            PolicyKind::GlobalNetworkPolicy
        };
        let text = format!(
            "metadata: {{name: p, namespace: shop}}\nspec:\n  types: [Ingress]\n  ingress: {yaml}\n"
        );
        let p: crate::policy::model::CalicoPolicy = yaml_serde::from_str(&text).unwrap();
        compile::compile_calico(kind, &p).unwrap().ingress.unwrap()
    }

    fn sel(s: &str) -> Expr {
        Selector::parse(s).unwrap().expr().clone()
    }

    #[test_case("app == 'a' && tier == 'b'", "app == 'a'", true; "conjunct")]
    #[test_case("app == 'a'", "app == 'a' && tier == 'b'", false; "narrower")]
    #[test_case("app == 'a'", "has(app)", true; "eq has")]
    #[test_case("app == 'a'", "app in {'a', 'b'}", true; "eq in")]
    #[test_case("app in {'a'}", "app in {'a', 'b'}", true; "in subset")]
    #[test_case("app in {'a', 'c'}", "app in {'a', 'b'}", false; "in not subset")]
    #[test_case("app == 'a'", "app != 'b'", true; "eq ne")]
    #[test_case("app == 'a'", "app != 'a'", false; "eq ne same")]
    #[test_case("app == 'a' || app == 'b'", "has(app)", true; "or each")]
    #[test_case("app == 'a'", "app == 'a' || x == 'y'", true; "into or")]
    #[test_case("has(app)", "app == 'a'", false; "has eq")]
    #[test_case("app == 'a'", "all()", true; "all")]
    #[test_case("all()", "app == 'a'", false; "all narrower")]
    #[test_case("!has(app)", "!has(app)", true; "equal")]
    fn selector_implication(b: &str, a: &str, expected: bool) {
        assert_eq!(implies(&sel(b), &sel(a)), expected, "{b} => {a}");
    }

    #[test_case("[{action: Deny}, {action: Allow, source: {nets: [10.0.0.0/8]}}]", 0, 1, true; "catch-all deny")]
    #[test_case("[{action: Allow, source: {nets: [10.0.0.0/8]}}, {action: Allow, source: {nets: [10.1.0.0/16]}}]", 0, 1, true; "wider net")]
    #[test_case("[{action: Allow, source: {nets: [10.1.0.0/16]}}, {action: Allow, source: {nets: [10.0.0.0/8]}}]", 0, 1, false; "narrower net")]
    #[test_case("[{action: Log}, {action: Allow}]", 0, 1, false; "log is not terminal")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: ['80:90']}}, {action: Deny, protocol: TCP, destination: {ports: [85]}}]", 0, 1, true; "port range")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: [85]}}, {action: Deny, protocol: TCP, destination: {ports: ['80:90']}}]", 0, 1, false; "port range narrower")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /admin}]}}, {action: Allow, http: {methods: [GET], paths: [{exact: /admin/users}]}}]", 0, 1, true; "prefix covers exact")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /admin}]}}, {action: Allow, http: {paths: [{exact: /admin2}]}}]", 0, 1, false; "segment aligned")]
    #[test_case("[{action: Allow, http: {methods: [GET]}}, {action: Allow}]", 0, 1, false; "methods narrower")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [a, b]}}}, {action: Allow, source: {serviceAccounts: {names: [a]}}}]", 0, 1, true; "names subset")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [a]}}}, {action: Deny, source: {serviceAccounts: {names: [a]}}}]", 0, 1, false; "an allow does not shadow a deny on identity")]
    #[test_case("[{action: Deny, source: {serviceAccounts: {names: [a]}}}, {action: Allow, source: {serviceAccounts: {names: [a]}}}]", 0, 1, true; "a deny shadows an allow on identity")]
    #[test_case("[{action: Allow, source: {selector: app == 'a'}}, {action: Allow, source: {selector: app == 'a' && v == '1'}}]", 0, 1, true; "selector implication")]
    #[test_case("[{action: Allow, source: {namespaceSelector: all()}}, {action: Allow, source: {selector: app == 'a'}}]", 0, 1, true; "any namespace covers same")]
    #[test_case("[{action: Allow, source: {notNets: [10.0.0.0/8]}}, {action: Allow, source: {notNets: [10.0.0.0/16]}}]", 0, 1, false; "excludes less")]
    #[test_case("[{action: Allow, source: {notNets: [10.0.0.0/16]}}, {action: Allow, source: {notNets: [10.0.0.0/8]}}]", 0, 1, true; "excludes more")]
    #[test_case("[{action: Allow, notProtocol: UDP}, {action: Allow, protocol: TCP}]", 0, 1, true; "not protocol")]
    fn shadowing_in_a_namespaced_policy(rules_yaml: &str, a: usize, b: usize, expected: bool) {
        let r = rules(true, rules_yaml);
        assert_eq!(shadows(&r[a], &r[b]), expected);
    }

    #[test]
    fn catch_all() {
        let r = rules(
            false,
            "[{action: Deny}, {action: Allow, http: {methods: ['*']}}, {action: Log}, {action: Pass, source: {nets: [10.0.0.0/8]}}]",
        );
        assert!(is_catch_all(&r[0]));
        assert!(is_catch_all(&r[1]));
        assert!(!is_catch_all(&r[2]));
        assert!(!is_catch_all(&r[3]));
    }

    #[test]
    fn scopes() {
        let applies = |kind: PolicyKind, ns: &str, spec: &str| {
            let text = format!("metadata: {{name: p, namespace: {ns}}}\nspec: {spec}\n");
            let p: crate::policy::model::CalicoPolicy = yaml_serde::from_str(&text).unwrap();
            compile::compile_applies(kind, &p).unwrap()
        };
        let g = PolicyKind::GlobalNetworkPolicy;
        let n = PolicyKind::NetworkPolicy;
        let all = applies(g, "x", "{}");
        let web = applies(n, "shop", "{selector: app == 'web'}");
        let shop = applies(n, "shop", "{}");
        let other = applies(n, "other", "{}");
        let by_ns = applies(g, "x", "{namespaceSelector: team == 'shop'}");
        assert!(applies_covers(&all, &web));
        assert!(applies_covers(&shop, &web));
        assert!(!applies_covers(&web, &shop));
        assert!(!applies_covers(&other, &web));
        // A namespace selector against a namespace: only the state could say.
        assert!(!applies_covers(&by_ns, &web));
    }
}

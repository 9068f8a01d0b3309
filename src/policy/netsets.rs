//! NetworkSets and GlobalNetworkSets as selector targets for source addresses
//! (SEMANTICS.md §2). Calico puts a network set's nets into the IP set of every rule selector
//! that selects the set's labels, beside the selected workloads' addresses; an address matches
//! if it is in any selected set's nets (so overlapping and nested nets need no longest-prefix
//! choice: membership is a union).
//!
//! At snapshot build time, each rule's source `selector` (combined with its namespace part, as
//! libcalico-go `updateprocessors/rules.go` getEndpointSelector combines them) and `notSelector`
//! are matched against every set once, and the selected nets are merged into sorted,
//! disjoint address ranges. A request looks its source address up by binary search: no
//! allocation, no lock.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;

use super::{
    compile::{Entity, LABEL_NAMESPACE, NamespaceMatch, Policy},
    endpoints::{Endpoints, PCNS},
    index::PolicyIdx,
    store::{LabelMap, Store},
};

/// Sorted, disjoint, non-adjacent inclusive address ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl Ranges {
    /// The union of `nets`.
    pub fn from_nets<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Ranges {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in nets {
            match n {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Ranges {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Whether no address is in it.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in one of the ranges (an IPv4-mapped IPv6 address as its IPv4 address;
    /// IPv4 never matches an IPv6 net).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

fn merge<T: Ord + Copy + num_step::Step>(mut v: Vec<(T, T)>) -> Box<[(T, T)]> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.next_or_max() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.into_boxed_slice()
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], a: T) -> bool {
    // The last range starting at or before `a`.
    let i = ranges.partition_point(|&(lo, _)| lo <= a);
    i > 0 && ranges[i - 1].1 >= a
}

mod num_step {
    /// The next value, saturating (to merge adjacent ranges).
    pub(super) trait Step {
        fn next_or_max(self) -> Self;
    }
    impl Step for u32 {
        fn next_or_max(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Step for u128 {
        fn next_or_max(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// What a rule's source criteria select among the network sets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuleSets {
    /// The nets of the sets its source `selector` (with the namespace part) selects: an address
    /// in them matches that part of the rule. `None`: the rule has no such selector, or its
    /// `serviceAccounts` criterion selects no network set.
    pub selector: Option<Ranges>,
    /// The nets of the sets its source `notSelector` selects: an address in them is excluded.
    pub not_selector: Ranges,
}

/// Per enforced policy, per ingress rule: what the rule's source selects among the network
/// sets. Empty when the store has no network sets.
#[derive(Debug, Default)]
pub struct NetSets {
    /// Shared with the previous generation for a policy that did not change.
    rules: Vec<Arc<[RuleSets]>>,
}

/// One network set as selectors see it.
struct Set<'a> {
    /// Namespace; `None` for a GlobalNetworkSet.
    namespace: Option<&'a str>,
    labels: LabelMap,
    nets: &'a [IpNet],
}

impl NetSets {
    /// Matches every policy's ingress rules against the store's network sets.
    pub fn build(store: &Store, policies: &[Arc<Policy>], eps: &Endpoints) -> NetSets {
        Self::rebuild(store, policies, eps, None)
    }

    /// The same, after only policies (or tiers) changed since `prev` was built for
    /// `prev_policies`: a policy that is still the same object keeps its entry, so a policy
    /// change costs in proportion to the changed policies, not to all of them.
    pub fn update(
        store: &Store,
        policies: &[Arc<Policy>],
        eps: &Endpoints,
        prev_policies: &[Arc<Policy>],
        prev: &NetSets,
    ) -> NetSets {
        Self::rebuild(store, policies, eps, Some((prev_policies, prev)))
    }

    fn rebuild(
        store: &Store,
        policies: &[Arc<Policy>],
        eps: &Endpoints,
        prev: Option<(&[Arc<Policy>], &NetSets)>,
    ) -> NetSets {
        if store.net_sets.is_empty() {
            return NetSets::default();
        }
        let reuse: std::collections::HashMap<*const Policy, &Arc<[RuleSets]>> = prev
            .map(|(ps, prev)| {
                ps.iter()
                    .zip(&prev.rules)
                    .map(|(p, r)| (Arc::as_ptr(p), r))
                    .collect()
            })
            .unwrap_or_default();
        let sets: Vec<Set<'_>> = store.net_sets.values().map(|n| set(n, eps)).collect();
        let rules = policies
            .iter()
            .map(|p| match reuse.get(&Arc::as_ptr(p)) {
                Some(r) => Arc::clone(r),
                None => p
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| rule_sets(&r.source, &sets, eps))
                    .collect(),
            })
            .collect();
        NetSets { rules }
    }

    /// What rule `rule` of policy `policy` selects; `None` when nothing.
    pub fn rule(&self, policy: PolicyIdx, rule: usize) -> Option<&RuleSets> {
        self.rules.get(policy.get())?.get(rule)
    }
}

/// A set's labels: its own, plus for a NetworkSet `projectcalico.org/namespace` and its
/// Namespace profile's `pcns.` labels, its own winning (libcalico-go
/// `updateprocessors/networksetprocessor.go` convertNetworkSetV2ToV1Value: the namespace label
/// overrides, and `ProfileIDs: [kns.<ns>]` for label inheritance;
/// felix/labelindex/label_inheritance_index.go looks own labels up first).
fn set<'a>(n: &'a super::store::NetSetInfo, eps: &Endpoints) -> Set<'a> {
    let mut labels: LabelMap = n
        .labels
        .iter()
        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
        .collect();
    let namespace = (!n.namespace.is_empty()).then_some(n.namespace.as_str());
    if let Some(ns) = namespace {
        labels.insert(LABEL_NAMESPACE.into(), ns.into());
        for (k, v) in eps.namespace_labels(ns).iter() {
            labels
                .entry(format!("{PCNS}{k}").into())
                .or_insert_with(|| v.clone());
        }
    }
    Set {
        namespace,
        labels,
        nets: &n.nets,
    }
}

/// getEndpointSelector (libcalico-go `updateprocessors/rules.go`): the source IP set's selector
/// is `(namespace part) && (selector)`, where the namespace part is the `namespaceSelector`
/// (`all()` as `has(projectcalico.org/namespace)`, `global()` as its negation) or, in a
/// namespaced policy, `projectcalico.org/namespace == <ns>`; a `serviceAccounts` criterion
/// adds its `pcsa.`-prefixed selector (parseServiceAccounts: names as
/// `pcsa.projectcalico.org/name in {…}`), which a set, having no `pcsa.` label, satisfies only
/// when it has no names and its selector matches no labels (`all()`, `!has(team)`).
/// `notSelector` is a separate IP set of its own selector, not namespace-scoped
/// (`NotSrcSelector: er.NotSelector`).
fn rule_sets(e: &Entity, sets: &[Set<'_>], eps: &Endpoints) -> RuleSets {
    let no_labels = LabelMap::new();
    let positive = e
        .service_accounts
        .as_ref()
        .is_none_or(|m| m.names.is_empty() && m.selector.matches(&no_labels))
        && (e.selector.is_some()
            || e.service_accounts.is_some()
            || !matches!(e.namespace, NamespaceMatch::Any));
    let selector = positive.then(|| {
        Ranges::from_nets(
            sets.iter()
                .filter(|s| namespace_part(&e.namespace, s, eps))
                .filter(|s| e.selector.as_ref().is_none_or(|sel| sel.matches(&s.labels)))
                .flat_map(|s| s.nets),
        )
    });
    let not_selector = e.not_selector.as_ref().map_or_else(Ranges::default, |sel| {
        Ranges::from_nets(
            sets.iter()
                .filter(|s| sel.matches(&s.labels))
                .flat_map(|s| s.nets),
        )
    });
    RuleSets {
        selector,
        not_selector,
    }
}

/// The namespace part of the combined selector, on a set. A `namespaceSelector` is Calico's
/// `pcns.`-prefixed selector on the set's inherited labels, that is the selector on its
/// Namespace's labels (with `projectcalico.org/name`).
fn namespace_part(m: &NamespaceMatch, s: &Set<'_>, eps: &Endpoints) -> bool {
    match (m, s.namespace) {
        (NamespaceMatch::Any, _) => true,
        (NamespaceMatch::Global, ns) => ns.is_none(),
        (_, None) => false,
        (NamespaceMatch::AnyNamespaced, Some(_)) => true,
        (NamespaceMatch::Same(want), Some(ns)) => **want == *ns,
        (NamespaceMatch::Selector(sel), Some(ns)) => sel.matches(&**eps.namespace_labels(ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{snapshot::Snapshot, store::Store};

    fn policy(name: &str, selector: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  ingress: [{{action: Allow, source: {{selector: \"{selector}\"}}}}]\n"
        )
    }

    /// A policy edit recomputes only that policy's entry: the others are shared with the
    /// previous generation (Snapshot::update → NetSets::update).
    #[test]
    fn a_policy_change_recomputes_only_its_own_rules() {
        let mut store = Store::new();
        store.apply_yaml("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: a, labels: {role: a}}\nspec: {nets: [192.0.2.0/24]}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: b, labels: {role: b}}\nspec: {nets: [198.51.100.0/24]}\n",
        );
        store.apply_yaml(&policy("p1", "role == 'a'"));
        store.apply_yaml(&policy("p2", "role == 'a'"));
        let s1 = Snapshot::build(&store, 1);
        store.take_changes();
        store.apply_yaml(&policy("p2", "role == 'b'"));
        let changes = store.take_changes();
        let s2 = Snapshot::update(&s1, &store, &changes, 2);
        let (r1, r2) = (&s1.net_sets.rules, &s2.net_sets.rules);
        assert!(Arc::ptr_eq(&r1[0], &r2[0]), "p1 unchanged: shared");
        assert!(!Arc::ptr_eq(&r1[1], &r2[1]), "p2 changed: recomputed");
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        let sel = |s: &Snapshot, p| {
            s.net_sets
                .rule(PolicyIdx::new(p), 0)
                .unwrap()
                .selector
                .clone()
                .unwrap()
        };
        assert!(!sel(&s1, 1).contains(b) && sel(&s2, 1).contains(b));
        assert!(!sel(&s2, 0).contains(b));
    }

    fn ranges(nets: &[&str]) -> Ranges {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        Ranges::from_nets(&nets)
    }

    /// Calico's IP sets are unions: an address is in the set if any member net holds it, so
    /// nested and overlapping nets (felix/ipsets: members are CIDRs, the kernel's hash:net
    /// matches the longest, but any match is membership) need no longest-prefix choice.
    #[test]
    fn ranges_are_a_union_of_the_nets() {
        let r = ranges(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.168.1.0/24",
            "192.168.2.0/24",
        ]);
        assert_eq!(r.v4.len(), 2, "nested merged, adjacent merged: {r:?}");
        for (ip, want) in [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.7", true),
            ("192.168.2.255", true),
            ("192.168.3.0", false),
            ("::ffff:10.1.2.3", true),
            ("::1", false),
        ] {
            assert_eq!(r.contains(ip.parse().unwrap()), want, "{ip}");
        }
        let r = ranges(&["fd00::/64", "0.0.0.0/0"]);
        assert!(r.contains("fd00::5".parse().unwrap()));
        assert!(!r.contains("fd01::5".parse().unwrap()));
        assert!(r.contains("255.255.255.255".parse().unwrap()));
        assert!(ranges(&[]).is_empty() && !ranges(&[]).contains("1.2.3.4".parse().unwrap()));
        let r = ranges(&["::/0"]);
        assert!(r.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
    }
}

//! Step three: the immutable index `Check` reads.
//!
//! Built from a [`Store`] in one go and published whole (`ArcSwap`), so a request sees one
//! consistent generation. Everything a request needs is precomputed here: tiers and policies in
//! evaluation order, pods by IP, and for each *endpoint class* (pods with the same namespace,
//! service account and labels) the ordered list of tiers and policies that select it — what Felix
//! sends Dikastes as `WorkloadEndpoint.tiers`.

use std::{
    cmp::Ordering as CmpOrdering,
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use super::{
    compile::{Applies, Policy, PolicyId, ServiceRef, StagedAction, Tier, TierDefault},
    counters::Counters,
    cow::{FastMap, Slots},
    endpoints::{ClassDelta, ClassKey, Endpoints, IpEntry, Subject},
    index::{EndpointIdx, InvalidIdx, PolicyIdx, TierIdx},
    netsets::NetSets,
    store::{Changes, InvalidPolicy, Store},
};

pub use super::store::LabelMap;

/// The policies that apply to one endpoint class, tier by tier, in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Tiers with at least one enforced policy selecting the class, in order.
    pub tiers: Vec<TierPlan>,
    /// An invalid enforced policy that could select the class: the class is denied outright.
    pub invalid: Option<InvalidIdx>,
}

/// One tier of a [`Plan`].
#[derive(Debug, Clone)]
pub struct TierPlan {
    /// The tier.
    pub tier: TierIdx,
    /// Policies of that tier selecting the class, in order.
    pub policies: Vec<PolicyIdx>,
}

/// An invalid policy as the snapshot keeps it.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// Its identity.
    pub id: PolicyId,
    /// What is wrong.
    pub error: String,
    /// What it could apply to (`None`: its namespace, or everything for global kinds).
    pub scope: Option<Applies>,
}
/// The compiled, immutable policy index.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Monotonic generation number (the policy version an answer was decided on).
    pub generation: u64,
    /// Tiers in evaluation order.
    pub tiers: Arc<[Tier]>,
    /// Enforced, valid policies in evaluation order: by tier, then order, name, namespace, kind.
    // INVARIANT: sorted by (tier position, order, `<name>/<namespace>/<kind>`); `Plan` lists rely on it.
    pub policies: Arc<[Arc<Policy>]>,
    /// Tier of each policy.
    pub policy_tier: Arc<[TierIdx]>,
    /// Staged policies that compiled (never enforced).
    pub staged: Arc<[Arc<Policy>]>,
    /// Invalid enforced policies.
    pub invalid: Arc<[Invalid]>,
    /// Workload endpoints (indexable as a slice) and the cluster's labels. Shared with the
    /// previous generation when no Pod, Namespace or ServiceAccount changed.
    pub endpoints: Arc<Endpoints>,
    /// The endpoints of each Service (from EndpointSlices), for `services` criteria. Shared
    /// with the previous generation when no EndpointSlice changed.
    pub services: Arc<ServiceIndex>,
    /// What each rule's source selectors select among the network sets. Shared with the
    /// previous generation when no network set, policy, tier or Namespace changed.
    pub net_sets: Arc<NetSets>,
    /// Plans, one per endpoint class (in the class's slot). Shared with the previous
    /// generation, plan by plan, for the classes a change did not touch.
    pub plans: Slots<Arc<Plan>>,
    /// The store this was built from (see [`Snapshot::update`]).
    lineage: u64,
    /// Decision counters for this generation (lock-free; read by the metrics scrape).
    pub counters: Counters,
    /// The enforced set with the staged policies applied (Calico's "staged as enforced"), when
    /// there are staged policies: evaluated beside this one, never deciding the answer.
    pub shadow: Option<Box<Snapshot>>,
}

impl Snapshot {
    /// An empty snapshot (every pod unknown, so every request is denied as `unknown destination`).
    pub fn empty(generation: u64) -> Self {
        Snapshot {
            generation,
            ..Snapshot::default()
        }
    }

    /// Builds the index from everything in `store`.
    pub fn build(store: &Store, generation: u64) -> Snapshot {
        let endpoints = Arc::new(Endpoints::build(store, None));
        let set = PolicySet::build(store, &store.policies);
        let plans = set.plans(&endpoints);
        let services = Arc::new(ServiceIndex::build(store));
        let mut snap = set.into_snapshot(generation, endpoints, services, plans, store.lineage);
        snap.net_sets = Arc::new(NetSets::build(store, &snap.policies, &snap.endpoints));
        snap.shadow = shadow(store, &snap, generation);
        snap
    }

    /// The next generation from `prev`, built from the same `store` after `changes`: only
    /// what the changes affect is recomputed.
    ///
    /// - The policy side (tiers, policies in order, invalid and staged ones) is shared with
    ///   `prev` unless a policy or tier changed.
    /// - When only Pods changed (the common case: a rollout), the endpoint side is `prev`'s
    ///   with the changed pods taken out and put back (`Endpoints::apply_pods`), and the
    ///   plans are `prev`'s, shared, with a plan computed for each new class (a new label set)
    ///   and dropped for each class whose last pod went. Cost: the changed pods and classes.
    /// - A Namespace or ServiceAccount change rebuilds the endpoint side and re-matches the
    ///   classes of its namespace; the others keep their plans.
    /// - When only policies changed (one policy edited), each class's plan is `prev`'s with
    ///   the indexes renumbered, the changed policies taken out and put back where they now
    ///   select. No other policy is matched again.
    /// - Anything else (tiers, a different store, policies and endpoints at once) computes the
    ///   plans afresh.
    pub fn update(prev: &Snapshot, store: &Store, changes: &Changes, generation: u64) -> Snapshot {
        if changes.all || prev.lineage != store.lineage {
            return Snapshot::build(store, generation);
        }
        let policies_changed = changes.tiers || !changes.policies.is_empty();
        let set = if policies_changed {
            PolicySet::build(store, &store.policies)
        } else {
            PolicySet::of(prev)
        };
        // Pods only, and not so many that a rebuild is as cheap: the endpoint side in place.
        let pods_only = changes.endpoints
            && changes.namespaces.is_empty()
            && changes.pods.len() <= store.pods.len() / 4 + 16;
        let mut delta = None;
        let endpoints = if !changes.endpoints {
            prev.endpoints.clone()
        } else if pods_only {
            let (eps, d) = prev.endpoints.apply_pods(store, &changes.pods);
            delta = Some(d);
            Arc::new(eps)
        } else {
            Arc::new(Endpoints::build(
                store,
                Some((&prev.endpoints, &changes.namespaces)),
            ))
        };
        let plans = if changes.tiers || (changes.endpoints && !changes.policies.is_empty()) {
            set.plans(&endpoints)
        } else if let Some(d) = &delta {
            set.pod_plans(&prev.plans, &endpoints, d)
        } else if changes.endpoints {
            set.reused_plans(prev, &endpoints, &changes.namespaces)
        } else if policies_changed {
            set.updated_plans(prev, &endpoints, &changes.policies)
        } else {
            prev.plans.clone()
        };
        let services = if changes.services {
            Arc::new(ServiceIndex::build(store))
        } else {
            prev.services.clone()
        };
        let mut snap = set.into_snapshot(generation, endpoints, services, plans, store.lineage);
        snap.net_sets = if changes.net_sets || !changes.namespaces.is_empty() {
            Arc::new(NetSets::build(store, &snap.policies, &snap.endpoints))
        } else if policies_changed {
            Arc::new(NetSets::update(
                store,
                &snap.policies,
                &snap.endpoints,
                &prev.policies,
                &prev.net_sets,
            ))
        } else {
            prev.net_sets.clone()
        };
        snap.shadow = match (&prev.shadow, &delta) {
            // No policy changed, so neither did the staged ones: no shadow before, none now.
            (None, _) if !policies_changed => None,
            // Pods only: the shadow's plans follow the same classes (it shares the endpoints).
            (Some(old), Some(d)) if !policies_changed && !changes.net_sets => {
                Some(Box::new(shadow_after_pods(old, &snap, d, generation)))
            }
            _ => shadow(store, &snap, generation),
        };
        snap
    }

    /// The endpoint with this IP, if exactly one live pod has it.
    pub fn endpoint_by_ip(&self, ip: IpAddr) -> Option<EndpointIdx> {
        match self.endpoints.by_ip.get(&ip.to_canonical()) {
            Some(IpEntry::One(i)) => Some(*i),
            _ => None,
        }
    }

    /// The endpoint for a pod name.
    pub fn endpoint_by_name(&self, namespace: &str, name: &str) -> Option<EndpointIdx> {
        self.endpoints
            .by_name
            .get_by(&(namespace, name), |(ns, n)| {
                &**ns == namespace && &**n == name
            })
            .copied()
    }

    /// A namespace's labels (empty when the Namespace object is unknown, as in Dikastes).
    pub fn namespace_labels(&self, ns: &str) -> &Arc<LabelMap> {
        self.endpoints.namespace_labels(ns)
    }

    /// A service account's labels (empty when the ServiceAccount object is unknown).
    pub fn service_account_labels(&self, ns: &str, sa: &str) -> &Arc<LabelMap> {
        self.endpoints.service_account_labels(ns, sa)
    }

    /// The tier of a policy.
    pub fn tier_of(&self, policy: PolicyIdx) -> &Tier {
        &self.tiers[self.policy_tier[policy.get()].get()]
    }

    /// Whether a tier passes when none of its policies decided.
    pub fn tier_passes(&self, tier: TierIdx) -> bool {
        self.tiers[tier.get()].default_action == TierDefault::Pass
    }
}

/// The shadow snapshot (staged policies applied), sharing `snap`'s endpoint side.
fn shadow(store: &Store, snap: &Snapshot, generation: u64) -> Option<Box<Snapshot>> {
    shadow_policies(store).map(|policies| {
        let set = PolicySet::build(store, &policies);
        let plans = set.plans(&snap.endpoints);
        let mut shadow = set.into_snapshot(
            generation,
            snap.endpoints.clone(),
            snap.services.clone(),
            plans,
            0,
        );
        shadow.net_sets = Arc::new(NetSets::build(store, &shadow.policies, &shadow.endpoints));
        Box::new(shadow)
    })
}

/// The shadow of `snap` after only pods changed: `old` (the previous shadow) with its plans
/// brought up to date the way `snap`'s were, on `snap`'s endpoints.
fn shadow_after_pods(old: &Snapshot, snap: &Snapshot, d: &ClassDelta, generation: u64) -> Snapshot {
    let set = PolicySet::of(old);
    let plans = set.pod_plans(&old.plans, &snap.endpoints, d);
    let mut shadow = set.into_snapshot(
        generation,
        snap.endpoints.clone(),
        snap.services.clone(),
        plans,
        0,
    );
    shadow.net_sets = old.net_sets.clone();
    shadow
}

/// The endpoints of each Service, from its EndpointSlices.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    services: FastMap<ServiceRef, ServiceEndpoints>,
}

#[derive(Debug, Default)]
struct ServiceEndpoints {
    ips: std::collections::HashSet<IpAddr, foldhash::fast::RandomState>,
    /// (address, port, protocol); a port of `None` in a slice means every port.
    ports: std::collections::HashSet<(IpAddr, Option<u16>, u8), foldhash::fast::RandomState>,
}

impl ServiceIndex {
    fn build(store: &Store) -> ServiceIndex {
        let mut index = ServiceIndex::default();
        for slice in store.endpoint_slices.values() {
            let Some(service) = &slice.service else {
                continue;
            };
            let key = ServiceRef {
                namespace: slice.namespace.as_str().into(),
                name: service.as_str().into(),
            };
            let entry = index.services.entry(key).or_default();
            for ip in &slice.ips {
                entry.ips.insert(*ip);
                for (port, proto) in &slice.ports {
                    entry.ports.insert((*ip, *port, *proto));
                }
            }
        }
        index
    }

    /// Whether `ip` is an endpoint address of the Service.
    pub fn has_address(&self, svc: &ServiceRef, ip: IpAddr) -> bool {
        self.services
            .get(svc)
            .is_some_and(|s| s.ips.contains(&ip.to_canonical()))
    }

    /// Whether (`ip`, `port`, `protocol`) is an endpoint of the Service.
    pub fn has_endpoint(&self, svc: &ServiceRef, ip: IpAddr, port: u16, protocol: u8) -> bool {
        let ip = ip.to_canonical();
        self.services.get(svc).is_some_and(|s| {
            s.ports.contains(&(ip, Some(port), protocol)) || s.ports.contains(&(ip, None, protocol))
        })
    }
}

/// The enforced policies with the staged ones applied as Calico's `stagedAction` says, and no
/// staged policies left; `None` when no staged policy would change anything.
fn shadow_policies(store: &Store) -> Option<PolicyMap> {
    let staged: Vec<&Arc<Policy>> = store
        .policies
        .iter()
        .filter(|(id, _)| id.kind.is_staged())
        .filter_map(|(_, p)| p.as_ref().ok())
        .filter(|p| {
            matches!(
                p.staged_action,
                Some(StagedAction::Set | StagedAction::Delete)
            )
        })
        .collect();
    if staged.is_empty() {
        return None;
    }
    let mut shadow: PolicyMap = store
        .policies
        .iter()
        .filter(|(id, _)| !id.kind.is_staged())
        .map(|(id, p)| (id.clone(), p.clone()))
        .collect();
    for p in staged {
        // The policy it stands in for: same name and namespace, the enforced kind. (It keeps its
        // own id, so that metrics and logs can tell a staged policy from an enforced one.)
        let target = PolicyId {
            kind: p.id.kind.enforced(),
            ..p.id.clone()
        };
        match p.staged_action {
            Some(StagedAction::Delete) => {
                shadow.remove(&target);
            }
            _ => {
                shadow.insert(target, Ok(p.clone()));
            }
        }
    }
    Some(shadow)
}

/// Policies as a store keeps them.
type PolicyMap = BTreeMap<PolicyId, Result<Arc<Policy>, InvalidPolicy>>;

/// The policy side of a snapshot: tiers and policies in evaluation order.
struct PolicySet {
    tiers: Arc<[Tier]>,
    policies: Arc<[Arc<Policy>]>,
    policy_tier: Arc<[TierIdx]>,
    staged: Arc<[Arc<Policy>]>,
    invalid: Arc<[Invalid]>,
}

impl PolicySet {
    /// The policy side of `snap`, shared.
    fn of(snap: &Snapshot) -> PolicySet {
        PolicySet {
            tiers: snap.tiers.clone(),
            policies: snap.policies.clone(),
            policy_tier: snap.policy_tier.clone(),
            staged: snap.staged.clone(),
            invalid: snap.invalid.clone(),
        }
    }

    /// Tiers from `store` (the built-ins unless overridden) and the given policies, sorted.
    fn build(store: &Store, policies: &PolicyMap) -> PolicySet {
        // Tiers: the built-ins unless overridden, then by order (absent last), then name.
        let mut tiers: BTreeMap<Arc<str>, Result<Tier, String>> = Tier::builtins()
            .into_iter()
            .map(|t| (t.name.clone(), Ok(t)))
            .collect();
        for (name, t) in &store.tiers {
            tiers.insert(name.as_str().into(), t.clone().map_err(|e| e.to_string()));
        }
        let mut valid_tiers: Vec<Tier> = tiers.values().filter_map(|t| t.clone().ok()).collect();
        valid_tiers.sort_by(|a, b| cmp_order(a.order, b.order).then_with(|| a.name.cmp(&b.name)));
        let tier_pos: HashMap<Arc<str>, TierIdx> = valid_tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), TierIdx::new(i)))
            .collect();

        // Policies: staged ones aside; enforced ones sorted; invalid ones kept with their scope.
        let mut staged_list: Vec<Arc<Policy>> = Vec::new();
        let mut invalid: Vec<Invalid> = Vec::new();
        let mut enforced: Vec<(TierIdx, Arc<Policy>)> = Vec::with_capacity(policies.len());
        for (id, p) in policies {
            let staged = id.kind.is_staged();
            match p {
                Ok(p) if staged => staged_list.push(p.clone()),
                Ok(p) => match (tier_pos.get(&p.tier), tiers.get(&p.tier)) {
                    (Some(pos), _) => enforced.push((*pos, p.clone())),
                    (None, Some(Err(e))) => invalid.push(Invalid {
                        id: id.clone(),
                        error: format!("tier `{}` is invalid: {e}", p.tier),
                        scope: Some(p.applies.clone()),
                    }),
                    (None, _) => invalid.push(Invalid {
                        id: id.clone(),
                        error: format!("tier `{}` does not exist", p.tier),
                        scope: Some(p.applies.clone()),
                    }),
                },
                Err(_) if staged => {}
                Err(e) => invalid.push(Invalid {
                    id: id.clone(),
                    error: e.error.to_string(),
                    scope: e.scope.clone(),
                }),
            }
        }
        enforced.sort_by(|(ta, a), (tb, b)| {
            ta.cmp(tb)
                .then_with(|| cmp_order(a.order, b.order))
                .then_with(|| tie_key(&a.id).cmp(tie_key(&b.id)))
        });
        let (policy_tier, policies): (Vec<TierIdx>, Vec<Arc<Policy>>) =
            enforced.into_iter().unzip();
        PolicySet {
            tiers: valid_tiers.into(),
            policies: policies.into(),
            policy_tier: policy_tier.into(),
            staged: staged_list.into(),
            invalid: invalid.into(),
        }
    }

    fn into_snapshot(
        self,
        generation: u64,
        endpoints: Arc<Endpoints>,
        services: Arc<ServiceIndex>,
        plans: Slots<Arc<Plan>>,
        lineage: u64,
    ) -> Snapshot {
        let counters = Counters::sized(self.policies.len(), self.tiers.len(), self.invalid.len());
        Snapshot {
            generation,
            tiers: self.tiers,
            policies: self.policies,
            policy_tier: self.policy_tier,
            staged: self.staged,
            invalid: self.invalid,
            endpoints,
            services,
            net_sets: Arc::default(),
            plans,
            lineage,
            counters,
            shadow: None,
        }
    }

    /// The first invalid policy that could select the class.
    fn invalid_for(&self, subject: &Subject<'_>) -> Option<InvalidIdx> {
        self.invalid
            .iter()
            .position(|inv| match &inv.scope {
                Some(a) => subject.selected_by(a),
                None => inv
                    .id
                    .namespace
                    .as_ref()
                    .is_none_or(|n| &**n == subject.namespace),
            })
            .map(InvalidIdx::new)
    }

    /// Groups a class's policies (in evaluation order) into tiers.
    fn plan(
        &self,
        policies: impl IntoIterator<Item = PolicyIdx>,
        invalid: Option<InvalidIdx>,
    ) -> Plan {
        let mut plan = Plan {
            tiers: Vec::new(),
            invalid,
        };
        for i in policies {
            let tier = self.policy_tier[i.get()];
            match plan.tiers.last_mut() {
                Some(tp) if tp.tier == tier => tp.policies.push(i),
                _ => plan.tiers.push(TierPlan {
                    tier,
                    policies: vec![i],
                }),
            }
        }
        plan
    }

    /// Every class's plan, computed afresh.
    fn plans(&self, eps: &Endpoints) -> Slots<Arc<Plan>> {
        // Namespaced policies can only select endpoints of their own namespace: a class looks at
        // the global policies and its namespace's, not at every policy.
        let by_namespace = self.by_namespace();
        let mut candidates: Vec<PolicyIdx> = Vec::new();
        let mut plans = Slots::default();
        for (slot, class) in eps.classes.iter() {
            let plan = self.fresh_plan(&by_namespace, &mut candidates, eps, &class.key);
            plans.set(slot, Some(Arc::new(plan)));
        }
        plans
    }

    /// `prev`'s plans (for the same policies) after only pods changed, as `d` says: a plan for
    /// each class created, none for each class gone; every other plan shared.
    fn pod_plans(
        &self,
        prev: &Slots<Arc<Plan>>,
        eps: &Endpoints,
        d: &ClassDelta,
    ) -> Slots<Arc<Plan>> {
        let mut plans = prev.clone();
        for &slot in &d.freed {
            if eps.classes.get(slot.get()).is_none() {
                plans.set(slot.get(), None);
            }
        }
        if d.created.is_empty() {
            return plans;
        }
        let by_namespace = self.by_namespace();
        let mut candidates: Vec<PolicyIdx> = Vec::new();
        for &slot in &d.created {
            if let Some(class) = eps.classes.get(slot.get()) {
                let plan = self.fresh_plan(&by_namespace, &mut candidates, eps, &class.key);
                plans.set(slot.get(), Some(Arc::new(plan)));
            }
        }
        plans
    }

    /// Ingress policies by namespace (`None`: global), for [`PolicySet::fresh_plan`].
    fn by_namespace(&self) -> HashMap<Option<&str>, Vec<PolicyIdx>> {
        let mut by_namespace: HashMap<Option<&str>, Vec<PolicyIdx>> = HashMap::new();
        for (i, p) in self.policies.iter().enumerate() {
            if p.ingress.is_some() {
                by_namespace
                    .entry(p.applies.namespace.as_deref())
                    .or_default()
                    .push(PolicyIdx::new(i));
            }
        }
        by_namespace
    }

    /// One class's plan, matched against the global policies and its namespace's.
    fn fresh_plan(
        &self,
        by_namespace: &HashMap<Option<&str>, Vec<PolicyIdx>>,
        candidates: &mut Vec<PolicyIdx>,
        eps: &Endpoints,
        key: &ClassKey,
    ) -> Plan {
        let subject = eps.subject(key);
        candidates.clear();
        candidates.extend(by_namespace.get(&None).into_iter().flatten());
        candidates.extend(by_namespace.get(&Some(&*key.0)).into_iter().flatten());
        // INVARIANT: plans follow the evaluation order, which is the policy index order.
        candidates.sort_unstable();
        let selected = candidates
            .iter()
            .copied()
            .filter(|&i| subject.selected_by(&self.policies[i.get()].applies));
        self.plan(selected, self.invalid_for(&subject))
    }

    /// Every class's plan after only endpoints changed (the policies are `prev`'s): a class
    /// `prev` had keeps its plan (shared) unless its namespace's labels (or service
    /// accounts') changed.
    fn reused_plans(
        &self,
        prev: &Snapshot,
        eps: &Endpoints,
        namespaces: &BTreeSet<String>,
    ) -> Slots<Arc<Plan>> {
        let by_namespace = self.by_namespace();
        let mut candidates: Vec<PolicyIdx> = Vec::new();
        let mut plans = Slots::default();
        for (slot, class) in eps.classes.iter() {
            let key = &class.key;
            let known = (!namespaces.contains(&*key.0))
                .then(|| {
                    prev.endpoints
                        .class_of
                        .get(&(Arc::as_ptr(&key.2) as usize, key.1.clone()))
                })
                .flatten()
                .and_then(|&c| prev.plans.get(c.get()));
            let plan = match known {
                Some(plan) => plan.clone(),
                None => Arc::new(self.fresh_plan(&by_namespace, &mut candidates, eps, key)),
            };
            plans.set(slot, Some(plan));
        }
        plans
    }

    /// Every class's plan, from `prev`'s (built on the same endpoint classes) after the
    /// policies in `changed` were added, modified or deleted.
    fn updated_plans(
        &self,
        prev: &Snapshot,
        eps: &Endpoints,
        changed: &BTreeSet<PolicyId>,
    ) -> Slots<Arc<Plan>> {
        let position: HashMap<&PolicyId, PolicyIdx> = self
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.id, PolicyIdx::new(i)))
            .collect();
        // Where each of prev's policies is now; `None` for the changed and the deleted ones.
        let renumber: Vec<Option<PolicyIdx>> = prev
            .policies
            .iter()
            .map(|p| {
                (!changed.contains(&p.id))
                    .then(|| position.get(&p.id).copied())
                    .flatten()
            })
            .collect();
        let fresh: Vec<PolicyIdx> = changed
            .iter()
            .filter_map(|id| position.get(id).copied())
            .filter(|&i| self.policies[i.get()].ingress.is_some())
            .collect();
        let mut list: Vec<PolicyIdx> = Vec::new();
        let mut plans = Slots::default();
        for (slot, class) in eps.classes.iter() {
            let subject = eps.subject(&class.key);
            list.clear();
            // Unchanged policies keep their relative order: renumbering keeps the list sorted.
            if let Some(old) = prev.plans.get(slot) {
                list.extend(
                    old.tiers
                        .iter()
                        .flat_map(|tp| &tp.policies)
                        .filter_map(|&i| renumber.get(i.get()).copied().flatten()),
                );
            }
            let before = list.len();
            list.extend(
                fresh
                    .iter()
                    .copied()
                    .filter(|&i| subject.selected_by(&self.policies[i.get()].applies)),
            );
            if list.len() != before {
                // INVARIANT: plans follow the evaluation order, the policy index order.
                list.sort_unstable();
            }
            let plan = self.plan(list.iter().copied(), self.invalid_for(&subject));
            plans.set(slot, Some(Arc::new(plan)));
        }
        plans
    }
}

/// The string that breaks ties between policies of equal order, compared bytewise:
/// `<name>/<namespace>/<kind>` (Calico ≥ 3.32, `felix/calc/policy_sorter.go` PolKVLess), so
/// `web-allow` comes before `web`.
fn tie_key(id: &PolicyId) -> impl Iterator<Item = u8> + '_ {
    let ns = id.namespace.as_deref().unwrap_or_default();
    id.name
        .bytes()
        .chain(*b"/")
        .chain(ns.bytes())
        .chain(*b"/")
        .chain(id.kind.calico_key_kind().bytes())
}

/// Orders optional orders: present ones ascending, absent last ("a nil order counts as +Inf").
fn cmp_order(a: Option<f64>, b: Option<f64>) -> CmpOrdering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => CmpOrdering::Less,
        (None, Some(_)) => CmpOrdering::Greater,
        (None, None) => CmpOrdering::Equal,
    }
}

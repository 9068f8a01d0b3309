//! The endpoint side of a snapshot: workload endpoints (pods with an IP), their classes, the
//! IP and name indexes, and the Namespace and ServiceAccount profiles they inherit labels from.
//!
//! Everything here depends only on Pods, Namespaces and ServiceAccounts, so a generation after
//! one Pod change shares all but a chunk and a shard or two with the previous one
//! (`Endpoints::apply_pods`); [`super::snapshot`] computes plans for the classes that changed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use super::{
    compile::{Applies, LABEL_NAME, LABEL_SERVICE_ACCOUNT},
    cow::{FastMap, ShardMap, Slots},
    index::{ClassIdx, EndpointIdx},
    store::{LabelMap, Store, Workload},
};

/// The prefix of the labels an endpoint inherits from its Namespace's profile
/// (libcalico-go/lib/backend/k8s/conversion/constants.go `NamespaceLabelPrefix`).
pub const PCNS: &str = "pcns.";
/// The prefix of the labels an endpoint inherits from its ServiceAccount's profile
/// (`ServiceAccountLabelPrefix`).
pub const PCSA: &str = "pcsa.";

/// What makes two pods share a plan: namespace, service account and endpoint labels. The third
/// element is the Pod's label set as the store interned it (the class's identity), the fourth
/// the endpoint labels selectors see: those plus the labels inherited from the Namespace and
/// ServiceAccount profiles (`pcns.*`, `pcsa.*`).
pub(super) type ClassKey = (Arc<str>, Arc<str>, Arc<LabelMap>, Arc<LabelMap>);

/// The class of an endpoint that has no plan: a pod of another node in per-node mode, which is
/// never a destination here (a request to it is denied as `unknown destination`).
pub const NO_CLASS: ClassIdx = ClassIdx::NONE;

/// A workload endpoint (a pod with an IP that is not host-network and not finished).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Pod name.
    pub name: Arc<str>,
    /// Service account.
    pub service_account: Arc<str>,
    /// Pod labels plus Calico's `projectcalico.org/{namespace,serviceaccount,orchestrator}`,
    /// plus the profile labels it inherits (`pcns.<k>`, `pcsa.<k>`; its own labels win).
    pub labels: Arc<LabelMap>,
    /// Named container ports: (name, port, protocol).
    pub named_ports: Arc<[(Arc<str>, u16, u8)]>,
    /// The pod's first IP.
    pub ip: Option<IpAddr>,
    /// Its other IPs (what the IP index must forget when the pod goes).
    other_ips: Box<[IpAddr]>,
    /// The endpoint class (shared plan); [`NO_CLASS`] for a pod that is only a source.
    pub class: ClassIdx,
}

impl Endpoint {
    /// Resolves a named port for the given protocol.
    pub fn named_port(&self, name: &str, protocol: u8) -> Option<u16> {
        self.named_ports
            .iter()
            .find(|(n, _, p)| &**n == name && *p == protocol)
            .map(|(_, port, _)| *port)
    }
}

#[derive(Debug, Clone)]
pub(super) enum IpEntry {
    One(EndpointIdx),
    /// Two live pods or more claim the IP: none is trusted (an unknown destination is
    /// denied). Who they are, so that the entry is right again when one of them goes.
    Ambiguous(Box<[EndpointIdx]>),
}

/// An endpoint class: its key and how many endpoints it has (it goes with its last one).
#[derive(Debug, Clone)]
pub(super) struct Class {
    pub(super) key: ClassKey,
    members: u32,
}

/// The labels of Namespaces and ServiceAccounts (with `projectcalico.org/name`), as the
/// profiles an endpoint inherits from and namespace / service-account selectors see them.
#[derive(Debug, Default)]
struct Profiles {
    namespaces: FastMap<Arc<str>, Arc<LabelMap>>,
    service_accounts: FastMap<Arc<str>, FastMap<Arc<str>, Arc<LabelMap>>>,
    empty: Arc<LabelMap>,
}

/// The endpoint side of a snapshot: everything that depends only on Pods, Namespaces and
/// ServiceAccounts.
///
/// Endpoints and classes live in index-stable slots, and the IP and name indexes in sharded
/// maps, all copy-on-write ([`super::cow`]): a generation after one Pod change shares all but a
/// chunk and a shard or two of each with the previous one (`Endpoints::apply_pods`). A slot
/// freed by a deleted pod (or a class whose last pod went) is reused by the next one.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub(super) list: Slots<Endpoint>,
    /// Free endpoint slots.
    pub(super) free: Vec<EndpointIdx>,
    pub(super) live: usize,
    /// Each class's key (namespace, service account, labels) and size, by class number.
    pub(super) classes: Slots<Class>,
    pub(super) free_classes: Vec<ClassIdx>,
    pub(super) live_classes: usize,
    /// The class of an (interned label set, service account). The label set's address is
    /// stable while this index holds it (its class holds the set).
    pub(super) class_of: ShardMap<(usize, Arc<str>), ClassIdx>,
    pub(super) by_ip: ShardMap<IpAddr, IpEntry>,
    pub(super) by_name: ShardMap<(Arc<str>, Arc<str>), EndpointIdx>,
    profiles: Arc<Profiles>,
}

/// What `Endpoints::apply_pods` did to the classes: the plans to compute and to drop.
#[derive(Debug, Default)]
pub(super) struct ClassDelta {
    /// Classes created (a slot may appear again if it was freed and reused).
    pub(super) created: Vec<ClassIdx>,
    /// Classes whose last endpoint went.
    pub(super) freed: Vec<ClassIdx>,
}

impl Profiles {
    /// Namespace and service-account labels, plus Calico's `projectcalico.org/name`.
    fn build(store: &Store) -> Profiles {
        let mut p = Profiles::default();
        for (name, labels) in &store.namespaces {
            let mut l = to_label_map(labels);
            l.insert(LABEL_NAME.into(), name.as_str().into());
            p.namespaces.insert(name.as_str().into(), Arc::new(l));
        }
        for ((ns, name), labels) in &store.service_accounts {
            let mut l = to_label_map(labels);
            l.insert(LABEL_NAME.into(), name.as_str().into());
            p.service_accounts
                .entry(ns.as_str().into())
                .or_default()
                .insert(name.as_str().into(), Arc::new(l));
        }
        p
    }
}

/// Where [`Endpoints::insert`] may take a new class's endpoint labels from instead of merging
/// them again: the previous generation's endpoints, and the namespaces whose Namespace or
/// ServiceAccounts changed since (whose labels must be merged again).
pub(super) type Reuse<'a> = Option<(&'a Endpoints, &'a BTreeSet<String>)>;

impl Endpoints {
    /// Endpoints, classes and label maps from the Pods, Namespaces and ServiceAccounts of
    /// `store`. With `prev` (the previous generation's endpoints and the namespaces whose
    /// Namespace or ServiceAccounts changed since), a class outside those namespaces takes its
    /// endpoint labels from `prev` instead of merging them again: a Namespace label change
    /// re-labels only its own classes.
    pub(super) fn build(store: &Store, prev: Reuse<'_>) -> Endpoints {
        let mut eps = Endpoints {
            profiles: Arc::new(Profiles::build(store)),
            ..Endpoints::default()
        };
        // Merged label sets of source-only pods, one per class key, shared between them.
        let mut source_only = HashMap::default();
        let mut delta = ClassDelta::default();
        for w in store.pods.values() {
            eps.insert(w, prev, &mut source_only, &mut delta);
        }
        eps
    }

    /// `self` (the previous generation's endpoints) after the pods named in `pods` were
    /// applied or deleted in `store`, which has the same Namespaces and ServiceAccounts as when
    /// `self` was built. Every other endpoint, class and index entry is shared.
    pub(super) fn apply_pods(
        &self,
        store: &Store,
        pods: &BTreeSet<(String, String)>,
    ) -> (Endpoints, ClassDelta) {
        let mut eps = self.clone();
        let mut delta = ClassDelta::default();
        let mut source_only = HashMap::default();
        for key in pods {
            let old = eps.take(&key.0, &key.1);
            if let Some(w) = store.pods.get(key) {
                eps.insert(w, None, &mut source_only, &mut delta);
            }
            // Taken out after the new one is in: a pod that keeps its labels keeps its class.
            if let Some((idx, ep)) = old {
                eps.forget(idx, ep, &mut delta);
            }
        }
        (eps, delta)
    }

    /// Adds a pod (nothing if it has no IP), in its class (created if new).
    fn insert(
        &mut self,
        w: &Workload,
        reuse: Reuse<'_>,
        source_only: &mut HashMap<(usize, Arc<str>), Arc<LabelMap>>,
        delta: &mut ClassDelta,
    ) {
        let Some((&ip, other_ips)) = w.ips.split_first() else {
            return;
        };
        let class_id = (Arc::as_ptr(&w.labels) as usize, w.service_account.clone());
        let (class, labels) = if !w.local {
            // A pod of another node (per-node mode) is only ever a source: no class and no
            // plan, but its labels as a source selector sees them (inherited ones included).
            let labels = source_only
                .entry(class_id)
                .or_insert_with(|| {
                    self.endpoint_labels(&w.labels, &w.namespace, &w.service_account)
                })
                .clone();
            (NO_CLASS, labels)
        } else if let Some(&c) = self.class_of.get(&class_id) {
            let labels = match self.classes.get(c.get()) {
                Some(class) => {
                    let mut class = class.clone();
                    class.members += 1;
                    let labels = class.key.3.clone();
                    self.classes.set(c.get(), Some(class));
                    labels
                }
                // Unreachable: `class_of` names live classes only.
                None => self.endpoint_labels(&w.labels, &w.namespace, &w.service_account),
            };
            (c, labels)
        } else {
            let reused = reuse
                .filter(|(_, changed)| !changed.contains(&*w.namespace))
                .and_then(|(p, _)| {
                    let c = p.class_of.get(&class_id)?;
                    p.classes.get(c.get())
                })
                .map(|class| class.key.3.clone());
            let labels = reused.unwrap_or_else(|| {
                self.endpoint_labels(&w.labels, &w.namespace, &w.service_account)
            });
            let slot = self
                .free_classes
                .pop()
                .unwrap_or(ClassIdx::new(self.classes.len()));
            self.classes.set(
                slot.get(),
                Some(Class {
                    key: (
                        w.namespace.clone(),
                        w.service_account.clone(),
                        w.labels.clone(),
                        labels.clone(),
                    ),
                    members: 1,
                }),
            );
            self.class_of.insert(class_id, slot);
            self.live_classes += 1;
            delta.created.push(slot);
            (slot, labels)
        };
        let idx = self.free.pop().unwrap_or(EndpointIdx::new(self.list.len()));
        self.list.set(
            idx.get(),
            Some(Endpoint {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                service_account: w.service_account.clone(),
                labels,
                named_ports: w.named_ports.clone(),
                ip: Some(ip),
                other_ips: other_ips.into(),
                class,
            }),
        );
        self.live += 1;
        for ip in &w.ips {
            let entry = match self.by_ip.get(ip) {
                None => IpEntry::One(idx),
                Some(IpEntry::One(j)) => IpEntry::Ambiguous([*j, idx].into()),
                Some(IpEntry::Ambiguous(all)) => {
                    IpEntry::Ambiguous(all.iter().copied().chain([idx]).collect())
                }
            };
            self.by_ip.insert(*ip, entry);
        }
        self.by_name
            .insert((w.namespace.clone(), w.name.clone()), idx);
    }

    /// Takes the endpoint of a pod out of its slot and the name index.
    fn take(&mut self, ns: &str, name: &str) -> Option<(EndpointIdx, Endpoint)> {
        let key = (Arc::<str>::from(ns), Arc::<str>::from(name));
        let idx = self.by_name.remove(&key)?;
        let ep = self.list.set(idx.get(), None)?;
        Some((idx, ep))
    }

    /// Forgets a taken endpoint: frees its slot, takes its addresses out of the IP index and
    /// itself out of its class (which goes with its last endpoint).
    fn forget(&mut self, idx: EndpointIdx, ep: Endpoint, delta: &mut ClassDelta) {
        self.free.push(idx);
        self.live -= 1;
        for ip in ep.ip.iter().chain(ep.other_ips.iter()) {
            let rest: Vec<EndpointIdx> = match self.by_ip.get(ip) {
                Some(IpEntry::One(_)) | None => Vec::new(),
                Some(IpEntry::Ambiguous(all)) => {
                    all.iter().copied().filter(|&j| j != idx).collect()
                }
            };
            match rest.as_slice() {
                [] => {
                    self.by_ip.remove(ip);
                }
                [one] => {
                    self.by_ip.insert(*ip, IpEntry::One(*one));
                }
                _ => {
                    self.by_ip.insert(*ip, IpEntry::Ambiguous(rest.into()));
                }
            }
        }
        let Some(mut class) = self.classes.get(ep.class.get()).cloned() else {
            return; // a source-only pod
        };
        class.members -= 1;
        if class.members > 0 {
            self.classes.set(ep.class.get(), Some(class));
            return;
        }
        self.classes.set(ep.class.get(), None);
        self.class_of
            .remove(&(Arc::as_ptr(&class.key.2) as usize, class.key.1.clone()));
        self.free_classes.push(ep.class);
        self.live_classes -= 1;
        delta.freed.push(ep.class);
    }

    /// Live endpoints.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The endpoint in slot `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Endpoint> {
        self.list.get(i)
    }

    /// Every endpoint, with its index.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        self.list.iter().map(|(_, ep)| ep)
    }

    /// A namespace's labels (empty when the Namespace object is unknown, as in Dikastes).
    pub fn namespace_labels(&self, ns: &str) -> &Arc<LabelMap> {
        self.profiles
            .namespaces
            .get(ns)
            .unwrap_or(&self.profiles.empty)
    }

    /// The labels an endpoint has: its Pod's (with Calico's own), then those of its Namespace
    /// profile as `pcns.<k>` and of its ServiceAccount profile as `pcsa.<k>` (both including
    /// `projectcalico.org/name`), an inherited label never replacing one of the Pod's
    /// (libcalico-go/lib/backend/k8s/conversion/conversion.go NamespaceToProfile,
    /// ServiceAccountToProfile; felix/labelindex/label_inheritance_index.go: an item's own
    /// labels are looked up before its parents'). A Namespace or ServiceAccount that has no
    /// object gives no profile, so no labels.
    fn endpoint_labels(&self, pod: &Arc<LabelMap>, ns: &str, sa: &str) -> Arc<LabelMap> {
        let ns_labels = self.profiles.namespaces.get(ns);
        let sa_labels = self
            .profiles
            .service_accounts
            .get(ns)
            .and_then(|m| m.get(sa));
        if ns_labels.is_none() && sa_labels.is_none() {
            return pod.clone();
        }
        let mut labels = LabelMap::clone(pod);
        for (prefix, inherited) in [(PCNS, ns_labels), (PCSA, sa_labels)] {
            for (k, v) in inherited.into_iter().flat_map(|l| l.iter()) {
                labels
                    .entry(format!("{prefix}{k}").into())
                    .or_insert_with(|| v.clone());
            }
        }
        Arc::new(labels)
    }

    /// A service account's labels (empty when the ServiceAccount object is unknown).
    pub fn service_account_labels(&self, ns: &str, sa: &str) -> &Arc<LabelMap> {
        self.profiles
            .service_accounts
            .get(ns)
            .and_then(|m| m.get(sa))
            .unwrap_or(&self.profiles.empty)
    }

    /// Endpoint classes.
    pub fn classes(&self) -> usize {
        self.live_classes
    }

    pub(super) fn subject<'a>(&'a self, key: &'a ClassKey) -> Subject<'a> {
        Subject {
            namespace: &key.0,
            labels: &key.3,
            ns_labels: self.namespace_labels(&key.0),
            sa_labels: self.service_account_labels(&key.0, &key.1),
        }
    }
}

impl std::ops::Index<usize> for Endpoints {
    type Output = Endpoint;

    fn index(&self, i: usize) -> &Endpoint {
        &self.list[i]
    }
}

/// An endpoint class, as policy applicability sees it.
pub(super) struct Subject<'a> {
    pub(super) namespace: &'a str,
    labels: &'a LabelMap,
    ns_labels: &'a LabelMap,
    sa_labels: &'a LabelMap,
}

impl Subject<'_> {
    /// Felix's applicability (reference/dikastes-semantics.md §5): NetworkPolicy selects
    /// `selector && projectcalico.org/namespace == <ns>` (plus the SA selector); a
    /// GlobalNetworkPolicy `selector && namespaceSelector && serviceAccountSelector`.
    pub(super) fn selected_by(&self, a: &Applies) -> bool {
        a.namespace.as_deref().is_none_or(|ns| ns == self.namespace)
            && a.selector.matches(self.labels)
            && a.namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(self.ns_labels))
            && match (
                &a.service_account_selector,
                &a.service_account_selector_unlabelled,
            ) {
                (None, _) => true,
                (Some(s), None) => s.matches(self.sa_labels),
                // Calico's rewrite of `all()` in a GlobalNetworkPolicy's serviceAccountSelector:
                // `has(projectcalico.org/serviceaccount)`, on the endpoint.
                (Some(s), Some(unlabelled)) => {
                    if self.labels.contains_key(LABEL_SERVICE_ACCOUNT) {
                        s.matches(self.sa_labels)
                    } else {
                        unlabelled.matches(self.sa_labels)
                    }
                }
            }
    }
}

fn to_label_map(labels: &BTreeMap<String, String>) -> LabelMap {
    labels
        .iter()
        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
        .collect()
}

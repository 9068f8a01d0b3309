//! The one place cluster state changes: watch updates from every resource go into a single sync
//! thread, which owns the [`Store`], applies them, and publishes a new snapshot once every
//! resource has been listed.
//!
//! - A relist (the first list, or after a watch expired with `410 Gone`) is buffered from
//!   `Init` to `InitDone` and then replaces that resource's objects in one go, as kube's
//!   reflector store does: objects deleted while the watch was down disappear, and no snapshot
//!   ever holds half a list.
//! - Updates that arrive while a snapshot is being built are applied together afterwards, so a
//!   burst of changes costs one build, not one per change.
//! - An object keeps the store key it was applied under, so a change of the name a `crd`
//!   object maps to (its `projectcalico.org/metadata` annotation) or an object turning
//!   undecodable removes what it replaced instead of leaving it behind.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    events::{self, Notice, Seen},
    resource::{Item, ObjKey, Origin, Resource},
    status::Status,
};
use crate::{
    policy::store::{Key, Object, Store},
    state::Shared,
};

/// What a watcher saw.
#[derive(Debug)]
pub enum Change {
    /// A (re)list begins.
    Init,
    /// An object of the list.
    InitApply(Item),
    /// The list is complete.
    InitDone,
    /// An object was added or modified.
    Apply(Item),
    /// An object was deleted.
    Delete(ObjKey),
}

/// A change to one resource.
#[derive(Debug)]
pub struct Update {
    /// Which resource.
    pub resource: Resource,
    /// What changed.
    pub change: Change,
}

/// The store and what is needed to apply watch updates to it.
#[derive(Debug)]
pub struct WatchedStore {
    store: Store,
    /// The store key each API object was applied under, by resource.
    owners: HashMap<Resource, HashMap<ObjKey, Key>>,
    /// Lists in progress: the objects seen since `Init`.
    relists: HashMap<Resource, Vec<Item>>,
    expected: HashSet<Resource>,
    synced: HashSet<Resource>,
    dirty: bool,
    /// Policy Events on: the last notice of each policy object since the last publication.
    notices: Option<HashMap<(Resource, ObjKey), Notice>>,
    /// Objects whose last notice said invalid: only these get a notice when valid or gone
    /// (the emitter has nothing to say of the others).
    flagged: HashSet<(Resource, ObjKey)>,
}

impl WatchedStore {
    /// A sync that becomes ready once each of `expected` has been listed.
    pub fn new(expected: impl IntoIterator<Item = Resource>) -> Self {
        WatchedStore {
            store: Store::new(),
            owners: HashMap::new(),
            relists: HashMap::new(),
            expected: expected.into_iter().collect(),
            synced: HashSet::new(),
            dirty: false,
            notices: None,
            flagged: HashSet::new(),
        }
    }

    /// Collects a [`Notice`] for every policy or tier object applied, relisted or deleted
    /// ([`WatchedStore::take_notices`]), for the policy Events (`k8s::events`).
    pub fn with_notices(mut self, on: bool) -> Self {
        self.notices = on.then(HashMap::new);
        self
    }

    /// The notices collected since the last call: one per object, the latest.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.notices
            .as_mut()
            .map(|n| n.drain().map(|(_, v)| v).collect())
            .unwrap_or_default()
    }

    fn notice(&mut self, resource: Resource, key: &ObjKey, origin: Origin, state: Seen) {
        let Some(notices) = &mut self.notices else {
            return;
        };
        if !reports(resource) {
            return;
        }
        let at = (resource, key.clone());
        let send = if matches!(state, Seen::Invalid { .. }) {
            self.flagged.insert(at);
            true
        } else {
            self.flagged.remove(&at)
        };
        if send {
            notices.insert(
                (resource, key.clone()),
                Notice {
                    resource,
                    key: key.clone(),
                    origin,
                    state,
                },
            );
        }
    }

    /// Per-node mode: pods of other nodes are indexed as sources only ([`Store::set_node`]).
    pub fn with_node(mut self, node: Option<&str>) -> Self {
        self.store.set_node(node);
        self
    }

    /// Whether every resource has been listed once.
    pub fn ready(&self) -> bool {
        self.expected.iter().all(|r| self.synced.contains(r))
    }

    /// Whether anything changed since the last [`WatchedStore::take_dirty`].
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Objects held for a resource.
    pub fn count(&self, resource: Resource) -> usize {
        self.owners.get(&resource).map_or(0, HashMap::len)
    }

    /// Applies one update. Returns whether a list completed.
    pub fn handle(&mut self, update: Update) -> bool {
        let Update { resource, change } = update;
        match change {
            Change::Init => {
                self.relists.insert(resource, Vec::new());
            }
            Change::InitApply(item) => match self.relists.get_mut(&resource) {
                Some(buffer) => buffer.push(item),
                // An item without `Init` (not something kube's watcher sends): apply it.
                None => self.apply(resource, item),
            },
            Change::InitDone => {
                let listed = self.relists.remove(&resource).unwrap_or_default();
                self.replace(resource, listed);
                self.synced.insert(resource);
                return true;
            }
            Change::Apply(item) => self.apply(resource, item),
            Change::Delete(key) => {
                if let Some(old) = self.owners.entry(resource).or_default().remove(&key) {
                    self.store.delete(&old);
                    self.dirty = true;
                    self.notice(resource, &key, Origin::default(), Seen::Gone);
                }
            }
        }
        false
    }

    /// Replaces every object of `resource` with `listed`.
    fn replace(&mut self, resource: Resource, listed: Vec<Item>) {
        let listed_keys: HashSet<&ObjKey> = listed.iter().map(|i| &i.key).collect();
        let owners = self.owners.entry(resource).or_default();
        let mut gone = Vec::new();
        owners.retain(|k, old| {
            let keep = listed_keys.contains(k);
            if !keep {
                gone.push((k.clone(), old.clone()));
            }
            keep
        });
        for (key, old) in gone {
            tracing::debug!(resource = resource.plural(), object = %old, "gone after relist");
            self.store.delete(&old);
            self.notice(resource, &key, Origin::default(), Seen::Gone);
        }
        for item in listed {
            self.apply(resource, item);
        }
        self.dirty = true;
    }

    fn apply(&mut self, resource: Resource, item: Item) {
        let Item {
            key,
            origin,
            decoded,
        } = item;
        let seen = match &decoded {
            Ok(obj) => seen(obj),
            Err(_) => Seen::Gone,
        };
        self.notice(resource, &key, origin, seen);
        let owners = self.owners.entry(resource).or_default();
        let previous = owners.remove(&key);
        self.dirty = true;
        match decoded {
            Ok(obj) => {
                report(&key, &obj);
                let new = obj.key();
                if let Some(prev) = previous.filter(|p| *p != new) {
                    self.store.delete(&prev);
                }
                self.store.apply(obj);
                owners.insert(key, new);
            }
            Err(error) => {
                tracing::warn!(
                    resource = resource.plural(),
                    namespace = %key.0,
                    name = %key.1,
                    %error,
                    "object skipped"
                );
                if let Some(prev) = previous {
                    self.store.delete(&prev);
                }
            }
        }
    }
}

/// Logs what is wrong with an object as it arrives (never again on every publish).
fn report(key: &ObjKey, obj: &Object) {
    match obj {
        Object::Policy(p) => {
            if let Err(e) = &p.compiled {
                tracing::warn!(
                    kind = p.id.kind.as_str(),
                    policy = %p.id,
                    object = %format_args!("{}/{}", key.0, key.1),
                    error = %e.error,
                    selector = e.error.caret().map(tracing::field::display),
                    "invalid policy: it fails closed (every endpoint it could select is denied until it is fixed)"
                );
            }
        }
        Object::Tier { name, tier: Err(e) } => tracing::warn!(
            tier = %name,
            error = %e,
            "invalid tier: its policies fail closed"
        ),
        _ => {}
    }
}

/// Whether objects of `resource` get policy Events: every policy kind, and tiers.
fn reports(resource: Resource) -> bool {
    !matches!(
        resource,
        Resource::NetworkSets
            | Resource::GlobalNetworkSets
            | Resource::Namespaces
            | Resource::ServiceAccounts
            | Resource::Pods
            | Resource::EndpointSlices
    )
}

/// What an Event would say of a decoded policy or tier.
fn seen(obj: &Object) -> Seen {
    match obj {
        Object::Policy(p) => match &p.compiled {
            Err(e) => Seen::Invalid {
                reason: events::REASON_INVALID_POLICY,
                error: e.error.to_string(),
            },
            Ok(_) => Seen::Valid,
        },
        Object::Tier { tier: Err(e), .. } => Seen::Invalid {
            reason: events::REASON_INVALID_TIER,
            error: e.to_string(),
        },
        _ => Seen::Valid,
    }
}

/// How many updates at most are applied between two publications.
const MAX_BATCH: usize = 100_000;

/// Applies updates from `rx` until it closes; publishes into `state` once every resource has
/// been listed, then after every batch of changes. Blocking: run it on its own thread.
///
/// After each publication, the policy notices of the batch go to `events` (the policy Events
/// emitter) without waiting: when its queue is full they are dropped and counted.
pub fn run(
    mut sync: WatchedStore,
    mut rx: mpsc::Receiver<Update>,
    state: Arc<Shared>,
    status: Arc<Status>,
    events: Option<mpsc::Sender<Notice>>,
) {
    let started = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let batch_started = Instant::now();
        let mut listed = Vec::new();
        let mut n = 0;
        let mut next = Some(first);
        while let Some(update) = next {
            let resource = update.resource;
            if sync.handle(update) {
                listed.push(resource);
            }
            n += 1;
            next = if n < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        for r in &listed {
            if let Some(s) = status.of(*r) {
                s.lists.fetch_add(1, Ordering::Relaxed);
                s.synced.store(true, Ordering::Relaxed);
            }
        }
        for s in status.resources() {
            s.objects
                .store(sync.count(s.resource) as u64, Ordering::Relaxed);
        }
        if !sync.ready() {
            continue;
        }
        let first_publish = !state.is_ready();
        if !sync.take_dirty() && !first_publish {
            continue;
        }
        let build = Instant::now();
        let changes = sync.store.take_changes();
        let snap = state.publish_changes(sync.store(), &changes);
        let (build, total) = (build.elapsed(), batch_started.elapsed());
        if first_publish {
            tracing::info!(
                generation = snap.generation,
                tiers = snap.tiers.len(),
                policies = snap.policies.len(),
                invalid_policies = snap.invalid.len(),
                staged_policies = snap.staged.len(),
                endpoints = snap.endpoints.len(),
                build_ms = ms(build),
                "synced with the Kubernetes API in {} ms: serving",
                ms(started.elapsed())
            );
        } else {
            tracing::info!(
                generation = snap.generation,
                changes = n,
                policies = snap.policies.len(),
                invalid_policies = snap.invalid.len(),
                endpoints = snap.endpoints.len(),
                build_ms = ms(build),
                apply_ms = ms(total.saturating_sub(build)),
                "published state from the Kubernetes API"
            );
        }
        if let Some(tx) = &events {
            for notice in sync.take_notices() {
                if tx.try_send(notice).is_err() {
                    status.events.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::resource::{decode_dynamic, decode_meta};
    use crate::policy::{model, store::DecodeError};
    use serde_json::json;

    fn item(resource: Resource, api: &str, v: serde_json::Value) -> Item {
        decode_dynamic(
            &resource.api_resource(api),
            serde_json::from_value(v).unwrap(),
        )
    }

    fn pod(name: &str, ip: &str, app: &str) -> Item {
        item(
            Resource::Pods,
            model::CALICO_V3,
            json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": app}},
                   "spec": {"serviceAccountName": "sa"},
                   "status": {"phase": "Running", "podIP": ip}}),
        )
    }

    fn gnp(name: &str, annotation_name: Option<&str>) -> Item {
        let mut meta = json!({"name": name});
        if let Some(n) = annotation_name {
            meta["annotations"] =
                json!({"projectcalico.org/metadata": format!("{{\"name\":\"{n}\"}}")});
        }
        item(
            Resource::GlobalNetworkPolicies,
            model::CALICO_CRD_V1,
            json!({"metadata": meta, "spec": {"selector": "all()", "ingress": [{"action": "Allow"}]}}),
        )
    }

    fn up(resource: Resource, change: Change) -> Update {
        Update { resource, change }
    }

    fn list(sync: &mut WatchedStore, resource: Resource, items: Vec<Item>) {
        sync.handle(up(resource, Change::Init));
        for i in items {
            sync.handle(up(resource, Change::InitApply(i)));
        }
        sync.handle(up(resource, Change::InitDone));
    }

    fn policy_names(sync: &WatchedStore) -> Vec<String> {
        sync.store()
            .policies
            .keys()
            .map(|id| id.name.to_string())
            .collect()
    }

    #[test]
    fn ready_only_when_every_resource_listed() {
        let mut sync = WatchedStore::new([Resource::Pods, Resource::GlobalNetworkPolicies]);
        assert!(!sync.ready());
        list(&mut sync, Resource::Pods, vec![pod("a", "10.0.0.1", "x")]);
        assert!(!sync.ready());
        list(&mut sync, Resource::GlobalNetworkPolicies, vec![]);
        assert!(sync.ready());
        assert!(sync.take_dirty());
        assert!(!sync.take_dirty());
    }

    #[test]
    fn a_relist_replaces_the_resource_and_drops_what_is_gone() {
        let mut sync = WatchedStore::new([Resource::Pods]);
        list(
            &mut sync,
            Resource::Pods,
            vec![pod("a", "10.0.0.1", "x"), pod("b", "10.0.0.2", "x")],
        );
        assert_eq!(sync.store().pods.len(), 2);
        // The watch expired; meanwhile `a` was deleted, `b` relabelled and `c` added.
        sync.handle(up(Resource::Pods, Change::Init));
        sync.handle(up(
            Resource::Pods,
            Change::InitApply(pod("b", "10.0.0.2", "y")),
        ));
        sync.handle(up(
            Resource::Pods,
            Change::InitApply(pod("c", "10.0.0.3", "x")),
        ));
        // Until the list completes, the old contents stay.
        assert_eq!(sync.store().pods.len(), 2);
        assert!(sync.store().pods.contains_key(&("ns".into(), "a".into())));
        sync.handle(up(Resource::Pods, Change::InitDone));
        let pods = &sync.store().pods;
        assert_eq!(pods.len(), 2);
        assert!(!pods.contains_key(&("ns".into(), "a".into())));
        assert_eq!(
            &*pods[&("ns".to_owned(), "b".to_owned())].labels["app"],
            "y"
        );
        assert_eq!(sync.count(Resource::Pods), 2);
    }

    #[test]
    fn deletes_and_modifications() {
        let mut sync = WatchedStore::new([Resource::Pods]);
        list(&mut sync, Resource::Pods, vec![pod("a", "10.0.0.1", "x")]);
        sync.handle(up(Resource::Pods, Change::Apply(pod("a", "10.0.0.1", "z"))));
        assert_eq!(
            &*sync.store().pods[&("ns".to_owned(), "a".to_owned())].labels["app"],
            "z"
        );
        sync.handle(up(
            Resource::Pods,
            Change::Delete(("ns".into(), "a".into())),
        ));
        assert!(sync.store().pods.is_empty());
        // Deleting what is not there changes nothing.
        sync.take_dirty();
        sync.handle(up(
            Resource::Pods,
            Change::Delete(("ns".into(), "a".into())),
        ));
        assert!(!sync.take_dirty());
    }

    #[test]
    fn a_pod_that_turns_undecodable_is_removed_not_kept_stale() {
        let mut sync = WatchedStore::new([Resource::Pods]);
        list(&mut sync, Resource::Pods, vec![pod("a", "10.0.0.1", "x")]);
        let bad = pod("a", "not-an-ip", "x");
        assert!(matches!(bad.decoded, Err(DecodeError::Invalid { .. })));
        sync.handle(up(Resource::Pods, Change::Apply(bad)));
        assert!(sync.store().pods.is_empty());
    }

    #[test]
    fn a_renamed_crd_policy_leaves_nothing_behind() {
        let mut sync = WatchedStore::new([Resource::GlobalNetworkPolicies]);
        list(
            &mut sync,
            Resource::GlobalNetworkPolicies,
            vec![gnp("default.p", None)],
        );
        assert_eq!(policy_names(&sync), ["p"]);
        // The same CR now carries its v3 name in the metadata annotation.
        sync.handle(up(
            Resource::GlobalNetworkPolicies,
            Change::Apply(gnp("default.p", Some("renamed"))),
        ));
        assert_eq!(policy_names(&sync), ["renamed"]);
        sync.handle(up(
            Resource::GlobalNetworkPolicies,
            Change::Delete((String::new(), "default.p".into())),
        ));
        assert!(policy_names(&sync).is_empty());
    }

    fn bad_gnp(name: &str, uid: &str, generation: i64, selector: &str) -> Item {
        item(
            Resource::GlobalNetworkPolicies,
            model::CALICO_V3,
            json!({"metadata": {"name": name, "uid": uid, "generation": generation,
                                "resourceVersion": format!("{}", generation * 7)},
                   "spec": {"selector": selector, "ingress": [{"action": "Allow"}]}}),
        )
    }

    #[test]
    fn notices_name_invalid_policies_once_per_batch_and_relists_repeat_them() {
        use crate::k8s::events::Dedupe;
        let mut sync =
            WatchedStore::new([Resource::GlobalNetworkPolicies, Resource::Pods]).with_notices(true);
        let bad = bad_gnp("bad", "u-1", 1, "app == ");
        list(
            &mut sync,
            Resource::GlobalNetworkPolicies,
            vec![bad.clone(), gnp("ok", None)],
        );
        list(&mut sync, Resource::Pods, vec![pod("a", "10.0.0.1", "x")]);
        let notices = sync.take_notices();
        assert_eq!(
            notices.len(),
            1,
            "valid policies and pods say nothing: {notices:?}"
        );
        let n = &notices[0];
        assert_eq!(n.key, (String::new(), "bad".to_owned()));
        assert_eq!(n.origin.uid, "u-1");
        let Seen::Invalid { reason, error } = &n.state else {
            panic!("{n:?}")
        };
        assert_eq!(*reason, events::REASON_INVALID_POLICY);
        assert!(
            error.starts_with("spec.selector: invalid selector `app == `"),
            "{error}"
        );
        let mut dedupe = Dedupe::new();
        assert!(dedupe.observe(n).is_some());
        // An unrelated change: no notice.
        sync.handle(up(Resource::Pods, Change::Apply(pod("a", "10.0.0.1", "y"))));
        assert!(sync.take_notices().is_empty());
        // A relist sees the object again: the same notice, which the emitter drops.
        list(
            &mut sync,
            Resource::GlobalNetworkPolicies,
            vec![bad, gnp("ok", None)],
        );
        let again = sync.take_notices();
        assert_eq!(again, notices);
        assert_eq!(dedupe.observe(&again[0]), None);
        // Fixed: a Valid notice (the emitter says so once); then deleted: nothing more.
        let fixed = bad_gnp("bad", "u-1", 2, "app == 'x'");
        sync.handle(up(Resource::GlobalNetworkPolicies, Change::Apply(fixed)));
        let valid = sync.take_notices();
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].state, Seen::Valid);
        assert!(dedupe.observe(&valid[0]).is_some());
        sync.handle(up(
            Resource::GlobalNetworkPolicies,
            Change::Delete((String::new(), "bad".into())),
        ));
        assert!(
            sync.take_notices().is_empty(),
            "it was valid: nothing to forget"
        );
        // Off: nothing is collected.
        let mut off = WatchedStore::new([Resource::GlobalNetworkPolicies]);
        list(
            &mut off,
            Resource::GlobalNetworkPolicies,
            vec![bad_gnp("b", "u", 1, "(")],
        );
        assert!(off.take_notices().is_empty());
    }

    #[test]
    fn the_same_name_in_two_resources_are_two_objects() {
        let mut sync = WatchedStore::new([Resource::Namespaces, Resource::ServiceAccounts]);
        let meta = kube::core::ObjectMeta {
            name: Some("shop".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        };
        list(
            &mut sync,
            Resource::Namespaces,
            vec![decode_meta(
                Resource::Namespaces,
                &kube::core::ObjectMeta {
                    namespace: None,
                    ..meta.clone()
                },
            )],
        );
        list(
            &mut sync,
            Resource::ServiceAccounts,
            vec![decode_meta(Resource::ServiceAccounts, &meta)],
        );
        sync.handle(up(
            Resource::ServiceAccounts,
            Change::Delete(("shop".into(), "shop".into())),
        ));
        assert_eq!(sync.store().namespaces.len(), 1);
        assert!(sync.store().service_accounts.is_empty());
    }
}

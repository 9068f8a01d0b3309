//! Policy status where people look: a Kubernetes Event on every policy (or tier) that is
//! invalid and fails closed, so that `kubectl describe` on the object says so, not only the
//! server's log and metrics.
//!
//! ```text
//!  sync thread ── after each publish: one Notice per policy object applied (invalid, valid
//!                 again, gone), try_send into a bounded channel (never blocks; full: dropped,
//!                 counted)
//!  emitter task ─ Dedupe (object + version + message: once, also across relists; and across
//!                 restarts, because the Event's name is derived from them and a second create
//!                 answers 409) → TokenBucket (a bounded budget; over it: dropped, counted) →
//!                 POST events.k8s.io/v1 Event
//! ```
//!
//! `events.k8s.io/v1` rather than `core/v1`: it is the API Kubernetes' own components write
//! with today (`regarding`, `note`, `reportingController`, `action`), and the API server
//! stores both in one place, so `kubectl describe` (which reads `core/v1` with a field
//! selector on `involvedObject`) shows it all the same. A refused create (403: the ClusterRole
//! lacks `create` on `events`) is logged once and counted; it never affects serving.
//!
//! Imports only [`super::resource`] and [`super::status`]; [`super::sync`] imports this.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{Api, Client, api::PostParams, core::ApiResource};
use tokio::sync::mpsc;

use super::{
    resource::{ObjKey, Origin, Resource},
    status::Status,
};
use crate::policy::selector::Selector;

/// The Event reason of a policy that fails closed.
pub const REASON_INVALID_POLICY: &str = "InvalidPolicy";
/// The Event reason of a tier that fails closed (its policies with it).
pub const REASON_INVALID_TIER: &str = "InvalidTier";
/// The Event reason of a policy or tier that was invalid and is valid again.
pub const REASON_VALID: &str = "PolicyValid";
/// `reportingController` of every Event.
pub const CONTROLLER: &str = "alp-authz";
/// How many notices may wait for the emitter; more are dropped (and counted).
pub const QUEUE: usize = 1024;
/// The budget: this many Events at once…
pub const BURST: u32 = 50;
/// …then this many per second.
pub const PER_SECOND: f64 = 1.0;
/// The longest `note` the API accepts (events.k8s.io/v1 validation: 1 kB).
const NOTE_MAX: usize = 1024;
/// Objects whose last Event is remembered (one entry each, while invalid).
const TRACKED_MAX: usize = 65_536;
/// How long one create may take before it counts as failed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the sync thread saw of one policy or tier object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its resource.
    pub resource: Resource,
    /// Namespace (empty: cluster-scoped) and name in the API.
    pub key: ObjKey,
    /// Its uid and version.
    pub origin: Origin,
    /// What it is now.
    pub state: Seen,
}

/// The state of an object, as an Event would tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It fails closed.
    Invalid {
        /// [`REASON_INVALID_POLICY`] or [`REASON_INVALID_TIER`].
        reason: &'static str,
        /// The compile or decode error (the field path first).
        error: String,
    },
    /// It compiles.
    Valid,
    /// It was deleted.
    Gone,
}

/// An Event to create: what [`Dedupe`] lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// `Warning` or `Normal`.
    pub type_: &'static str,
    /// The reason.
    pub reason: &'static str,
    /// `action`: what alp-authz does about it.
    pub action: &'static str,
    /// The message (`note`), at most 1 kB.
    pub note: String,
    /// A digest of object, version, reason and note: the Event's name ends with it, so the
    /// same Event created twice (another process, or after a restart) is refused with 409.
    pub digest: u64,
}

/// Remembers the last Event of each object, so that one version with one message yields one
/// Event, however often the object is seen again (relists, resyncs, unrelated changes).
#[derive(Debug, Default)]
pub struct Dedupe {
    warned: HashMap<(Resource, ObjKey), (String, u64)>,
}

impl Dedupe {
    /// A dedupe that remembers nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Event this notice calls for, if any: a Warning for a version and message not
    /// reported yet; a Normal when an object reported invalid is valid again; else nothing.
    pub fn observe(&mut self, n: &Notice) -> Option<Planned> {
        let at = (n.resource, n.key.clone());
        match &n.state {
            Seen::Invalid { reason, error } => {
                let note = invalid_note(n.resource, reason, error);
                let digest = digest(&n.origin, reason, &note);
                let seen = (n.origin.uid.clone(), digest);
                if self.warned.get(&at) == Some(&seen) {
                    return None;
                }
                if self.warned.len() >= TRACKED_MAX && !self.warned.contains_key(&at) {
                    // Bounded: forget one; if it is seen again, the API answers 409.
                    if let Some(k) = self.warned.keys().next().cloned() {
                        self.warned.remove(&k);
                    }
                }
                self.warned.insert(at, seen);
                Some(Planned {
                    type_: "Warning",
                    reason,
                    action: if staged(n.resource) {
                        "Ignore"
                    } else {
                        "FailClosed"
                    },
                    note,
                    digest,
                })
            }
            Seen::Valid => {
                let (uid, _) = self.warned.remove(&at)?;
                if uid != n.origin.uid {
                    return None; // another object of the same name
                }
                let note = format!(
                    "valid again: enforced as written (no longer failing closed) at {}",
                    n.origin.version()
                );
                Some(Planned {
                    type_: "Normal",
                    reason: REASON_VALID,
                    action: "Enforce",
                    digest: digest(&n.origin, REASON_VALID, &note),
                    note,
                })
            }
            Seen::Gone => {
                self.warned.remove(&at);
                None
            }
        }
    }

    /// Forgets what was planned for an object whose Event could not be created (refused,
    /// failed, over budget): the next time it is seen, it is tried again.
    pub fn forget(&mut self, resource: Resource, key: &ObjKey) {
        self.warned.remove(&(resource, key.clone()));
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.warned.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.warned.is_empty()
    }
}

/// A token bucket: `burst` at once, then `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, per_second: f64, now: Instant) -> Self {
        TokenBucket {
            burst: f64::from(burst),
            per_second: per_second.max(0.0),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The message of an invalid object: that it fails closed, the error (field path and what is
/// wrong), and for a selector that does not parse, the selector with the parser's caret under
/// the fault when the whole fits in 1 kB.
pub fn invalid_note(resource: Resource, reason: &str, error: &str) -> String {
    let head = if reason == REASON_INVALID_TIER {
        "invalid tier: its policies fail closed (every endpoint they could select is denied until it is fixed)"
    } else if staged(resource) {
        "invalid staged policy: ignored (it is not enforced, and its would-be verdicts are not counted) until it is fixed"
    } else {
        "invalid policy: it fails closed (every endpoint it could select is denied until it is fixed)"
    };
    let plain = format!("{head}: {error}");
    if let Some(caret) = selector_caret(error) {
        let with = format!("{plain}\n{caret}");
        if with.len() <= NOTE_MAX {
            return with;
        }
    }
    truncate(plain, NOTE_MAX)
}

/// Whether objects of `resource` are staged (never enforced: an invalid one is ignored).
fn staged(resource: Resource) -> bool {
    matches!(
        resource,
        Resource::StagedGlobalNetworkPolicies
            | Resource::StagedNetworkPolicies
            | Resource::StagedKubernetesNetworkPolicies
    )
}

/// The selector of an `invalid selector `…`: …` error, with the caret the selector parser
/// computes. Only when parsing the selector again gives exactly the error in the message.
pub fn selector_caret(error: &str) -> Option<String> {
    const MARK: &str = "invalid selector `";
    let rest = &error[error.find(MARK)? + MARK.len()..];
    rest.match_indices("`: ").find_map(|(i, _)| {
        let (selector, tail) = (&rest[..i], &rest[i + 3..]);
        match Selector::parse(selector) {
            Err(e) if e.to_string() == tail => Some(e.render(selector)),
            _ => None,
        }
    })
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// FNV-1a (64 bits): stable across builds and platforms, unlike `std`'s hasher.
fn digest(origin: &Origin, reason: &str, note: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [origin.uid.as_str(), &origin.version(), reason, note] {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The Event's name: the object's name (shortened to keep within 253 characters) and the
/// digest.
pub fn event_name(object: &str, digest: u64) -> String {
    let mut base: String = object
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(200)
        .collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    while base.starts_with(['-', '.']) {
        base.remove(0);
    }
    if base.is_empty() {
        base.push_str("policy");
    }
    format!("{base}.{digest:016x}")
}

/// The Event for `planned` on the object of `n` (of API resource `api`).
pub fn event(n: &Notice, api: &ApiResource, planned: &Planned, instance: &str) -> Event {
    let (ns, name) = &n.key;
    // Events live in a namespace: the object's, or `default` for cluster-scoped objects (as
    // Kubernetes' own components do for Nodes; `kubectl describe` finds them there).
    let event_ns = if ns.is_empty() { "default" } else { ns };
    Event {
        metadata: kube::core::ObjectMeta {
            name: Some(event_name(name, planned.digest)),
            namespace: Some(event_ns.to_owned()),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        type_: Some(planned.type_.to_owned()),
        reason: Some(planned.reason.to_owned()),
        action: Some(planned.action.to_owned()),
        note: Some(planned.note.clone()),
        reporting_controller: Some(CONTROLLER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some(api.api_version.clone()),
            kind: Some(api.kind.clone()),
            namespace: (!ns.is_empty()).then(|| ns.clone()),
            name: Some(name.clone()),
            uid: (!n.origin.uid.is_empty()).then(|| n.origin.uid.clone()),
            resource_version: (!n.origin.resource_version.is_empty())
                .then(|| n.origin.resource_version.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `reportingInstance`: this process (the pod's name in a cluster, where `HOSTNAME` is it).
pub fn instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    truncate(format!("{CONTROLLER}-{host}"), 128)
}

/// Creates the Events the notices from `rx` call for, until the channel closes. `apis`: the
/// API resource of each watched resource (for `regarding`).
pub async fn run(
    client: Client,
    apis: HashMap<Resource, ApiResource>,
    mut rx: mpsc::Receiver<Notice>,
    status: Arc<Status>,
) {
    let instance = instance();
    let counters = &status.events;
    let mut dedupe = Dedupe::new();
    let mut bucket = TokenBucket::new(BURST, PER_SECOND, Instant::now());
    let mut refused_said = false;
    while let Some(n) = rx.recv().await {
        let Some(planned) = dedupe.observe(&n) else {
            if matches!(n.state, Seen::Invalid { .. }) {
                counters.deduplicated.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        let Some(api) = apis.get(&n.resource) else {
            continue;
        };
        if !bucket.try_take(Instant::now()) {
            counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(object = %format_args!("{}/{}", n.key.0, n.key.1), "policy event over budget: dropped");
            dedupe.forget(n.resource, &n.key);
            continue;
        }
        let ev = event(&n, api, &planned, &instance);
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let created =
            tokio::time::timeout(CREATE_TIMEOUT, events.create(&PostParams::default(), &ev)).await;
        let object = format!("{} {}/{}", api.kind, n.key.0, n.key.1);
        match created {
            Ok(Ok(_)) => {
                counters.created.fetch_add(1, Ordering::Relaxed);
                refused_said = false;
                tracing::debug!(%object, reason = planned.reason, "policy event created");
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                // Created before with this very name: by an earlier run of this process, or
                // by another replica.
                counters.already_exists.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 403 => {
                counters.forbidden.fetch_add(1, Ordering::Relaxed);
                dedupe.forget(n.resource, &n.key);
                if !std::mem::replace(&mut refused_said, true) {
                    tracing::warn!(
                        %object,
                        error = %s.message,
                        "cannot create Kubernetes Events (403 Forbidden): grant `create` on `events.k8s.io` `events` \
                         (istio-config/rbac.yaml), or turn them off with --no-policy-events; serving is not affected"
                    );
                } else {
                    tracing::debug!(%object, "policy event refused again (403)");
                }
            }
            Ok(Err(e)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                dedupe.forget(n.resource, &n.key);
                tracing::warn!(%object, error = %e, "cannot create a Kubernetes Event on a policy object; serving is not affected");
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                dedupe.forget(n.resource, &n.key);
                tracing::warn!(%object, "creating a Kubernetes Event timed out after {CREATE_TIMEOUT:?}; serving is not affected");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uid: &str, generation: i64) -> Origin {
        Origin {
            uid: uid.into(),
            resource_version: format!("{}", generation * 10),
            generation: Some(generation),
        }
    }

    fn invalid(name: &str, o: Origin, error: &str) -> Notice {
        Notice {
            resource: Resource::GlobalNetworkPolicies,
            key: (String::new(), name.into()),
            origin: o,
            state: Seen::Invalid {
                reason: REASON_INVALID_POLICY,
                error: error.into(),
            },
        }
    }

    const BAD: &str =
        "spec.selector: invalid selector `app == `: expected string literal at column 8";

    #[test]
    fn one_event_per_version_and_message_however_often_seen() {
        let mut d = Dedupe::new();
        let n = invalid("default.bad", origin("u1", 1), BAD);
        let first = d.observe(&n).expect("a first sighting is reported");
        assert_eq!((first.type_, first.reason), ("Warning", "InvalidPolicy"));
        // Relists and resyncs see the same object again: nothing.
        for _ in 0..5 {
            assert_eq!(d.observe(&n), None);
        }
        // A new version with the same message: a new Event (another name).
        let n2 = invalid("default.bad", origin("u1", 2), BAD);
        let second = d.observe(&n2).expect("a new generation is reported");
        assert_ne!(second.digest, first.digest);
        assert_eq!(d.observe(&n2), None);
        // Another message for the same version: reported.
        let n3 = invalid(
            "default.bad",
            origin("u1", 2),
            "spec.order: order must be a finite number",
        );
        assert!(d.observe(&n3).is_some());
        // The same object recreated (another uid), same message: reported.
        let n4 = invalid("default.bad", origin("u2", 1), BAD);
        assert!(d.observe(&n4).is_some());
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn valid_again_is_reported_once_and_only_after_a_warning() {
        let mut d = Dedupe::new();
        let valid = Notice {
            state: Seen::Valid,
            ..invalid("default.p", origin("u1", 3), BAD)
        };
        assert_eq!(
            d.observe(&valid),
            None,
            "never reported invalid: nothing to say"
        );
        d.observe(&invalid("default.p", origin("u1", 2), BAD))
            .unwrap();
        let normal = d.observe(&valid).expect("valid again");
        assert_eq!((normal.type_, normal.reason), ("Normal", "PolicyValid"));
        assert_eq!(d.observe(&valid), None);
        assert!(d.is_empty());
        // Deleted while invalid: forgotten, nothing reported.
        d.observe(&invalid("default.p", origin("u1", 4), BAD))
            .unwrap();
        let gone = Notice {
            state: Seen::Gone,
            ..invalid("default.p", origin("u1", 4), BAD)
        };
        assert_eq!(d.observe(&gone), None);
        assert!(d.is_empty());
    }

    #[test]
    fn an_invalid_staged_policy_is_said_to_be_ignored() {
        let n = Notice {
            resource: Resource::StagedNetworkPolicies,
            key: ("shop".into(), "default.try".into()),
            ..invalid("x", origin("u1", 1), BAD)
        };
        let p = Dedupe::new().observe(&n).unwrap();
        assert_eq!((p.type_, p.action), ("Warning", "Ignore"));
        assert!(
            p.note.starts_with("invalid staged policy: ignored"),
            "{}",
            p.note
        );
    }

    #[test]
    fn forgotten_after_a_failure_is_tried_again() {
        let mut d = Dedupe::new();
        let n = invalid("default.bad", origin("u1", 1), BAD);
        assert!(d.observe(&n).is_some());
        d.forget(n.resource, &n.key);
        assert!(d.observe(&n).is_some());
    }

    #[test]
    fn the_digest_and_name_are_stable() {
        let mut d = Dedupe::new();
        let a = d
            .observe(&invalid("default.bad", origin("u1", 1), BAD))
            .unwrap();
        let b = Dedupe::new()
            .observe(&invalid("default.bad", origin("u1", 1), BAD))
            .unwrap();
        assert_eq!(a.digest, b.digest, "another process names it the same");
        let name = event_name("default.bad", a.digest);
        assert!(name.starts_with("default.bad."), "{name}");
        assert_eq!(name.len(), "default.bad.".len() + 16);
        let long = event_name(&format!("{}-", "a".repeat(300)), 1);
        assert!(
            long.len() <= 253 && long.ends_with(".0000000000000001"),
            "{long}"
        );
        assert!(!long.contains("-."), "{long}");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 2.0, t0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0), "the burst is spent");
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(b.try_take(t0 + Duration::from_millis(500)), "2 per second");
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        // A long pause refills to the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 3);
        // Time going backwards (never with Instant, but) takes nothing.
        assert!(!b.try_take(t0));
    }

    #[test]
    fn the_note_names_the_field_and_shows_the_caret() {
        let note = invalid_note(Resource::GlobalNetworkPolicies, REASON_INVALID_POLICY, BAD);
        assert_eq!(
            note,
            "invalid policy: it fails closed (every endpoint it could select is denied until it is fixed): \
             spec.selector: invalid selector `app == `: expected string literal at column 8\n\
             app == \n       ^ expected string literal"
        );
        // Not a selector error: no caret.
        let note = invalid_note(
            Resource::NetworkPolicies,
            REASON_INVALID_POLICY,
            "spec.ingress[0].action: unknown action `Alow`",
        );
        assert!(
            note.ends_with("spec.ingress[0].action: unknown action `Alow`"),
            "{note}"
        );
        // A message that does not match what the parser says: no caret, never a wrong one.
        assert_eq!(
            selector_caret("spec.selector: invalid selector `app == `: something else"),
            None
        );
        // Too long with the caret: the error alone, cut at 1 kB.
        let huge = format!(
            "spec.selector: invalid selector `{}==`: x",
            "a".repeat(2000)
        );
        let note = invalid_note(
            Resource::GlobalNetworkPolicies,
            REASON_INVALID_POLICY,
            &huge,
        );
        assert!(note.len() <= NOTE_MAX && note.ends_with('…') && !note.contains('^'));
    }
}

//! What the metrics and logs say about the Kubernetes source: per watched resource, whether it
//! synced, its events, errors and relists; for the API server, whether it answers and when it
//! last did. Written by the watchers and the sync thread, read by the metrics scrape.

use std::{
    sync::{
        Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::resource::Resource;
use crate::telemetry::Series;

/// The state of the Kubernetes source.
#[derive(Debug, Default)]
pub struct Status {
    resources: OnceLock<Vec<ResourceStatus>>,
    calico_api: OnceLock<String>,
    apiserver: Mutex<ApiServer>,
    /// What became of the policy Events (`k8s::events`).
    pub events: EventCounters,
}

/// Counters of the policy Events (`k8s::events`).
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events created.
    pub created: AtomicU64,
    /// Creates answered 409: the same Event existed (an earlier run, another replica).
    pub already_exists: AtomicU64,
    /// Creates refused with 403 (no RBAC rule for `events`).
    pub forbidden: AtomicU64,
    /// Creates that failed otherwise (or timed out).
    pub failed: AtomicU64,
    /// Sightings of an invalid object already reported (relists, resyncs).
    pub deduplicated: AtomicU64,
    /// Events dropped because the budget was spent.
    pub rate_limited: AtomicU64,
    /// Notices dropped because the emitter's queue was full.
    pub queue_full: AtomicU64,
}

#[derive(Debug, Default)]
struct ApiServer {
    reachable: bool,
    last_contact: Option<Instant>,
    unreachable_since: Option<Instant>,
}

/// Counters of one watched resource.
#[derive(Debug)]
pub struct ResourceStatus {
    /// Which resource.
    pub resource: Resource,
    /// `plural.group` (`pods` for the core group), as in `kubectl get`.
    pub label: String,
    /// Listed completely at least once.
    pub synced: AtomicBool,
    /// Whether the last watch attempt failed (cleared by the next event).
    pub failing: AtomicBool,
    /// Watch events received (list items included).
    pub events: AtomicU64,
    /// Watch and list errors.
    pub errors: AtomicU64,
    /// Complete lists (the first one and every relist).
    pub lists: AtomicU64,
    /// Objects held.
    pub objects: AtomicU64,
}

impl Status {
    /// A status with no resources yet (before discovery).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the watched resources, once, after discovery.
    pub fn set_resources(&self, calico_api: Option<&str>, resources: Vec<(Resource, String)>) {
        let _ = self.calico_api.set(calico_api.unwrap_or("").to_owned());
        let _ = self.resources.set(
            resources
                .into_iter()
                .map(|(resource, label)| ResourceStatus {
                    resource,
                    label,
                    synced: AtomicBool::new(false),
                    failing: AtomicBool::new(false),
                    events: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    lists: AtomicU64::new(0),
                    objects: AtomicU64::new(0),
                })
                .collect(),
        );
    }

    /// The watched resources (empty before discovery).
    pub fn resources(&self) -> &[ResourceStatus] {
        self.resources.get().map_or(&[], Vec::as_slice)
    }

    /// The Calico API version in use (empty: none found, or before discovery).
    pub fn calico_api(&self) -> &str {
        self.calico_api.get().map_or("", String::as_str)
    }

    /// The counters of one resource.
    pub fn of(&self, resource: Resource) -> Option<&ResourceStatus> {
        self.resources().iter().find(|r| r.resource == resource)
    }

    /// Records an answer from the API server. Returns how long it had been unreachable, when
    /// this answer ends an outage.
    pub fn contact(&self) -> Option<Duration> {
        let mut a = lock(&self.apiserver);
        a.reachable = true;
        a.last_contact = Some(Instant::now());
        a.unreachable_since.take().map(|t| t.elapsed())
    }

    /// Records a failed attempt to reach the API server. Returns whether this starts an outage.
    pub fn unreachable(&self) -> bool {
        let mut a = lock(&self.apiserver);
        a.reachable = false;
        if a.unreachable_since.is_none() {
            a.unreachable_since = Some(Instant::now());
            return true;
        }
        false
    }

    /// Whether the API server answered the last probe.
    pub fn reachable(&self) -> bool {
        lock(&self.apiserver).reachable
    }

    /// Time since the API server last answered (`None`: never).
    pub fn last_contact_age(&self) -> Option<Duration> {
        lock(&self.apiserver).last_contact.map(|t| t.elapsed())
    }

    /// Time since the outage began, while the API server is unreachable.
    pub fn unreachable_for(&self) -> Option<Duration> {
        lock(&self.apiserver).unreachable_since.map(|t| t.elapsed())
    }
}

impl ResourceStatus {
    /// Counts one event.
    pub fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Kubernetes source's series: per watched resource, and for the API server.
impl Series for Status {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let k = self;
        type Read = fn(&ResourceStatus) -> u64;
        let families: [(&str, &str, MetricType, Read); 5] = [
            (
                "alp_authz_kubernetes_watch_synced",
                "1 once the resource has been listed completely (the state is served only when every resource has).",
                MetricType::Gauge,
                |r| u64::from(r.synced.load(Ordering::Relaxed)),
            ),
            (
                "alp_authz_kubernetes_watch_events",
                "Watch events received, list items included.",
                MetricType::Counter,
                |r| r.events.load(Ordering::Relaxed),
            ),
            (
                "alp_authz_kubernetes_watch_errors",
                "Failed list and watch attempts (retried with backoff).",
                MetricType::Counter,
                |r| r.errors.load(Ordering::Relaxed),
            ),
            (
                "alp_authz_kubernetes_watch_lists",
                "Complete lists: the first one, and relists after a watch expired (410 Gone).",
                MetricType::Counter,
                |r| r.lists.load(Ordering::Relaxed),
            ),
            (
                "alp_authz_kubernetes_objects",
                "Objects held, by resource.",
                MetricType::Gauge,
                |r| r.objects.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, kind, read) in families {
            let mut m = encoder.encode_descriptor(name, help, None, kind)?;
            for r in k.resources() {
                let labels = [("resource", r.label.as_str())];
                let v = read(r);
                match kind {
                    MetricType::Counter => {
                        ConstCounter::new(v).encode(m.encode_family(&labels)?)?
                    }
                    _ => ConstGauge::new(v as i64).encode(m.encode_family(&labels)?)?,
                }
            }
        }
        ConstGauge::new(i64::from(k.reachable())).encode(encoder.encode_descriptor(
            "alp_authz_kubernetes_apiserver_up",
            "1 when the API server answered the last probe.",
            None,
            MetricType::Gauge,
        )?)?;
        let age = k.last_contact_age().map_or(-1.0, |a| a.as_secs_f64());
        ConstGauge::new(age).encode(encoder.encode_descriptor(
        "alp_authz_kubernetes_apiserver_last_contact_age_seconds",
        "Seconds since the API server last answered (-1: never): how stale the served state may be.",
        None,
        MetricType::Gauge,
    )?)?;
        let e = &k.events;
        let mut m = encoder.encode_descriptor(
            "alp_authz_policy_events",
            "Kubernetes Events on invalid policies, by the API server's answer (already_exists: created before, e.g. by an earlier run; forbidden: no RBAC rule for events).",
            None,
            MetricType::Counter,
        )?;
        for (result, v) in [
            ("created", &e.created),
            ("already_exists", &e.already_exists),
            ("forbidden", &e.forbidden),
            ("failed", &e.failed),
        ] {
            ConstCounter::new(v.load(Ordering::Relaxed))
                .encode(m.encode_family(&[("result", result)])?)?;
        }
        let mut m = encoder.encode_descriptor(
            "alp_authz_policy_events_dropped",
            "Policy Events not sent: over the rate budget, or the emitter's queue full.",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in [
            ("rate_limited", &e.rate_limited),
            ("queue_full", &e.queue_full),
        ] {
            ConstCounter::new(v.load(Ordering::Relaxed))
                .encode(m.encode_family(&[("reason", reason)])?)?;
        }
        ConstCounter::new(e.deduplicated.load(Ordering::Relaxed)).encode(
            encoder.encode_descriptor(
                "alp_authz_policy_events_deduplicated",
                "Sightings of an invalid policy already reported by an Event (relists, resyncs): not sent again.",
                None,
                MetricType::Counter,
            )?,
        )?;
        ConstGauge::new(1).encode(
            encoder
                .encode_descriptor(
                    "alp_authz_kubernetes_calico_api",
                    "1, labelled with the Calico API in use (empty: none served).",
                    None,
                    MetricType::Gauge,
                )?
                .encode_family(&[("api_version", k.calico_api())])?,
        )?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

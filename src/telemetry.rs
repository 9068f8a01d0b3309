//! Metrics: lock-free counting on the hot path, Prometheus text on a separate HTTP port.
//!
//! Decisions are counted in atomics that live in the snapshot they were decided on
//! (`policy::snapshot::Counters`), latency in a fixed-bucket atomic histogram. A scrape sums the
//! current snapshot, the retired ones still held by requests, and the totals folded from retired
//! snapshots nobody holds any more, so counters stay monotonic across reloads and `Check` never
//! takes a lock. Encoding uses the `prometheus-client` crate through a custom [`Collector`].

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{policy::snapshot::Snapshot, state::Shared};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3,
    1.0,
];

/// Key of a folded decision count: (decision, cause, tier, policy).
type DecisionKey = (&'static str, &'static str, String, String);

/// Everything the `/metrics` endpoint reports.
#[derive(Debug)]
pub struct Metrics {
    state: Arc<Shared>,
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
    /// Decision log events dropped because the log could not keep up.
    pub decision_log_dropped: Arc<AtomicU64>,
    /// Explain calls answered (`--explain-listen`).
    pub explain_requests: AtomicU64,
    folded: Mutex<Folded>,
    kubernetes: std::sync::OnceLock<Arc<crate::k8s::status::Status>>,
}

/// Counts from snapshots that are gone.
#[derive(Debug, Default, Clone)]
struct Folded {
    decisions: BTreeMap<DecisionKey, u64>,
    /// (policy the staged set decided by, or "" for no rule) → disagreements.
    staged: BTreeMap<String, u64>,
}

impl Metrics {
    /// Metrics over `state`.
    pub fn new(state: Arc<Shared>) -> Arc<Self> {
        let metrics = Arc::new(Metrics {
            state,
            latency_buckets: Default::default(),
            latency_sum_ns: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            decision_log_dropped: Arc::new(AtomicU64::new(0)),
            explain_requests: AtomicU64::new(0),
            folded: Mutex::new(Folded::default()),
            kubernetes: std::sync::OnceLock::new(),
        });
        let folder: Arc<dyn crate::state::Fold> = metrics.clone();
        metrics.state.set_folder(Arc::downgrade(&folder));
        metrics
    }

    /// Also reports the Kubernetes source: watches and API server reachability.
    pub fn set_kubernetes(&self, status: Arc<crate::k8s::status::Status>) {
        let _ = self.kubernetes.set(status);
    }

    /// Records how long one Check took. Lock-free.
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the histogram bucket holding quantile `q` of Check durations
    /// (`None` before any Check, infinity past the last bucket).
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    /// Decision counts: folded totals plus every snapshot still alive.
    fn decision_counts(&self) -> Folded {
        use crate::state::Fold as _;
        let (held, current) = self.state.sweep_retired(|s| self.fold(s));
        let mut out = self
            .folded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for snap in held.iter().chain([&current]) {
            add_counts(snap, &mut out);
        }
        out
    }

    /// Renders the Prometheus text exposition.
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl crate::state::Fold for Metrics {
    fn fold(&self, snap: &Snapshot) {
        let mut folded = self.folded.lock().unwrap_or_else(|e| e.into_inner());
        add_counts(snap, &mut folded);
    }
}

fn add_counts(snap: &Snapshot, folded: &mut Folded) {
    if let Some(shadow) = &snap.shadow {
        let d = &shadow.counters.disagreements;
        for (i, v) in d.iter().enumerate() {
            let v = v.load(Ordering::Relaxed);
            if v > 0 {
                let policy = shadow.policies.get(i).map(|p| {
                    let staged = if p.id.kind.is_staged() { "staged:" } else { "" };
                    format!("{staged}{}", p.id)
                });
                *folded.staged.entry(policy.unwrap_or_default()).or_default() += v;
            }
        }
    }
    let out = &mut folded.decisions;
    let c = &snap.counters;
    let mut add = |key: DecisionKey, v: &AtomicU64| {
        let v = v.load(Ordering::Relaxed);
        if v > 0 {
            *out.entry(key).or_default() += v;
        }
    };
    for (i, [allow, deny]) in c.rule.iter().enumerate() {
        if allow.load(Ordering::Relaxed) == 0 && deny.load(Ordering::Relaxed) == 0 {
            continue; // most policies decide nothing: no names to build
        }
        let (tier, policy) = (
            snap.tier_of(i as u32).name.to_string(),
            snap.policies[i].id.to_string(),
        );
        add(("allow", "rule", tier.clone(), policy.clone()), allow);
        add(("deny", "rule", tier, policy), deny);
    }
    for (i, v) in c.end_of_tier.iter().enumerate() {
        add(
            (
                "deny",
                "end_of_tier",
                snap.tiers[i].name.to_string(),
                String::new(),
            ),
            v,
        );
    }
    for (i, v) in c.passed.iter().enumerate() {
        add(
            (
                "allow",
                "passed_all_tiers",
                snap.tiers[i].name.to_string(),
                String::new(),
            ),
            v,
        );
    }
    add(
        ("allow", "no_policy", String::new(), String::new()),
        &c.no_policy,
    );
    for (cause, v) in [
        "unknown_destination",
        "identity_rejected",
        "identity_mismatch",
    ]
    .iter()
    .zip(&c.fail_closed)
    {
        add(("deny", cause, String::new(), String::new()), v);
    }
    for (i, v) in c.invalid.iter().enumerate() {
        add(
            (
                "deny",
                "invalid_policy",
                String::new(),
                snap.invalid[i].id.to_string(),
            ),
            v,
        );
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let folded = self.decision_counts();
        let counts = &folded.decisions;
        let mut m = encoder.encode_descriptor(
            "alp_authz_checks",
            "Checks answered, by decision, cause, tier and policy.",
            None,
            MetricType::Counter,
        )?;
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for ((decision, cause, tier, policy), v) in counts {
            let labels = [
                ("decision", *decision),
                ("cause", *cause),
                ("tier", tier.as_str()),
                ("policy", policy.as_str()),
            ];
            ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
            if matches!(
                *cause,
                "unknown_destination"
                    | "identity_rejected"
                    | "identity_mismatch"
                    | "invalid_policy"
            ) {
                *errors.entry(cause).or_default() += v;
            }
        }
        let mut m = encoder.encode_descriptor(
            "alp_authz_check_errors",
            "Fail-closed denials, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in [
            "unknown_destination",
            "identity_rejected",
            "identity_mismatch",
            "invalid_policy",
        ] {
            let v = errors.get(reason).copied().unwrap_or(0);
            ConstCounter::new(v).encode(m.encode_family(&[("reason", reason)])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "alp_authz_staged_disagreements",
            "Requests where the staged policies would have changed the answer, by the policy that decided in the staged set (staged: prefix for staged policies; empty: no rule, e.g. the end of a tier).",
            None,
            MetricType::Counter,
        )?;
        for (policy, v) in &folded.staged {
            ConstCounter::new(*v).encode(m.encode_family(&[("policy", policy.as_str())])?)?;
        }

        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(
                self.latency_buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed)),
            )
            .collect();
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "alp_authz_check_duration_seconds",
                "Time to decide one Check in the server, from the decoded request to the answer.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;

        let snap = self.state.load_full();
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     v: i64|
         -> Result<(), std::fmt::Error> {
            ConstGauge::new(v).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        gauge(
            &mut encoder,
            "alp_authz_state_generation",
            "Generation (policy version) being served.",
            snap.generation as i64,
        )?;
        gauge(
            &mut encoder,
            "alp_authz_state_ready",
            "1 once a first state was loaded.",
            i64::from(self.state.is_ready()),
        )?;
        let age = self.state.age().map_or(-1.0, |a| a.as_secs_f64());
        ConstGauge::new(age).encode(encoder.encode_descriptor(
            "alp_authz_state_age_seconds",
            "Seconds since the state being served was published (-1: never).",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(self.state.reload_errors()).encode(encoder.encode_descriptor(
            "alp_authz_state_reload_errors",
            "State reloads that failed (the previous state kept serving).",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(
            crate::policy::compile::SKIPPED_RULE_PATHS.load(Ordering::Relaxed),
        )
        .encode(encoder.encode_descriptor(
            "alp_authz_rule_paths_skipped",
            "Rule path entries skipped because they cannot be normalized (the rest of the rule stands).",
            None,
            MetricType::Counter,
        )?)?;
        let mut m = encoder.encode_descriptor(
            "alp_authz_policies",
            "Policies in the served state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("enforced", snap.policies.len()),
            ("staged", snap.staged.len()),
            ("invalid", snap.invalid.len()),
        ] {
            ConstGauge::new(n as i64).encode(m.encode_family(&[("state", state)])?)?;
        }
        gauge(
            &mut encoder,
            "alp_authz_tiers",
            "Tiers in the served state.",
            snap.tiers.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "alp_authz_endpoints",
            "Workload endpoints (pods with an IP) in the served state.",
            snap.endpoints.len() as i64,
        )?;
        if let Some(k) = self.kubernetes.get() {
            encode_kubernetes(&mut encoder, k)?;
        }
        ConstCounter::new(self.explain_requests.load(Ordering::Relaxed)).encode(
            encoder.encode_descriptor(
                "alp_authz_explain_requests",
                "Explain calls answered (each is also in the decision log, marked explain).",
                None,
                MetricType::Counter,
            )?,
        )?;
        ConstCounter::new(self.decision_log_dropped.load(Ordering::Relaxed)).encode(
            encoder.encode_descriptor(
                "alp_authz_decision_log_dropped",
                "Decision log events dropped because the log could not keep up.",
                None,
                MetricType::Counter,
            )?,
        )?;
        Ok(())
    }
}

/// The Kubernetes source's series: per watched resource, and for the API server.
fn encode_kubernetes(
    encoder: &mut DescriptorEncoder,
    k: &crate::k8s::status::Status,
) -> Result<(), std::fmt::Error> {
    use crate::k8s::status::ResourceStatus;
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
                MetricType::Counter => ConstCounter::new(v).encode(m.encode_family(&labels)?)?,
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

/// Binds the metrics listener (so that a bad address stops startup).
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))
}

/// Serves `GET /metrics` (Prometheus text) over HTTP/1.1, for as long as the runtime runs.
pub async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use http_body_util::Full;
    use hyper::{Response, StatusCode, body::Bytes, service::service_fn};

    if let Ok(local) = listener.local_addr() {
        tracing::info!("metrics on http://{local}/metrics");
    }
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::store::Store;

    /// Decisions counted on snapshots while others replace them: the total a scrape reports
    /// never goes down (a Prometheus counter that dips reads as a reset), and ends exact.
    #[test]
    fn decision_totals_never_dip_while_snapshots_are_replaced() {
        const DECISIONS: u64 = 300_000;
        let state = Arc::new(Shared::new());
        let store = Store::new();
        state.publish(&store);
        let metrics = Metrics::new(state.clone());
        let total = |m: &Metrics| m.decision_counts().decisions.values().sum::<u64>();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut generation = 0;
                for i in 0..DECISIONS {
                    // A request holds the snapshot it counts on, as Check does.
                    let snap = state.load();
                    snap.counters.fail_closed[0].fetch_add(1, Ordering::Relaxed);
                    if i % 10_000 == 0 {
                        // Every 10,000 decisions, at least one replacement in between.
                        drop(snap);
                        while state.load().generation == generation {
                            std::thread::yield_now();
                        }
                        generation = state.load().generation;
                    }
                }
                done.store(true, Ordering::Release);
            });
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    state.publish(&store);
                }
            });
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let now = total(&metrics);
                assert!(now >= last, "decision total went from {last} down to {now}");
                last = now;
            }
        });
        assert_eq!(total(&metrics), DECISIONS);
    }
}

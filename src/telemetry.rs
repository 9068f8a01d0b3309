//! Metrics: lock-free counting on the hot path, Prometheus text on a separate HTTP port.
//!
//! Decisions are counted in atomics that live in the snapshot they were decided on
//! (`policy::counters::Counters`), latency in a fixed-bucket atomic histogram. A scrape sums the
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

use crate::{
    policy::{index::PolicyIdx, snapshot::Snapshot},
    state::{OnReplace, Shared},
};

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
    retired: Retired,
    /// A source's own series (the Kubernetes watches and API server).
    source: std::sync::OnceLock<Arc<dyn Series>>,
}

/// Series a component adds to the scrape, after the state's.
pub trait Series: Send + Sync + std::fmt::Debug {
    /// Encodes them.
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error>;
}

/// Snapshots replaced by a newer one that a request still held when they were replaced, kept
/// until their decision counts can be folded into the totals. Cold path only.
#[derive(Debug, Default)]
struct Retired(Mutex<Vec<Arc<Snapshot>>>);

impl Retired {
    /// Runs `swap` (which replaces the current snapshot and returns the replaced one) with the
    /// replaced one joining the retired ones in the same critical section, so that
    /// [`Retired::sweep`] sees every snapshot exactly once, as current or retired; then folds
    /// every retired snapshot no request holds any more: replaced snapshots never pile up,
    /// even when the state changes every few milliseconds and nothing scrapes.
    fn replace(
        &self,
        swap: &mut dyn FnMut() -> Arc<Snapshot>,
        current: impl Fn() -> Arc<Snapshot>,
        fold: impl Fn(&Snapshot),
    ) {
        let mut retired = lock(&self.0);
        retired.push(swap());
        drop(retired);
        drop(self.sweep(current, fold));
    }

    /// Folds (with `fold`) every replaced snapshot that no request holds any more, and forgets
    /// it. Returns the replaced snapshots still held (they stay retired) and the current one,
    /// read in the same critical section as the retired ones: every snapshot not yet folded is
    /// in exactly one of them, so totals built from the folded counts, these, and nothing else
    /// never count a snapshot twice or miss one.
    fn sweep(
        &self,
        current: impl Fn() -> Arc<Snapshot>,
        fold: impl Fn(&Snapshot),
    ) -> (Vec<Arc<Snapshot>>, Arc<Snapshot>) {
        let mut retired = lock(&self.0);
        let (done, held): (Vec<_>, Vec<_>) = std::mem::take(&mut *retired)
            .into_iter()
            .partition(|s| Arc::strong_count(s) == 1);
        // Folded inside the critical section, so that no total misses them; dropped outside.
        for s in &done {
            fold(s);
        }
        *retired = held;
        let out = (retired.clone(), current());
        drop(retired);
        drop(done);
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            retired: Retired::default(),
            source: std::sync::OnceLock::new(),
        });
        let watcher: Arc<dyn OnReplace> = metrics.clone();
        metrics.state.on_replace(Arc::downgrade(&watcher));
        metrics
    }

    /// Also reports a source's own series (the Kubernetes source: watches and API server
    /// reachability).
    pub fn add_source(&self, series: Arc<dyn Series>) {
        let _ = self.source.set(series);
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
        let (held, current) = self
            .retired
            .sweep(|| self.state.load_full(), |s| self.fold(s));
        let mut out = lock(&self.folded).clone();
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

impl Metrics {
    /// Adds the decision counts of `snap`, which no request holds any more, to the totals.
    fn fold(&self, snap: &Snapshot) {
        add_counts(snap, &mut lock(&self.folded));
    }
}

impl OnReplace for Metrics {
    fn replace(&self, swap: &mut dyn FnMut() -> Arc<Snapshot>) {
        self.retired
            .replace(swap, || self.state.load_full(), |s| self.fold(s));
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
            snap.tier_of(PolicyIdx::new(i)).name.to_string(),
            snap.policies[i].id.to_string(),
        );
        add(("allow", "rule", tier.clone(), policy.clone()), allow);
        add(("deny", "rule", tier, policy), deny);
    }
    for (decision, cause, per_tier) in [
        ("deny", "end_of_tier", &c.end_of_tier),
        ("allow", "passed_all_tiers", &c.passed),
    ] {
        for (i, v) in per_tier.iter().enumerate() {
            let tier = snap.tiers[i].name.to_string();
            add((decision, cause, tier, String::new()), v);
        }
    }
    add(
        ("allow", "no_policy", String::new(), String::new()),
        &c.no_policy,
    );
    for (cause, v) in [
        ("unknown_destination", &c.unknown_destination),
        ("identity_rejected", &c.identity_rejected),
        ("identity_mismatch", &c.identity_mismatch),
    ] {
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

impl Metrics {
    /// `alp_authz_checks`, `alp_authz_check_errors` and `alp_authz_staged_disagreements`.
    fn encode_decisions(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
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
        Ok(())
    }

    /// `alp_authz_check_duration_seconds`.
    fn encode_latency(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
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
        Ok(())
    }

    /// The served state: generation, readiness, age, reload errors, skipped paths, policies,
    /// tiers and endpoints.
    fn encode_state(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
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
            encoder,
            "alp_authz_state_generation",
            "Generation (policy version) being served.",
            snap.generation as i64,
        )?;
        gauge(
            encoder,
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
            encoder,
            "alp_authz_tiers",
            "Tiers in the served state.",
            snap.tiers.len() as i64,
        )?;
        gauge(
            encoder,
            "alp_authz_endpoints",
            "Workload endpoints (pods with an IP) in the served state.",
            snap.endpoints.len() as i64,
        )?;
        Ok(())
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_decisions(&mut encoder)?;
        self.encode_latency(&mut encoder)?;
        self.encode_state(&mut encoder)?;
        if let Some(source) = self.source.get() {
            source.encode(&mut encoder)?;
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

    /// Replaced snapshots are folded as soon as no request holds them, and kept until then;
    /// with no metrics, a replaced snapshot is dropped at once.
    #[test]
    fn replaced_snapshots_do_not_pile_up() {
        let store = Store::new();
        let state = Shared::new();
        let first = Arc::downgrade(&state.publish(&store));
        state.publish(&store);
        assert!(first.upgrade().is_none(), "dropped when replaced");

        let served = arc_swap::ArcSwap::from_pointee(Snapshot::empty(0));
        let retired = Retired::default();
        let folds = std::sync::atomic::AtomicUsize::new(0);
        let fold = |_: &Snapshot| {
            folds.fetch_add(1, Ordering::Relaxed);
        };
        let current = || served.load_full();
        let publish = |n: usize| {
            for _ in 0..n {
                let next = Arc::new(Snapshot::empty(served.load().generation + 1));
                retired.replace(&mut || served.swap(next.clone()), current, fold);
            }
        };
        publish(1);
        let held = served.load_full(); // a request in flight on generation 1
        publish(100);
        let (kept, now) = retired.sweep(current, |_| panic!("the held one is not folded"));
        assert_eq!(kept.len(), 1, "only the held snapshot waits");
        assert_eq!(kept[0].generation, held.generation);
        assert_eq!(now.generation, held.generation + 100);
        drop((kept, now));
        drop(held);
        publish(1);
        assert!(
            retired
                .sweep(current, |_| panic!("all folded"))
                .0
                .is_empty()
        );
        // Generation 0, the 99 never held, then the held one and the last replaced.
        assert_eq!(folds.load(Ordering::Relaxed), 102);
    }

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
                    snap.counters
                        .unknown_destination
                        .fetch_add(1, Ordering::Relaxed);
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

//! The one evaluation path shared by the gRPC server and the `check` CLI:
//! CheckRequest → request view → evaluate against the current snapshot → CheckResponse.

use std::{sync::Arc, time::Instant};

use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};

use super::{request, response, settings::Settings};
use crate::{
    decision_log::{self, DecisionLog, Record},
    policy::{
        decision::{Decision, Verdict},
        eval::{self, Principal},
        protocol,
        snapshot::Snapshot,
    },
    state::Shared,
    telemetry::Metrics,
};

/// Decides CheckRequests against the published state.
#[derive(Debug, Clone)]
pub struct Checker {
    state: Arc<Shared>,
    settings: Arc<Settings>,
    metrics: Option<Arc<Metrics>>,
    decision_log: Option<Arc<DecisionLog>>,
}

impl Checker {
    /// A checker over `state`.
    pub fn new(state: Arc<Shared>, settings: Settings) -> Self {
        Checker {
            state,
            settings: Arc::new(settings),
            metrics: None,
            decision_log: None,
        }
    }

    /// Also writes decision logs.
    pub fn with_decision_log(mut self, log: Arc<DecisionLog>) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// Also records latency in `metrics` (decisions are always counted in the snapshot).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The published state.
    pub fn state(&self) -> &Arc<Shared> {
        &self.state
    }

    /// Decides a request against `snap`.
    pub fn decide(&self, snap: &Snapshot, req: &CheckRequest) -> Decision {
        let resolved = request::resolve(&self.settings.identity, req);
        let principal = request::principal(&self.settings.identity, &resolved);
        let view = request::to_request(req, principal);
        eval::evaluate(snap, &view, &self.settings.eval)
    }

    /// Decides a request and builds the answer. No lock; with no optional answer parts
    /// configured, allocates nothing to allow, and to deny only the strings of the fixed
    /// answer (the reason is rendered only for a reader: `--explain-denials`, an enabled
    /// `decision` event, the decision log).
    pub fn check(&self, req: &CheckRequest) -> (CheckResponse, Decision) {
        let started = Instant::now();
        let snap = self.state.load();
        let settings = &*self.settings;
        let (resolved, identity_from) = request::resolve_from(&settings.identity, req);
        let principal = request::principal(&settings.identity, &resolved);
        let view = request::to_request(req, principal);
        // Envoy's request id (`x-request-id`), so that log lines name the request they are about.
        let request_id = request_id(req);
        let (decision, staged) = self.decide_view(&snap, &view, request_id);
        let resp = self.answer(req, &view, &snap, &decision, request_id);
        let latency = started.elapsed();
        if let Some(m) = &self.metrics {
            m.observe_latency(latency);
        }
        if let Some(log) = &self.decision_log
            && log.wants(!decision.allowed())
        {
            let mut r = record(req, &view, identity_from, &snap, &decision, latency);
            r.dry_run = settings.dry_run && !decision.allowed();
            r.staged = staged.map(|v| if v == Verdict::Allow { "allow" } else { "deny" });
            log.send(r);
        }
        (resp, decision)
    }

    /// Decides `view` against `snap`, counting the decision; evaluates the staged set beside
    /// it when there is one, counting and logging a disagreement. Returns the decision and the
    /// staged verdict.
    fn decide_view(
        &self,
        snap: &Snapshot,
        view: &eval::Request<'_>,
        request_id: &str,
    ) -> (Decision, Option<Verdict>) {
        let opts = &self.settings.eval;
        let decision = eval::evaluate(snap, view, opts);
        snap.counters.record(&decision);
        let Some(shadow) = &snap.shadow else {
            return (decision, None);
        };
        let staged = eval::evaluate(shadow, view, opts);
        if staged.verdict != decision.verdict {
            shadow.counters.record_disagreement(&staged);
            tracing::info!(
                target: "staged",
                request_id,
                generation = snap.generation,
                enforced = %decision.describe(snap),
                staged = %staged.describe(shadow),
                "staged policy would change the answer"
            );
        }
        (decision, Some(staged.verdict))
    }

    /// The answer to Envoy: allowed (with the upstream headers), denied (with the reason or
    /// the trace when the operator sends them), or let through under `--dry-run`; plus the
    /// dynamic metadata when configured.
    fn answer(
        &self,
        req: &CheckRequest,
        view: &eval::Request<'_>,
        snap: &Snapshot,
        decision: &Decision,
        request_id: &str,
    ) -> CheckResponse {
        let settings = &*self.settings;
        let http = view.http.is_some();
        let principal = view.principal;
        let mut resp = match decision.verdict {
            Verdict::Allow => self.let_through(http, principal, snap, decision),
            Verdict::Deny if settings.dry_run => {
                tracing::info!(
                    target: "decision",
                    request_id,
                    generation = snap.generation,
                    reason = %decision.describe(snap),
                    "dry run: allowed a request that policy denies"
                );
                // The request reaches the upstream: the identity header must be set or removed
                // as on any allow, or a caller's forged header would pass through unchanged.
                self.let_through(http, principal, snap, decision)
            }
            Verdict::Deny if settings.explain_denials && wants_trace(req) => {
                // A person debugging a 403 asked for the trace (`x-alp-explain`), and the
                // operator allows explanations: the trace rides back as the body.
                let trace = super::explain::explain(settings, snap, req).to_string();
                let mut resp = response::denied(http, Some(&decision.reason(snap)));
                response::set_denied_body(&mut resp, trace, "application/json");
                resp
            }
            Verdict::Deny => {
                // The reason is text only where something reads it: this event, when enabled
                // (tracing formats its fields only then), and the answer, when the operator
                // sends reasons. Otherwise the denial is the decision's indexes and the fixed
                // 403 (see `tests/alloc.rs`).
                tracing::debug!(target: "decision", request_id, generation = snap.generation, reason = %decision.describe(snap), "denied");
                if settings.explain_denials {
                    response::denied(http, Some(&decision.reason(snap)))
                } else {
                    response::denied(http, None)
                }
            }
        };
        if settings.answer.dynamic_metadata {
            use response::MetaValue::{Null, Number, Str};
            let decided = if decision.allowed() { "allow" } else { "deny" };
            resp.dynamic_metadata = Some(response::metadata(&[
                ("generation", Number(snap.generation as f64)),
                ("decision", Str(decided.into())),
                ("tier", decision.tier(snap).map_or(Null, |t| Str(t.into()))),
                ("policy", decision.policy(snap).map_or(Null, Str)),
                (
                    "rule",
                    decision.rule().map_or(Null, |r| Number(f64::from(r))),
                ),
            ]));
        }
        resp
    }
}

impl Checker {
    /// The answer that lets a request through (an allow, or a denial under `--dry-run`), with
    /// the upstream headers: the identity header set to the caller's SPIFFE ID, or removed when
    /// it has none, so that a caller cannot forge it; the decision header.
    fn let_through(
        &self,
        http: bool,
        principal: Principal<'_>,
        snap: &Snapshot,
        decision: &Decision,
    ) -> CheckResponse {
        let answer = &self.settings.answer;
        let mut resp = response::allowed(http);
        if let Some(ok) = response::ok_mut(&mut resp) {
            if let Some(name) = &answer.identity_header {
                match principal {
                    Principal::Valid(id) => {
                        ok.headers.push(response::header(name, &id.to_string()))
                    }
                    _ => ok.headers_to_remove.push(name.clone()),
                }
            }
            if let Some(name) = &answer.decision_header {
                ok.headers
                    .push(response::header(name, &summary(snap, decision)));
            }
        }
        resp
    }
}

impl Checker {
    /// The explain trace of `req` against `snap`, for the Explain RPC: counted
    /// (`alp_authz_explain_requests_total`) and written to the decision log (marked
    /// `explain`), as it tells the caller how policy decides.
    pub fn explain_counted(&self, snap: &Snapshot, req: &CheckRequest) -> serde_json::Value {
        let started = Instant::now();
        if let Some(m) = &self.metrics {
            m.explain_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let trace = super::explain::explain(&self.settings, snap, req);
        if let Some(log) = &self.decision_log {
            let (resolved, from) = request::resolve_from(&self.settings.identity, req);
            let principal = request::principal(&self.settings.identity, &resolved);
            let view = request::to_request(req, principal);
            let decision = eval::evaluate(snap, &view, &self.settings.eval);
            if log.wants(!decision.allowed()) {
                let mut r = record(req, &view, from, snap, &decision, started.elapsed());
                r.explain = true;
                log.send(r);
            }
        }
        trace
    }
}

/// `allow; generation=G; tier=T; policy=P; rule=R` (absent parts left out).
fn summary(snap: &Snapshot, d: &Decision) -> String {
    let verdict = if d.allowed() { "allow" } else { "deny" };
    let mut s = format!("{verdict}; generation={}", snap.generation);
    if let Some(t) = d.tier(snap) {
        s.push_str("; tier=");
        s.push_str(t);
    }
    if let Some(p) = d.policy(snap) {
        s.push_str("; policy=");
        s.push_str(&p);
    }
    if let Some(r) = d.rule() {
        s.push_str("; rule=");
        s.push_str(&r.to_string());
    }
    s
}

/// The decision log record of one answer: what the evaluator decided on (never headers or
/// bodies), so that `alp-authz replay` can decide it again.
fn record(
    req: &CheckRequest,
    view: &crate::policy::eval::Request<'_>,
    identity_from: Option<crate::identity::resolve::Source>,
    snap: &Snapshot,
    d: &Decision,
    latency: std::time::Duration,
) -> Record {
    let addr = |a: &crate::policy::eval::Addr| match a.ip {
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", a.port),
        Some(ip) => format!("{ip}:{}", a.port),
        None => String::new(),
    };
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let (normalized_path, path_readings, path_undecodable) = match &view.http {
        Some(h) => decision_log::path_fields(&h.path),
        None => (None, Vec::new(), false),
    };
    Record {
        ts_ms: decision_log::now_ms(),
        generation: snap.generation,
        decision: if d.allowed() { "allow" } else { "deny" },
        reason: d.reason(snap),
        tier: d.tier(snap).map(str::to_owned),
        policy: d.policy(snap),
        rule: d.rule(),
        cause: d.cause_name(),
        source_principal: req
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map(|s| s.principal.clone())
            .filter(|p| !p.is_empty()),
        identity: decision_log::IdentityRecord::new(&view.principal, identity_from),
        request_id: http.map(|h| h.id.clone()).filter(|id| !id.is_empty()),
        staged: None,
        source_address: addr(&view.source),
        source_port: view.source.port,
        destination_address: addr(&view.destination),
        destination_port: view.destination.port,
        protocol: protocol::name(view.protocol).unwrap_or("TCP"),
        http: view.http.is_some(),
        method: http.map(|h| h.method.clone()).unwrap_or_default(),
        path: http.map(|h| h.path.clone()).unwrap_or_default(),
        normalized_path,
        path_readings,
        path_undecodable,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        dry_run: false,
        explain: false,
    }
}

/// `request.http.id` (Envoy's `x-request-id`), empty when there is none.
fn request_id(req: &CheckRequest) -> &str {
    req.attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map_or("", |h| h.id.as_str())
}

/// The request header that asks for the decision trace on a denial (honoured only with
/// `--explain-denials`).
pub const EXPLAIN_HEADER: &str = "x-alp-explain";

fn wants_trace(req: &CheckRequest) -> bool {
    req.attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .is_some_and(|h| h.headers.contains_key(EXPLAIN_HEADER))
}

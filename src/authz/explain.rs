//! `explain`: the full trace of one decision: identity, endpoints, and every tier, policy and
//! rule that was evaluated, with the criterion each non-matching rule failed on.

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use serde_json::{Value, json};

use super::{request, settings::Settings};
use crate::policy::{
    decision::{Decision, Verdict},
    eval::{self, Criterion, Principal, Trace},
    index::{EndpointIdx, PolicyIdx, TierIdx},
    path::RequestPath,
    snapshot::Snapshot,
};

/// The decision as `check` prints it.
pub fn decision_json(snap: &Snapshot, d: &Decision) -> Value {
    let allowed = d.verdict == Verdict::Allow;
    json!({
        "allowed": allowed,
        "code": if allowed { "OK" } else { "PERMISSION_DENIED" },
        "http_status": if allowed { 200 } else { 403 },
        "tier": d.tier(snap),
        "policy": d.policy(snap),
        "rule": d.rule(),
        "action": d.action(),
        "reason": d.reason(snap),
    })
}

/// One rule's outcome: its index, and the criterion it failed on.
type RuleTrace = (u32, Result<(), Criterion>);
/// One policy's rules, in order.
type PolicyTrace = (PolicyIdx, Vec<RuleTrace>);
/// One tier's policies, in order.
type TierTrace = (TierIdx, Vec<PolicyTrace>);

/// Records the steps of an evaluation.
#[derive(Debug, Default)]
struct Recorder {
    destination: Option<EndpointIdx>,
    source: Option<EndpointIdx>,
    tiers: Vec<TierTrace>,
}

impl Trace for Recorder {
    fn endpoints(&mut self, destination: Option<EndpointIdx>, source: Option<EndpointIdx>) {
        self.destination = destination;
        self.source = source;
    }

    fn tier(&mut self, tier: TierIdx) {
        self.tiers.push((tier, Vec::new()));
    }

    fn policy(&mut self, policy: PolicyIdx) {
        if let Some((_, policies)) = self.tiers.last_mut() {
            policies.push((policy, Vec::new()));
        }
    }

    fn rule(&mut self, _policy: PolicyIdx, rule: u32, result: Result<(), Criterion>) {
        if let Some((_, rules)) = self.tiers.last_mut().and_then(|(_, p)| p.last_mut()) {
            rules.push((rule, result));
        }
    }
}

/// The caller identity as the decision saw it; for a principal of a trust domain that is not
/// accepted, the accepted ones.
fn identity(accepted: &[String], principal: Principal<'_>) -> Value {
    match principal {
        Principal::Absent => json!({"status": "absent"}),
        Principal::Invalid => json!({"status": "invalid"}),
        Principal::Untrusted(id) => json!({
            "status": "untrusted trust domain",
            "spiffe": id.to_string(),
            "acceptedTrustDomains": accepted,
        }),
        Principal::Valid(id) => json!({"status": "valid", "spiffe": id.to_string()}),
        Principal::Rejected(r) => json!({"status": "rejected", "why": r.to_string()}),
    }
}

/// What the request gave the decision, as the evaluator read it: the addresses (the
/// destination workload and the caller's are looked up by them; `null` when the request had
/// no IP) and, for HTTP, the method, the path as sent and the path's readings (SEMANTICS.md
/// §4): `one reading`, `several readings` (upstreams may read it differently; a rule that some
/// readings match and others do not denies, `ambiguous path`), or `undecodable` (no reading;
/// any path rule denies).
fn inputs(req: &CheckRequest, view: &eval::Request<'_>) -> Value {
    let address = |a: &eval::Addr| match a.ip {
        Some(std::net::IpAddr::V6(ip)) => Value::from(format!("[{ip}]:{}", a.port)),
        Some(ip) => Value::from(format!("{ip}:{}", a.port)),
        None => Value::Null,
    };
    let raw_path = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map_or("", |h| h.path.as_str());
    let http = view.http.as_ref().map(|h| {
        let status = match &h.path {
            RequestPath::One(_) => "one reading",
            RequestPath::Many(_) => "several readings",
            RequestPath::Undecodable => "undecodable",
        };
        json!({
            "method": h.method,
            "path": raw_path,
            "pathReadings": h.path.iter().collect::<Vec<_>>(),
            "pathStatus": status,
        })
    });
    json!({
        "sourceAddress": address(&view.source),
        "destinationAddress": address(&view.destination),
        "http": http,
    })
}

/// What `check` prints: the decision, and the inputs that decided it (the request as read,
/// and the caller identity).
pub fn check_json(settings: &Settings, snap: &Snapshot, req: &CheckRequest) -> (Value, bool) {
    let resolved = request::resolve(&settings.identity, req);
    let principal = request::principal(&settings.identity, &resolved);
    let view = request::to_request(req, principal);
    let decision = eval::evaluate(snap, &view, &settings.eval);
    let mut out = decision_json(snap, &decision);
    out["identity"] = identity(&settings.identity.trust_domains, principal);
    out["request"] = inputs(req, &view);
    (out, decision.allowed())
}

/// Explains how `req` is decided against `snap`.
pub fn explain(settings: &Settings, snap: &Snapshot, req: &CheckRequest) -> Value {
    let resolved = request::resolve(&settings.identity, req);
    let principal = request::principal(&settings.identity, &resolved);
    let view = request::to_request(req, principal);
    let mut rec = Recorder::default();
    let decision = eval::evaluate_traced(snap, &view, &settings.eval, &mut rec);

    let identity = identity(&settings.identity.trust_domains, principal);
    let endpoint = |i: Option<EndpointIdx>| {
        i.and_then(|i| snap.endpoints.get(i.get())).map(|ep| {
            json!({
                "pod": format!("{}/{}", ep.namespace, ep.name),
                "serviceAccount": &*ep.service_account,
                "labels": ep.labels.iter().map(|(k, v)| (k.to_string(), Value::from(&**v))).collect::<serde_json::Map<_, _>>(),
            })
        })
    };
    let tiers: Vec<Value> = rec
        .tiers
        .iter()
        .map(|(tier, policies)| {
            let policies: Vec<Value> = policies
                .iter()
                .map(|(p, rules)| {
                    let policy = &snap.policies[p.get()];
                    let actions = policy.ingress.as_deref().unwrap_or(&[]);
                    let rules: Vec<Value> = rules
                        .iter()
                        .map(|(i, result)| {
                            let action = actions.get(*i as usize).map(|r| r.action.as_str());
                            match result {
                                Ok(()) => json!({"rule": i, "action": action, "matched": true}),
                                Err(c) => json!({"rule": i, "action": action, "matched": false, "failed": c.to_string()}),
                            }
                        })
                        .collect();
                    json!({"policy": policy.id.to_string(), "kind": policy.id.kind.as_str(), "order": policy.order, "rules": rules})
                })
                .collect();
            let t = &snap.tiers[tier.get()];
            json!({
                "tier": &*t.name,
                "defaultAction": if snap.tier_passes(*tier) { "Pass" } else { "Deny" },
                "policies": policies,
            })
        })
        .collect();
    json!({
        "generation": snap.generation,
        "decision": decision_json(snap, &decision),
        "identity": identity,
        "request": inputs(req, &view),
        "destination": endpoint(rec.destination),
        "sourcePod": endpoint(rec.source),
        "tiers": tiers,
    })
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;

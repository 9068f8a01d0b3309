//! `explain`: the full trace of one decision: identity, endpoints, and every tier, policy and
//! rule that was evaluated, with the criterion each non-matching rule failed on.

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use serde_json::{Value, json};

use super::{check::Checker, request};
use crate::policy::{
    decision::{Decision, Verdict},
    eval::{self, Criterion, Principal, Trace},
    snapshot::{EndpointIdx, PolicyIdx, Snapshot, TierIdx},
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

/// Explains how `req` is decided against `snap`.
pub fn explain(checker: &Checker, snap: &Snapshot, req: &CheckRequest) -> Value {
    let settings = checker.settings();
    let resolved = settings.identity.resolve(req);
    let principal = request::principal(&settings.identity, &resolved);
    let view = request::to_request(req, principal);
    let mut rec = Recorder::default();
    let decision = eval::evaluate_traced(snap, &view, &settings.eval, &mut rec);

    let identity = match principal {
        Principal::Absent => json!({"status": "absent"}),
        Principal::Invalid => json!({"status": "invalid"}),
        Principal::Untrusted(id) => {
            json!({"status": "untrusted trust domain", "spiffe": id.to_string()})
        }
        Principal::Valid(id) => json!({"status": "valid", "spiffe": id.to_string()}),
        Principal::Rejected(r) => json!({"status": "rejected", "why": r.to_string()}),
    };
    let endpoint = |i: Option<EndpointIdx>| {
        i.and_then(|i| snap.endpoints.get(i as usize)).map(|ep| {
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
                    let policy = &snap.policies[*p as usize];
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
            let t = &snap.tiers[*tier as usize];
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
        "destination": endpoint(rec.destination),
        "sourcePod": endpoint(rec.source),
        "tiers": tiers,
    })
}

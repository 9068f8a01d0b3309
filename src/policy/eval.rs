//! Step four: evaluate one request against a [`Snapshot`]. Pure: no I/O, no locks, no
//! allocation; the request borrows from the wire message.
//!
//! Semantics: `shared/SEMANTICS.md` (normative), after Calico's Dikastes
//! (`app-policy/checker/check.go`, `match.go`) with its documented departures: no identity means
//! identity criteria do *not* match (fail closed), and pod-label selectors are evaluated on the
//! source pod found by IP, trusted only when it agrees with the authenticated principal.

use std::{borrow::Cow, net::IpAddr};

use super::{
    compile::{Action, Entity, NamespaceMatch, PortMatch, Rule},
    decision::{Cause, Decision},
    netsets::RuleSets,
    path,
    snapshot::{Endpoint, EndpointIdx, LabelMap, PolicyIdx, ServiceIndex, Snapshot, TierIdx},
};
use crate::identity::{Rejection, spiffe::SpiffeRef};

/// TCP's protocol number: every HTTP check, and a TCP check unless the address says otherwise.
pub const PROTO_TCP: u8 = 6;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    /// No principal (plaintext, or an ambient waypoint without client identity).
    Absent,
    /// A principal that is not a valid SPIFFE ID of the expected form.
    Invalid,
    /// A valid SPIFFE ID from a trust domain that is not allowed.
    Untrusted(SpiffeRef<'a>),
    /// A valid, trusted SPIFFE ID.
    Valid(SpiffeRef<'a>),
    /// Identity material that must not be trusted (bad certificate, disagreement, bad XFCC).
    Rejected(Rejection),
}

/// One side's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addr {
    /// IP, if the socket address had a parsable one.
    pub ip: Option<IpAddr>,
    /// Port (0 when absent, as in Dikastes).
    pub port: u32,
}

/// The HTTP part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// Method, as sent (matching is case-sensitive).
    pub method: &'a str,
    /// Normalized path; `None` when it cannot be normalized (then it matches no path criterion).
    pub path: Option<Cow<'a, str>>,
}

impl<'a> HttpRequest<'a> {
    /// Builds the HTTP part, normalizing the path once.
    pub fn new(method: &'a str, raw_path: &'a str) -> Self {
        HttpRequest {
            method,
            path: path::normalize(raw_path),
        }
    }
}

/// A request as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Caller address.
    pub source: Addr,
    /// Destination (workload) address.
    pub destination: Addr,
    /// Caller identity.
    pub principal: Principal<'a>,
    /// L4 protocol number (6 unless the socket address says UDP).
    pub protocol: u8,
    /// The HTTP request; `None` for a TCP-level check.
    pub http: Option<HttpRequest<'a>>,
}

/// Evaluation settings that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Resolve a caller with no principal by its source IP (Calico's network-identity model).
    pub trust_network_identity: bool,
    /// Per-pod deployment: the destination is always this pod (namespace, name).
    pub workload: Option<(String, String)>,
}

/// The caller's identity: namespace and service account.
#[derive(Debug, Clone, Copy)]
struct Identity<'a> {
    namespace: &'a str,
    service_account: &'a str,
}

/// One side of the request with everything rule criteria look at.
struct Peer<'a> {
    identity: Option<Identity<'a>>,
    /// The workload, only when it is trusted to be this peer.
    endpoint: Option<&'a Endpoint>,
    /// The workload at the address, trusted or not (network identity, as in Calico's IP sets).
    at_addr: Option<&'a Endpoint>,
    ns_labels: &'a LabelMap,
    sa_labels: &'a LabelMap,
    addr: Addr,
}

/// Which criterion of a rule failed to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// `protocol`.
    Protocol,
    /// `notProtocol`.
    NotProtocol,
    /// `http.methods`.
    HttpMethods,
    /// `http.paths`.
    HttpPaths,
    /// A criterion of `source` or `destination`.
    Entity(Side, EntityCriterion),
}

/// The side of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `source`.
    Source,
    /// `destination`.
    Destination,
}

/// A criterion of an entity rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityCriterion {
    /// `nets`.
    Nets,
    /// `notNets`.
    NotNets,
    /// `ports`.
    Ports,
    /// `notPorts`.
    NotPorts,
    /// `namespaceSelector`, or the implicit namespace of a namespaced policy.
    Namespace,
    /// `serviceAccounts`.
    ServiceAccounts,
    /// `selector`.
    Selector,
    /// `notSelector`.
    NotSelector,
    /// `services`.
    Services,
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (side, c) = match self {
            Criterion::Protocol => return f.write_str("protocol"),
            Criterion::NotProtocol => return f.write_str("notProtocol"),
            Criterion::HttpMethods => return f.write_str("http.methods"),
            Criterion::HttpPaths => return f.write_str("http.paths"),
            Criterion::Entity(side, c) => (side, c),
        };
        let side = match side {
            Side::Source => "source",
            Side::Destination => "destination",
        };
        let c = match c {
            EntityCriterion::Nets => "nets",
            EntityCriterion::NotNets => "notNets",
            EntityCriterion::Ports => "ports",
            EntityCriterion::NotPorts => "notPorts",
            EntityCriterion::Namespace => "namespace",
            EntityCriterion::ServiceAccounts => "serviceAccounts",
            EntityCriterion::Selector => "selector",
            EntityCriterion::NotSelector => "notSelector",
            EntityCriterion::Services => "services",
        };
        write!(f, "{side}.{c}")
    }
}

/// Watches an evaluation step by step (for `explain`). Every method has an empty default, and
/// [`evaluate`] uses [`NoTrace`], so the hot path pays nothing.
pub trait Trace {
    /// The destination and (trusted) source endpoints were resolved.
    fn endpoints(&mut self, _destination: Option<EndpointIdx>, _source: Option<EndpointIdx>) {}
    /// A tier starts.
    fn tier(&mut self, _tier: TierIdx) {}
    /// A policy of the current tier starts.
    fn policy(&mut self, _policy: PolicyIdx) {}
    /// A rule was evaluated: `Ok(())` matched, `Err(c)` failed at criterion `c`.
    fn rule(&mut self, _policy: PolicyIdx, _rule: u32, _result: Result<(), Criterion>) {}
}

/// The trace that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl Trace for NoTrace {}

/// Decides one request.
pub fn evaluate(snap: &Snapshot, req: &Request<'_>, opts: &Options) -> Decision {
    evaluate_traced(snap, req, opts, &mut NoTrace)
}

/// Decides one request, reporting each step to `trace`.
pub fn evaluate_traced<T: Trace>(
    snap: &Snapshot,
    req: &Request<'_>,
    opts: &Options,
    trace: &mut T,
) -> Decision {
    let dst_idx = match &opts.workload {
        Some((ns, name)) => snap.endpoint_by_name(ns, name),
        None => req.destination.ip.and_then(|ip| snap.endpoint_by_ip(ip)),
    };
    // "No destination workload → deny with reason `unknown destination` (fail closed)."
    let Some(dst) = dst_idx.and_then(|i| snap.endpoints.get(i as usize)) else {
        trace.endpoints(None, None);
        return Decision::deny(Cause::UnknownDestination);
    };
    let Some(plan) = snap.plans.get(dst.class as usize) else {
        return Decision::deny(Cause::UnknownDestination);
    };
    // "A policy that cannot be compiled never widens access: the endpoints it could apply to
    // are denied" (SEMANTICS.md §3.6).
    if let Some(invalid) = plan.invalid {
        trace.endpoints(dst_idx, None);
        return Decision::deny(Cause::InvalidPolicy { invalid });
    }
    if let Principal::Rejected(rejection) = req.principal {
        trace.endpoints(dst_idx, None);
        return Decision::deny(Cause::IdentityRejected { rejection });
    }

    let src_idx = req.source.ip.and_then(|ip| snap.endpoint_by_ip(ip));
    let src_at = src_idx.and_then(|i| snap.endpoints.get(i as usize));
    let (identity, src_ep) = match (req.principal, src_at) {
        (Principal::Valid(id), Some(ep)) => {
            if id.namespace() != &*ep.namespace || id.service_account() != &*ep.service_account {
                // "Its labels are trusted only when the Pod's namespace and service account equal
                // the authenticated identity's. A disagreement is a deny" (SEMANTICS.md §1).
                trace.endpoints(dst_idx, None);
                return Decision::deny(Cause::IdentityMismatch {
                    source: src_idx.unwrap_or_default(),
                });
            }
            (Some(identity_of(id)), Some(ep))
        }
        (Principal::Valid(id), None) => (Some(identity_of(id)), None),
        (Principal::Absent, Some(ep)) if opts.trust_network_identity => (
            Some(Identity {
                namespace: &ep.namespace,
                service_account: &ep.service_account,
            }),
            Some(ep),
        ),
        // No (trusted) identity: identity criteria do not match, pod labels are not trusted.
        _ => (None, None),
    };
    trace.endpoints(dst_idx, src_ep.and(src_idx));
    let no_labels = snap.namespace_labels("");
    let source = Peer {
        identity,
        endpoint: src_ep,
        at_addr: src_at,
        ns_labels: identity.map_or(no_labels, |i| snap.namespace_labels(i.namespace)),
        sa_labels: identity.map_or(no_labels, |i| {
            snap.service_account_labels(i.namespace, i.service_account)
        }),
        addr: req.source,
    };
    let destination = Peer {
        identity: Some(Identity {
            namespace: &dst.namespace,
            service_account: &dst.service_account,
        }),
        endpoint: Some(dst),
        at_addr: Some(dst),
        ns_labels: snap.namespace_labels(&dst.namespace),
        sa_labels: snap.service_account_labels(&dst.namespace, &dst.service_account),
        addr: req.destination,
    };

    let mut passed = None;
    'tiers: for tp in &plan.tiers {
        trace.tier(tp.tier);
        for &pi in &tp.policies {
            // INVARIANT: plans list only policies that govern ingress.
            let Some(rules) = snap
                .policies
                .get(pi as usize)
                .and_then(|p| p.ingress.as_deref())
            else {
                continue;
            };
            trace.policy(pi);
            for (ri, rule) in rules.iter().enumerate() {
                let sets = snap.net_sets.rule(pi, ri);
                let result = rule_matches(rule, req, &source, &destination, &snap.services, sets);
                trace.rule(pi, ri as u32, result);
                if result.is_err() {
                    continue;
                }
                let cause = Cause::Rule {
                    policy: pi,
                    rule: ri as u32,
                    action: rule.action,
                };
                match rule.action {
                    Action::Allow => return Decision::allow(cause),
                    Action::Deny => return Decision::deny(cause),
                    // "Pass ends the current tier and continues with the next tier"
                    // (reference/dikastes-semantics.md §5).
                    Action::Pass => {
                        passed = Some(tp.tier);
                        continue 'tiers;
                    }
                    // "A Log rule is a no-op that never terminates evaluation."
                    Action::Log => {}
                }
            }
        }
        // The tier had an enforced policy selecting the endpoint and nothing decided.
        if !snap.tier_passes(tp.tier) {
            return Decision::deny(Cause::EndOfTier { tier: tp.tier });
        }
        passed = Some(tp.tier);
    }
    // Calico's Kubernetes namespace profile allows whatever no tier decided.
    match passed {
        None => Decision::allow(Cause::NoPolicy),
        Some(tier) => Decision::allow(Cause::PassedAllTiers { tier }),
    }
}

fn identity_of(id: SpiffeRef<'_>) -> Identity<'_> {
    Identity {
        namespace: id.namespace(),
        service_account: id.service_account(),
    }
}

fn rule_matches(
    rule: &Rule,
    req: &Request<'_>,
    src: &Peer<'_>,
    dst: &Peer<'_>,
    services: &ServiceIndex,
    sets: Option<&RuleSets>,
) -> Result<(), Criterion> {
    if rule.protocol.is_some_and(|p| p != req.protocol) {
        return Err(Criterion::Protocol);
    }
    if rule.not_protocol.is_some_and(|p| p == req.protocol) {
        return Err(Criterion::NotProtocol);
    }
    http_matches(rule, req)?;
    entity_matches(
        &rule.source,
        src,
        req.protocol,
        services,
        Side::Source,
        sets,
    )
    .map_err(|c| Criterion::Entity(Side::Source, c))?;
    entity_matches(
        &rule.destination,
        dst,
        req.protocol,
        services,
        Side::Destination,
        None,
    )
    .map_err(|c| Criterion::Entity(Side::Destination, c))
}

fn http_matches(rule: &Rule, req: &Request<'_>) -> Result<(), Criterion> {
    let (Some(h), Some(r)) = (&rule.http, &req.http) else {
        // No HTTP criteria, or a TCP-level check: "a request without an HTTP part matches any
        // method criterion" and any path criterion (reference/dikastes-semantics.md §5.2).
        return Ok(());
    };
    if !(h.methods.is_empty() || h.any_method || h.methods.iter().any(|m| **m == *r.method)) {
        return Err(Criterion::HttpMethods);
    }
    let paths = h.paths.is_empty()
        || r.path
            .as_deref()
            .is_some_and(|p| h.paths.iter().any(|m| m.matches(p)));
    if !paths {
        return Err(Criterion::HttpPaths);
    }
    Ok(())
}

fn entity_matches(
    e: &Entity,
    side: &Peer<'_>,
    protocol: u8,
    services: &ServiceIndex,
    which: Side,
    sets: Option<&RuleSets>,
) -> Result<(), EntityCriterion> {
    use EntityCriterion as C;
    let ip = side.addr.ip;
    // "only traffic that originates from or terminates at endpoints within the selected
    // service(s) will be matched, and only to/from each endpoint's port": the source by its
    // address, the destination by its address and port (Felix's IP and IP-port sets).
    if let Some(svc) = &e.services {
        let ok = ip.is_some_and(|ip| match which {
            Side::Source => services.has_address(svc, ip),
            Side::Destination => u16::try_from(side.addr.port)
                .is_ok_and(|port| services.has_endpoint(svc, ip, port, protocol)),
        });
        if !ok {
            return Err(C::Services);
        }
    }
    if !e.nets.is_empty() && !ip.is_some_and(|ip| e.nets.iter().any(|n| n.contains(&ip))) {
        return Err(C::Nets);
    }
    if ip.is_some_and(|ip| e.not_nets.iter().any(|n| n.contains(&ip))) {
        return Err(C::NotNets);
    }
    let port = |p: &PortMatch| port_matches(p, side, protocol);
    if !e.ports.is_empty() && !e.ports.iter().any(port) {
        return Err(C::Ports);
    }
    if e.not_ports.iter().any(port) {
        return Err(C::NotPorts);
    }
    // A source address in a network set that the rule's (namespace-scoped) selector selects
    // matches the namespace, service-account and selector criteria together, by address alone,
    // as Calico's source IP set holds the set's nets (netsets.rs); a workload's address still
    // matches by its labels below.
    let in_set =
        |r: Option<&super::netsets::Ranges>| r.zip(ip).is_some_and(|(r, ip)| r.contains(ip));
    // Its `notSelector` is then by address too: the address must be in no set it selects and
    // not be a workload it selects.
    if in_set(sets.and_then(|s| s.selector.as_ref())) {
        return match &e.not_selector {
            Some(s)
                if in_set(sets.map(|s| &s.not_selector))
                    || side.at_addr.is_some_and(|ep| s.matches(&*ep.labels)) =>
            {
                Err(C::NotSelector)
            }
            _ => Ok(()),
        };
    }
    let namespace_ok = match &e.namespace {
        NamespaceMatch::Any => true,
        NamespaceMatch::AnyNamespaced => side.identity.is_some(),
        NamespaceMatch::Global => false,
        NamespaceMatch::Same(ns) => side.identity.is_some_and(|i| i.namespace == &**ns),
        NamespaceMatch::Selector(s) => side.identity.is_some() && s.matches(side.ns_labels),
    };
    if !namespace_ok {
        return Err(C::Namespace);
    }
    if let Some(m) = &e.service_accounts {
        let ok = side.identity.is_some_and(|id| {
            (m.names.is_empty() || m.names.iter().any(|n| &**n == id.service_account))
                && m.selector.matches(side.sa_labels)
        });
        if !ok {
            return Err(C::ServiceAccounts);
        }
    }
    // Calico compiles `selector` into an IP set of matching endpoints: a peer that is not a
    // (trusted) workload is in no such set.
    if let Some(s) = &e.selector
        && (side.identity.is_none() || !side.endpoint.is_some_and(|ep| s.matches(&*ep.labels)))
    {
        return Err(C::Selector);
    }
    // A source address in a network set the `notSelector` selects is excluded.
    if e.not_selector.is_some() && in_set(sets.map(|s| &s.not_selector)) {
        return Err(C::NotSelector);
    }
    not_selector_ok(e, side)
}

/// `notSelector` matches every address outside its set of endpoints, but only for a caller
/// whose identity we know (no identity: identity criteria do not match).
fn not_selector_ok(e: &Entity, side: &Peer<'_>) -> Result<(), EntityCriterion> {
    if let Some(s) = &e.not_selector
        && (side.identity.is_none() || side.endpoint.is_some_and(|ep| s.matches(&*ep.labels)))
    {
        return Err(EntityCriterion::NotSelector);
    }
    Ok(())
}

fn port_matches(p: &PortMatch, side: &Peer<'_>, protocol: u8) -> bool {
    match p {
        PortMatch::Range(lo, hi) => (u32::from(*lo)..=u32::from(*hi)).contains(&side.addr.port),
        PortMatch::Named(name) => side
            .endpoint
            .and_then(|ep| ep.named_port(name, protocol))
            .is_some_and(|n| u32::from(n) == side.addr.port),
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;
    use crate::{
        identity::spiffe::SpiffeRef,
        policy::{
            decision::Verdict,
            store::{Store, decode_document},
        },
    };

    /// A small cluster: `db` (the destination) and two callers, `web` in `default` and `job` in
    /// `other`.
    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {env: dev}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: steve, namespace: default, labels: {role: client}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sue, namespace: default, labels: {role: db}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec:
  serviceAccountName: sue
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {phase: Running, podIP: 10.0.0.20}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec: {serviceAccountName: steve}
status: {phase: Running, podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: other, labels: {app: web}}
spec: {serviceAccountName: sam}
status: {phase: Running, podIP: 10.0.1.30}
"#;

    fn snapshot(policies: &str) -> Snapshot {
        let mut store = Store::new();
        let text = format!("{CLUSTER}\n---\n{policies}");
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let v = <yaml_serde::Value as serde::Deserialize>::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let (_, obj) = decode_document(v).unwrap().expect("a known kind");
            store.apply(obj);
        }
        Snapshot::build(&store, 1)
    }

    /// A request from `web` (default/steve) to `db` on port 8080: `GET /api/items`.
    #[derive(Clone)]
    struct Req {
        src: &'static str,
        principal: &'static str,
        dst: &'static str,
        port: u32,
        method: &'static str,
        path: &'static str,
        http: bool,
    }

    const WEB: Req = Req {
        src: "10.0.0.10",
        principal: "spiffe://cluster.local/ns/default/sa/steve",
        dst: "10.0.0.20",
        port: 8080,
        method: "GET",
        path: "/api/items",
        http: true,
    };
    const JOB: Req = Req {
        src: "10.0.1.30",
        principal: "spiffe://cluster.local/ns/other/sa/sam",
        ..WEB
    };
    const PLAIN: Req = Req {
        principal: "",
        ..WEB
    };

    fn decide_with(policies: &str, r: &Req, opts: &Options) -> (Verdict, String) {
        let snap = snapshot(policies);
        let principal = match r.principal {
            "" => Principal::Absent,
            p => SpiffeRef::parse(p).map_or(Principal::Invalid, Principal::Valid),
        };
        let req = Request {
            source: Addr {
                ip: r.src.parse().ok(),
                port: 50000,
            },
            destination: Addr {
                ip: r.dst.parse().ok(),
                port: r.port,
            },
            principal,
            protocol: PROTO_TCP,
            http: r.http.then(|| HttpRequest::new(r.method, r.path)),
        };
        let d = evaluate(&snap, &req, opts);
        (d.verdict, d.reason(&snap))
    }

    fn decide(policies: &str, r: &Req) -> Verdict {
        decide_with(policies, r, &Options::default()).0
    }

    /// A GlobalNetworkPolicy in the default tier selecting `db`, with the given ingress rules.
    fn gnp(rules: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: app == 'db'\n  ingress: {rules}\n"
        )
    }

    /// The same as a namespaced NetworkPolicy in `default`.
    fn np(rules: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: default}}\nspec:\n  selector: app == 'db'\n  ingress: {rules}\n"
        )
    }

    use Verdict::{Allow, Deny};

    /// EndpointSlices: the `web` Service is `web` (10.0.0.10) and the `db` Service is `db`
    /// (10.0.0.20) on TCP 8080 only.
    const SLICES: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.10], conditions: {ready: false}}]\nports: [{name: http, port: 9999, protocol: TCP}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.20]}]\nports: [{port: 8080}]\n---\n";

    #[test_case("source: {services: {name: web}}", &WEB, Allow; "source service in the policy namespace")]
    #[test_case("source: {services: {name: web, namespace: default}}", &JOB, Deny; "not an endpoint of it")]
    #[test_case("source: {services: {name: nope}}", &WEB, Deny; "an unknown service has no endpoints")]
    #[test_case("source: {services: {name: web, namespace: other}}", &WEB, Deny; "the same name in another namespace")]
    #[test_case("destination: {services: {name: db}}", &WEB, Allow; "destination address and port")]
    #[test_case("destination: {services: {name: db}}", &Req { port: 9090, ..WEB }, Deny; "another port of the endpoint")]
    #[test_case("destination: {services: {name: web}}", &WEB, Deny; "an endpoint of another service")]
    #[test_case("source: {services: {name: web}}", &PLAIN, Allow; "by address, with or without an identity")]
    fn services(entity: &str, r: &Req, want: Verdict) {
        let policy = format!("{SLICES}{}", np(&format!("[{{action: Allow, {entity}}}]")));
        assert_eq!(decide(&policy, r), want);
    }

    #[test]
    fn services_cannot_be_combined_and_globals_name_the_namespace() {
        for (rules, field) in [
            (
                "[{action: Allow, source: {services: {name: web}, selector: all()}}]",
                "cannot be combined with `selector`",
            ),
            (
                "[{action: Allow, source: {services: {name: web}, nets: [10.0.0.0/8]}}]",
                "cannot be combined with `nets`",
            ),
            (
                "[{action: Allow, source: {services: {name: web}, serviceAccounts: {names: [steve]}}}]",
                "cannot be combined with `serviceAccounts`",
            ),
            (
                "[{action: Allow, source: {services: {name: \"\"}}}]",
                "a Service name is required",
            ),
        ] {
            let (v, reason) =
                decide_with(&format!("{SLICES}{}", np(rules)), &WEB, &Options::default());
            assert_eq!(v, Deny, "{rules}");
            assert!(reason.contains(field), "{rules}: {reason}");
        }
        let (v, reason) = decide_with(
            &format!(
                "{SLICES}{}",
                gnp("[{action: Allow, source: {services: {name: web}}}]")
            ),
            &WEB,
            &Options::default(),
        );
        assert_eq!(v, Deny);
        assert!(
            reason.contains("must name the Service's namespace"),
            "{reason}"
        );
        let global = gnp("[{action: Allow, source: {services: {name: web, namespace: default}}}]");
        assert_eq!(decide(&format!("{SLICES}{global}"), &WEB), Allow);
    }

    // Actions, Log, end of tier.
    #[test_case("[{action: Allow}]", WEB, Allow; "bare allow")]
    #[test_case("[{action: Deny}]", WEB, Deny; "bare deny")]
    #[test_case("[]", WEB, Deny; "no rules: end of tier deny")]
    #[test_case("[{action: Log}, {action: Allow}]", WEB, Allow; "log continues")]
    #[test_case("[{action: Log}]", WEB, Deny; "log only reaches end of tier")]
    #[test_case("[{action: allow}]", WEB, Allow; "action case-insensitive")]
    #[test_case("[{action: Pass}]", WEB, Allow; "pass out of the last tier allows")]
    // Protocol.
    #[test_case("[{action: Allow, protocol: TCP}]", WEB, Allow; "protocol tcp")]
    #[test_case("[{action: Allow, protocol: tcp}]", WEB, Allow; "protocol name case-insensitive")]
    #[test_case("[{action: Allow, protocol: 6}]", WEB, Allow; "protocol number")]
    #[test_case("[{action: Allow, protocol: UDP}]", WEB, Deny; "protocol udp never matches http")]
    #[test_case("[{action: Allow, notProtocol: TCP}]", WEB, Deny; "not protocol tcp")]
    #[test_case("[{action: Allow, notProtocol: UDP}]", WEB, Allow; "not protocol udp")]
    // Nets.
    #[test_case("[{action: Allow, source: {nets: [10.0.0.0/24]}}]", WEB, Allow; "source net")]
    #[test_case("[{action: Allow, source: {nets: [10.0.1.0/24]}}]", WEB, Deny; "source net miss")]
    #[test_case("[{action: Allow, source: {nets: ['::/0']}}]", WEB, Deny; "ipv6 net never matches ipv4")]
    #[test_case("[{action: Allow, source: {notNets: [10.0.0.10/32]}}]", WEB, Deny; "source not net")]
    #[test_case("[{action: Allow, source: {notNets: [10.9.0.0/16]}}]", WEB, Allow; "source not net miss")]
    #[test_case("[{action: Allow, destination: {nets: [10.0.0.20]}}]", WEB, Allow; "destination bare address net")]
    // Ports.
    #[test_case("[{action: Allow, destination: {ports: [8080]}}]", WEB, Allow; "destination port")]
    #[test_case("[{action: Allow, destination: {ports: [80]}}]", WEB, Deny; "destination port miss")]
    #[test_case("[{action: Allow, destination: {ports: ['8000:8080']}}]", WEB, Allow; "port range inclusive")]
    #[test_case("[{action: Allow, destination: {ports: ['8081:9000']}}]", WEB, Deny; "port range miss")]
    #[test_case("[{action: Allow, destination: {ports: [http]}}]", WEB, Allow; "named port")]
    #[test_case("[{action: Allow, destination: {ports: [grpc]}}]", WEB, Deny; "unknown named port")]
    #[test_case("[{action: Allow, destination: {notPorts: [8080]}}]", WEB, Deny; "not port")]
    #[test_case("[{action: Allow, source: {ports: ['50000:50001']}}]", WEB, Allow; "source port")]
    // Service accounts.
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", WEB, Allow; "sa name")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [bob, steve]}}}]", WEB, Allow; "sa names any")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [Steve]}}}]", WEB, Deny; "sa name case-sensitive")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: role == 'client'}}}]", WEB, Allow; "sa selector")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: \"projectcalico.org/name == 'steve'\"}}}]", WEB, Allow; "sa synthetic name label")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve], selector: role == 'x'}}}]", WEB, Deny; "sa names and selector are anded")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: has(role)}}}]", JOB, Deny; "unknown sa has no labels")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", PLAIN, Deny; "sa needs identity")]
    #[test_case("[{action: Deny, source: {serviceAccounts: {names: [steve]}}}, {action: Allow}]", PLAIN, Allow; "no identity skips a deny by sa")]
    #[test_case("[{action: Allow, destination: {serviceAccounts: {names: [sue]}}}]", WEB, Allow; "destination sa")]
    // Namespaces.
    #[test_case("[{action: Allow, source: {namespaceSelector: env == 'prod'}}]", WEB, Allow; "namespace selector")]
    #[test_case("[{action: Allow, source: {namespaceSelector: env == 'prod'}}]", JOB, Deny; "namespace selector miss")]
    #[test_case("[{action: Allow, source: {namespaceSelector: \"projectcalico.org/name == 'other'\"}}]", JOB, Allow; "namespace synthetic name label")]
    #[test_case("[{action: Allow, source: {namespaceSelector: all()}}]", JOB, Allow; "namespace all")]
    #[test_case("[{action: Allow, source: {namespaceSelector: all()}}]", PLAIN, Deny; "namespace all needs identity")]
    #[test_case("[{action: Allow, source: {namespaceSelector: global()}}]", WEB, Deny; "namespace global never matches a workload")]
    // Source selectors.
    #[test_case("[{action: Allow, source: {selector: app == 'web'}}]", WEB, Allow; "source selector")]
    #[test_case("[{action: Allow, source: {selector: app == 'db'}}]", WEB, Deny; "source selector miss")]
    #[test_case("[{action: Allow, source: {selector: \"projectcalico.org/serviceaccount == 'steve'\"}}]", WEB, Allow; "source synthetic sa label")]
    #[test_case("[{action: Allow, source: {selector: app == 'web'}}]", PLAIN, Deny; "source selector needs identity")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'web'}}]", WEB, Deny; "not selector")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'x'}}]", WEB, Allow; "not selector miss")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'x'}}]", PLAIN, Deny; "not selector needs identity")]
    #[test_case("[{action: Allow, source: {selector: all()}}]", Req { src: "10.9.9.9", ..WEB }, Deny; "selector needs a known source pod")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'web'}}]", Req { src: "10.9.9.9", ..WEB }, Allow; "not selector matches a non-workload caller")]
    #[test_case("[{action: Allow, destination: {selector: app == 'db'}}]", WEB, Allow; "destination selector")]
    // HTTP.
    #[test_case("[{action: Allow, http: {methods: [GET]}}]", WEB, Allow; "method")]
    #[test_case("[{action: Allow, http: {methods: [POST, PUT]}}]", WEB, Deny; "method miss")]
    #[test_case("[{action: Allow, http: {methods: [get]}}]", WEB, Deny; "method case-sensitive")]
    #[test_case("[{action: Allow, http: {methods: ['*']}}]", WEB, Allow; "method wildcard")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /api}]}}]", WEB, Allow; "path prefix")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /ap}]}}]", WEB, Deny; "path prefix is segment aligned")]
    #[test_case("[{action: Allow, http: {paths: [{exact: /api/items}]}}]", Req { path: "/api/items?x=1", ..WEB }, Allow; "path query stripped")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /api}]}}]", Req { path: "/api/../admin", ..WEB }, Deny; "path dot dot resolved")]
    #[test_case("[{action: Allow, http: {paths: [{prefix: /}]}}]", Req { path: "/%252e", ..WEB }, Deny; "double encoded path matches nothing")]
    #[test_case("[{action: Allow, http: {methods: [POST], paths: [{prefix: /}]}}]", Req { http: false, ..WEB }, Allow; "tcp check matches http criteria")]
    #[test_case("[{action: Allow, http: {methods: [GET], paths: [{exact: /x}]}}]", WEB, Deny; "methods and paths are anded")]
    fn gnp_rules(rules: &str, r: Req, expected: Verdict) {
        assert_eq!(decide(&gnp(rules), &r), expected);
    }

    #[test_case("[{action: Allow, source: {selector: app == 'web'}}]", WEB, Allow; "same namespace")]
    #[test_case("[{action: Allow, source: {selector: app == 'web'}}]", JOB, Deny; "selector scoped to policy namespace")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [sam]}}}]", JOB, Deny; "sa scoped to policy namespace")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'x'}}]", JOB, Deny; "not selector scoped to policy namespace")]
    #[test_case("[{action: Allow, source: {selector: app == 'web', namespaceSelector: all()}}]", JOB, Allow; "namespace selector lifts scoping")]
    #[test_case("[{action: Allow, source: {nets: [10.0.1.0/24]}}]", JOB, Allow; "nets are not scoped")]
    fn np_rules(rules: &str, r: Req, expected: Verdict) {
        assert_eq!(decide(&np(rules), &r), expected);
    }

    const TIERS: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200, defaultAction: Pass}
"#;

    fn policy(name: &str, tier: &str, order: Option<f64>, rules: &str) -> String {
        let order = order.map(|o| format!("  order: {o}\n")).unwrap_or_default();
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  tier: {tier}\n{order}  selector: app == 'db'\n  ingress: {rules}\n"
        )
    }

    #[test]
    fn tiers_run_in_order() {
        let s = format!(
            "{TIERS}{}{}",
            policy("allow-all", "default", None, "[{action: Allow}]"),
            policy(
                "deny-steve",
                "security",
                None,
                "[{action: Deny, source: {serviceAccounts: {names: [steve]}}}, {action: Pass}]"
            ),
        );
        assert_eq!(decide(&s, &WEB), Deny);
        assert_eq!(decide(&s, &JOB), Allow);
    }

    #[test]
    fn end_of_tier_deny_stops_later_tiers() {
        let s = format!(
            "{TIERS}{}{}",
            policy(
                "nothing",
                "security",
                None,
                "[{action: Allow, source: {nets: [1.2.3.4/32]}}]"
            ),
            policy("allow-all", "default", None, "[{action: Allow}]"),
        );
        let (v, reason) = decide_with(&s, &WEB, &Options::default());
        assert_eq!(v, Deny);
        assert_eq!(
            reason,
            "denied at the end of tier security: no rule matched"
        );
    }

    #[test]
    fn tier_default_pass_continues() {
        let s = format!(
            "{TIERS}{}{}",
            policy(
                "nothing",
                "platform",
                None,
                "[{action: Allow, source: {nets: [1.2.3.4/32]}}]"
            ),
            policy("deny-all", "default", None, "[{action: Deny}]"),
        );
        let (v, reason) = decide_with(&s, &WEB, &Options::default());
        assert_eq!(
            (v, reason.as_str()),
            (Deny, "denied by rule 0 of policy deny-all in tier default")
        );
    }

    #[test]
    fn pass_skips_the_rest_of_the_tier() {
        let s = format!(
            "{TIERS}{}{}",
            policy("a-pass", "security", Some(1.0), "[{action: Pass}]"),
            policy("b-deny", "security", Some(2.0), "[{action: Deny}]"),
        );
        let (v, reason) = decide_with(&s, &WEB, &Options::default());
        assert_eq!(
            (v, reason.as_str()),
            (Allow, "allowed: every tier passed (last: security)")
        );
    }

    #[test_case(Some(1.0), Some(2.0), Deny; "lower order first")]
    #[test_case(Some(2.0), Some(1.0), Allow; "higher order later")]
    #[test_case(None, Some(1000.0), Allow; "absent order sorts last")]
    #[test_case(Some(5.0), Some(5.0), Deny; "equal order sorts by name")]
    fn policy_order(deny: Option<f64>, allow: Option<f64>, expected: Verdict) {
        let s = format!(
            "{}{}",
            policy("a-deny", "default", deny, "[{action: Deny}]"),
            policy("b-allow", "default", allow, "[{action: Allow}]"),
        );
        assert_eq!(decide(&s, &WEB), expected);
    }

    #[test]
    fn unselected_destination_is_open() {
        let s = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: app == 'other', ingress: [{action: Deny}]}\n";
        let (v, reason) = decide_with(s, &WEB, &Options::default());
        assert_eq!(
            (v, reason.as_str()),
            (Allow, "allowed: no policy selects the destination")
        );
    }

    #[test_case("types: [Egress], egress: [{action: Deny}]", Allow; "egress only")]
    #[test_case("egress: [{action: Deny}]", Allow; "absent types with egress rules only")]
    #[test_case("ingress: [], egress: []", Deny; "absent types and no rules is ingress")]
    #[test_case("types: [Ingress, Egress], egress: [{action: Allow}]", Deny; "both types with no ingress rules")]
    fn policy_types(spec: &str, expected: Verdict) {
        let s = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{selector: app == 'db', {spec}}}\n"
        );
        assert_eq!(decide(&s, &WEB), expected);
    }

    #[test_case("namespaceSelector: env == 'prod'", Deny; "gnp namespace selector selects")]
    #[test_case("namespaceSelector: env == 'dev'", Allow; "gnp namespace selector does not select")]
    #[test_case("serviceAccountSelector: role == 'db'", Deny; "sa selector selects")]
    #[test_case("serviceAccountSelector: role == 'client'", Allow; "sa selector does not select")]
    fn applicability(extra: &str, expected: Verdict) {
        let s = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{{extra}, ingress: [{{action: Deny}}]}}\n"
        );
        assert_eq!(decide(&s, &WEB), expected);
    }

    #[test]
    fn network_policy_selects_only_its_namespace() {
        let s = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: other}\nspec: {ingress: [{action: Deny}]}\n";
        assert_eq!(decide(s, &WEB), Allow);
    }

    #[test]
    fn staged_policies_are_not_enforced() {
        let s = "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: app == 'db', ingress: [{action: Deny}]}\n";
        assert_eq!(decide(s, &WEB), Allow);
    }

    #[test]
    fn unknown_destination_is_denied() {
        let (v, reason) = decide_with(
            "",
            &Req {
                dst: "10.9.9.9",
                ..WEB
            },
            &Options::default(),
        );
        assert_eq!((v, reason.as_str()), (Deny, "unknown destination"));
        let (v, _) = decide_with(
            "",
            &Req {
                dst: "not-an-ip",
                ..WEB
            },
            &Options::default(),
        );
        assert_eq!(v, Deny);
    }

    #[test]
    fn identity_mismatch_is_denied() {
        let r = Req {
            principal: "spiffe://cluster.local/ns/default/sa/admin",
            ..WEB
        };
        let (v, reason) = decide_with(&gnp("[{action: Allow}]"), &r, &Options::default());
        assert_eq!(v, Deny);
        assert!(
            reason.starts_with("identity mismatch: the source address belongs to pod default/web"),
            "{reason}"
        );
    }

    #[test]
    fn invalid_policy_fails_closed() {
        let (v, reason) = decide_with(
            &gnp("[{action: Allow, source: {selector: 'app = web'}}]"),
            &WEB,
            &Options::default(),
        );
        assert_eq!(v, Deny);
        assert!(
            reason.starts_with(
                "policy p invalid: spec.ingress[0].source.selector: invalid selector `app = web`"
            ),
            "{reason}"
        );
    }

    #[test]
    fn invalid_policy_outside_its_namespace_does_not_deny() {
        let s = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: other}\nspec: {selector: 'bad selector', ingress: [{action: Bogus}]}\n";
        assert_eq!(decide(s, &WEB), Allow);
    }

    #[test]
    fn policy_in_a_missing_tier_fails_closed() {
        let (v, reason) = decide_with(
            &policy("p", "nope", None, "[{action: Allow}]"),
            &WEB,
            &Options::default(),
        );
        assert_eq!(
            (v, reason.as_str()),
            (Deny, "policy p invalid: tier `nope` does not exist")
        );
    }

    #[test]
    fn invalid_principal_is_unauthenticated() {
        let r = Req {
            principal: "spiffe://cluster.local/ns/default/sa/steve/extra",
            ..WEB
        };
        assert_eq!(
            decide(
                &gnp("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]"),
                &r
            ),
            Deny
        );
        assert_eq!(
            decide(&gnp("[{action: Allow, source: {nets: [10.0.0.0/8]}}]"), &r),
            Allow
        );
    }

    #[test]
    fn network_identity_when_enabled() {
        let rules = gnp("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]");
        let opts = Options {
            trust_network_identity: true,
            ..Options::default()
        };
        assert_eq!(decide_with(&rules, &PLAIN, &Options::default()).0, Deny);
        assert_eq!(decide_with(&rules, &PLAIN, &opts).0, Allow);
    }

    #[test]
    fn workload_option_fixes_the_destination() {
        let opts = Options {
            workload: Some(("default".into(), "db".into())),
            ..Options::default()
        };
        let r = Req {
            dst: "192.0.2.1",
            ..WEB
        };
        assert_eq!(decide_with(&gnp("[{action: Deny}]"), &r, &opts).0, Deny);
        assert_eq!(decide_with(&gnp("[{action: Allow}]"), &r, &opts).0, Allow);
    }

    const KNP: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
    ports:
    - {port: 8080}
"#;

    #[test_case(WEB, Allow; "pod in namespace on port")]
    #[test_case(Req { port: 9090, ..WEB }, Deny; "wrong port")]
    #[test_case(JOB, Deny; "pod in another namespace")]
    #[test_case(PLAIN, Deny; "no identity")]
    fn kubernetes_network_policy(r: Req, expected: Verdict) {
        assert_eq!(decide(KNP, &r), expected);
    }

    #[test]
    fn kubernetes_network_policy_name_and_tier() {
        let s = KNP.replace("[web]", "[nope]");
        let (_, reason) = decide_with(&s, &WEB, &Options::default());
        assert_eq!(reason, "denied at the end of tier default: no rule matched");
        let snap = snapshot(KNP);
        assert_eq!(snap.policies[0].id.to_string(), "default/knp.default.db");
        assert_eq!(snap.policies[0].order, Some(1000.0));
    }
}

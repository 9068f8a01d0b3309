//! Step four: evaluate one request against a [`Snapshot`]. Pure: no I/O, no locks, no
//! allocation; the request borrows from the wire message.
//!
//! Semantics: `shared/SEMANTICS.md` (normative), after Calico's Dikastes
//! (`app-policy/checker/check.go`, `match.go`) with its documented departures: identity criteria
//! need the source address to be a known pod *and* the principal to agree with it (Calico's IP
//! sets and Dikastes' principal check together); with no identity they do not match in granting
//! rules (fail closed), while Deny rules see the caller's network identity, the pod at its
//! address, so that lacking an identity never escapes a Deny.

use std::net::IpAddr;

use super::{
    compile::{Action, Entity, NamespaceMatch, PortMatch, Rule},
    decision::{Cause, Decision},
    endpoints::Endpoint,
    index::{EndpointIdx, PolicyIdx, TierIdx},
    netsets::RuleSets,
    path::{self, PathOutcome, RequestPath},
    snapshot::{LabelMap, ServiceIndex, Snapshot},
};
use crate::identity::{Rejection, spiffe::SpiffeRef};

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
    /// The path as upstreams may read it (SEMANTICS.md §4).
    pub path: RequestPath<'a>,
}

impl<'a> HttpRequest<'a> {
    /// Builds the HTTP part, reading the path once.
    pub fn new(method: &'a str, raw_path: &'a str) -> Self {
        HttpRequest {
            method,
            path: path::readings(raw_path),
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
    /// Let a valid principal whose source address is no known workload match `serviceAccounts`,
    /// `namespaceSelector`, namespace scoping and `notSelector` on the principal alone (for
    /// deployments where the address Envoy reports is a gateway's or waypoint's). Off by default:
    /// these criteria need the address *and* the certificate (SEMANTICS.md §1).
    pub identity_only_source: bool,
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
#[derive(Clone, Copy)]
struct Peer<'a> {
    identity: Option<Identity<'a>>,
    /// The workload, only when it is trusted to be this peer.
    endpoint: Option<&'a Endpoint>,
    /// The workload at the address, trusted or not (network identity, as in Calico's IP sets).
    at_addr: Option<&'a Endpoint>,
    ns_labels: &'a LabelMap,
    sa_labels: &'a LabelMap,
    addr: Addr,
    /// Whether an address outside every selected set satisfies `notSelector` without an
    /// identity: true when the peer is seen as Calico's IP sets see it (its address).
    by_address: bool,
}

/// How the rules see the source: one view for rules that grant (Allow, Pass, Log), one for Deny
/// rules, which never treat a caller better for lacking an identity (SEMANTICS.md §1).
struct Sources<'a> {
    grant: Peer<'a>,
    deny: Peer<'a>,
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
    /// `http.paths` matched some readings of the request path and not others, or the path
    /// cannot be read, and every other criterion matched: the request is denied there.
    AmbiguousPath,
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
            Criterion::AmbiguousPath => return f.write_str("http.paths (ambiguous path)"),
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
    let Some(dst) = dst_idx.and_then(|i| snap.endpoints.get(i.get())) else {
        trace.endpoints(None, None);
        return Decision::deny(Cause::UnknownDestination);
    };
    let Some(plan) = snap.plans.get(dst.class.get()) else {
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
    let src_ep = src_idx.and_then(|i| snap.endpoints.get(i.get()));
    if let (Principal::Valid(id), Some(source), Some(ep)) = (req.principal, src_idx, src_ep)
        && (id.namespace() != &*ep.namespace || id.service_account() != &*ep.service_account)
    {
        // "Its labels are trusted only when the Pod's namespace and service account equal the
        // authenticated identity's. A disagreement is a deny" (SEMANTICS.md §1).
        trace.endpoints(dst_idx, None);
        return Decision::deny(Cause::IdentityMismatch { source });
    }
    let sources = sources(snap, req, opts, src_ep);
    trace.endpoints(dst_idx, sources.grant.endpoint.and(src_idx));
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
        by_address: true,
    };

    let mut passed = None;
    'tiers: for tp in &plan.tiers {
        trace.tier(tp.tier);
        for &pi in &tp.policies {
            // INVARIANT: plans list only policies that govern ingress.
            let Some(rules) = snap
                .policies
                .get(pi.get())
                .and_then(|p| p.ingress.as_deref())
            else {
                continue;
            };
            trace.policy(pi);
            for (ri, rule) in rules.iter().enumerate() {
                let source = match rule.action {
                    Action::Deny => &sources.deny,
                    _ => &sources.grant,
                };
                let sets = snap.net_sets.rule(pi, ri);
                let result = rule_matches(rule, req, source, &destination, &snap.services, sets);
                trace.rule(pi, ri as u32, result);
                let ambiguous_path = match result {
                    Ok(()) => false,
                    // "Matching under some but not all [readings] makes the path ambiguous: the
                    // request is denied there" (SEMANTICS.md §4), whatever the rule's action:
                    // a later rule must not allow it.
                    Err(Criterion::AmbiguousPath) => true,
                    Err(_) => continue,
                };
                let cause = Cause::Rule {
                    policy: pi,
                    rule: ri as u32,
                    action: rule.action,
                    ambiguous_path,
                };
                if ambiguous_path {
                    return Decision::deny(cause);
                }
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

/// The source as grant rules and as Deny rules see it (SEMANTICS.md §1), given the workload
/// at the source address (which, with a valid principal, agrees with it).
///
/// - "Network identity and certificate together": with a valid principal, identity criteria
///   match only when the source address is that workload. From an address that is no workload
///   they match nothing, unless `identity_only_source` lets the principal alone stand.
/// - "No identity": grant rules see no identity (unless `trust_network_identity` resolves an
///   absent principal by address); "a Deny rule is never escaped by lacking an identity": Deny
///   rules see the caller's network identity, the workload at the address, as Calico's IP sets
///   would match it. An invalid principal is treated as an absent one there.
fn sources<'a>(
    snap: &'a Snapshot,
    req: &Request<'a>,
    opts: &Options,
    src_ep: Option<&'a Endpoint>,
) -> Sources<'a> {
    let peer = |identity: Option<Identity<'a>>, endpoint: Option<&'a Endpoint>, by_address| {
        let no_labels = snap.namespace_labels("");
        Peer {
            identity,
            endpoint,
            at_addr: src_ep,
            ns_labels: identity.map_or(no_labels, |i| snap.namespace_labels(i.namespace)),
            sa_labels: identity.map_or(no_labels, |i| {
                snap.service_account_labels(i.namespace, i.service_account)
            }),
            addr: req.source,
            by_address,
        }
    };
    // The caller as its address identifies it: what Calico's IP sets match.
    let network = || {
        let identity = src_ep.map(|ep| Identity {
            namespace: &ep.namespace,
            service_account: &ep.service_account,
        });
        peer(identity, src_ep, true)
    };
    match (req.principal, src_ep) {
        // INVARIANT: the caller checked that the principal agrees with the workload.
        (Principal::Valid(_), Some(_)) => {
            let p = network();
            Sources { grant: p, deny: p }
        }
        (Principal::Valid(id), None) => {
            // What Dikastes alone would match: the principal, no labels.
            let principal = peer(Some(identity_of(id)), None, true);
            let grant = if opts.identity_only_source {
                principal
            } else {
                peer(None, None, false)
            };
            Sources {
                grant,
                deny: principal,
            }
        }
        (Principal::Absent, Some(_)) if opts.trust_network_identity => {
            let p = network();
            Sources { grant: p, deny: p }
        }
        _ => Sources {
            grant: peer(None, None, false),
            deny: network(),
        },
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
    let ambiguous = http_matches(rule, req)? == PathOutcome::Ambiguous;
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
    .map_err(|c| Criterion::Entity(Side::Destination, c))?;
    if ambiguous {
        return Err(Criterion::AmbiguousPath);
    }
    Ok(())
}

/// `Ok(Match)` or `Ok(Ambiguous)` (the path criterion matched some readings only).
fn http_matches(rule: &Rule, req: &Request<'_>) -> Result<PathOutcome, Criterion> {
    let (Some(h), Some(r)) = (&rule.http, &req.http) else {
        // No HTTP criteria, or a TCP-level check: "a request without an HTTP part matches any
        // method criterion" and any path criterion (reference/dikastes-semantics.md §5.2).
        return Ok(PathOutcome::Match);
    };
    if !(h.methods.is_empty() || h.any_method || h.methods.iter().any(|m| **m == *r.method)) {
        return Err(Criterion::HttpMethods);
    }
    if h.paths.is_empty() {
        // Every path entry of the rule was skipped (unnormalizable): it matches no path.
        return if h.skipped_paths == 0 {
            Ok(PathOutcome::Match)
        } else {
            Err(Criterion::HttpPaths)
        };
    }
    match r.path.outcome(&h.paths) {
        PathOutcome::NoMatch => Err(Criterion::HttpPaths),
        o => Ok(o),
    }
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
/// seen by its address or whose identity we know (no identity: identity criteria do not match).
fn not_selector_ok(e: &Entity, side: &Peer<'_>) -> Result<(), EntityCriterion> {
    if let Some(s) = &e.not_selector
        && ((side.identity.is_none() && !side.by_address)
            || side.endpoint.is_some_and(|ep| s.matches(&*ep.labels)))
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
        policy::{decision::Verdict, protocol, store::Store},
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
        snapshot_on(None, policies)
    }

    /// The cluster and `policies`, as an instance serving `node` (`--node`) sees it.
    fn snapshot_on(node: Option<&str>, policies: &str) -> Snapshot {
        let mut store = Store::new();
        store.set_node(node);
        store.apply_yaml(&format!("{CLUSTER}\n---\n{policies}"));
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
        decide_on(&snapshot(policies), r, opts)
    }

    fn decide_on(snap: &Snapshot, r: &Req, opts: &Options) -> (Verdict, String) {
        let principal = match r.principal {
            "" => Principal::Absent,
            p => match p.strip_prefix("untrusted ") {
                Some(p) => SpiffeRef::parse(p).map_or(Principal::Invalid, Principal::Untrusted),
                None => SpiffeRef::parse(p).map_or(Principal::Invalid, Principal::Valid),
            },
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
            protocol: protocol::TCP,
            http: r.http.then(|| HttpRequest::new(r.method, r.path)),
        };
        let d = evaluate(snap, &req, opts);
        (d.verdict, d.reason(snap))
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
    // "Services are only allowed in the source on Ingress rules" (Calico `validator.go`
    // validateRule): such a policy is invalid and fails closed.
    #[test_case("destination: {services: {name: db}}", &WEB, Deny; "destination services in an ingress rule is invalid")]
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
    #[test_case("[{action: allow}]", WEB, Deny; "lower-case action is invalid as in calico validator.go policy_common.go Enum")]
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
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: [8080]}}]", WEB, Allow; "destination port")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: [80]}}]", WEB, Deny; "destination port miss")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: ['8000:8080']}}]", WEB, Allow; "port range inclusive")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {ports: ['8081:9000']}}]", WEB, Deny; "port range miss")]
    #[test_case("[{action: Allow, destination: {ports: [http]}}]", WEB, Allow; "named port")]
    #[test_case("[{action: Allow, destination: {ports: [grpc]}}]", WEB, Deny; "unknown named port")]
    #[test_case("[{action: Allow, protocol: TCP, destination: {notPorts: [8080]}}]", WEB, Deny; "not port")]
    #[test_case("[{action: Allow, protocol: TCP, source: {ports: ['50000:50001']}}]", WEB, Allow; "source port")]
    // Service accounts.
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", WEB, Allow; "sa name")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [bob, steve]}}}]", WEB, Allow; "sa names any")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [Steve]}}}]", WEB, Deny; "sa name case-sensitive")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: role == 'client'}}}]", WEB, Allow; "sa selector")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: \"projectcalico.org/name == 'steve'\"}}}]", WEB, Allow; "sa synthetic name label")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve], selector: role == 'x'}}}]", WEB, Deny; "sa names and selector are anded")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {selector: has(role)}}}]", JOB, Deny; "unknown sa has no labels")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", PLAIN, Deny; "sa needs identity")]
    #[test_case("[{action: Deny, source: {serviceAccounts: {names: [steve]}}}, {action: Allow}]", PLAIN, Deny; "no identity does not escape a deny by sa")]
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
    #[test_case("[{action: Allow, source: {notSelector: app == 'web'}}]", Req { src: "10.9.9.9", ..WEB }, Deny; "not selector needs a known source pod with a principal")]
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

    /// `web`'s certificate from an address that is no pod (a gateway, a waypoint, a spoofed IP).
    const GATEWAY: Req = Req {
        src: "10.9.9.9",
        ..WEB
    };

    fn with_opt_out(opt_out: bool) -> Options {
        Options {
            identity_only_source: opt_out,
            ..Options::default()
        }
    }

    // "Network identity and certificate together" (SEMANTICS.md §1). Calico compiles these
    // criteria into the rule's source IP set (libcalico-go
    // `syncersv1/updateprocessors/rules.go` GetEntityRuleSelector) and Dikastes requires the
    // source IP in that set as well as the principal (`app-policy/checker/match.go`
    // matchSource → matchSrcIPSets, matchServiceAccounts, matchNamespace).
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", false, Deny; "sa needs the pod address")]
    #[test_case("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]", true, Allow; "sa on the principal alone with the opt-out")]
    #[test_case("[{action: Allow, source: {namespaceSelector: env == 'prod'}}]", false, Deny; "namespace selector needs the pod address")]
    #[test_case("[{action: Allow, source: {namespaceSelector: env == 'prod'}}]", true, Allow; "namespace selector on the principal with the opt-out")]
    #[test_case("[{action: Allow, source: {namespaceSelector: all()}}]", false, Deny; "namespace all needs the pod address")]
    #[test_case("[{action: Allow, source: {selector: app == 'web'}}]", true, Deny; "selector needs pod labels even with the opt-out")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'x'}}]", false, Deny; "not selector needs the pod address")]
    #[test_case("[{action: Allow, source: {notSelector: app == 'x'}}]", true, Allow; "not selector on the principal with the opt-out")]
    #[test_case("[{action: Allow, source: {nets: [10.9.0.0/16]}}]", false, Allow; "nets apply to any address")]
    #[test_case("[{action: Deny, source: {serviceAccounts: {names: [steve]}}}, {action: Allow}]", false, Deny; "a deny on the principal holds from any address")]
    #[test_case("[{action: Pass, source: {serviceAccounts: {names: [steve]}}}, {action: Deny}]", false, Deny; "pass grants and needs the pod address")]
    fn principal_from_an_address_that_is_no_pod(rules: &str, opt_out: bool, expected: Verdict) {
        let (v, _) = decide_with(&gnp(rules), &GATEWAY, &with_opt_out(opt_out));
        assert_eq!(v, expected);
    }

    #[test_case(false, Deny; "scoping needs the pod address")]
    #[test_case(true, Allow; "scoping on the principal with the opt-out")]
    fn namespace_scoping_from_an_address_that_is_no_pod(opt_out: bool, expected: Verdict) {
        let rules = np("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]");
        assert_eq!(
            decide_with(&rules, &GATEWAY, &with_opt_out(opt_out)).0,
            expected
        );
    }

    /// `job`'s pod (other/sam, labels `app: web`) with no principal, an invalid one, and one from
    /// a trust domain that is not allowed.
    const JOB_PLAIN: Req = Req {
        principal: "",
        ..JOB
    };
    const JOB_INVALID: Req = Req {
        principal: "spiffe://cluster.local/ns/other/sa/sam/extra",
        ..JOB
    };
    const JOB_UNTRUSTED: Req = Req {
        principal: "untrusted spiffe://elsewhere.example/ns/other/sa/sam",
        ..JOB
    };

    // "A Deny rule is never escaped by lacking an identity" (SEMANTICS.md §1): its identity
    // criteria are matched against the pod at the source address, as Calico's IP sets match
    // it whatever the principal (Dikastes `checker/match.go` matchSrcIPSets; Felix fills the
    // sets from every workload, `felix/calc` ipset members), and an invalid principal is never
    // treated better than an absent one, with or without `--trust-network-identity`.
    #[test_case("[{action: Deny, source: {namespaceSelector: env == 'dev'}}, {action: Allow}]"; "namespace selector")]
    #[test_case("[{action: Deny, source: {serviceAccounts: {names: [sam]}}}, {action: Allow}]"; "service account")]
    #[test_case("[{action: Deny, source: {selector: app == 'web', namespaceSelector: all()}}, {action: Allow}]"; "selector")]
    #[test_case("[{action: Deny, source: {notSelector: app == 'db'}}, {action: Allow}]"; "not selector")]
    fn a_deny_is_not_escaped_without_an_identity(rules: &str) {
        let rules = gnp(rules);
        for trust in [false, true] {
            let opts = Options {
                trust_network_identity: trust,
                ..Options::default()
            };
            for r in [&JOB, &JOB_PLAIN, &JOB_INVALID, &JOB_UNTRUSTED] {
                let (v, reason) = decide_with(&rules, r, &opts);
                assert_eq!(
                    (v, reason.as_str()),
                    (Deny, "denied by rule 0 of policy p in tier default"),
                    "principal {:?}, trust {trust}",
                    r.principal
                );
            }
        }
    }

    #[test]
    fn a_deny_by_not_selector_matches_an_unknown_address_without_an_identity() {
        // Calico: an address in no selected set satisfies `notSelector` (`!in ipset`).
        let rules = gnp("[{action: Deny, source: {notSelector: app == 'web'}}, {action: Allow}]");
        let r = Req {
            src: "10.9.9.9",
            principal: "",
            ..WEB
        };
        assert_eq!(decide(&rules, &r), Deny);
        // A namespaced policy scopes it to its namespace: no pod, not in that set.
        let rules = np("[{action: Deny, source: {notSelector: app == 'db'}}, {action: Allow}]");
        assert_eq!(decide(&rules, &r), Allow);
    }

    #[test]
    fn an_invalid_principal_is_never_better_than_an_absent_one_for_grants() {
        let rules = gnp("[{action: Allow, source: {namespaceSelector: env == 'dev'}}]");
        let trust = Options {
            trust_network_identity: true,
            ..Options::default()
        };
        assert_eq!(decide_with(&rules, &JOB_PLAIN, &trust).0, Allow);
        for r in [&JOB_INVALID, &JOB_UNTRUSTED] {
            assert_eq!(decide_with(&rules, r, &trust).0, Deny, "{}", r.principal);
            assert_eq!(decide(&rules, r), Deny, "{}", r.principal);
        }
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

    /// A pod of `default/steve` labelled `app: web` at `ip`, with these metadata fields.
    fn steve_pod(name: &str, meta: &str, status: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: web}}{meta}}}\nspec: {{serviceAccountName: steve}}\nstatus: {{phase: Running{status}}}\n"
        )
    }

    // Pod IPs as Calico reads them (libcalico-go `k8s/conversion/conversion.go` getPodIPs:
    // status, then `cni.projectcalico.org/podIPs`, `…/podIP`, `vpc.amazonaws.com/pod-ips`) and
    // when a pod is finished (IsFinished: a deletionTimestamp and an emptied CNI annotation).
    #[test_case(", annotations: {cni.projectcalico.org/podIPs: '10.0.2.1/32,fd00::1/128'}", "", Allow; "calico cni plural annotation")]
    #[test_case(", annotations: {cni.projectcalico.org/podIP: 10.0.2.1/32}", "", Allow; "calico cni singular annotation")]
    #[test_case(", annotations: {vpc.amazonaws.com/pod-ips: 10.0.2.1}", "", Allow; "aws vpc cni annotation")]
    #[test_case(", annotations: {cni.projectcalico.org/podIP: 10.9.9.9/32}", ", podIP: 10.0.2.1", Allow; "status wins over the annotation")]
    #[test_case(", deletionTimestamp: '2026-01-01T00:00:00Z', annotations: {cni.projectcalico.org/podIP: ''}", ", podIP: 10.0.2.1", Deny; "terminating with calico cni ip released is finished")]
    #[test_case(", deletionTimestamp: '2026-01-01T00:00:00Z', annotations: {vpc.amazonaws.com/pod-ips: ''}", ", podIP: 10.0.2.1", Deny; "terminating with aws cni ip released is finished")]
    #[test_case(", deletionTimestamp: '2026-01-01T00:00:00Z', annotations: {cni.projectcalico.org/podIP: 10.0.2.1/32}", ", podIP: 10.0.2.1", Allow; "terminating in its grace period is still a workload")]
    #[test_case(", annotations: {cni.projectcalico.org/podIP: ''}", ", podIP: 10.0.2.1", Allow; "an empty annotation without deletion changes nothing")]
    fn pod_ip_lifecycle(meta: &str, status: &str, expected: Verdict) {
        let rules = gnp("[{action: Allow, source: {serviceAccounts: {names: [steve]}}}]");
        let state = format!("{}---\n{rules}", steve_pod("cni", meta, status));
        let r = Req {
            src: "10.0.2.1",
            ..WEB
        };
        assert_eq!(decide(&state, &r), expected);
    }

    #[test]
    fn a_finished_destination_is_unknown() {
        let state = steve_pod(
            "gone",
            ", deletionTimestamp: '2026-01-01T00:00:00Z', annotations: {cni.projectcalico.org/podIP: ''}",
            ", podIP: 10.0.2.1",
        );
        let r = Req {
            dst: "10.0.2.1",
            ..WEB
        };
        assert_eq!(
            decide_with(&state, &r, &Options::default()),
            (Deny, "unknown destination".to_owned())
        );
    }

    /// A destination whose service account name is 63 characters long: Calico gives it no
    /// `projectcalico.org/serviceaccount` label.
    fn long_sa_pod() -> String {
        let sa = "s".repeat(63);
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: long, namespace: default, labels: {{app: db}}}}\nspec: {{serviceAccountName: {sa}}}\nstatus: {{phase: Running, podIP: 10.0.0.40}}\n"
        )
    }

    // libcalico-go `updateprocessors/globalnetworkpolicyprocessor.go`
    // ConvertGlobalNetworkPolicyV3ToV1Value: with a serviceAccountSelector, every `all()` in the
    // joined selector becomes `has(projectcalico.org/serviceaccount)`; the NetworkPolicy
    // processor (`networkpolicyprocessor.go`) does no such rewrite.
    #[test_case("GlobalNetworkPolicy", "", "serviceAccountSelector: all()", "10.0.0.20", Deny; "gnp sa all selects a labelled endpoint")]
    #[test_case("GlobalNetworkPolicy", "", "serviceAccountSelector: all()", "10.0.0.40", Allow; "gnp sa all skips an endpoint without the sa label")]
    #[test_case("GlobalNetworkPolicy", "", "serviceAccountSelector: '!has(role)'", "10.0.0.40", Deny; "gnp sa selector without all is not rewritten")]
    #[test_case("GlobalNetworkPolicy", "", "selector: all(), serviceAccountSelector: '!has(role)'", "10.0.0.40", Allow; "gnp selector all is rewritten too")]
    #[test_case("GlobalNetworkPolicy", "", "selector: all(), namespaceSelector: all(), serviceAccountSelector: '!has(role)'", "10.0.0.40", Deny; "a namespace selector rewrites all first")]
    #[test_case("NetworkPolicy", ", namespace: default", "serviceAccountSelector: all()", "10.0.0.40", Deny; "np sa all is not rewritten")]
    fn service_account_selector_all(
        kind: &str,
        ns: &str,
        spec: &str,
        dst: &'static str,
        expected: Verdict,
    ) {
        let state = format!(
            "{}---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: p{ns}}}\nspec: {{{spec}, ingress: [{{action: Deny}}]}}\n",
            long_sa_pod()
        );
        assert_eq!(decide(&state, &Req { dst, ..WEB }), expected);
    }

    // libcalico-go `k8s/conversion/conversion.go` k8sRuleToCalico (protocolPorts): a port entry
    // with a protocol and no port is every port of it, and other entries never narrow it; an
    // entry with neither allows everything.
    #[test_case("[{protocol: TCP}, {protocol: TCP, port: 80}]", 8080, Allow; "protocol without port is every port")]
    #[test_case("[{protocol: TCP, port: 80}, {protocol: TCP}]", 8080, Allow; "in either order")]
    #[test_case("[{protocol: UDP}, {protocol: TCP, port: 80}]", 8080, Deny; "another protocol's entry does not widen")]
    #[test_case("[{protocol: TCP, port: 80}, {protocol: TCP, port: 8080}]", 8080, Allow; "ports of a protocol are grouped")]
    #[test_case("[{}]", 9999, Allow; "an empty entry allows all")]
    fn kubernetes_ports_without_a_port(ports: &str, port: u32, expected: Verdict) {
        let knp = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db, namespace: default}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress:\n  - ports: {ports}\n"
        );
        assert_eq!(decide(&knp, &Req { port, ..WEB }), expected);
    }

    #[test]
    fn ties_in_order_are_broken_by_name_namespace_kind() {
        // felix `calc/policy_sorter.go` PolKVLess: "<name>/<namespace>/<kind>" compared as
        // strings, so `web-allow/…` ('-' < '/') comes before `web/…`.
        let s = format!(
            "{}{}",
            policy("web", "default", Some(5.0), "[{action: Deny}]"),
            policy("web-allow", "default", Some(5.0), "[{action: Allow}]"),
        );
        let (v, reason) = decide_with(&s, &WEB, &Options::default());
        assert_eq!(
            (v, reason.as_str()),
            (
                Allow,
                "allowed by rule 0 of policy web-allow in tier default"
            )
        );
        // Same name: the namespace decides before the kind; a GNP's namespace is empty.
        let np = "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: default}\nspec: {order: 5, selector: app == 'db', ingress: [{action: Allow}]}\n";
        let s = format!(
            "{}{np}",
            policy("web", "default", Some(5.0), "[{action: Deny}]")
        );
        assert_eq!(
            decide(&s, &WEB),
            Deny,
            "web//GlobalNetworkPolicy < web/default/…"
        );
    }

    // A selector of only white space is present (libcalico-go `updateprocessors/rules.go`
    // getEndpointSelector tests `!= ""`): it parses to `all()`.
    #[test_case(np("[{action: Allow, source: {selector: app == 'web', namespaceSelector: '  '}}]"), JOB, Allow; "blank namespace selector lifts the scoping")]
    #[test_case(gnp("[{action: Allow, source: {selector: ' '}}]"), GATEWAY, Deny; "blank selector needs a workload")]
    #[test_case(gnp("[{action: Allow, source: {selector: ' '}}]"), WEB, Allow; "blank selector is all")]
    #[test_case(np("[{action: Allow, source: {notSelector: ' '}}]"), WEB, Deny; "blank not selector excludes every workload")]
    fn blank_selectors_are_present(rules: String, r: Req, expected: Verdict) {
        assert_eq!(decide(&rules, &r), expected);
    }

    #[test]
    fn an_unnormalizable_rule_path_entry_is_skipped() {
        // Dikastes `app-policy/checker/match.go` matchHTTPPaths: "HTTP Path exact rule could not
        // be normalized; skipping."
        let before =
            crate::policy::compile::SKIPPED_RULE_PATHS.load(std::sync::atomic::Ordering::Relaxed);
        let rules = gnp("[{action: Allow, http: {paths: [{exact: '/%zz'}, {prefix: /api}]}}]");
        assert_eq!(decide(&rules, &WEB), Allow);
        let after =
            crate::policy::compile::SKIPPED_RULE_PATHS.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "counted");
        // Every entry skipped: the rule matches no path (not every path).
        let rules = gnp("[{action: Allow, http: {paths: [{prefix: '/%252e'}]}}, {action: Deny}]");
        let (v, reason) = decide_with(&rules, &WEB, &Options::default());
        assert_eq!(
            (v, reason.as_str()),
            (Deny, "denied by rule 1 of policy p in tier default")
        );
    }

    // What libcalico-go's validator (`lib/validator/v3/validator.go`) and the v3 API schema
    // (`api/pkg/apis/projectcalico/v3/policy_common.go`) reject is an invalid policy here too.
    #[test_case("[{action: allow}]", "spec.ingress[0].action: `allow` is not one of"; "lower case action (Enum=Allow;Deny;Log;Pass)")]
    #[test_case("[{action: next-tier}]", "spec.ingress[0].action: `next-tier` is not one of"; "v1 action name")]
    #[test_case("[{action: Allow, source: {nets: [10.0.0.1/24]}}]", "`10.0.0.1/24` has host bits set"; "host bits set (validateIPNetwork)")]
    #[test_case("[{action: Allow, destination: {services: {name: db}}}]", "services are only allowed in the source of an ingress rule"; "destination services in ingress (validateRule)")]
    #[test_case("[{action: Allow, protocol: UDP, http: {methods: [GET]}}]", "HTTP match needs protocol TCP"; "http with a non-tcp protocol")]
    #[test_case("[{action: Allow, destination: {ports: [8080]}}]", "rules with numeric port or port range must set protocol"; "numeric port without protocol (validateRule)")]
    #[test_case("[{action: Allow, protocol: ICMP, destination: {ports: [http]}}]", "rules that specify ports must set protocol"; "ports with icmp (SupportsPorts)")]
    #[test_case("[{action: Allow, source: {notNets: [0.0.0.0/0]}}]", "catch-all CIDR in negation"; "catch all not nets (scanNets)")]
    #[test_case("[{action: Allow, source: {nets: [10.0.0.0/8], notNets: ['fd00::/8']}}]", "rule contains both IPv4 and IPv6 CIDRs"; "mixed ip versions (scanNets)")]
    fn validation_parity(rules: &str, message: &str) {
        let (v, reason) = decide_with(&gnp(rules), &WEB, &Options::default());
        assert_eq!(v, Deny);
        assert!(reason.starts_with("policy p invalid: "), "{reason}");
        assert!(reason.contains(message), "{reason}");
    }

    #[test]
    fn named_ports_need_no_protocol() {
        let rules = gnp("[{action: Allow, destination: {ports: [http]}}]");
        assert_eq!(decide(&rules, &WEB), Allow);
    }

    // "A typo in one rule must not deny a whole cluster" (SEMANTICS.md §3.6): a policy that does
    // not decode fails closed on what its readable selectors select.
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: app == 'other', ingress: [{action: Deny, sourc: {}}]}\n", Allow; "gnp typo outside its selector")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: app == 'db', ingress: [{action: Deny, sourc: {}}]}\n", Deny; "gnp typo inside its selector")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {namespaceSelector: env == 'dev', ingress: [{action: Deny, sourc: {}}]}\n", Allow; "gnp typo outside its namespace selector")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {serviceAccountSelector: role == 'client', ingress: [{action: Deny, sourc: {}}]}\n", Allow; "gnp typo outside its sa selector")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: {app: db}, ingress: [{action: Deny, sourc: {}}]}\n", Deny; "an unreadable selector fails closed everywhere")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {selector: app == 'web', ingress: 7}\n", Allow; "np wrong type outside its selector")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {selectr: app == 'web', ingress: []}\n", Deny; "a misspelt selector reads as all of its namespace")]
    #[test_case("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{fromm: []}]}\n", Allow; "knp typo outside its pod selector")]
    #[test_case("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{fromm: []}]}\n", Deny; "knp typo inside its pod selector")]
    #[test_case("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: Near}]}}]}]}\n", Allow; "knp compile error outside its pod selector")]
    // An invalid policy fails closed on what its endpoint selectors select, even a
    // host-endpoint-only one that, valid, would never apply to a workload (SEMANTICS.md §3.6
    // names the selectors; failing closed is the safe reading). The check_differential fuzz
    // target found the engine and the reference disagreeing here.
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {doNotTrack: true, applyOnForward: true, ingress: [{action: Allow, destination: {ports: [8080]}}]}\n", Deny; "invalid doNotTrack policy")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {preDNAT: true, applyOnForward: true, ingress: [{action: Allow, destination: {ports: [8080]}}]}\n", Deny; "invalid preDNAT policy")]
    #[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {doNotTrack: false, ingress: [{action: Allow, destination: {ports: [8080]}}]}\n", Deny; "invalid policy that is not host-only")]
    fn a_typo_fails_closed_on_what_the_policy_selects(policy: &str, expected: Verdict) {
        let (v, reason) = decide_with(policy, &WEB, &Options::default());
        assert_eq!(v, expected, "{reason}");
        if v == Deny {
            assert!(reason.starts_with("policy "), "{reason}");
        }
    }

    #[test]
    fn per_node_mode_knows_callers_on_other_nodes() {
        // Felix's IP sets hold every workload of the cluster; a `--node` instance must too.
        let pods = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: here, namespace: default, labels: {app: db}}\nspec: {serviceAccountName: sue, nodeName: node-a}\nstatus: {phase: Running, podIP: 10.0.3.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: there, namespace: default, labels: {app: web}}\nspec: {serviceAccountName: steve, nodeName: node-b}\nstatus: {phase: Running, podIP: 10.0.3.2}\n";
        let rules = gnp(
            "[{action: Allow, source: {serviceAccounts: {names: [steve]}, selector: app == 'web'}}]",
        );
        let snap = snapshot_on(Some("node-a"), &format!("{pods}---\n{rules}"));
        let from_b = Req {
            src: "10.0.3.2",
            dst: "10.0.3.1",
            ..WEB
        };
        assert_eq!(decide_on(&snap, &from_b, &Options::default()).0, Allow);
        // A pod of another node is never a destination here.
        let to_b = Req {
            src: "10.0.3.1",
            principal: "spiffe://cluster.local/ns/default/sa/sue",
            dst: "10.0.3.2",
            ..WEB
        };
        assert_eq!(
            decide_on(&snap, &to_b, &Options::default()),
            (Deny, "unknown destination".to_owned())
        );
        // Pods without a node (hand-written state) stay local: no plan is lost by default.
        let all = snapshot_on(None, &format!("{pods}---\n{rules}"));
        assert_eq!(decide_on(&all, &to_b, &Options::default()).0, Allow);
    }
}

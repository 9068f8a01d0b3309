//! Differential: a small made-up cluster (namespaces, service accounts, pods, tiers with Deny or
//! Pass defaults, network sets, Kubernetes ClusterNetworkPolicies, global, namespaced and staged
//! policies with Allow/Deny/Pass/Log rules over service accounts, namespace and pod selectors
//! (which select network sets too), nets, ports, protocols, methods and paths) and a few
//! requests, decided by the compiled index (`Snapshot::build` + `Checker::decide`) and by the
//! naive reference evaluator of `tests/reference/`. They must agree on every request, for the
//! enforced policies and with the staged policies as enforced (the shadow snapshot), under
//! every combination of `--trust-network-identity` and `--identity-only-source`.
//!
//! The input picks every name, label, selector and path from small vocabularies, so that
//! policies and pods collide often; the cluster is rendered as a state file and loaded through
//! the ordinary file loader.
#![no_main]

#[path = "../../tests/reference/mod.rs"]
mod reference;

use std::sync::Arc;

use alp_authz::{
    authz::{
        check::Checker,
        descriptor::check_request_from_json,
        settings::Settings,
    },
    policy::snapshot::Snapshot,
    source::file::{Loaded, load_text},
    state::Shared,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use reference::{
    Action, Cluster, CnpAction, Destination, Http, Labels, PathMatch, Port, Proto, Sel, Source, Staged, Types,
};

// --- Vocabularies ------------------------------------------------------------------------

const NAMESPACES: &[&str] = &["a", "b", "c"];
const SERVICE_ACCOUNTS: &[&str] = &["web", "db", "job", "ghost"];
const NS_LABELS: &[&[(&str, &str)]] = &[
    &[],
    &[("env", "prod")],
    &[("env", "dev")],
    &[("env", "prod"), ("team", "x")],
];
const SA_LABELS: &[&[(&str, &str)]] = &[&[], &[("role", "client")], &[("role", "db")]];
const POD_LABELS: &[(&str, &str)] = &[
    ("app", "web"),
    ("app", "db"),
    ("tier", "front"),
    ("tier", "back"),
    ("env", "prod"),
    ("version", ""),
];
const NAMED_PORTS: &[&[(&str, u16)]] = &[
    &[],
    &[("http", 8080)],
    &[("http", 9090)],
    &[("http", 8080), ("metrics", 9090)],
];
const POD_IPS: &[&str] = &[
    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2", "10.0.1.3",
];
const OTHER_IPS: &[&str] = &["192.0.2.99", "2001:db8::1", "::ffff:10.0.0.1", "10.9.9.9"];
const KEYS: &[&str] = &[
    "app",
    "tier",
    "env",
    "role",
    "team",
    "version",
    "projectcalico.org/name",
    "projectcalico.org/namespace",
    "projectcalico.org/serviceaccount",
    // Inherited from the Namespace and ServiceAccount profiles (SEMANTICS.md §2).
    "pcns.env",
    "pcns.projectcalico.org/name",
    "pcsa.role",
    "pcsa.projectcalico.org/name",
];
const VALUES: &[&str] = &[
    "web", "db", "front", "prod", "dev", "client", "a", "b", "job", "",
];
const TIERS: &[&str] = &["t1", "t2", "t3"];
const TIER_ORDERS: &[Option<u32>] = &[
    None,
    Some(10),
    Some(11),
    Some(1_000),
    Some(1_000_000),
    Some(20_000_000),
    Some(0),
];
const POLICY_TIERS: &[Option<&str>] = &[
    None,
    Some("default"),
    Some("t1"),
    Some("t2"),
    Some("t3"),
    Some("t9"),
    Some("kube-admin"),
    Some("kube-baseline"),
    Some(""),
];
const POLICY_ORDERS: &[Option<u32>] = &[None, Some(0), Some(1), Some(2), Some(100), Some(1000)];
const NETS: &[&str] = &[
    "10.0.0.0/24",
    "10.0.0.1/32",
    "10.0.0.2",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
    "192.0.2.0/24",
];
/// Network set nets: the other addresses, a pod net, an unmasked net (read masked), IPv6.
const SET_NETS: &[&str] = &[
    "192.0.2.0/24",
    "10.9.9.9",
    "10.0.0.0/30",
    "10.0.1.1/16",
    "2001:db8::/64",
    "192.0.2.99/32",
];
const SET_LABELS: &[(&str, &str)] = &[
    ("app", "web"),
    ("role", "client"),
    ("env", "prod"),
    ("tier", "front"),
];
/// ClusterNetworkPolicy `matchLabels` vocabularies (masks).
const CNP_NS_LABELS: &[(&str, &str)] = &[("env", "prod"), ("team", "x")];
const CNP_POD_LABELS: &[(&str, &str)] = &[("app", "web"), ("tier", "front")];
const PORTS: &[&str] = &["8080", "80", "8000:8999", "9090:9090", "http", "metrics"];
const REQUEST_PORTS: &[u16] = &[8080, 9090, 80, 443];
const METHODS: &[&str] = &["GET", "POST", "DELETE", "get", "*"];
const REQUEST_METHODS: &[&str] = &["GET", "POST", "DELETE", "get", "PUT"];
const RULE_PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/",
    "/api/v1",
    "/admin",
    "/a/../api",
    "/api;x/v1",
    "//api//v1/",
];
const SEGMENTS: &[&str] = &[
    "api", "v1", "admin", "..", ".", "", "%2e%2e", "%252e", "x;y", "%61pi", "%zz", "a\\b", "?q=1",
    "#f", "%2F", "API", "%00", "v1;p=1", "%2561",
];

fn pick<T: Copy>(v: &[T], i: u8) -> T {
    v[usize::from(i) % v.len()]
}

fn mask<T: Copy>(v: &[T], m: u8) -> Vec<T> {
    v.iter()
        .enumerate()
        .filter(|(i, _)| (u32::from(m) >> i) & 1 == 1)
        .map(|(_, x)| *x)
        .collect()
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// --- The input ---------------------------------------------------------------------------

// Fixed-size arrays with counts rather than `Vec`s: every input then makes a cluster of some
// size (arbitrary's `Vec` lengths make most small inputs empty), and bytes past the end read as
// zeros.
#[derive(Debug, Arbitrary)]
struct Input {
    /// Per namespace: 0 no Namespace object, else a label set.
    namespaces: [u8; 3],
    /// Per namespace and service account: 0 no ServiceAccount object, else a label set.
    service_accounts: [[u8; 4]; 3],
    /// 1 + this mod 6 pods.
    pod_count: u8,
    pods: [PodIn; 6],
    /// `t1`, `t2`, `t3`.
    tiers: [TierIn; 3],
    /// This mod 7 policies.
    policy_count: u8,
    policies: [PolicyIn; 6],
    /// This mod 4 network sets.
    net_set_count: u8,
    net_sets: [NetSetIn; 3],
    /// This mod 3 ClusterNetworkPolicies.
    cnp_count: u8,
    cnps: [CnpIn; 2],
    /// Bit 0: `--trust-network-identity`; bit 1: `--identity-only-source`.
    options: u8,
    requests: [RequestIn; 3],
}

#[derive(Debug, Arbitrary)]
struct PodIn {
    namespace: u8,
    service_account: u8,
    /// Its own IP, or (7 mod 8) another pod's.
    ip: u8,
    labels: u8,
    ports: u8,
    /// Live, or (mod 16) 13 finished, 14 host network, 15 no IP.
    state: u8,
}

#[derive(Debug, Arbitrary)]
struct NetSetIn {
    /// 0 a GlobalNetworkSet, else a NetworkSet in namespace `a`/`b`/`c`.
    scope: u8,
    /// A mask of [`SET_LABELS`].
    labels: u8,
    /// A mask of [`SET_NETS`] (none: the first).
    nets: u8,
}

#[derive(Debug, Arbitrary)]
struct CnpIn {
    admin: bool,
    priority: u8,
    subject: PeerIn,
    /// This mod 3 rules.
    rule_count: u8,
    rules: [CnpRuleIn; 2],
}

#[derive(Debug, Arbitrary)]
struct CnpRuleIn {
    /// `Accept`, `Deny`, `Pass` (not in the Baseline tier: `Deny` there).
    action: u8,
    /// 1 + this mod 2 peers.
    peer_count: u8,
    from: [PeerIn; 2],
}

#[derive(Debug, Arbitrary)]
struct PeerIn {
    /// A mask of [`CNP_NS_LABELS`].
    namespaces: u8,
    /// `pods` with a mask of [`CNP_POD_LABELS`]; `None`: `namespaces`.
    pods: Option<u8>,
}

impl PeerIn {
    fn to_peer(&self) -> reference::Peer {
        let ns = labels(&mask(CNP_NS_LABELS, self.namespaces));
        match self.pods {
            None => reference::Peer::Namespaces(ns),
            Some(m) => reference::Peer::Pods(ns, labels(&mask(CNP_POD_LABELS, m))),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct TierIn {
    /// The tier is missing when this is 7 mod 8 (its policies are then invalid).
    missing: u8,
    order: u8,
    pass: bool,
}

#[derive(Debug, Arbitrary)]
enum SelIn {
    All,
    Empty,
    Eq(u8, u8),
    Ne(u8, u8),
    Has(u8),
    In(u8, u8),
    NotIn(u8, u8),
    Not(Box<SelIn>),
    And(Box<SelIn>, Box<SelIn>),
    Or(Box<SelIn>, Box<SelIn>),
}

impl SelIn {
    fn to_sel(&self, depth: u8) -> Sel {
        let k = |i: u8| pick(KEYS, i).to_owned();
        let v = |i: u8| pick(VALUES, i).to_owned();
        let set = |m: u8| {
            let mut vs = strings(&mask(VALUES, m));
            vs.sort();
            vs
        };
        let sub = |s: &SelIn| {
            if depth >= 3 {
                Sel::All
            } else {
                s.to_sel(depth + 1)
            }
        };
        match self {
            SelIn::All => Sel::All,
            SelIn::Empty => Sel::Empty,
            SelIn::Eq(a, b) => Sel::Eq(k(*a), v(*b)),
            SelIn::Ne(a, b) => Sel::Ne(k(*a), v(*b)),
            SelIn::Has(a) => Sel::Has(k(*a)),
            SelIn::In(a, m) => Sel::In(k(*a), set(*m)),
            SelIn::NotIn(a, m) => Sel::NotIn(k(*a), set(*m)),
            SelIn::Not(e) => Sel::Not(Box::new(sub(e))),
            SelIn::And(a, b) => Sel::And(Box::new(sub(a)), Box::new(sub(b))),
            SelIn::Or(a, b) => Sel::Or(Box::new(sub(a)), Box::new(sub(b))),
        }
    }
}

fn sel(s: &Option<SelIn>) -> Option<Sel> {
    s.as_ref().map(|s| s.to_sel(0))
}

#[derive(Debug, Arbitrary)]
struct PolicyIn {
    /// 0 global, else namespace `a`/`b`/`c`.
    scope: u8,
    /// 0–2 enforced; 3 staged (no stagedAction), 4 `Set`, 5 `Delete`.
    staged: u8,
    name: u8,
    tier: u8,
    order: u8,
    selector: SelIn,
    namespace_selector: Option<SelIn>,
    service_account_selector: Option<SelIn>,
    types: u8,
    /// This mod 5 rules.
    rule_count: u8,
    ingress: [RuleIn; 4],
    egress: bool,
    /// Global kinds: 1 `preDNAT: true` (ingress only), 2 `doNotTrack: true`.
    host_only: u8,
}

#[derive(Debug, Arbitrary)]
struct RuleIn {
    action: u8,
    /// Index into the protocols (past the end: none).
    protocol: u8,
    not_protocol: u8,
    sa_names: Option<u8>,
    sa_selector: Option<SelIn>,
    namespace_selector: Option<SelIn>,
    /// `namespaceSelector: global()` (the GlobalNetworkSets) when this is 7 mod 8.
    global: u8,
    selector: Option<SelIn>,
    not_selector: Option<SelIn>,
    nets: u8,
    not_nets: u8,
    ports: u8,
    not_ports: u8,
    destination_selector: Option<SelIn>,
    destination_sa_names: Option<u8>,
    http: Option<HttpIn>,
}

#[derive(Debug, Arbitrary)]
struct HttpIn {
    methods: u8,
    paths: Vec<(bool, u8)>,
    /// Keep `http` on a rule that is not Allow (an invalid policy) when this is 7 mod 8.
    invalid: u8,
}

#[derive(Debug, Arbitrary)]
struct RequestIn {
    /// A pod's IP, or (7 mod 8) one of [`OTHER_IPS`].
    source: u8,
    /// 0 none, 1 the source pod's own identity, 2 the identity below, 3 not a SPIFFE ID.
    principal: u8,
    namespace: u8,
    service_account: u8,
    destination: u8,
    port: u8,
    http: Option<(u8, Vec<u8>, bool)>,
}

fn port(s: &str) -> Port {
    match s.split_once(':') {
        Some((lo, hi)) => Port::Range(lo.parse().unwrap_or(0), hi.parse().unwrap_or(0)),
        None => s.parse().map_or_else(|_| Port::Named(s.into()), Port::Num),
    }
}

fn protocol(i: u8) -> Option<Proto> {
    [
        Proto::Tcp,
        Proto::TcpLower,
        Proto::Six,
        Proto::Udp,
        Proto::Seventeen,
    ]
    .get(usize::from(i))
    .copied()
}

impl RuleIn {
    fn to_rule(&self) -> reference::Rule {
        let action = pick(
            &[Action::Allow, Action::Deny, Action::Pass, Action::Log],
            self.action,
        );
        let mut r = reference::Rule::new(action);
        r.protocol = protocol(self.protocol);
        r.not_protocol = protocol(self.not_protocol);
        r.source = Source {
            sa_names: self.sa_names.map(|m| strings(&mask(SERVICE_ACCOUNTS, m))),
            sa_selector: sel(&self.sa_selector),
            namespace_selector: if self.global % 8 == 7 {
                Some(Sel::Global)
            } else {
                sel(&self.namespace_selector)
            },
            selector: sel(&self.selector),
            not_selector: sel(&self.not_selector),
            nets: strings(&mask(NETS, self.nets)),
            not_nets: strings(&mask(NETS, self.not_nets)),
        };
        r.destination = Destination {
            ports: mask(PORTS, self.ports).into_iter().map(port).collect(),
            not_ports: mask(PORTS, self.not_ports).into_iter().map(port).collect(),
            selector: sel(&self.destination_selector),
            sa_names: self
                .destination_sa_names
                .map(|m| strings(&mask(SERVICE_ACCOUNTS, m))),
        };
        r.http = self
            .http
            .as_ref()
            .filter(|h| action == Action::Allow || h.invalid % 8 == 7)
            .map(|h| Http {
                methods: strings(&mask(METHODS, h.methods)),
                paths: h
                    .paths
                    .iter()
                    .take(3)
                    .map(|(exact, i)| {
                        let p = pick(RULE_PATHS, *i).to_owned();
                        if *exact {
                            PathMatch::Exact(p)
                        } else {
                            PathMatch::Prefix(p)
                        }
                    })
                    .collect(),
            });
        r
    }
}

impl Input {
    fn cluster(&self) -> Cluster {
        let mut c = Cluster::default();
        for (ns, l) in NAMESPACES.iter().zip(self.namespaces) {
            if l % 5 != 0 {
                c.namespaces
                    .push((ns.to_string(), labels(pick(NS_LABELS, l % 5 - 1))));
            }
        }
        for (ns, sas) in NAMESPACES.iter().zip(&self.service_accounts) {
            for (sa, l) in SERVICE_ACCOUNTS.iter().zip(sas) {
                if l % 4 != 0 {
                    c.service_accounts.push((
                        ns.to_string(),
                        sa.to_string(),
                        labels(pick(SA_LABELS, l % 4 - 1)),
                    ));
                }
            }
        }
        let pods = 1 + usize::from(self.pod_count) % 6;
        for (i, p) in self.pods.iter().take(pods).enumerate() {
            let state = p.state % 16;
            let ip = if p.ip % 8 == 7 {
                pick(&POD_IPS[..pods], p.ip / 8)
            } else {
                POD_IPS[i]
            };
            c.pods.push(reference::Pod {
                name: format!("pod{i}"),
                namespace: pick(NAMESPACES, p.namespace).into(),
                service_account: pick(SERVICE_ACCOUNTS, p.service_account).into(),
                ip: (state != 15).then(|| ip.to_owned()),
                labels: labels(&mask(POD_LABELS, p.labels)),
                named_ports: pick(NAMED_PORTS, p.ports)
                    .iter()
                    .map(|(n, p)| (n.to_string(), *p))
                    .collect(),
                host_network: state == 14,
                finished: state == 13,
            });
        }
        for (i, s) in self
            .net_sets
            .iter()
            .take(usize::from(self.net_set_count) % 4)
            .enumerate()
        {
            let mut nets = strings(&mask(SET_NETS, s.nets));
            if nets.is_empty() {
                nets.push(SET_NETS[0].into());
            }
            c.net_sets.push(reference::NetSet {
                namespace: match s.scope % 4 {
                    0 => None,
                    i => Some(NAMESPACES[usize::from(i) - 1].to_owned()),
                },
                name: format!("set{i}"),
                labels: labels(&mask(SET_LABELS, s.labels)),
                nets,
            });
        }
        for (i, p) in self
            .cnps
            .iter()
            .take(usize::from(self.cnp_count) % 3)
            .enumerate()
        {
            let actions: &[CnpAction] = if p.admin {
                &[CnpAction::Accept, CnpAction::Deny, CnpAction::Pass]
            } else {
                &[CnpAction::Accept, CnpAction::Deny]
            };
            c.cluster_policies.push(reference::ClusterPolicy {
                name: format!("c{i}"),
                admin: p.admin,
                priority: u32::from(p.priority % 4),
                subject: p.subject.to_peer(),
                ingress: p
                    .rules
                    .iter()
                    .take(usize::from(p.rule_count) % 3)
                    .map(|r| {
                        let from = r
                            .from
                            .iter()
                            .take(1 + usize::from(r.peer_count) % 2)
                            .map(PeerIn::to_peer)
                            .collect();
                        (pick(actions, r.action), from)
                    })
                    .collect(),
            });
        }
        for (name, t) in TIERS.iter().zip(&self.tiers) {
            if t.missing % 8 == 7 {
                continue;
            }
            c.tiers.push(reference::Tier {
                name: (*name).into(),
                order: pick(TIER_ORDERS, t.order),
                pass: t.pass,
            });
        }
        for p in self
            .policies
            .iter()
            .take(usize::from(self.policy_count) % 7)
        {
            let namespace = match p.scope % 4 {
                0 => None,
                i => Some(NAMESPACES[usize::from(i) - 1].to_owned()),
            };
            let staged = match p.staged % 6 {
                0..=2 => None,
                3 => Some(Staged::Default),
                4 => Some(Staged::Set),
                _ => Some(Staged::Delete),
            };
            let name = format!("p{}", p.name % 4);
            let key =
                |x: &reference::Policy| (x.namespace.clone(), x.staged.is_some(), x.name.clone());
            let policy = reference::Policy {
                // `namespaceSelector` exists only on the global kinds.
                namespace_selector: if namespace.is_none() {
                    sel(&p.namespace_selector)
                } else {
                    None
                },
                namespace,
                staged,
                name,
                tier: pick(POLICY_TIERS, p.tier).map(Into::into),
                order: pick(POLICY_ORDERS, p.order),
                selector: p.selector.to_sel(0),
                service_account_selector: sel(&p.service_account_selector),
                types: pick(
                    &[Types::Absent, Types::Ingress, Types::Egress, Types::Both],
                    p.types,
                ),
                ingress: p
                    .ingress
                    .iter()
                    .take(usize::from(p.rule_count) % 5)
                    .map(RuleIn::to_rule)
                    .collect(),
                egress: p.egress,
                // Calico's CEL rules: `preDNAT` ⇒ no egress rules and no Egress type.
                pre_dnat: p.scope % 4 == 0
                    && p.host_only % 8 == 1
                    && !p.egress
                    && p.types % 4 < 2,
                do_not_track: p.scope % 4 == 0 && p.host_only % 8 == 2,
            };
            if c.policies.iter().any(|x| key(x) == key(&policy)) {
                continue;
            }
            c.policies.push(policy);
        }
        c
    }

    fn requests(&self, c: &Cluster) -> Vec<reference::Request> {
        // Mostly pods; one value in eight is one of the other addresses.
        let ip = |i: u8| match (
            i % 8 == 7,
            c.pods.get(usize::from(i / 8) % c.pods.len().max(1)),
        ) {
            (false, Some(p)) => p.ip.clone().unwrap_or_else(|| "10.0.0.9".into()),
            _ => pick(OTHER_IPS, i / 8).to_owned(),
        };
        self.requests
            .iter()
            .map(|r| {
                let source = (r.source % 8 != 7)
                    .then(|| usize::from(r.source / 8) % c.pods.len().max(1))
                    .filter(|_| !c.pods.is_empty());
                let spiffe = |ns: &str, sa: &str| format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
                let principal = match r.principal % 4 {
                    0 => None,
                    1 => Some(source.and_then(|i| c.pods.get(i)).map_or_else(
                        || spiffe("a", "web"),
                        |p| spiffe(&p.namespace, &p.service_account),
                    )),
                    2 => Some(spiffe(
                        pick(NAMESPACES, r.namespace),
                        pick(SERVICE_ACCOUNTS, r.service_account),
                    )),
                    _ => Some(
                        pick(
                            &[
                                "spiffe://cluster.local/ns/a/sa/",
                                "spiffe://cluster.local/ns/a",
                                "web",
                                "spiffe://cluster.local/ns//sa/web",
                            ],
                            r.service_account,
                        )
                        .to_owned(),
                    ),
                };
                reference::Request {
                    source_ip: ip(r.source),
                    principal,
                    destination_ip: ip(r.destination),
                    port: pick(REQUEST_PORTS, r.port),
                    trust_network_identity: self.options & 1 == 1,
                    identity_only_source: self.options & 2 == 2,
                    http: r.http.as_ref().map(|(m, segments, relative)| {
                        let segs: Vec<&str> = segments
                            .iter()
                            .take(4)
                            .map(|s| pick(SEGMENTS, *s))
                            .collect();
                        let path = if *relative {
                            segs.join("/")
                        } else {
                            format!("/{}", segs.join("/"))
                        };
                        (pick(REQUEST_METHODS, *m).to_owned(), path)
                    }),
                }
            })
            .collect()
    }
}

fuzz_target!(|input: Input| {
    let cluster = input.cluster();
    let text = reference::render(&cluster);
    let mut loaded = Loaded::default();
    if let Err(e) = load_text(std::path::Path::new("d.json"), &text, &mut loaded) {
        panic!("the rendered cluster does not load: {e}\n{text}");
    }
    let snap = Snapshot::build(&loaded.store, 1);
    let mut settings = Settings::default();
    settings.eval.trust_network_identity = input.options & 1 == 1;
    settings.eval.identity_only_source = input.options & 2 == 2;
    let checker = Checker::new(Arc::new(Shared::new()), settings);
    for r in input.requests(&cluster) {
        let json = reference::check_request_json(&r);
        let req = match check_request_from_json(&json) {
            Ok(req) => req,
            Err(e) => panic!("bad request JSON {json}: {e}"),
        };
        let got = checker.decide(&snap, &req).allowed();
        let want = reference::evaluate(&cluster, &r);
        assert_eq!(
            got, want,
            "enforced: engine allows={got}, reference allows={want}\nrequest {json}\ncluster {text}"
        );
        let got = checker
            .decide(snap.shadow.as_deref().unwrap_or(&snap), &req)
            .allowed();
        let want = reference::evaluate_staged(&cluster, &r);
        assert_eq!(
            got, want,
            "staged as enforced: engine allows={got}, reference allows={want}\nrequest {json}\ncluster {text}"
        );
    }
});

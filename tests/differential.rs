//! Differential test: the compiled index (decode → compile → snapshot → evaluate) against a
//! deliberately naive reference evaluator written straight from `shared/SEMANTICS.md`
//! (`tests/reference/`), on random tiers, policies and requests over a fixed small cluster. They
//! must agree on every input. (The `check_differential` fuzz target does the same on clusters it
//! makes up as well.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod reference;

use std::sync::Arc;

use alp_authz::{
    authz::{check::Checker, descriptor::check_request_from_json, settings::Settings},
    source::file::{Loaded, load_text},
    state::Shared,
};
use proptest::prelude::*;
use reference::{Action, Cluster, Destination, Http, PathMatch, Port, Sel, Source};

// --- The fixed cluster -------------------------------------------------------------------

struct Pod {
    ns: &'static str,
    sa: &'static str,
    ip: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

const PODS: &[Pod] = &[
    Pod {
        ns: "a",
        sa: "web",
        ip: "10.0.0.1",
        labels: &[("app", "web"), ("tier", "front")],
    },
    Pod {
        ns: "a",
        sa: "db",
        ip: "10.0.0.2",
        labels: &[("app", "db")],
    },
    Pod {
        ns: "b",
        sa: "web",
        ip: "10.0.1.1",
        labels: &[("app", "web"), ("tier", "back")],
    },
    Pod {
        ns: "b",
        sa: "job",
        ip: "10.0.1.2",
        labels: &[("app", "job")],
    },
];
const NAMESPACES: &[(&str, &[(&str, &str)])] =
    &[("a", &[("env", "prod")]), ("b", &[("env", "dev")])];

/// ServiceAccount objects (their labels are inherited as `pcsa.`); `b/job` has none.
type LabelList = &'static [(&'static str, &'static str)];
const SERVICE_ACCOUNTS: &[(&str, &str, LabelList)] = &[
    ("a", "web", &[("team", "shop")]),
    ("a", "db", &[("team", "data")]),
    ("b", "web", &[("team", "shop")]),
];

fn labels(l: &[(&str, &str)]) -> reference::Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cluster(tiers: &[Tier], policies: &[Policy], net_sets: &[NetSet], cnps: &[Cnp]) -> Cluster {
    Cluster {
        cluster_policies: cnps
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_reference(i))
            .collect(),
        net_sets: net_sets
            .iter()
            .enumerate()
            .map(|(i, s)| reference::NetSet {
                namespace: s.namespace.map(Into::into),
                name: format!("s{i}"),
                labels: labels(SET_LABELS[s.labels]),
                nets: s.nets.iter().map(|n| n.to_string()).collect(),
            })
            .collect(),
        namespaces: NAMESPACES
            .iter()
            .map(|(n, l)| (n.to_string(), labels(l)))
            .collect(),
        service_accounts: SERVICE_ACCOUNTS
            .iter()
            .map(|(ns, n, l)| (ns.to_string(), n.to_string(), labels(l)))
            .collect(),
        pods: PODS
            .iter()
            .enumerate()
            .map(|(i, p)| reference::Pod {
                name: format!("p{i}"),
                namespace: p.ns.into(),
                service_account: p.sa.into(),
                ip: Some(p.ip.into()),
                labels: labels(p.labels),
                named_ports: vec![("http".into(), 8080)],
                host_network: false,
                finished: false,
            })
            .collect(),
        tiers: tiers
            .iter()
            .map(|t| reference::Tier {
                name: t.name.into(),
                order: Some(u32::from(t.order)),
                pass: t.pass,
            })
            .collect(),
        policies: policies.iter().map(Policy::to_reference).collect(),
    }
}

// --- Random network sets -----------------------------------------------------------------

/// Network set labels: none, `role: edge`, `role: lb` with `app: web` (as the web pods).
const SET_LABELS: &[LabelList] = &[&[], &[("role", "edge")], &[("role", "lb"), ("app", "web")]];

/// A NetworkSet (in `a`, `b`, or `c`, which has no Namespace object) or GlobalNetworkSet.
#[derive(Debug, Clone)]
struct NetSet {
    namespace: Option<&'static str>,
    labels: usize,
    nets: Vec<&'static str>,
}

fn net_sets() -> impl Strategy<Value = Vec<NetSet>> {
    let set = (
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        0..SET_LABELS.len(),
        // The request sources outside the pods (192.0.2.99, 198.51.100.7), unmasked nets,
        // nested nets, and nets over pod addresses.
        prop::sample::subsequence(
            vec![
                "192.0.2.0/24",
                "192.0.2.99",
                "198.51.100.7/24",
                "10.0.1.0/24",
                "10.0.0.1/32",
                "2001:db8::/32",
            ],
            1..3,
        ),
    )
        .prop_map(|(namespace, labels, nets)| NetSet {
            namespace,
            labels,
            nets,
        });
    prop::collection::vec(set, 0..4)
}

// --- Random ClusterNetworkPolicies ------------------------------------------------------

/// `matchLabels` for namespaces: `{}`, `env: prod`, `env: dev`.
const CNP_NS_LABELS: &[LabelList] = &[&[], &[("env", "prod")], &[("env", "dev")]];
/// `matchLabels` for pods: `{}`, `app: web`, `app: db`.
const CNP_POD_LABELS: &[LabelList] = &[&[], &[("app", "web")], &[("app", "db")]];

/// A subject or peer: `namespaces` (pod labels `None`) or `pods`, by indexes.
type CnpPeer = (usize, Option<usize>);

/// A ClusterNetworkPolicy.
#[derive(Debug, Clone)]
struct Cnp {
    admin: bool,
    priority: u32,
    subject: CnpPeer,
    rules: Vec<(reference::CnpAction, Vec<CnpPeer>)>,
}

fn cnp_peer(p: CnpPeer) -> reference::Peer {
    let ns = labels(CNP_NS_LABELS[p.0]);
    match p.1 {
        None => reference::Peer::Namespaces(ns),
        Some(pods) => reference::Peer::Pods(ns, labels(CNP_POD_LABELS[pods])),
    }
}

impl Cnp {
    fn to_reference(&self, i: usize) -> reference::ClusterPolicy {
        reference::ClusterPolicy {
            name: format!("c{i}"),
            admin: self.admin,
            priority: self.priority,
            subject: cnp_peer(self.subject),
            ingress: self
                .rules
                .iter()
                .map(|(a, from)| (*a, from.iter().copied().map(cnp_peer).collect()))
                .collect(),
        }
    }
}

fn cnps() -> impl Strategy<Value = Vec<Cnp>> {
    use reference::CnpAction;
    let peer = || {
        (
            0..CNP_NS_LABELS.len(),
            prop::option::of(0..CNP_POD_LABELS.len()),
        )
    };
    let rule = (
        prop::sample::select(vec![CnpAction::Accept, CnpAction::Deny, CnpAction::Pass]),
        prop::collection::vec(peer(), 1..3),
    );
    let cnp = (
        any::<bool>(),
        0u32..3,
        peer(),
        prop::collection::vec(rule, 0..3),
    )
        .prop_map(|(admin, priority, subject, rules)| Cnp {
            admin,
            priority,
            subject,
            // `Pass` only in the Admin tier.
            rules: rules
                .into_iter()
                .filter(|(a, _)| admin || *a != CnpAction::Pass)
                .collect(),
        });
    prop::collection::vec(cnp, 0..3)
}

// --- Random policies ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rule {
    action: &'static str,
    sa_names: Option<Vec<&'static str>>,
    sa_selector: Option<usize>,
    ns_selector: Option<usize>,
    selector: Option<usize>,
    not_selector: Option<usize>,
    nets: Option<&'static str>,
    ports: Option<u16>,
    methods: Option<Vec<&'static str>>,
    prefix: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Policy {
    namespace: Option<&'static str>,
    name: String,
    tier: &'static str,
    order: Option<u8>,
    selector: usize,
    rules: Vec<Rule>,
    /// Global policies only: 1 `preDNAT: true`, 2 `doNotTrack: true` (host endpoints only).
    host_only: u8,
}

impl Policy {
    fn to_reference(&self) -> reference::Policy {
        reference::Policy {
            namespace: self.namespace.map(Into::into),
            staged: None,
            name: self.name.clone(),
            tier: Some(self.tier.into()),
            order: self.order.map(u32::from),
            selector: selectors()[self.selector].clone(),
            namespace_selector: None,
            service_account_selector: None,
            types: reference::Types::Ingress,
            ingress: self.rules.iter().map(Rule::to_reference).collect(),
            egress: false,
            pre_dnat: self.host_only == 1,
            do_not_track: self.host_only == 2,
        }
    }
}

impl Rule {
    fn to_reference(&self) -> reference::Rule {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut r = reference::Rule::new(match self.action {
            "Allow" => Action::Allow,
            "Deny" => Action::Deny,
            "Pass" => Action::Pass,
            _ => Action::Log,
        });
        r.source = Source {
            sa_names: self.sa_names.as_deref().map(strings),
            sa_selector: self.sa_selector.map(|i| sa_selectors()[i].clone()),
            namespace_selector: self.ns_selector.map(|i| ns_selectors()[i].clone()),
            selector: self.selector.map(|i| selectors()[i].clone()),
            not_selector: self.not_selector.map(|i| selectors()[i].clone()),
            nets: self.nets.iter().map(|n| n.to_string()).collect(),
            ..Source::default()
        };
        r.destination = Destination {
            ports: self.ports.iter().map(|p| Port::Num(*p)).collect(),
            ..Destination::default()
        };
        // Numeric ports need a protocol (Calico's validator; SEMANTICS.md §4).
        if self.ports.is_some() {
            r.protocol = Some(reference::Proto::Tcp);
        }
        if self.methods.is_some() || self.prefix.is_some() {
            r.http = Some(Http {
                methods: self.methods.as_deref().map(strings).unwrap_or_default(),
                paths: self
                    .prefix
                    .iter()
                    .map(|p| PathMatch::Prefix(p.to_string()))
                    .collect(),
            });
        }
        r
    }
}

#[derive(Debug, Clone)]
struct Tier {
    name: &'static str,
    order: u16,
    pass: bool,
}

fn eq(k: &str, v: &str) -> Sel {
    Sel::Eq(k.into(), v.into())
}

/// `""`, `all()`, `app == 'web'`, `app != 'db'`, `has(tier)`, `tier in {'front', 'x'}`,
/// `!has(app)`, and on the labels inherited from profiles: `pcns.env == 'prod'`,
/// `pcsa.team == 'shop'`, `pcsa.projectcalico.org/name == 'web'`; on network sets' labels:
/// `role == 'edge'`, `has(role)`.
fn selectors() -> Vec<Sel> {
    vec![
        Sel::Empty,
        Sel::All,
        eq("app", "web"),
        Sel::Ne("app".into(), "db".into()),
        Sel::Has("tier".into()),
        Sel::In("tier".into(), vec!["front".into(), "x".into()]),
        Sel::Not(Box::new(Sel::Has("app".into()))),
        eq("pcns.env", "prod"),
        eq("pcsa.team", "shop"),
        eq("pcsa.projectcalico.org/name", "web"),
        eq("role", "edge"),
        Sel::Has("role".into()),
    ]
}

/// `!has(team)` (which a network set passes), `team == 'shop'`.
fn sa_selectors() -> Vec<Sel> {
    vec![
        Sel::Not(Box::new(Sel::Has("team".into()))),
        eq("team", "shop"),
    ]
}

/// `env == 'prod'`, `all()`, `env != 'prod'`, `projectcalico.org/name == 'b'`, `global()` (the
/// GlobalNetworkSets), `!has(env)` (namespace `c`, which has no Namespace object).
fn ns_selectors() -> Vec<Sel> {
    vec![
        eq("env", "prod"),
        Sel::All,
        Sel::Ne("env".into(), "prod".into()),
        eq("projectcalico.org/name", "b"),
        Sel::Global,
        Sel::Not(Box::new(Sel::Has("env".into()))),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec!["Allow", "Deny", "Pass", "Log"]),
        prop::option::of(prop::sample::subsequence(vec!["web", "db", "job"], 1..3)),
        (
            prop::option::of(0..sa_selectors().len()),
            prop::option::of(0..ns_selectors().len()),
            prop::option::of(0..selectors().len()),
            prop::option::of(0..selectors().len()),
        ),
        prop::option::of(prop::sample::select(vec![
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.0/8",
        ])),
        prop::option::of(prop::sample::select(vec![8080u16, 9090])),
        prop::option::of(prop::sample::subsequence(vec!["GET", "POST", "*"], 1..3)),
        prop::option::of(prop::sample::select(vec!["/", "/api", "/api/v1", "/admin"])),
    )
        .prop_map(
            |(
                action,
                sa_names,
                (sa_selector, ns_selector, selector, not_selector),
                nets,
                ports,
                methods,
                prefix,
            )| {
                // Calico: `http` only on Allow rules.
                let http_ok = action == "Allow";
                Rule {
                    action,
                    sa_names,
                    sa_selector,
                    ns_selector,
                    selector,
                    not_selector,
                    nets,
                    ports,
                    methods: methods.filter(|_| http_ok),
                    prefix: prefix.filter(|_| http_ok),
                }
            },
        )
}

fn policy(i: usize) -> impl Strategy<Value = Policy> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::sample::select(vec!["default", "t1", "t2"]),
        prop::option::of(0u8..4),
        0..selectors().len(),
        prop::collection::vec(rule(), 0..4),
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]),
    )
        .prop_map(
            move |(namespace, tier, order, selector, rules, host_only)| Policy {
                host_only: if namespace.is_none() { host_only } else { 0 },
                namespace,
                name: format!("p{i}"),
                tier,
                order,
                selector,
                rules,
            },
        )
}

fn policies() -> impl Strategy<Value = Vec<Policy>> {
    (0usize..6).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>())
}

fn tiers() -> impl Strategy<Value = Vec<Tier>> {
    (0u16..3, 0u16..3, any::<bool>(), any::<bool>()).prop_map(|(o1, o2, p1, p2)| {
        vec![
            Tier {
                name: "t1",
                order: 10 + o1,
                pass: p1,
            },
            Tier {
                name: "t2",
                order: 10 + o2,
                pass: p2,
            },
        ]
    })
}

/// Which principal a request carries.
#[derive(Debug, Clone, Copy)]
enum Principal {
    /// The source pod's own (a real caller), or `a/web`'s from an address that is no pod.
    Own,
    /// None (plaintext).
    Absent,
    /// Not a SPIFFE ID of the expected form.
    Invalid,
    /// `b/job`'s (a mismatch from a pod, a gateway's caller from an address that is no pod).
    Other,
}

#[derive(Debug, Clone)]
struct Req {
    src: Option<usize>,
    /// With no source pod: 198.51.100.7 (else 192.0.2.99).
    other: bool,
    principal: Principal,
    dst: usize,
    port: u16,
    method: &'static str,
    path: &'static str,
    trust_network_identity: bool,
    identity_only_source: bool,
}

impl Req {
    fn to_reference(&self) -> reference::Request {
        let src = self.src.map(|i| &PODS[i]);
        let spiffe = |ns: &str, sa: &str| format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
        reference::Request {
            source_ip: src
                .map_or(
                    if self.other {
                        "198.51.100.7"
                    } else {
                        "192.0.2.99"
                    },
                    |p| p.ip,
                )
                .into(),
            principal: match self.principal {
                Principal::Own => {
                    Some(src.map_or_else(|| spiffe("a", "web"), |p| spiffe(p.ns, p.sa)))
                }
                Principal::Absent => None,
                Principal::Invalid => Some("spiffe://cluster.local/ns/a/sa/web/x".into()),
                Principal::Other => Some(spiffe("b", "job")),
            },
            destination_ip: PODS[self.dst].ip.into(),
            port: self.port,
            http: Some((self.method.into(), self.path.into())),
            trust_network_identity: self.trust_network_identity,
            identity_only_source: self.identity_only_source,
        }
    }
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop::option::of(0..PODS.len()),
        prop::sample::select(vec![
            Principal::Own,
            Principal::Own,
            Principal::Absent,
            Principal::Invalid,
            Principal::Other,
        ]),
        (0..PODS.len(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop::sample::select(vec![8080u16, 9090]),
        prop::sample::select(vec!["GET", "POST", "DELETE"]),
        prop::sample::select(vec![
            "/",
            "/api",
            "/api/v1/x",
            "/apix",
            "/admin/../api",
            "/adm%69n",
        ]),
    )
        .prop_map(
            |(
                src,
                principal,
                (dst, trust_network_identity, identity_only_source, other),
                port,
                method,
                path,
            )| Req {
                src,
                other,
                principal,
                dst,
                port,
                method,
                path,
                trust_network_identity,
                identity_only_source,
            },
        )
}

// --- The compiled index ------------------------------------------------------------------

fn engine(cluster: &Cluster, r: &reference::Request) -> bool {
    let mut loaded = Loaded::default();
    let text = reference::render(cluster);
    load_text(std::path::Path::new("d.json"), &text, &mut loaded)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        loaded.store.counts().2,
        0,
        "invalid policies: {:?}\n{text}",
        loaded.warnings
    );
    let state = Arc::new(Shared::new());
    let snap = state.publish(&loaded.store);
    let mut settings = Settings::default();
    settings.eval.trust_network_identity = r.trust_network_identity;
    settings.eval.identity_only_source = r.identity_only_source;
    let checker = Checker::new(state, settings);
    let req = check_request_from_json(&reference::check_request_json(r)).unwrap();
    checker.decide(&snap, &req).allowed()
}

proptest! {
    // 400 cases by default; `PROPTEST_CASES=20000 cargo test --release --test differential`
    // for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_index_agrees_with_the_reference(tiers in tiers(), policies in policies(), net_sets in net_sets(), cnps in cnps(), reqs in prop::collection::vec(req(), 1..6)) {
        let cluster = cluster(&tiers, &policies, &net_sets, &cnps);
        for r in &reqs {
            let r = r.to_reference();
            let want = reference::evaluate(&cluster, &r);
            let got = engine(&cluster, &r);
            prop_assert_eq!(got, want, "request {:?}\n{}", r, reference::render(&cluster));
        }
    }

    /// The server's path readings (pruned to the ways that can change a path) are exactly the
    /// reference's (all 32 combinations, every time), on paths built from the pieces that
    /// matter: delimiters, escapes of them, dot segments, double encodings.
    #[test]
    fn path_readings_agree_with_the_reference(
        pieces in prop::collection::vec(prop::sample::select(vec![
            "/", "a", "admin", ".", "..", ";", ";p=1", "%2F", "%2f", "%5C", "%3B", "%2e", "%2E%2e",
            "\\", "//", "%25", "%252e", "%2561", "%20", "%zz", "%00", "?q=/../x", "#f", "%C3%A9",
        ]), 0..8),
        absolute in any::<bool>(),
    ) {
        let raw = format!("{}{}", if absolute { "/" } else { "" }, pieces.concat());
        let ours = alp_authz::policy::path::readings(&raw);
        let theirs = reference::readings(&raw);
        match (&ours, theirs) {
            (alp_authz::policy::path::RequestPath::Undecodable, None) => {}
            (_, Some(mut want)) if ours != alp_authz::policy::path::RequestPath::Undecodable => {
                let mut got: Vec<String> = ours.iter().map(str::to_owned).collect();
                got.sort();
                want.sort();
                prop_assert_eq!(got, want, "{}", raw);
            }
            (o, t) => prop_assert!(false, "{raw}: ours {o:?}, reference {t:?}"),
        }
    }
}

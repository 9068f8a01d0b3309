//! Differential test: the compiled index (decode → compile → snapshot → evaluate) against a
//! deliberately naive reference evaluator written straight from `shared/SEMANTICS.md`, on random
//! tiers, policies and requests over a fixed small cluster. They must agree on every input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, sync::Arc};

use alp_authz::{
    authz::{
        check::{Checker, Settings},
        descriptor::check_request_from_json,
    },
    policy::{path, selector::Selector},
    source::file::{Loaded, load_text},
    state::Shared,
};
use proptest::prelude::*;

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

fn cluster_yaml() -> String {
    let mut s = String::new();
    for (ns, labels) in NAMESPACES {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        s += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{}}}}}\n",
            l.join(", ")
        );
    }
    for (i, p) in PODS.iter().enumerate() {
        let l: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        s += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {}, labels: {{{}}}}}\nspec: {{serviceAccountName: {}, containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}\nstatus: {{phase: Running, podIP: {}}}\n",
            p.ns,
            l.join(", "),
            p.sa,
            p.ip
        );
    }
    s
}

// --- Random policies ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rule {
    action: &'static str,
    sa_names: Option<Vec<&'static str>>,
    ns_selector: Option<&'static str>,
    selector: Option<&'static str>,
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
    selector: &'static str,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Tier {
    name: &'static str,
    order: u16,
    pass: bool,
}

const SELECTORS: &[&str] = &[
    "",
    "all()",
    "app == 'web'",
    "app != 'db'",
    "has(tier)",
    "tier in {'front', 'x'}",
    "!has(app)",
];
const NS_SELECTORS: &[&str] = &[
    "env == 'prod'",
    "all()",
    "env != 'prod'",
    "projectcalico.org/name == 'b'",
];

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec!["Allow", "Deny", "Pass", "Log"]),
        prop::option::of(prop::sample::subsequence(vec!["web", "db", "job"], 1..3)),
        prop::option::of(prop::sample::select(NS_SELECTORS)),
        prop::option::of(prop::sample::select(SELECTORS)),
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
            |(action, sa_names, ns_selector, selector, nets, ports, methods, prefix)| {
                // Calico: `http` only on Allow rules.
                let http_ok = action == "Allow";
                Rule {
                    action,
                    sa_names,
                    ns_selector,
                    selector,
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
        prop::sample::select(SELECTORS),
        prop::collection::vec(rule(), 0..4),
    )
        .prop_map(move |(namespace, tier, order, selector, rules)| Policy {
            namespace,
            name: format!("p{i}"),
            tier,
            order,
            selector,
            rules,
        })
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

#[derive(Debug, Clone)]
struct Req {
    src: Option<usize>,
    authenticated: bool,
    dst: usize,
    port: u16,
    method: &'static str,
    path: &'static str,
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop::option::of(0..PODS.len()),
        any::<bool>(),
        0..PODS.len(),
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
        .prop_map(|(src, authenticated, dst, port, method, path)| Req {
            src,
            authenticated,
            dst,
            port,
            method,
            path,
        })
}

fn render(tiers: &[Tier], policies: &[Policy]) -> String {
    let mut s = cluster_yaml();
    for t in tiers {
        let action = if t.pass { "Pass" } else { "Deny" };
        s += &format!(
            "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {}}}\nspec: {{order: {}, defaultAction: {action}}}\n",
            t.name, t.order
        );
    }
    for p in policies {
        let (kind, ns) = match p.namespace {
            Some(ns) => ("NetworkPolicy", format!(", namespace: {ns}")),
            None => ("GlobalNetworkPolicy", String::new()),
        };
        s += &format!(
            "---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {}{ns}}}\nspec:\n  tier: {}\n",
            p.name, p.tier
        );
        if let Some(o) = p.order {
            s += &format!("  order: {o}\n");
        }
        s += &format!(
            "  selector: \"{}\"\n  types: [Ingress]\n  ingress:\n",
            p.selector
        );
        if p.rules.is_empty() {
            s += "  - action: Log\n    source: {nets: [192.0.2.0/32]}\n";
        }
        for r in &p.rules {
            s += &format!("  - action: {}\n    source:\n", r.action);
            if let Some(n) = &r.sa_names {
                s += &format!("      serviceAccounts: {{names: [{}]}}\n", n.join(", "));
            }
            if let Some(n) = r.ns_selector {
                s += &format!("      namespaceSelector: \"{n}\"\n");
            }
            if let Some(n) = r.selector {
                s += &format!("      selector: \"{n}\"\n");
            }
            if let Some(n) = r.nets {
                s += &format!("      nets: [{n}]\n");
            }
            if let Some(p) = r.ports {
                s += &format!("    destination: {{ports: [{p}]}}\n");
            }
            if r.methods.is_some() || r.prefix.is_some() {
                s += "    http:\n";
                if let Some(m) = &r.methods {
                    let m: Vec<String> = m.iter().map(|m| format!("\"{m}\"")).collect();
                    s += &format!("      methods: [{}]\n", m.join(", "));
                }
                if let Some(p) = r.prefix {
                    s += &format!("      paths: [{{prefix: \"{p}\"}}]\n");
                }
            }
        }
    }
    s
}

// --- The reference evaluator (SEMANTICS.md, naively) ---------------------------------------

fn endpoint_labels(p: &Pod) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = p
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("projectcalico.org/namespace".into(), p.ns.into());
    l.insert("projectcalico.org/serviceaccount".into(), p.sa.into());
    l.insert("projectcalico.org/orchestrator".into(), "k8s".into());
    l
}

fn ns_labels(ns: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = NAMESPACES
        .iter()
        .find(|(n, _)| *n == ns)
        .map(|(_, l)| {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    l.insert("projectcalico.org/name".into(), ns.into());
    l
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// §1–§4 of SEMANTICS.md, evaluated directly on the random policies.
fn reference(tiers: &[Tier], policies: &[Policy], r: &Req) -> bool {
    let dst = &PODS[r.dst];
    // §1: the caller's identity is the principal; the source pod is trusted only if it agrees.
    let identity = r
        .src
        .filter(|_| r.authenticated)
        .map(|i| (PODS[i].ns, PODS[i].sa));
    let src_pod = identity.and(r.src).map(|i| &PODS[i]);
    let src_ip = r.src.map(|i| PODS[i].ip).unwrap_or("192.0.2.99");
    // §2: which policies apply.
    let applies = |p: &Policy| {
        p.namespace.is_none_or(|ns| ns == dst.ns) && sel(p.selector).matches(&endpoint_labels(dst))
    };
    // §3: tier order (built-in default = 1,000,000), policy order (absent last), name.
    let tier_order = |name: &str| {
        tiers
            .iter()
            .find(|t| t.name == name)
            .map_or(1_000_000, |t| u32::from(t.order))
    };
    let mut tier_names: Vec<&str> = vec!["default", "t1", "t2"];
    tier_names.sort_by_key(|t| (tier_order(t), *t));
    for tier in tier_names {
        let mut ps: Vec<&Policy> = policies
            .iter()
            .filter(|p| p.tier == tier && applies(p))
            .collect();
        if ps.is_empty() {
            continue;
        }
        ps.sort_by(|a, b| {
            let o = |p: &Policy| p.order.map_or(f64::INFINITY, f64::from);
            o(a).total_cmp(&o(b))
                .then(a.name.cmp(&b.name))
                .then(a.namespace.cmp(&b.namespace))
        });
        let mut passed = false;
        'policies: for p in ps {
            for rule in &p.rules {
                if !rule_matches(p, rule, identity, src_pod, src_ip, r) {
                    continue;
                }
                match rule.action {
                    "Allow" => return true,
                    "Deny" => return false,
                    "Pass" => {
                        passed = true;
                        break 'policies;
                    }
                    _ => {} // Log
                }
            }
        }
        if !passed && !tiers.iter().any(|t| t.name == tier && t.pass) {
            return false; // §3.4: end of tier
        }
    }
    true // §3.5: Calico's profile allows
}

fn rule_matches(
    p: &Policy,
    rule: &Rule,
    identity: Option<(&str, &str)>,
    src_pod: Option<&Pod>,
    src_ip: &str,
    r: &Req,
) -> bool {
    // §4: criteria ANDed; identity criteria never match without an identity. An empty selector
    // string is an unset one (Calico's Go fields: "" is not set).
    let selector = rule.selector.filter(|s| !s.is_empty());
    if let Some(names) = &rule.sa_names
        && !identity.is_some_and(|(_, sa)| names.contains(&sa))
    {
        return false;
    }
    match rule.ns_selector {
        Some("all()") => {
            if identity.is_none() {
                return false;
            }
        }
        Some(s) => {
            if !identity.is_some_and(|(ns, _)| sel(s).matches(&ns_labels(ns))) {
                return false;
            }
        }
        None => {
            // Namespace scoping of a namespaced policy's rule with selector or serviceAccounts.
            if let Some(pns) = p.namespace
                && (selector.is_some() || rule.sa_names.is_some())
                && identity.is_none_or(|(ns, _)| ns != pns)
            {
                return false;
            }
        }
    }
    if let Some(s) = selector
        && !(identity.is_some() && src_pod.is_some_and(|pod| sel(s).matches(&endpoint_labels(pod))))
    {
        return false;
    }
    if let Some(net) = rule.nets {
        let net: ipnet::IpNet = net.parse().unwrap();
        if !net.contains(&src_ip.parse::<std::net::IpAddr>().unwrap()) {
            return false;
        }
    }
    if rule.ports.is_some_and(|port| port != r.port) {
        return false;
    }
    if let Some(m) = &rule.methods
        && !m.iter().any(|m| *m == "*" || *m == r.method)
    {
        return false;
    }
    if let Some(prefix) = rule.prefix {
        let Some(p) = path::normalize(r.path) else {
            return false;
        };
        if !(prefix == "/" || p == prefix || p.starts_with(&format!("{prefix}/"))) {
            return false;
        }
    }
    true
}

fn engine(tiers: &[Tier], policies: &[Policy], r: &Req) -> bool {
    let mut loaded = Loaded::default();
    let yaml = render(tiers, policies);
    load_text(std::path::Path::new("d.yaml"), &yaml, &mut loaded)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(
        loaded.store.counts().2,
        0,
        "invalid policies: {:?}\n{yaml}",
        loaded.warnings
    );
    let state = Arc::new(Shared::new());
    let snap = state.publish(&loaded.store);
    let checker = Checker::new(state, Settings::default());
    let src = r.src.map(|i| {
        let p = &PODS[i];
        let principal = if r.authenticated { format!(", \"principal\": \"spiffe://cluster.local/ns/{}/sa/{}\"", p.ns, p.sa) } else { String::new() };
        format!("{{\"address\": {{\"socketAddress\": {{\"address\": \"{}\", \"portValue\": 40000}}}}{principal}}}", p.ip)
    });
    let src = src.unwrap_or_else(|| "{\"address\": {\"socketAddress\": {\"address\": \"192.0.2.99\", \"portValue\": 40000}}}".into());
    let json = format!(
        "{{\"attributes\": {{\"source\": {src}, \"destination\": {{\"address\": {{\"socketAddress\": {{\"address\": \"{}\", \"portValue\": {}}}}}}}, \"request\": {{\"http\": {{\"method\": \"{}\", \"path\": \"{}\"}}}}}}}}",
        PODS[r.dst].ip, r.port, r.method, r.path
    );
    checker
        .decide(&snap, &check_request_from_json(&json).unwrap())
        .allowed()
}

proptest! {
    // 400 cases by default; `PROPTEST_CASES=20000 cargo test --release --test differential`
    // for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_index_agrees_with_the_reference(tiers in tiers(), policies in policies(), reqs in prop::collection::vec(req(), 1..6)) {
        for r in &reqs {
            let want = reference(&tiers, &policies, r);
            let got = engine(&tiers, &policies, r);
            prop_assert_eq!(got, want, "request {:?}\n{}", r, render(&tiers, &policies));
        }
    }
}

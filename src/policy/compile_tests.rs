//! Unit tests of `compile` (issue #15 item 8): the exact message of every error `compile` and
//! `cluster_policy` return, one row each, and snapshots of compiled plans.

use std::fmt::Write as _;

use test_case::test_case;

use super::{
    Entity, NamespaceMatch, Policy, Problem, Tier, compile_calico, compile_kubernetes,
    compile_named,
};
use crate::policy::{
    cluster_policy::{self, ClusterPolicy},
    model::{self, CalicoPolicy, K8sNetworkPolicy, PolicyKind},
};

use PolicyKind::{
    AdminNetworkPolicy as Anp, BaselineAdminNetworkPolicy as Banp, ClusterNetworkPolicy as Cnp,
    GlobalNetworkPolicy as Gnp, KubernetesNetworkPolicy as Knp, NetworkPolicy as Np,
    StagedKubernetesNetworkPolicy as Sknp, StagedNetworkPolicy as Snp,
};

/// A Calico policy `p` (in namespace `ns` for namespaced kinds) with the given flow-style spec.
fn calico(kind: PolicyKind, spec: &str) -> CalicoPolicy {
    let ns = if kind.is_namespaced() { "ns" } else { "" };
    yaml_serde::from_str(&format!(
        "metadata: {{name: p, namespace: '{ns}'}}\nspec: {spec}"
    ))
    .unwrap()
}

fn calico_error(kind: PolicyKind, spec: &str) -> String {
    compile_calico(kind, &calico(kind, spec))
        .unwrap_err()
        .to_string()
}

fn compiled(kind: PolicyKind, spec: &str) -> Policy {
    compile_calico(kind, &calico(kind, spec)).unwrap()
}

// Every error of a Calico policy's spec, in the order compile.rs constructs them.
#[test_case(Np, "{namespaceSelector: all()}", "spec.namespaceSelector: not a field of NetworkPolicy" ; "namespaced namespaceSelector")]
#[test_case(Np, "{doNotTrack: true}", "spec.doNotTrack: not a field of NetworkPolicy" ; "namespaced doNotTrack")]
#[test_case(Np, "{preDNAT: true}", "spec.preDNAT: not a field of NetworkPolicy" ; "namespaced preDNAT")]
#[test_case(Np, "{applyOnForward: true}", "spec.applyOnForward: not a field of NetworkPolicy" ; "namespaced applyOnForward")]
#[test_case(Gnp, "{stagedAction: Set}", "spec.stagedAction: not a field of GlobalNetworkPolicy" ; "stagedAction on enforced kind")]
#[test_case(Snp, "{stagedAction: Maybe}", "spec.stagedAction: `Maybe` is not one of `Set`, `Delete`, `Learn`, `Ignore`" ; "bad stagedAction")]
#[test_case(Gnp, "{order: .inf}", "spec.order: order must be a finite number" ; "infinite order")]
#[test_case(Gnp, "{selector: 'a =='}", "spec.selector: invalid selector `a ==`: expected string literal at column 5" ; "bad policy selector")]
#[test_case(Gnp, "{namespaceSelector: 'global() || a == \"b\"'}", "spec.namespaceSelector: `global()` must be the whole namespaceSelector" ; "partial global policy namespaceSelector")]
#[test_case(Gnp, "{types: [Sideways]}", "spec.types[0]: `Sideways` is not `Ingress` or `Egress`" ; "bad type")]
#[test_case(Gnp, "{ingress: [{}]}", "spec.ingress[0].action: a rule needs an action" ; "missing action")]
#[test_case(Gnp, "{ingress: [{action: allow}]}", "spec.ingress[0].action: `allow` is not one of `Allow`, `Deny`, `Log`, `Pass`" ; "lowercase action")]
#[test_case(Gnp, "{egress: [{action: Drop}]}", "spec.egress[0].action: `Drop` is not one of `Allow`, `Deny`, `Log`, `Pass`" ; "bad egress action")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: QUIC}]}", "spec.ingress[0].protocol: `QUIC` is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1–255)" ; "bad protocol name")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: 256}]}", "spec.ingress[0].protocol: protocol `256` is outside 1–255" ; "protocol too big")]
#[test_case(Gnp, "{ingress: [{action: Allow, notProtocol: '0'}]}", "spec.ingress[0].notProtocol: protocol `0` is outside 1–255" ; "notProtocol zero")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {methods: [A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R, S, T, U]}}]}", "spec.ingress[0].http: at most 20 methods and 20 paths" ; "too many methods")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {methods: ['']}}]}", "spec.ingress[0].http.methods[0]: empty method" ; "empty method")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {methods: [GET, GET]}}]}", "spec.ingress[0].http.methods[1]: duplicate method `GET`" ; "duplicate method")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {paths: [{}]}}]}", "spec.ingress[0].http.paths[0]: needs exactly one of `exact` or `prefix`" ; "path with neither")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {paths: [{exact: /a, prefix: /b}]}}]}", "spec.ingress[0].http.paths[0]: needs exactly one of `exact` or `prefix`" ; "path with both")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {paths: [{exact: a}]}}]}", "spec.ingress[0].http.paths[0]: path `a` must start with `/`" ; "relative path")]
#[test_case(Gnp, "{ingress: [{action: Allow, http: {paths: [{prefix: '/a?b'}]}}]}", "spec.ingress[0].http.paths[0]: path `/a?b` must not contain `?`, `#` or spaces" ; "path with query")]
#[test_case(Gnp, "{ingress: [{action: Deny, http: {methods: [GET]}}]}", "spec.ingress[0].http: HTTP match is only allowed on `Allow` rules" ; "http on deny")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: UDP, http: {methods: [GET]}}]}", "spec.ingress[0].protocol: HTTP match needs protocol TCP or no protocol" ; "http on udp")]
#[test_case(Gnp, "{ingress: [{action: Allow, destination: {ports: [80]}}]}", "spec.ingress[0].destination.ports: rules with numeric port or port range must set protocol to TCP or UDP or SCTP" ; "numeric port without protocol")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: ICMP, source: {notPorts: [http]}}]}", "spec.ingress[0].source.notPorts: rules that specify ports must set protocol to TCP or UDP or SCTP" ; "ports on icmp")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {notNets: [0.0.0.0/0]}}]}", "spec.ingress[0].source.notNets[0]: catch-all CIDR in negation creates logical contradiction (matches no traffic)" ; "catch-all notNets")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ['fd00::/8']}}]}", "spec.ingress[0].destination.notNets: rule contains both IPv4 and IPv6 CIDRs" ; "mixed ip versions")]
#[test_case(Gnp, "{ingress: [{action: Allow, destination: {services: {name: s, namespace: n}}}]}", "spec.ingress[0].destination.services: services are only allowed in the source of an ingress rule" ; "service in ingress destination")]
#[test_case(Gnp, "{egress: [{action: Allow, source: {services: {name: s, namespace: n}}}]}", "spec.egress[0].source.services: services are only allowed in the destination of an egress rule" ; "service in egress source")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {services: {name: s, namespace: n}, nets: [10.0.0.0/8]}}]}", "spec.ingress[0].source.services: cannot be combined with `nets`" ; "services with nets")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {services: {name: ''}}}]}", "spec.ingress[0].source.services.name: a Service name is required" ; "service without name")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {services: {name: s}}}]}", "spec.ingress[0].source.services.namespace: a global policy must name the Service's namespace" ; "global service without namespace")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {nets: [10.0.0.300/8]}}]}", "spec.ingress[0].source.nets[0]: `10.0.0.300/8` is not a CIDR" ; "bad cidr")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {notNets: [10.1.2.3/8]}}]}", "spec.ingress[0].source.notNets[0]: `10.1.2.3/8` has host bits set (did you mean `10.0.0.0/8`?)" ; "host bits")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]}", "spec.ingress[0].destination.ports[0]: port `70000` is outside 0–65535" ; "port too big")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: TCP, destination: {ports: ['80:x']}}]}", "spec.ingress[0].destination.ports[0]: `80:x` is not a port range" ; "bad range")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]}", "spec.ingress[0].destination.ports[0]: port range `90:80` is backwards" ; "backwards range")]
#[test_case(Gnp, "{ingress: [{action: Allow, protocol: TCP, destination: {ports: ['1:65536']}}]}", "spec.ingress[0].destination.ports[0]: port `65536` is outside 0–65535" ; "range end too big")]
#[test_case(Gnp, "{ingress: [{action: Allow, destination: {notPorts: [Http_Port]}}]}", "spec.ingress[0].destination.notPorts[0]: `Http_Port` is not a port, a range `a:b` or a port name" ; "bad port name")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {selector: 'a in'}}]}", "spec.ingress[0].source.selector: invalid selector `a in`: expected set literal at column 5" ; "bad rule selector")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {notSelector: '!'}}]}", "spec.ingress[0].source.notSelector: invalid selector `!`: unexpected end of selector at column 2" ; "bad rule notSelector")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {serviceAccounts: {selector: 'x =='}}}]}", "spec.ingress[0].source.serviceAccounts.selector: invalid selector `x ==`: expected string literal at column 5" ; "bad serviceAccounts selector")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {namespaceSelector: '(a'}}]}", "spec.ingress[0].source.namespaceSelector: invalid selector `(a`: expected operator after label at column 3" ; "bad rule namespaceSelector")]
#[test_case(Gnp, "{ingress: [{action: Allow, source: {namespaceSelector: '!global()'}}]}", "spec.ingress[0].source.namespaceSelector: `global()` must be the whole namespaceSelector" ; "partial global rule namespaceSelector")]
fn calico_error_message(kind: PolicyKind, spec: &str, expected: &str) {
    assert_eq!(calico_error(kind, spec), expected);
}

#[test]
fn calico_metadata_errors() {
    let p: CalicoPolicy = yaml_serde::from_str("metadata: {name: p}\nspec: {}").unwrap();
    assert_eq!(
        compile_calico(Np, &p).unwrap_err().to_string(),
        "metadata.namespace: a NetworkPolicy needs a namespace"
    );
    assert_eq!(
        compile_named(Gnp, "", &p).unwrap_err().to_string(),
        "metadata.name: a policy needs a name"
    );
    // The error is a field and what is wrong with it.
    let e = compile_named(Gnp, "", &p).unwrap_err();
    assert_eq!(e.field, "metadata.name");
    assert_eq!(e.problem, Problem::Invalid("a policy needs a name".into()));
    assert_eq!(e.caret(), None);
}

#[test]
fn a_selector_error_keeps_the_parser_error_and_renders_a_caret() {
    let p: CalicoPolicy = yaml_serde::from_str(
        "metadata: {name: p}\nspec: {ingress: [{action: Allow, source: {selector: \"app in {'a'\"}}]}",
    )
    .unwrap();
    let e = compile_named(Gnp, "p", &p).unwrap_err();
    assert_eq!(e.field, "spec.ingress[0].source.selector");
    let Problem::Selector { input, error } = &e.problem else {
        panic!("not a selector problem: {e:?}");
    };
    assert_eq!(input, "app in {'a'");
    assert_eq!((error.column, error.span.clone()), (12, 11..11));
    assert_eq!(
        e.to_string(),
        "spec.ingress[0].source.selector: invalid selector `app in {'a'`: expected , or } at column 12"
    );
    assert_eq!(
        e.caret().as_deref(),
        Some("app in {'a'\n           ^ expected , or }")
    );
}

fn tier_error(doc: &str) -> String {
    let t: model::Tier = yaml_serde::from_str(doc).unwrap();
    Tier::try_from(&t).unwrap_err().to_string()
}

#[test_case("metadata: {name: ''}\nspec: {}", "metadata.name: a tier needs a name" ; "no name")]
#[test_case("metadata: {name: t}\nspec: {order: .nan}", "spec.order: order must be a finite number" ; "nan order")]
#[test_case("metadata: {name: t}\nspec: {defaultAction: Allow}", "spec.defaultAction: `Allow` is not `Deny` or `Pass`" ; "bad default action")]
fn tier_error_message(doc: &str, expected: &str) {
    assert_eq!(tier_error(doc), expected);
}

fn knp_error(kind: PolicyKind, doc: &str) -> String {
    let p: K8sNetworkPolicy = yaml_serde::from_str(doc).unwrap();
    compile_kubernetes(kind, &p).unwrap_err().to_string()
}

#[test_case(Knp, "metadata: {name: p}\nspec: {podSelector: {}}", "metadata.namespace: a NetworkPolicy.networking.k8s.io needs a namespace" ; "no namespace")]
#[test_case(Knp, "metadata: {name: '', namespace: ns}\nspec: {podSelector: {}}", "metadata.name: a policy needs a name" ; "no name")]
#[test_case(Sknp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, stagedAction: Now}", "spec.stagedAction: `Now` is not one of `Set`, `Delete`, `Learn`, `Ignore`" ; "bad stagedAction")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}", "spec.ingress[0].ports[0].endPort: endPort needs a numeric port" ; "endPort on named port")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}", "spec.ingress[0].from: ipBlock cannot be combined with podSelector or namespaceSelector" ; "ipBlock with podSelector")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{}]}]}", "spec.ingress[0].from: a peer needs podSelector, namespaceSelector or ipBlock" ; "empty peer")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {matchExpressions: [{key: a, operator: Gt}]}}", "matchExpressions: `Gt` is not In, NotIn, Exists or DoesNotExist" ; "bad operator")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: nope}}]}]}", "spec.ingress[0].source.nets[0]: `nope` is not a CIDR" ; "bad ipBlock")]
#[test_case(Knp, "metadata: {name: p, namespace: ns}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP, port: 80}]}]}", "spec.ingress[0].destination.ports: rules that specify ports must set protocol to TCP or UDP or SCTP" ; "converted rule error")]
fn kubernetes_error_message(kind: PolicyKind, doc: &str, expected: &str) {
    assert_eq!(knp_error(kind, doc), expected);
}

fn cluster_error(kind: PolicyKind, doc: &str) -> String {
    let p: ClusterPolicy = yaml_serde::from_str(doc).unwrap();
    cluster_policy::compile(kind, &p).unwrap_err().to_string()
}

#[test_case(Cnp, "metadata: {name: ''}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}", "metadata.name: a policy needs a name" ; "no name")]
#[test_case(Cnp, "metadata: {name: c}\nspec: {tier: Middle, priority: 1, subject: {namespaces: {}}}", "spec.tier: `Middle` is not `Admin` or `Baseline`" ; "bad tier")]
#[test_case(Cnp, "metadata: {name: c}\nspec: {priority: 1, subject: {namespaces: {}}}", "spec.tier: a ClusterNetworkPolicy needs a tier: `Admin` or `Baseline`" ; "no tier")]
#[test_case(Anp, "metadata: {name: a}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}", "spec.tier: not a field of this kind" ; "tier on anp")]
#[test_case(Banp, "metadata: {name: default}\nspec: {priority: 1, subject: {namespaces: {}}}", "spec.priority: not a field of this kind" ; "priority on banp")]
#[test_case(Anp, "metadata: {name: a}\nspec: {priority: 1001, subject: {namespaces: {}}}", "spec.priority: `1001` is outside 0–1000" ; "priority too big")]
#[test_case(Anp, "metadata: {name: a}\nspec: {subject: {namespaces: {}}}", "spec.priority: a priority is required" ; "no priority")]
#[test_case(Anp, "metadata: {name: a}\nspec: {priority: 1, subject: {}}", "spec.subject: needs exactly one of `namespaces` or `pods`" ; "empty subject")]
#[test_case(Anp, "metadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {matchExpressions: [{key: k, operator: Lt}]}}}", "matchExpressions: `Lt` is not In, NotIn, Exists or DoesNotExist" ; "bad subject operator")]
fn cluster_policy_error_message(kind: PolicyKind, doc: &str, expected: &str) {
    assert_eq!(cluster_error(kind, doc), expected);
}

/// A compact, readable rendering of a compiled policy: selectors in Calico's canonical form.
fn plan(p: &Policy) -> String {
    let mut out = String::new();
    let a = &p.applies;
    let _ = writeln!(out, "id: {:?} {}", p.id.kind, p.id);
    let _ = writeln!(
        out,
        "tier: {} order: {:?} staged: {:?}",
        p.tier, p.order, p.staged_action
    );
    let _ = writeln!(
        out,
        "applies: namespace={:?} selector=`{}`",
        a.namespace, a.selector
    );
    if let Some(s) = &a.namespace_selector {
        let _ = writeln!(out, "  namespaceSelector=`{s}`");
    }
    if let Some(s) = &a.service_account_selector {
        let _ = writeln!(out, "  serviceAccountSelector=`{s}`");
    }
    match &p.ingress {
        None => out.push_str("ingress: not governed\n"),
        Some(rules) => {
            for (i, r) in rules.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ingress[{i}]: {} protocol={:?} notProtocol={:?}",
                    r.action.as_str(),
                    r.protocol,
                    r.not_protocol
                );
                entity(&mut out, "source", &r.source);
                entity(&mut out, "destination", &r.destination);
                if let Some(h) = &r.http {
                    let _ = writeln!(
                        out,
                        "  http: methods={:?} any={} paths={:?} skipped={}",
                        h.methods, h.any_method, h.paths, h.skipped_paths
                    );
                }
            }
        }
    }
    out
}

fn entity(out: &mut String, side: &str, e: &Entity) {
    let mut parts = Vec::new();
    let nets = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    if !e.nets.is_empty() {
        parts.push(format!("nets={:?}", nets(&e.nets)));
    }
    if !e.not_nets.is_empty() {
        parts.push(format!("notNets={:?}", nets(&e.not_nets)));
    }
    if !e.ports.is_empty() {
        parts.push(format!("ports={:?}", e.ports));
    }
    if !e.not_ports.is_empty() {
        parts.push(format!("notPorts={:?}", e.not_ports));
    }
    if let Some(s) = &e.selector {
        parts.push(format!("selector=`{s}`"));
    }
    if let Some(s) = &e.not_selector {
        parts.push(format!("notSelector=`{s}`"));
    }
    parts.push(match &e.namespace {
        NamespaceMatch::Selector(s) => format!("namespace=Selector(`{s}`)"),
        other => format!("namespace={other:?}"),
    });
    if let Some(sa) = &e.service_accounts {
        parts.push(format!("serviceAccounts={:?} `{}`", sa.names, sa.selector));
    }
    if let Some(s) = &e.services {
        parts.push(format!("services={}/{}", s.namespace, s.name));
    }
    let _ = writeln!(out, "  {side}: {}", parts.join(" "));
}

#[test]
fn plan_tiered_actions() {
    let p = compiled(
        Gnp,
        r#"{tier: security, order: 10, selector: "app == 'db'", ingress: [
            {action: Pass, source: {nets: [10.0.0.0/8], notNets: [10.9.0.0/16]}},
            {action: Log},
            {action: Deny, protocol: UDP, destination: {ports: [53, "1000:2000"]}},
            {action: Allow, protocol: TCP, notProtocol: UDP, destination: {ports: [http], notPorts: [8080]}}]}"#,
    );
    insta::assert_snapshot!(plan(&p));
}

#[test]
fn plan_http_and_identities() {
    let p = compiled(
        Np,
        r#"{selector: "role == 'api'", ingress: [
            {action: Allow, http: {methods: [GET, HEAD], paths: [{exact: /healthz}, {prefix: "/api/v1/../v2"}]}},
            {action: Allow, source: {serviceAccounts: {names: [web], selector: "tier == 'frontend'"}}},
            {action: Allow, source: {selector: "app == 'web'", namespaceSelector: "env == 'prod'"}},
            {action: Allow, source: {selector: "app == 'job'", namespaceSelector: global()}},
            {action: Allow, source: {services: {name: frontend}}},
            {action: Allow, http: {methods: ["*"]}}]}"#,
    );
    insta::assert_snapshot!(plan(&p));
}

#[test]
fn plan_global_scoping_and_egress_only() {
    let p = compiled(
        Gnp,
        r#"{namespaceSelector: "team == 'a'", serviceAccountSelector: "role == 'x'", types: [Egress],
            egress: [{action: Allow}]}"#,
    );
    insta::assert_snapshot!(plan(&p));
}

#[test]
fn plan_kubernetes_network_policy() {
    let p: K8sNetworkPolicy = yaml_serde::from_str(
        r#"metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}
    - ipBlock: {cidr: 10.1.2.3/16, except: [10.1.9.0/24]}
    ports:
    - {port: 5432}
    - {protocol: UDP, port: 1000, endPort: 1010}
    - {port: metrics}
"#,
    )
    .unwrap();
    insta::assert_snapshot!(plan(&compile_kubernetes(Knp, &p).unwrap()));
}

#[test]
fn plan_admin_network_policy() {
    let p: ClusterPolicy = yaml_serde::from_str(
        r#"metadata: {name: guard}
spec:
  priority: 5
  subject: {pods: {namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - {name: deny-dev, action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}
  - {name: pass-rest, action: Pass, from: [{namespaces: {}}]}
"#,
    )
    .unwrap();
    insta::assert_snapshot!(plan(&cluster_policy::compile(Anp, &p).unwrap()));
}

//! The incremental snapshot update (`Snapshot::update`) against a rebuild from scratch
//! (`Snapshot::build`): after any sequence of applies and deletes, both must give every
//! endpoint the same labels, tiers, policies (in order) and invalid-policy verdict, and every
//! address and pod name must resolve to the same pod.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alp_authz::policy::{
    snapshot::Snapshot,
    store::{Key, Object, Store, decode_document},
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// What a request could observe of a snapshot, by name rather than by index.
fn view(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = s
        .endpoints
        .iter()
        .map(|ep| {
            // A pod of another node (per-node mode) has no plan: only a source.
            let empty = Default::default();
            let plan: &alp_authz::policy::snapshot::Plan =
                s.plans.get(ep.class.get()).map_or(&empty, |p| p);
            let tiers: Vec<String> = plan
                .tiers
                .iter()
                .map(|tp| {
                    let names: Vec<String> = tp
                        .policies
                        .iter()
                        .map(|&p| s.policies[p.get()].id.to_string())
                        .collect();
                    format!("{}[{}]", s.tiers[tp.tier.get()].name, names.join(","))
                })
                .collect();
            let invalid = plan
                .invalid
                .map(|i| s.invalid[i.get()].id.to_string())
                .unwrap_or_default();
            let labels: Vec<String> = ep.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let by_name = s
                .endpoint_by_name(&ep.namespace, &ep.name)
                .and_then(|i| s.endpoints.get(i.get()))
                .map(|e| format!("{}/{}", e.namespace, e.name));
            format!(
                "{}/{} ({by_name:?}, ip {:?}, {}): {} !{invalid}",
                ep.namespace,
                ep.name,
                ep.ip,
                labels.join(","),
                tiers.join(" ")
            )
        })
        .collect();
    out.sort();
    // Every address pods can have: which pod it resolves to (none when two claim it).
    for ip in all_ips() {
        let who = s
            .endpoint_by_ip(ip)
            .and_then(|i| s.endpoints.get(i.get()))
            .map(|e| format!("{}/{}", e.namespace, e.name));
        out.push(format!("{ip} -> {who:?}"));
    }
    out.push(format!(
        "endpoints {} classes {}",
        s.endpoints.len(),
        s.endpoints.classes()
    ));
    out.push(format!(
        "policies {:?}",
        s.policies
            .iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
    ));
    out.push(format!(
        "tiers {:?}",
        s.tiers
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    ));
    out
}

#[derive(Debug, Clone)]
enum Op {
    Policy {
        global: bool,
        ns: u8,
        name: u8,
        tier: u8,
        order: u8,
        selector: u8,
        /// 0: none; else a namespace selector (global policies) and a service-account selector.
        scope: u8,
        egress_only: bool,
    },
    DeletePolicy {
        global: bool,
        ns: u8,
        name: u8,
    },
    Pod {
        ns: u8,
        name: u8,
        app: u8,
        sa: u8,
        /// 0: its own address; 1, 2: one of two addresses other pods may claim too; 3: none
        /// (pending).
        ip: u8,
        /// The node it runs on (in per-node mode, node 0 is this one).
        node: u8,
    },
    DeletePod {
        ns: u8,
        name: u8,
    },
    Namespace {
        ns: u8,
        env: u8,
    },
    ServiceAccount {
        ns: u8,
        sa: u8,
        role: u8,
    },
    Tier {
        tier: u8,
        order: u8,
    },
    DeleteTier {
        tier: u8,
    },
    Publish,
}

const SELECTORS: [&str; 6] = [
    "all()",
    "app == 'a'",
    "app in {'a', 'b'}",
    "!has(app)",
    "app == ", // invalid: fails closed over the namespace
    "app == 'c' && projectcalico.org/serviceaccount == 's1'",
];
const TIERS: [&str; 4] = ["default", "security", "platform", "missing"];

fn ns(n: u8) -> String {
    format!("ns{}", n % 3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0..3u8, 0..6u8, 0..4u8, 0..4u8, 0..6u8, 0..3u8, prop::bool::weighted(0.1)).prop_map(
            |(global, ns, name, tier, order, selector, scope, egress_only)| Op::Policy { global, ns, name, tier, order, selector, scope, egress_only }
        ),
        2 => (any::<bool>(), 0..3u8, 0..6u8).prop_map(|(global, ns, name)| Op::DeletePolicy { global, ns, name }),
        4 => (0..3u8, 0..5u8, 0..4u8, 0..2u8, prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]), 0..2u8).prop_map(|(ns, name, app, sa, ip, node)| Op::Pod { ns, name, app, sa, ip, node }),
        2 => (0..3u8, 0..5u8).prop_map(|(ns, name)| Op::DeletePod { ns, name }),
        1 => (0..3u8, 0..2u8).prop_map(|(ns, env)| Op::Namespace { ns, env }),
        1 => (0..3u8, 0..2u8, 0..2u8).prop_map(|(ns, sa, role)| Op::ServiceAccount { ns, sa, role }),
        1 => (1..3u8, 0..4u8).prop_map(|(tier, order)| Op::Tier { tier, order }),
        1 => (1..3u8).prop_map(|tier| Op::DeleteTier { tier }),
        3 => Just(Op::Publish),
    ]
}

/// Every address a pod of [`apply`] can have.
fn all_ips() -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = (0..3)
        .flat_map(|n| (0..5).map(move |p| format!("10.0.{n}.{p}").parse().unwrap()))
        .collect();
    ips.extend(["10.9.9.1", "10.9.9.2"].map(|a| a.parse::<std::net::IpAddr>().unwrap()));
    ips
}

fn object(v: Value) -> Object {
    decode_document(v).unwrap().unwrap().1
}

fn policy_key(global: bool, n: u8, name: u8) -> Key {
    let doc = if global {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": format!("g{name}")}})
    } else {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": format!("p{name}"), "namespace": ns(n)}})
    };
    object(doc).key()
}

fn apply(store: &mut Store, op: &Op) {
    match *op {
        Op::Policy {
            global,
            ns: n,
            name,
            tier,
            order,
            selector,
            scope,
            egress_only,
        } => {
            let tier = TIERS[tier as usize];
            let action = ["Allow", "Deny", "Pass", "Log"][(name % 4) as usize];
            let mut spec = json!({
                "order": order, "selector": SELECTORS[selector as usize],
                "ingress": [{"action": action}]
            });
            if tier != "default" {
                spec["tier"] = json!(tier);
            }
            if scope > 0 {
                let env = ["prod", "dev"][(scope - 1) as usize];
                if global {
                    spec["namespaceSelector"] = json!(format!("env == '{env}'"));
                }
                spec["serviceAccountSelector"] = json!(format!("role == '{}'", scope - 1));
            }
            if egress_only {
                spec["types"] = json!(["Egress"]);
                spec["egress"] = json!([{"action": "Allow"}]);
                spec.as_object_mut().unwrap().remove("ingress");
            }
            let (kind, meta) = if global {
                ("GlobalNetworkPolicy", json!({"name": format!("g{name}")}))
            } else {
                (
                    "NetworkPolicy",
                    json!({"name": format!("p{name}"), "namespace": ns(n)}),
                )
            };
            store.apply(object(json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})));
        }
        Op::DeletePolicy {
            global,
            ns: n,
            name,
        } => {
            store.delete(&policy_key(global, n, name));
        }
        Op::Pod {
            ns: n,
            name,
            app,
            sa,
            ip,
            node,
        } => {
            let mut labels = json!({});
            if app < 3 {
                labels["app"] = json!(["a", "b", "c"][app as usize]);
            }
            let status = match ip {
                0 => json!({"phase": "Running", "podIP": format!("10.0.{}.{name}", n % 3)}),
                // A second address too, which the pod shares with whoever else claims it.
                1 | 2 => json!({"phase": "Running", "podIP": format!("10.0.{}.{name}", n % 3),
                                "podIPs": [{"ip": format!("10.0.{}.{name}", n % 3)}, {"ip": format!("10.9.9.{ip}")}]}),
                _ => json!({"phase": "Pending"}),
            };
            store.apply(object(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod{name}"), "namespace": ns(n), "labels": labels},
                "spec": {"serviceAccountName": format!("s{sa}"), "nodeName": format!("n{node}")},
                "status": status
            })));
        }
        Op::DeletePod { ns: n, name } => {
            store.delete(&Key::Pod(ns(n), format!("pod{name}")));
        }
        Op::Namespace { ns: n, env } => {
            let env = ["prod", "dev"][env as usize];
            store.apply(object(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns(n), "labels": {"env": env}}
            })));
        }
        Op::ServiceAccount { ns: n, sa, role } => {
            store.apply(object(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": format!("s{sa}"), "namespace": ns(n), "labels": {"role": role.to_string()}}
            })));
        }
        Op::Tier { tier, order } => {
            store.apply(object(json!({
                "apiVersion": "projectcalico.org/v3", "kind": "Tier",
                "metadata": {"name": TIERS[tier as usize]},
                "spec": {"order": 100 * u32::from(order), "defaultAction": if order % 2 == 0 { "Pass" } else { "Deny" }}
            })));
        }
        Op::DeleteTier { tier } => {
            store.delete(&Key::Tier(TIERS[tier as usize].into()));
        }
        Op::Publish => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn incremental_updates_equal_a_rebuild(ops in prop::collection::vec(op(), 1..60), per_node in prop::bool::weighted(0.25)) {
        let mut store = Store::new();
        if per_node {
            store.set_node(Some("n0"));
        }
        let mut snap = Snapshot::build(&store, 1);
        store.take_changes();
        let mut generation = 1;
        for op in ops.iter().chain([&Op::Publish]) {
            apply(&mut store, op);
            if matches!(op, Op::Publish) {
                generation += 1;
                let changes = store.take_changes();
                let updated = Snapshot::update(&snap, &store, &changes, generation);
                let rebuilt = Snapshot::build(&store, generation);
                prop_assert_eq!(view(&updated), view(&rebuilt), "after {:?}", changes);
                snap = updated;
            }
        }
    }
}

#[test]
fn a_policy_change_alone_shares_the_endpoint_side() {
    let mut store = Store::new();
    apply(
        &mut store,
        &Op::Pod {
            ns: 0,
            name: 1,
            app: 0,
            sa: 0,
            ip: 0,
            node: 0,
        },
    );
    let first = Snapshot::build(&store, 1);
    store.take_changes();
    apply(
        &mut store,
        &Op::Policy {
            global: true,
            ns: 0,
            name: 1,
            tier: 0,
            order: 1,
            selector: 1,
            scope: 0,
            egress_only: false,
        },
    );
    let changes = store.take_changes();
    assert!(
        !changes.endpoints && changes.policies.len() == 1,
        "{changes:?}"
    );
    let next = Snapshot::update(&first, &store, &changes, 2);
    assert!(std::sync::Arc::ptr_eq(&first.endpoints, &next.endpoints));
    assert_eq!(next.plans[0].tiers.len(), 1);
    assert!(
        std::sync::Arc::ptr_eq(&first.tiers, &next.tiers) || first.tiers.len() == next.tiers.len()
    );
    // A pod change rebuilds the endpoint side.
    apply(
        &mut store,
        &Op::Pod {
            ns: 0,
            name: 2,
            app: 1,
            sa: 0,
            ip: 0,
            node: 0,
        },
    );
    let changes = store.take_changes();
    let third = Snapshot::update(&next, &store, &changes, 3);
    assert!(!std::sync::Arc::ptr_eq(&next.endpoints, &third.endpoints));
    assert_eq!(third.endpoints.len(), 2);
}

#[test]
fn a_pod_change_alone_shares_the_policy_side_and_untouched_plans() {
    let mut store = Store::new();
    for name in 0..4 {
        apply(
            &mut store,
            &Op::Pod {
                ns: 0,
                name,
                app: name % 2,
                sa: 0,
                ip: 0,
                node: 0,
            },
        );
    }
    apply(
        &mut store,
        &Op::Policy {
            global: true,
            ns: 0,
            name: 1,
            tier: 0,
            order: 1,
            selector: 1,
            scope: 0,
            egress_only: false,
        },
    );
    let first = Snapshot::build(&store, 1);
    store.take_changes();
    assert_eq!(first.endpoints.classes(), 2);
    // Pod 3 (app b) relabelled to app c: a new class; pod 1's class (app b) keeps pod 1.
    apply(
        &mut store,
        &Op::Pod {
            ns: 0,
            name: 3,
            app: 2,
            sa: 0,
            ip: 0,
            node: 0,
        },
    );
    let changes = store.take_changes();
    assert_eq!(
        changes.pods.iter().collect::<Vec<_>>(),
        [&("ns0".to_owned(), "pod3".to_owned())]
    );
    let next = Snapshot::update(&first, &store, &changes, 2);
    assert!(std::sync::Arc::ptr_eq(&first.policies, &next.policies));
    assert!(std::sync::Arc::ptr_eq(&first.tiers, &next.tiers));
    assert_eq!(next.endpoints.classes(), 3);
    let class_of = |s: &Snapshot, pod: &str| {
        let i = s.endpoint_by_name("ns0", pod).unwrap();
        s.endpoints[i.get()].class.get()
    };
    for pod in ["pod0", "pod1"] {
        assert_eq!(class_of(&first, pod), class_of(&next, pod));
        assert!(std::sync::Arc::ptr_eq(
            &first.plans[class_of(&first, pod)],
            &next.plans[class_of(&next, pod)]
        ));
    }
    assert_eq!(view(&next), view(&Snapshot::build(&store, 2)));
    // Deleting the only pod of a class frees the class.
    store.delete(&Key::Pod("ns0".into(), "pod3".into()));
    let changes = store.take_changes();
    let third = Snapshot::update(&next, &store, &changes, 3);
    assert_eq!(third.endpoints.classes(), 2);
    assert_eq!(third.endpoints.len(), 3);
    assert_eq!(view(&third), view(&Snapshot::build(&store, 3)));
}

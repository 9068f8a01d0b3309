//! Times loading and compiling synthetic clusters: `cargo run --release --example measure_build`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use alp_authz::{policy::snapshot::Snapshot, synth};

fn main() {
    for (policies, pods) in [(10, 1_000), (1_000, 1_000), (10_000, 100_000)] {
        let spec = synth::Spec::sized(policies, pods);
        let t = Instant::now();
        let loaded = synth::load(&spec).unwrap();
        let load = t.elapsed();
        let t = Instant::now();
        let snap = Snapshot::build(&loaded.store, 1);
        let build = t.elapsed();
        println!(
            "{policies:>6} policies {pods:>7} pods: decode {:>8.1} ms, snapshot build {:>8.1} ms ({} classes)",
            load.as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3,
            snap.plans.len()
        );
        let mut store = loaded.store;
        store.take_changes();
        incremental(&spec, &mut store, &snap);
        drop(snap);
        latency(&spec, store);
        println!("    resident after: {}", rss());
    }
}

/// Resident set size of this process, from /proc.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn latency(spec: &synth::Spec, store: alp_authz::policy::store::Store) {
    use std::sync::Arc;

    use alp_authz::{
        authz::{
            check::{Checker, Settings},
            descriptor::check_request_from_json,
        },
        state::Shared,
    };
    let state = Arc::new(Shared::new());
    state.publish(&store);
    let checker = Checker::new(state, Settings::default());
    let dst = 4.min(spec.pods - 1);
    let requests: Vec<_> = (0..spec.pods.min(2_000))
        .map(|from| {
            check_request_from_json(&synth::request_json(
                from,
                dst,
                spec,
                "GET",
                "/api/items",
                8080,
            ))
            .unwrap()
        })
        .collect();
    let allowed: Vec<_> = requests
        .iter()
        .filter(|r| checker.check(r).1.allowed())
        .cloned()
        .collect();
    let denied: Vec<_> = requests
        .iter()
        .filter(|r| !checker.check(r).1.allowed())
        .cloned()
        .collect();
    for (name, reqs) in [("allow", &allowed), ("deny", &denied)] {
        if reqs.is_empty() {
            continue;
        }
        let mut samples: Vec<u64> = Vec::with_capacity(200_000);
        for i in 0..200_000 {
            let r = &reqs[i % reqs.len()];
            let t = Instant::now();
            std::hint::black_box(checker.check(r));
            samples.push(t.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "    check {name:5}: p50 {:>6} ns  p99 {:>6} ns  p99.9 {:>6} ns  ({} distinct requests)",
            q(0.5),
            q(0.99),
            q(0.999),
            reqs.len()
        );
    }
}

/// One policy changed (a namespaced one, then a global one, then a pod): the incremental
/// update against the full rebuild of the same store.
fn incremental(spec: &synth::Spec, store: &mut alp_authz::policy::store::Store, snap: &Snapshot) {
    use alp_authz::policy::store::decode_document;
    let np = serde_json::json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "p-0", "namespace": "ns-0"},
        "spec": {"order": 50, "selector": "app == 'app-0'", "ingress": [{"action": "Deny", "source": {"serviceAccounts": {"names": ["app-3"]}}}]}
    });
    let gnp = serde_json::json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.g-0"},
        "spec": {"tier": "security", "order": 0, "selector": "version == 'v1'", "ingress": [{"action": "Pass"}]}
    });
    let (ns, app) = synth::pod_identity(spec, 7);
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-7"), "namespace": ns, "labels": {"app": app, "version": "v9"}},
        "spec": {"serviceAccountName": app},
        "status": {"phase": "Running", "podIP": synth::pod_ip(7)}
    });
    let mut prev: Option<Snapshot> = None;
    for (what, doc) in [
        ("namespaced policy", np),
        ("global policy", gnp),
        ("pod", pod),
    ] {
        let (_, obj) = decode_document(doc).unwrap().unwrap();
        store.apply(obj);
        let changes = store.take_changes();
        let base = prev.as_ref().unwrap_or(snap);
        let t = Instant::now();
        let next = Snapshot::update(base, store, &changes, 2);
        let update = t.elapsed();
        let t = Instant::now();
        let full = Snapshot::build(store, 2);
        let build = t.elapsed();
        drop(full);
        println!(
            "    one {what} changed: update {:>7.1} ms, full rebuild {:>7.1} ms ({:.3}×)",
            update.as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3,
            update.as_secs_f64() / build.as_secs_f64()
        );
        prev = Some(next);
    }
}

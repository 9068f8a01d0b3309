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
            snap.endpoints.classes()
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
        authz::{check::Checker, descriptor::check_request_from_json, settings::Settings},
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

/// One object changed (a namespaced policy, a global policy, then a pod relabelled, added
/// and deleted): from the store's change record to the next snapshot (`take_changes` and
/// `Snapshot::update`, the old snapshot dropped as publishing does) against a full rebuild of
/// the same store. Pod changes are repeated (20 rounds) and their median and max reported.
fn incremental(spec: &synth::Spec, store: &mut alp_authz::policy::store::Store, snap: &Snapshot) {
    use alp_authz::policy::store::{Key, Store, decode_document};
    use std::time::Duration;
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
    let pod = |i: usize, version: &str, name: &str| {
        let (ns, app) = synth::pod_identity(spec, i);
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{name}"), "namespace": ns, "labels": {"app": app, "version": version}},
            "spec": {"serviceAccountName": app},
            "status": {"phase": "Running", "podIP": synth::pod_ip(i)}
        })
    };
    let (ns7, app7) = synth::pod_identity(spec, 7);
    let changes = store.take_changes();
    let mut prev = Snapshot::update(snap, store, &changes, 2);
    let mut generation = 2;
    // Applies `change`, then times the update from `prev` (and a rebuild, if asked).
    let mut step = |store: &mut Store, change: &dyn Fn(&mut Store), rebuild: bool| {
        change(store);
        generation += 1;
        let t = std::time::Instant::now();
        let changes = store.take_changes();
        let next = Snapshot::update(&prev, store, &changes, generation);
        let old = std::mem::replace(&mut prev, next);
        drop(old);
        let update = t.elapsed();
        let build = rebuild.then(|| {
            let t = std::time::Instant::now();
            drop(Snapshot::build(store, generation));
            t.elapsed()
        });
        (update, build)
    };
    let apply = |doc: serde_json::Value| {
        move |store: &mut Store| {
            store.apply(decode_document(doc.clone()).unwrap().unwrap().1);
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (what, doc) in [("namespaced policy", np), ("global policy", gnp)] {
        let (update, build) = step(store, &apply(doc), true);
        let build = build.unwrap();
        println!(
            "    one {what} changed: update {:>7.2} ms, full rebuild {:>7.1} ms ({:.4}×)",
            ms(update),
            ms(build),
            update.as_secs_f64() / build.as_secs_f64()
        );
    }
    const ROUNDS: usize = 20;
    let pod_doc = pod;
    let ns = ns7.clone();
    let name = format!("{app7}-7");
    type Change = Box<dyn Fn(&mut Store)>;
    type Case<'a> = Box<dyn Fn(usize) -> Change + 'a>;
    let cases: [(&str, Case<'_>); 3] = [
        (
            "pod relabelled",
            Box::new(move |r| Box::new(apply(pod_doc(7, ["v9", "v1"][r % 2], "7")))),
        ),
        (
            "pod added",
            Box::new(move |_| Box::new(apply(pod(spec.pods + 1, "v1", "extra")))),
        ),
        (
            "pod deleted",
            Box::new(move |_| {
                let key = Key::Pod(ns.clone(), name.clone());
                Box::new(move |store: &mut Store| {
                    store.delete(&key);
                })
            }),
        ),
    ];
    for (what, change) in &cases {
        let mut updates = Vec::new();
        let mut build = Duration::ZERO;
        for r in 0..ROUNDS {
            let (u, b) = step(store, &*change(r), r == 0);
            updates.push(u);
            build = b.unwrap_or(build);
            // Put it back for the next round (not timed).
            match *what {
                "pod added" => {
                    step(
                        store,
                        &|s: &mut Store| {
                            s.delete(&Key::Pod(ns7.clone(), format!("{app7}-extra")));
                        },
                        false,
                    );
                }
                "pod deleted" => {
                    step(store, &apply(pod(7, "v1", "7")), false);
                }
                _ => {}
            }
        }
        updates.sort();
        println!(
            "    one {what}: update p50 {:>6.3} ms, max {:>6.3} ms ({ROUNDS} rounds), full rebuild {:>7.1} ms ({:.4}×)",
            ms(updates[ROUNDS / 2]),
            ms(updates[ROUNDS - 1]),
            ms(build),
            updates[ROUNDS / 2].as_secs_f64() / build.as_secs_f64()
        );
    }
}

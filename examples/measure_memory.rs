//! What the server holds per pod and per policy: `cargo run --release --example measure_memory`.
//!
//! Counts the live heap bytes (a counting allocator) of the store and of the snapshot built
//! from it for synthetic clusters: 10,000 policies / 100,000 pods, then half the pods, then half
//! the policies. The differences give what one pod and one policy cost.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alp_authz::{
    policy::{snapshot::Snapshot, store::Store},
    synth,
};

/// Live bytes of the store and of its snapshot, and the snapshot's classes.
fn held(policies: usize, pods: usize) -> (i64, i64, usize) {
    let spec = synth::Spec::sized(policies, pods);
    let mut store: Option<Store> = None;
    let s = allocation_counter::measure(|| store = Some(synth::load(&spec).unwrap().store));
    let store = store.unwrap();
    let mut snap: Option<Snapshot> = None;
    let b = allocation_counter::measure(|| snap = Some(Snapshot::build(&store, 1)));
    let classes = snap.as_ref().map_or(0, |s| s.endpoints.classes());
    (s.bytes_current, b.bytes_current, classes)
}

fn mb(b: i64) -> f64 {
    b as f64 / 1e6
}

fn main() {
    let full = held(10_000, 100_000);
    let half_pods = held(10_000, 50_000);
    let half_policies = held(5_000, 100_000);
    for (name, (store, snap, classes)) in [
        ("10000 policies, 100000 pods", full),
        ("10000 policies,  50000 pods", half_pods),
        (" 5000 policies, 100000 pods", half_policies),
    ] {
        println!(
            "{name}: store {:>6.1} MB, snapshot {:>6.1} MB, together {:>6.1} MB ({classes} classes)",
            mb(store),
            mb(snap),
            mb(store + snap)
        );
    }
    let per = |a: i64, b: i64, n: i64| (a - b) as f64 / n as f64;
    println!(
        "per pod:    store {:>6.0} B, snapshot {:>6.0} B",
        per(full.0, half_pods.0, 50_000),
        per(full.1, half_pods.1, 50_000)
    );
    println!(
        "per policy: store {:>6.0} B, snapshot {:>6.0} B",
        per(full.0, half_policies.0, 5_000),
        per(full.1, half_policies.1, 5_000)
    );
}

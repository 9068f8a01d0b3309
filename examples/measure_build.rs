//! Times loading and compiling synthetic clusters: `cargo run --release --example measure_build`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use alp_authz::{policy::snapshot::Snapshot, synth};

fn main() {
    for (policies, pods) in [(10, 1_000), (1_000, 1_000), (10_000, 100_000)] {
        let spec = synth::Spec {
            namespaces: 100.min(pods / 10).max(1),
            pods,
            policies,
            seed: 42,
        };
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
    }
}

//! What per-node mode (`--node`) costs now that it indexes every Pod of the cluster (as Felix's
//! IP sets do) instead of only its node's: `cargo run --example measure_node -- MODE [PODS]`,
//! one process per mode so that resident sizes compare.
//!
//! - `local`: the old per-node index, only the node's own pods (100k pods on 1,000 nodes: 100).
//! - `node`: every pod indexed, the node's own with plans, the others as sources only.
//! - `cluster`: every pod indexed with plans (no `--node`).
//!
//! It also prints the bytes of the initial Pod list on the wire, for the synthetic pods and for
//! a typical real Pod object, which is what the API server sends each instance on every relist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use alp_authz::{
    policy::{
        snapshot::Snapshot,
        store::{Store, decode_document},
    },
    synth,
};

const NODES: usize = 1_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "node".into());
    let pods: usize = args.next().map_or(100_000, |n| n.parse().unwrap());
    let spec = synth::Spec::sized(1_000, pods);
    let mut objects = synth::objects(&spec);
    let mut pod_index = 0usize;
    let mut wire = 0usize;
    for o in &mut objects {
        if o["kind"] == "Pod" {
            o["spec"]["nodeName"] = format!("node-{}", pod_index % NODES).into();
            pod_index += 1;
            wire += o.to_string().len();
        }
    }
    let mut store = Store::new();
    if mode != "cluster" {
        store.set_node(Some("node-0"));
    }
    let t = Instant::now();
    let mut kept = 0usize;
    // Heap bytes still held after decoding: the store (each object is decoded from a copy that
    // is dropped inside the measurement).
    let held = allocation_counter::measure(|| {
        for o in &objects {
            let is_pod = o["kind"] == "Pod";
            if mode == "local" && is_pod && o["spec"]["nodeName"] != "node-0" {
                continue;
            }
            let (_, obj) = decode_document(o.clone()).unwrap().unwrap();
            store.apply(obj);
            kept += usize::from(is_pod);
        }
    });
    let decode = t.elapsed();
    drop(objects);
    let t = Instant::now();
    let mut snap = None;
    let built = allocation_counter::measure(|| snap = Some(Snapshot::build(&store, 1)));
    let build = t.elapsed();
    let snap = snap.unwrap();
    println!(
        "{mode:>7}: {kept} pods indexed ({} endpoints, {} classes with plans); decode+apply {:.0} ms, snapshot build {:.0} ms (debug builds are slower); heap held: store {:.1} MiB, snapshot {:.1} MiB",
        snap.endpoints.len(),
        snap.plans.len(),
        decode.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e3,
        held.bytes_current as f64 / (1 << 20) as f64,
        built.bytes_current as f64 / (1 << 20) as f64,
    );
    println!(
        "    initial Pod list on the wire: {:.1} MiB of synthetic pods ({} B each); a typical real Pod is ~{} B, ~{:.0} MiB for {pods}",
        wire as f64 / (1 << 20) as f64,
        wire / pods.max(1),
        TYPICAL_POD_BYTES,
        (TYPICAL_POD_BYTES * pods) as f64 / (1 << 20) as f64
    );
}

/// A mid estimate of a real Pod object on the wire: the compact one-container Pod of
/// `tests/kubernetes.rs` (owner reference, one managed-fields entry, a projected token volume,
/// one condition and container status) serializes to 2,137 bytes; Pods with full managed
/// fields, probes, environment and sidecars are commonly 4–10 KiB.
const TYPICAL_POD_BYTES: usize = 4_500;

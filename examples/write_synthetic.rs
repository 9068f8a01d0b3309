//! Writes a synthetic cluster as one `kind: List` JSON file:
//! `cargo run --release --example write_synthetic -- POLICIES PODS FILE`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (policies, pods): (usize, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let spec = alp_authz::synth::Spec::sized(policies, pods);
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": alp_authz::synth::objects(&spec)});
    std::fs::write(&args[3], list.to_string()).unwrap();
}

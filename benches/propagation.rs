//! Propagation latency: from a watch event (a policy modified in the API server) to the
//! decision it changes, through the real kube client, the sync thread, the snapshot build and
//! the gRPC server. `cargo bench --bench propagation` (add `-- --quick` for fewer rounds).
//!
//! The API server is the in-process fake of `tests/fakeapi`, loaded with a synthetic cluster
//! (`alp_authz::synth`); the server is the release binary, started with `--kubernetes`. A probe
//! tier in front of everything holds two GlobalNetworkPolicies. Policy rounds flip the Deny rule
//! of one (it selects every pod) between the probed request's port and another port; pod rounds
//! relabel the destination pod in and out of the other's selector. Each round polls Check until
//! the answer follows. The smallest cluster is the baseline the others are compared to.
//!
//! `-- --real-api BIN` runs against a real kube-apiserver and etcd instead (BIN:
//! `tests/cluster/build`'s output; `tests/cluster/bench` runs it): for each size a fresh cluster
//! started by `tests/cluster/cluster`, the synthetic objects created through its API (Pods
//! created, then given their status through the status subresource), and besides the figures
//! above the API server's and etcd's CPU (from `/proc/PID/stat`) and RSS, and the API server's
//! watch count from its own `/metrics`. `--sizes 1000x10000,10000x100000` picks the sizes (both
//! modes), `--rounds N` the changes of each kind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fakeapi/mod.rs"]
mod fakeapi;
#[path = "propagation/real.rs"]
mod real;

use std::time::{Duration, Instant};

use alp_authz::{authz::descriptor::check_request_from_json, synth};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use fakeapi::{Calico, FakeApi};
use serde_json::json;

const PORT: u32 = 8080;

fn probe_policy(port: u32) -> serde_json::Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "probe.flip"},
        "spec": {"tier": "probe", "order": 1, "selector": "all()", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [port]}}]}
    })
}

/// Denies everything to pods labelled `probe: deny`: relabelling a pod flips its answers.
fn label_policy() -> serde_json::Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "probe.label"},
        "spec": {"tier": "probe", "order": 2, "selector": "probe == 'deny'", "types": ["Ingress"],
                 "ingress": [{"action": "Deny"}]}
    })
}

struct Run {
    label: String,
    sync: Duration,
    rss_mb: f64,
    /// One policy modified.
    policy: Vec<Duration>,
    /// One pod relabelled.
    pod: Vec<Duration>,
}

fn quantile(rounds: &[Duration], q: f64) -> Duration {
    let mut v = rounds.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_mb(pid: u32) -> f64 {
    common::rss_kib(pid).map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

fn measure(policies: usize, pods: usize, rounds: usize) -> Run {
    let spec = synth::Spec::sized(policies, pods);
    let api = FakeApi::start(Calico::V3);
    api.apply(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "probe"},
                     "spec": {"order": 1, "defaultAction": "Pass"}}),
    );
    api.apply(probe_policy(1));
    api.apply(label_policy());
    let dst = 4.min(pods - 1);
    let mut dst_pod = None;
    for obj in synth::objects(&spec) {
        if obj["kind"] == "Pod" && obj["status"]["podIP"] == synth::pod_ip(dst).as_str() {
            dst_pod = Some(obj.clone());
        }
        api.apply(obj);
    }
    let mut dst_pod = dst_pod.expect("the destination pod");
    api.compact(); // the initial objects need no watch history
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let started = Instant::now();
    let server =
        common::Server::start(&["--kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    server.wait_for_log_within("synced with the Kubernetes API", Duration::from_secs(600));
    let sync = started.elapsed();
    let rss = rss_mb(server.pid());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(AuthorizationClient::connect(server.url()))
        .unwrap();
    let mut check = |req: &CheckRequest| -> i32 {
        let resp = rt.block_on(client.check(req.clone())).unwrap().into_inner();
        resp.status.map_or(-1, |s| s.code)
    };
    // A request the cluster allows.
    let req = (0..pods.min(5_000))
        .map(|from| {
            check_request_from_json(&synth::request_json(
                from,
                dst,
                &spec,
                "GET",
                "/api/items",
                PORT,
            ))
            .unwrap()
        })
        .find(|r| check(r) == 0)
        .expect("an allowed request in the synthetic cluster");

    let mut flip = |change: &mut dyn FnMut(bool)| -> Vec<Duration> {
        let mut times = Vec::new();
        for round in 0..rounds * 2 {
            let deny = round % 2 == 0;
            let want = if deny { 7 } else { 0 };
            let t = Instant::now();
            change(deny);
            loop {
                if check(&req) == want {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(120), "no propagation");
                std::thread::sleep(Duration::from_micros(200));
            }
            times.push(t.elapsed());
        }
        times
    };
    let policy = flip(&mut |deny| {
        api.apply(probe_policy(if deny { PORT } else { 1 }));
    });
    let pod = flip(&mut |deny| {
        dst_pod["metadata"]["labels"]["probe"] = json!(if deny { "deny" } else { "allow" });
        api.apply(dst_pod.clone());
    });
    Run {
        label: format!("{policies} policies, {pods} pods"),
        sync,
        rss_mb: rss,
        policy,
        pod,
    }
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).map(|i| {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{flag} needs a value"))
    })
}

/// `--sizes 1000x10000,10000x100000`: (policies, pods) pairs.
fn sizes_arg() -> Option<Vec<(usize, usize)>> {
    arg("--sizes").map(|s| {
        s.split(',')
            .map(|p| {
                let (a, b) = p.split_once('x').expect("--sizes POLICIESxPODS,…");
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect()
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = arg("--rounds").map_or(if quick { 5 } else { 20 }, |r| r.parse().unwrap());
    if let Some(bin) = arg("--real-api") {
        let sizes = sizes_arg().unwrap_or_else(|| vec![(1_000, 10_000)]);
        real::main(std::path::Path::new(&bin), &sizes, rounds);
        return;
    }
    let sizes = sizes_arg()
        .unwrap_or_else(|| vec![(10, 100), (10, 1_000), (10_000, 1_000), (10_000, 100_000)]);
    let mut runs = Vec::new();
    println!(
        "watch event → decision changed (the fake API server, the kube client, the sync thread, the snapshot, gRPC)"
    );
    for &(policies, pods) in &sizes {
        let run = measure(policies, pods, rounds);
        println!(
            "{:>27}: synced in {:>6.0} ms, RSS {:>4.0} MB; one policy modified: p50 {:>6.1} ms, p90 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms; one pod relabelled: p50 {:>6.1} ms, p90 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms ({} changes each)",
            run.label,
            ms(run.sync),
            run.rss_mb,
            ms(quantile(&run.policy, 0.5)),
            ms(quantile(&run.policy, 0.9)),
            ms(quantile(&run.policy, 0.99)),
            ms(quantile(&run.policy, 1.0)),
            ms(quantile(&run.pod, 0.5)),
            ms(quantile(&run.pod, 0.9)),
            ms(quantile(&run.pod, 0.99)),
            ms(quantile(&run.pod, 1.0)),
            run.policy.len()
        );
        runs.push(run);
    }
    let base = &runs[0];
    for r in &runs {
        println!(
            "{:>27}: p50 {:.1}× (policy) and {:.1}× (pod) the baseline's ({})",
            r.label,
            ms(quantile(&r.policy, 0.5)) / ms(quantile(&base.policy, 0.5)),
            ms(quantile(&r.pod, 0.5)) / ms(quantile(&base.pod, 0.5)),
            base.label
        );
    }
}

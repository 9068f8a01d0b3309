//! Sustained churn: Pod events at a steady rate (creates, relabels, deletes, in turn) through
//! the Kubernetes source while h2load drives Check, against the same run without churn.
//! `cargo bench --bench churn` (10,000 policies / 100,000 pods, 1,000 events a second for
//! 30 s); `-- --sizes 10x1000,10000x100000 --rate 1000 --secs 30` to choose.
//!
//! The API server is the in-process fake of `tests/fakeapi` (the real protocol) holding a
//! synthetic cluster (`alp_authz::synth`); the server is the release binary with
//! `--kubernetes`. Each size runs two phases, the same but for the churn:
//! - **quiet**: h2load (16 connections × 8 streams, one thread) for `--secs` on an allowed
//!   request, and a probe that relabels one pod in and out of a policy that denies it, timing
//!   each flip from the API server's write until Check answers the new way;
//! - **churn**: the same, plus a thread writing `--rate` Pod events a second into the API
//!   server: a new pod (a copy of a synthetic one with its own name and address), a synthetic
//!   pod's `version` and `pod-template-hash` moved to the next ReplicaSet (a rollout step), the
//!   oldest new pod deleted; and again.
//!
//! Reported per phase: Check throughput (h2load), the CPU time of the server's sync thread
//! (`alp-authz-sync`, from `/proc/PID/task/*/stat`) and of the whole server over the h2load
//! window, the probe's propagation p50 / p99 / max, the publications the sync thread made
//! (from its `published state` log lines) and the events it took in per publication; then the
//! churn phase's throughput as a ratio of the quiet one's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fakeapi/mod.rs"]
mod fakeapi;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use alp_authz::{
    authz::descriptor::check_request_from_json,
    bench::{H2loadStats, Shape},
    synth,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use fakeapi::{Calico, FakeApi};
use serde_json::{Value, json};

const PORT: u32 = 8080;
/// The pod h2load's request goes to, and the probed one; churn never touches either.
const DST: usize = 4;
const PROBE: usize = 5;
/// How often the probe flips its pod (it waits for each flip to be seen first).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Giving up on a flip: propagation this slow means the sync thread cannot keep up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Denies everything to pods labelled `probe: deny`.
fn label_policy() -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "probe.label"},
        "spec": {"tier": "probe", "order": 2, "selector": "probe == 'deny'", "types": ["Ingress"],
                 "ingress": [{"action": "Deny"}]}
    })
}

struct Args {
    sizes: Vec<(usize, usize)>,
    rate: f64,
    secs: u64,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let sizes = value("--sizes")
        .unwrap_or_else(|| "10000x100000".into())
        .split(',')
        .filter_map(|s| s.split_once('x'))
        .map(|(p, n)| (p.parse().unwrap(), n.parse().unwrap()))
        .collect();
    Args {
        sizes,
        rate: value("--rate").map_or(1_000.0, |r| r.parse().unwrap()),
        secs: value("--secs").map_or(30, |s| s.parse().unwrap()),
    }
}

/// User plus system CPU time of the server's threads named `name` (all threads with `None`).
fn cpu(pid: u32, name: Option<&str>) -> Duration {
    // /proc reports in clock ticks of USER_HZ, 100 a second on Linux.
    const TICK: f64 = 0.01;
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.is_some_and(|n| comm.trim() != n) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is the 3rd field, utime the 14th, stime the 15th.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
        ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 * TICK)
}

/// A synthetic pod's `version` and `pod-template-hash` moved to the next of its three
/// ReplicaSets (as synth numbers them), as one step of a rollout.
fn roll(spec: &synth::Spec, pod: &mut Value, i: usize) {
    let labels = &mut pod["metadata"]["labels"];
    let v = labels["version"]
        .as_str()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let v = (v + 1) % 3;
    let hash = (i % spec.namespaces) * 1_000 + ((i / spec.namespaces) % synth::APPS) * 10 + v;
    labels["version"] = json!(format!("v{v}"));
    labels["pod-template-hash"] = json!(format!(
        "{:x}",
        hash.wrapping_mul(2_654_435_761) & 0xff_ffff
    ));
}

/// What the churn thread did.
#[derive(Default)]
struct Churned {
    events: u64,
    behind_max: Duration,
}

/// Writes `rate` Pod events a second into `api` until `stop`: create, relabel, delete, in
/// turn, paced every millisecond against the wall clock (so a slow write is caught up on).
fn churn(
    api: &FakeApi,
    spec: &synth::Spec,
    pods: &mut [Value],
    rate: f64,
    stop: &AtomicBool,
) -> Churned {
    let started = Instant::now();
    let mut out = Churned::default();
    let mut live: VecDeque<(String, String)> = VecDeque::new();
    let mut next_new = 0usize;
    let mut next_roll = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        if out.events >= due {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let lag = Duration::from_secs_f64((due - out.events) as f64 / rate);
        out.behind_max = out.behind_max.max(lag);
        match out.events % 3 {
            0 => {
                // A new pod: a copy of a synthetic one, its own name and address (above every
                // synthetic pod's).
                let from = next_new % pods.len();
                let mut pod = pods[from].clone();
                let name = format!("churn-{next_new}");
                let ip = synth::pod_ip(spec.pods + 1_000_000 + next_new % 1_000_000);
                pod["metadata"]["name"] = json!(name);
                pod["status"]["podIP"] = json!(ip);
                pod["status"]["podIPs"] = json!([{"ip": ip}]);
                live.push_back((
                    pod["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    name,
                ));
                api.apply(pod);
                next_new += 1;
            }
            1 => {
                let i = loop {
                    let i = next_roll % pods.len();
                    next_roll += 1;
                    if i != DST && i != PROBE {
                        break i;
                    }
                };
                roll(spec, &mut pods[i], i);
                api.apply(pods[i].clone());
            }
            _ => {
                if let Some((ns, name)) = live.pop_front() {
                    api.delete("v1", "Pod", &ns, &name);
                }
            }
        }
        out.events += 1;
    }
    // Leave the cluster as it was: the quiet phase of the next size starts clean, and so
    // would a rerun.
    for (ns, name) in live {
        api.delete("v1", "Pod", &ns, &name);
    }
    out
}

/// Flips the probe pod in and out of the deny policy every [`PROBE_EVERY`] until `stop`;
/// each flip timed from the write until Check answers the new way.
fn probe(
    api: &FakeApi,
    server: &str,
    pod: &mut Value,
    req: &CheckRequest,
    stop: &AtomicBool,
) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(AuthorizationClient::connect(server.to_owned()))
        .unwrap();
    let mut check = |req: &CheckRequest| -> i32 {
        let resp = rt.block_on(client.check(req.clone())).unwrap().into_inner();
        resp.status.map_or(-1, |s| s.code)
    };
    let mut times = Vec::new();
    let mut deny = true;
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        pod["metadata"]["labels"]["probe"] = json!(if deny { "deny" } else { "allow" });
        let want = if deny { 7 } else { 0 };
        let t = Instant::now();
        api.apply(pod.clone());
        loop {
            if check(req) == want {
                times.push(t.elapsed());
                break;
            }
            assert!(
                t.elapsed() < PROBE_TIMEOUT,
                "a pod relabel did not reach Check within {PROBE_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        deny = !deny;
        std::thread::sleep(PROBE_EVERY.saturating_sub(round.elapsed()));
    }
    // End allowed, as it started.
    if !deny {
        pod["metadata"]["labels"]["probe"] = json!("allow");
        api.apply(pod.clone());
        while check(req) != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    times
}

/// One phase's figures.
struct Phase {
    check: H2loadStats,
    window: Duration,
    sync_cpu: Duration,
    server_cpu: Duration,
    propagation: Vec<Duration>,
    events: u64,
    behind_max: Duration,
    publications: u64,
    changes: u64,
}

fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `changes=N` of a `published state from the Kubernetes API` line.
fn changes_of(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("changes="))
        .and_then(|n| n.parse().ok())
}

struct Cluster {
    api: FakeApi,
    server: common::Server,
    spec: synth::Spec,
    pods: Vec<Value>,
    req: CheckRequest,
    probe_req: CheckRequest,
    probe_pod: Value,
    h2load: std::path::PathBuf,
}

fn start(policies: usize, pods: usize, h2load: &str) -> Cluster {
    let spec = synth::Spec::sized(policies, pods);
    let api = FakeApi::start(Calico::V3);
    api.apply(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "probe"},
                     "spec": {"order": 1, "defaultAction": "Pass"}}),
    );
    api.apply(label_policy());
    let mut all_pods = Vec::with_capacity(pods);
    for obj in synth::objects(&spec) {
        if obj["kind"] == "Pod" {
            all_pods.push(obj.clone());
        }
        api.apply(obj);
    }
    api.compact();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let server =
        common::Server::start(&["--kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    server.wait_for_log_within("synced with the Kubernetes API", Duration::from_secs(600));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(AuthorizationClient::connect(server.url()))
        .unwrap();
    let mut allowed_to = |to: usize| {
        (0..pods.min(5_000))
            .map(|from| {
                check_request_from_json(&synth::request_json(
                    from,
                    to,
                    &spec,
                    "GET",
                    "/api/items",
                    PORT,
                ))
                .unwrap()
            })
            .find(|r| {
                let resp = rt.block_on(client.check(r.clone())).unwrap().into_inner();
                resp.status.is_some_and(|s| s.code == 0)
            })
            .unwrap_or_else(|| panic!("no allowed request to pod {to}"))
    };
    let req = allowed_to(DST);
    let probe_req = allowed_to(PROBE);
    let probe_pod = all_pods[PROBE].clone();
    Cluster {
        api,
        server,
        spec,
        pods: all_pods,
        req,
        probe_req,
        probe_pod,
        h2load: h2load.into(),
    }
}

fn phase(c: &mut Cluster, rate: Option<f64>, secs: u64) -> Phase {
    let stop = AtomicBool::new(false);
    let addr: SocketAddr = c.server.addr.parse().unwrap();
    let shape = Shape {
        connections: 16,
        streams: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(secs),
        rate: None,
    };
    while c.server.log.try_recv().is_ok() {}
    let pid = c.server.pid();
    let url = c.server.url();
    let (api, spec, req, probe_req) = (&c.api, &c.spec, &c.req, &c.probe_req);
    let (pods, probe_pod) = (&mut c.pods, &mut c.probe_pod);
    let stop = &stop;
    let h2load = c.h2load.clone();
    let (churned, propagation, check, window, sync_cpu, server_cpu) = std::thread::scope(|s| {
        let churner = rate.map(|r| s.spawn(move || churn(api, spec, pods, r, stop)));
        let prober = s.spawn(move || probe(api, &url, probe_pod, probe_req, stop));
        // Let the churn reach its steady state before measuring.
        std::thread::sleep(Duration::from_secs(2));
        let (sync0, all0) = (cpu(pid, Some("alp-authz-sync")), cpu(pid, None));
        let t = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let check = rt
            .block_on(alp_authz::bench::h2load(&h2load, addr, req, shape))
            .unwrap();
        let window = t.elapsed();
        let sync_cpu = cpu(pid, Some("alp-authz-sync")).saturating_sub(sync0);
        let server_cpu = cpu(pid, None).saturating_sub(all0);
        stop.store(true, Ordering::Relaxed);
        let churned = churner.map(|h| h.join().unwrap()).unwrap_or_default();
        let propagation = prober.join().unwrap();
        (churned, propagation, check, window, sync_cpu, server_cpu)
    });
    // Let the clean-up deletes land before counting what the sync thread published.
    std::thread::sleep(Duration::from_secs(1));
    let (mut publications, mut changes) = (0, 0);
    while let Ok(line) = c.server.log.try_recv() {
        if line.contains("published state from the Kubernetes API") {
            publications += 1;
            changes += changes_of(&line).unwrap_or(0);
        }
    }
    Phase {
        check,
        window,
        sync_cpu,
        server_cpu,
        propagation,
        events: churned.events,
        behind_max: churned.behind_max,
        publications,
        changes,
    }
}

fn report(label: &str, p: &Phase, secs: u64) {
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / p.window.as_secs_f64();
    println!(
        "  {label:>5}: {:>8.0} checks/s; sync thread CPU {:>5.1} % ({:.2} s), server CPU {:>5.1} %; propagation (pod relabelled) p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms ({} flips); {} pod events ({:.0}/s, at most {:.0} ms behind schedule); {} publications, {:.1} events each",
        p.check.rate,
        pct(p.sync_cpu),
        p.sync_cpu.as_secs_f64(),
        pct(p.server_cpu),
        ms(quantile(&p.propagation, 0.5)),
        ms(quantile(&p.propagation, 0.99)),
        ms(quantile(&p.propagation, 1.0)),
        p.propagation.len(),
        p.events,
        p.events as f64 / (secs as f64 + 2.0),
        ms(p.behind_max),
        p.publications,
        p.changes as f64 / p.publications.max(1) as f64,
    );
}

fn main() {
    let args = args();
    let Some(h2load) = common::external_tool(Some("H2LOAD"), "h2load", &["--version"]) else {
        common::say_skipped("churn", "no h2load (Debian: nghttp2-client; or set H2LOAD)");
        return;
    };
    println!(
        "sustained churn: {} Pod events/s (create, relabel, delete) for {} s under h2load (16 connections × 8 streams), against the same run without churn",
        args.rate, args.secs
    );
    for &(policies, pods) in &args.sizes {
        let mut cluster = start(policies, pods, &h2load);
        println!("{policies} policies, {pods} pods:");
        let quiet = phase(&mut cluster, None, args.secs);
        report("quiet", &quiet, args.secs);
        let churned = phase(&mut cluster, Some(args.rate), args.secs);
        report("churn", &churned, args.secs);
        println!(
            "  churn / quiet: throughput {:.3}×, propagation p50 {:.1}×, p99 {:.1}×",
            churned.check.rate / quiet.check.rate,
            ms(quantile(&churned.propagation, 0.5)) / ms(quantile(&quiet.propagation, 0.5)),
            ms(quantile(&churned.propagation, 0.99)) / ms(quantile(&quiet.propagation, 0.99)),
        );
    }
}

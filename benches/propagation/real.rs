//! The propagation benchmark against a real kube-apiserver and etcd (`--real-api BIN`).
//!
//! For each size: a fresh cluster from `tests/cluster/cluster start` (etcd and kube-apiserver on
//! loopback, the Calico 3.28 `crd.projectcalico.org/v1` CRDs and the network-policy-api CRDs),
//! the synthetic cluster created through its API by an admin client (Pods created with their
//! `nodeName`, then given their IPs and phase through the status subresource, as kubelet does),
//! then the release `alp-authz serve --kubernetes` started on it. The installed Calico CRDs
//! have no Tier kind (3.28): the synthetic GlobalNetworkPolicies of the security and platform
//! tiers go to the default tier (orders 10+, after the probe's 1 and 2, before the
//! NetworkPolicies' 100+).
//!
//! Measured: the time to load the objects, alp-authz's first sync and RSS, the policy and pod
//! change propagation (p50 / p99 / max), and for the API server and etcd their CPU time (user
//! and system time of `/proc/PID/stat`) and RSS in each phase, and the API server's watch count
//! (`apiserver_longrunning_requests{verb="WATCH"}` and, where it still exists,
//! `apiserver_registered_watchers`, from its `/metrics`) before and after alp-authz connects.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use alp_authz::{authz::descriptor::check_request_from_json, synth};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use futures::StreamExt as _;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::ApiResource,
};
use serde_json::{Value, json};

use crate::{PORT, common, label_policy, ms, probe_policy, quantile, rss_mb};

/// Requests in flight while loading the cluster.
const CONCURRENCY: usize = 32;
/// Nodes the pods are spread over (Node objects; no kubelet runs).
const NODES: usize = 10;

/// A cluster started by `tests/cluster/cluster`, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Cluster {
    fn start(bin: &Path) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("alp-bench-cluster")
            .tempdir()
            .unwrap();
        let out = Command::new(common::root().join("tests/cluster/cluster"))
            .arg("start")
            .arg(dir.path())
            .arg(bin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let env = std::fs::read_to_string(dir.path().join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Cluster { dir, env }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    fn pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn versions(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("versions.txt"))
            .unwrap_or_default()
            .lines()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(common::root().join("tests/cluster/cluster"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ: 100 on every Linux architecture this runs on (sysconf(_SC_CLK_TCK)).
    ticks as f64 / 100.0
}

/// CPU time of the API server and of etcd over a phase.
#[derive(Clone, Copy)]
struct Cpu {
    apiserver: f64,
    etcd: f64,
    wall: Duration,
}

struct Meter {
    pids: (u32, u32),
    start: (f64, f64),
    t: Instant,
}

impl Meter {
    fn new(c: &Cluster) -> Meter {
        let pids = (c.pid("apiserver"), c.pid("etcd"));
        Meter {
            pids,
            start: (cpu_seconds(pids.0), cpu_seconds(pids.1)),
            t: Instant::now(),
        }
    }

    fn read(&self) -> Cpu {
        Cpu {
            apiserver: cpu_seconds(self.pids.0) - self.start.0,
            etcd: cpu_seconds(self.pids.1) - self.start.1,
            wall: self.t.elapsed(),
        }
    }
}

fn show_cpu(c: Cpu) -> String {
    let s = c.wall.as_secs_f64().max(1e-9);
    format!(
        "kube-apiserver {:.1} s CPU ({:.0} % of a core), etcd {:.1} s ({:.0} %)",
        c.apiserver,
        100.0 * c.apiserver / s,
        c.etcd,
        100.0 * c.etcd / s
    )
}

/// The API server's watch count: `apiserver_longrunning_requests` of verb WATCH, and
/// `apiserver_registered_watchers` (absent in releases that dropped it), each summed. Read with
/// curl and the admin's client certificate, as `tests/cluster/cluster` reads the API.
fn watches(c: &Cluster) -> (f64, Option<f64>) {
    let pki = c.dir.path().join("pki");
    let out = Command::new("curl")
        .arg("-fsS")
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!("{}/metrics", c.env["APISERVER_URL"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GET /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Prometheus text format: `name{labels} value` lines, `#` comments.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let sum = |name: &str, filter: &dyn Fn(&str) -> bool| {
        let mut found = false;
        let mut total = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if series.split('{').next() == Some(name) && filter(series) {
                found = true;
                total += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        found.then_some(total)
    };
    (
        sum("apiserver_longrunning_requests", &|k| {
            k.contains("verb=\"WATCH\"")
        })
        .unwrap_or(0.0),
        sum("apiserver_registered_watchers", &|_| true),
    )
}

fn api_for(client: &kube::Client, obj: &Value) -> Api<DynamicObject> {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "Node" => ("nodes", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "Pod" => ("pods", true),
        "GlobalNetworkPolicy" => ("globalnetworkpolicies", false),
        "NetworkPolicy" => ("networkpolicies", true),
        other => panic!("no resource for {other}"),
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// A `projectcalico.org/v3` policy in the `crd.projectcalico.org/v1` form the installed CRDs
/// store, in the default tier (no Tier kind in Calico 3.28's CRDs): a tiered
/// GlobalNetworkPolicy gets order `10 + its order`.
fn to_crd_v1(mut obj: Value) -> Value {
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    let tier = obj["spec"]["tier"].as_str().unwrap_or("default").to_owned();
    let base = name
        .strip_prefix(&format!("{tier}."))
        .unwrap_or(&name)
        .to_owned();
    if tier != "default" && tier != "probe" {
        let order = obj["spec"]["order"].as_f64().unwrap_or(0.0);
        obj["spec"]["order"] = json!(10.0 + order);
    }
    let spec = obj["spec"].as_object_mut().unwrap();
    spec.remove("tier");
    obj["apiVersion"] = json!("crd.projectcalico.org/v1");
    let mut meta = json!({"name": base});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        meta["namespace"] = json!(ns);
    }
    obj["metadata"]["name"] = json!(format!("default.{base}"));
    obj["metadata"]["annotations"] = json!({"projectcalico.org/metadata": meta.to_string()});
    obj
}

/// A synthetic Pod as the API takes it (an image; its node), and the status kubelet would set.
fn pod_and_status(mut obj: Value, i: usize) -> (Value, Value) {
    let status = obj.as_object_mut().unwrap().remove("status").unwrap();
    obj["spec"]["nodeName"] = json!(format!("node-{}", i % NODES));
    for c in obj["spec"]["containers"].as_array_mut().unwrap() {
        c["image"] = json!("registry.example/app:1");
    }
    let mut status = status;
    status["hostIP"] = json!("192.0.2.1");
    status["hostIPs"] = json!([{"ip": "192.0.2.1"}]);
    (obj, status)
}

async fn create(client: &kube::Client, obj: &Value) {
    let api = api_for(client, obj);
    let dyn_obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    api.create(&PostParams::default(), &dyn_obj)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", obj["metadata"]));
}

async fn create_pod(client: &kube::Client, pod: Value, status: Value) {
    create(client, &pod).await;
    let name = pod["metadata"]["name"].as_str().unwrap();
    api_for(client, &pod)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("status of pod {name}: {e}"));
}

/// Creates every object through the API, `CONCURRENCY` requests at a time (namespaces and
/// service accounts first).
async fn load(client: &kube::Client, objects: Vec<(Value, Option<Value>)>) {
    let (first, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|(o, _)| matches!(o["kind"].as_str(), Some("Namespace" | "Node")));
    for batch in [first, rest] {
        futures::stream::iter(batch)
            .for_each_concurrent(CONCURRENCY, |(obj, status)| async move {
                match status {
                    Some(status) => create_pod(client, obj, status).await,
                    None => create(client, &obj).await,
                }
            })
            .await;
    }
}

struct RealRun {
    label: String,
    objects: usize,
    load: Cpu,
    sync: Duration,
    sync_cpu: Cpu,
    rss_mb: f64,
    apiserver_rss_mb: f64,
    etcd_rss_mb: f64,
    watches_before: (f64, Option<f64>),
    watches_after: (f64, Option<f64>),
    policy: Vec<Duration>,
    pod: Vec<Duration>,
    rounds_cpu: Cpu,
    versions: String,
}

fn measure(bin: &Path, policies: usize, pods: usize, rounds: usize) -> RealRun {
    let cluster = Cluster::start(bin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let kc = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });

    let spec = synth::Spec::sized(policies, pods);
    let dst = 4.min(pods - 1);
    let mut dst_pod = None;
    let mut objects: Vec<(Value, Option<Value>)> = (0..NODES)
        .map(|n| {
            (
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")}}),
                None,
            )
        })
        .collect();
    let mut pod_index = 0;
    for obj in synth::objects(&spec) {
        match obj["kind"].as_str().unwrap() {
            "Tier" => {}
            "Pod" => {
                if obj["status"]["podIP"] == synth::pod_ip(dst).as_str() {
                    dst_pod = Some(obj.clone());
                }
                let (pod, status) = pod_and_status(obj, pod_index);
                pod_index += 1;
                objects.push((pod, Some(status)));
            }
            "GlobalNetworkPolicy" | "NetworkPolicy" => objects.push((to_crd_v1(obj), None)),
            _ => objects.push((obj, None)),
        }
    }
    for probe in [probe_policy(1), label_policy()] {
        objects.push((to_crd_v1(probe), None));
    }
    let dst_pod = dst_pod.expect("the destination pod");
    let n_objects = objects.len();
    let meter = Meter::new(&cluster);
    rt.block_on(load(&client, objects));
    let load_cpu = meter.read();
    eprintln!(
        "{policies} policies, {pods} pods: {n_objects} objects created through the API in {:.1} s; {}",
        load_cpu.wall.as_secs_f64(),
        show_cpu(load_cpu)
    );
    let watches_before = watches(&cluster);

    let meter = Meter::new(&cluster);
    let server = common::Server::start(&[
        "--kubernetes",
        "--kubeconfig",
        cluster.kubeconfig().to_str().unwrap(),
    ]);
    server.wait_for_log_within("synced with the Kubernetes API", Duration::from_secs(900));
    let sync_cpu = meter.read();
    let sync = sync_cpu.wall;
    let rss = rss_mb(server.pid());
    let watches_after = watches(&cluster);

    let grpc = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut authz = grpc
        .block_on(AuthorizationClient::connect(server.url()))
        .unwrap();
    let mut check = |req: &CheckRequest| -> i32 {
        let resp = grpc
            .block_on(authz.check(req.clone()))
            .unwrap()
            .into_inner();
        resp.status.map_or(-1, |s| s.code)
    };
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

    let probe = to_crd_v1(probe_policy(1));
    let probe_api = api_for(&client, &probe);
    let probe_name = probe["metadata"]["name"].as_str().unwrap().to_owned();
    let pod_api = api_for(&client, &dst_pod);
    let pod_name = dst_pod["metadata"]["name"].as_str().unwrap().to_owned();
    let meter = Meter::new(&cluster);
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
        let spec = to_crd_v1(probe_policy(if deny { PORT } else { 1 }))["spec"].clone();
        rt.block_on(probe_api.patch(
            &probe_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        ))
        .unwrap();
    });
    let pod = flip(&mut |deny| {
        let label = if deny { "deny" } else { "allow" };
        rt.block_on(pod_api.patch(
            &pod_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"probe": label}}})),
        ))
        .unwrap();
    });
    let rounds_cpu = meter.read();
    let run = RealRun {
        label: format!("{policies} policies, {pods} pods"),
        objects: n_objects,
        load: load_cpu,
        sync,
        sync_cpu,
        rss_mb: rss,
        apiserver_rss_mb: rss_mb(cluster.pid("apiserver")),
        etcd_rss_mb: rss_mb(cluster.pid("etcd")),
        watches_before,
        watches_after,
        policy,
        pod,
        rounds_cpu,
        versions: cluster.versions(),
    };
    drop(server);
    drop(cluster);
    run
}

pub fn main(bin: &Path, sizes: &[(usize, usize)], rounds: usize) {
    println!(
        "watch event → decision changed (a real kube-apiserver and etcd, the kube client, the sync thread, the snapshot, gRPC)"
    );
    for &(policies, pods) in sizes {
        let r = measure(bin, policies, pods, rounds);
        let watchers = |w: (f64, Option<f64>)| match w.1 {
            Some(n) => format!("{:.0} WATCH requests, {n:.0} registered watchers", w.0),
            None => format!("{:.0} WATCH requests", w.0),
        };
        println!("{:>27}: {}", r.label, r.versions);
        println!(
            "{:>27}: {} objects created through the API in {:.1} s ({}); then alp-authz synced in {:.0} ms ({}), RSS {:.0} MB",
            "",
            r.objects,
            r.load.wall.as_secs_f64(),
            show_cpu(r.load),
            ms(r.sync),
            show_cpu(r.sync_cpu),
            r.rss_mb
        );
        println!(
            "{:>27}: one policy modified: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; one pod relabelled: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes each; meanwhile {})",
            "",
            ms(quantile(&r.policy, 0.5)),
            ms(quantile(&r.policy, 0.99)),
            ms(quantile(&r.policy, 1.0)),
            ms(quantile(&r.pod, 0.5)),
            ms(quantile(&r.pod, 0.99)),
            ms(quantile(&r.pod, 1.0)),
            r.policy.len(),
            show_cpu(r.rounds_cpu)
        );
        println!(
            "{:>27}: kube-apiserver RSS {:.0} MB, etcd RSS {:.0} MB; watches: {} before alp-authz, {} after its sync",
            "",
            r.apiserver_rss_mb,
            r.etcd_rss_mb,
            watchers(r.watches_before),
            watchers(r.watches_after)
        );
    }
}

//! `alp-authz bench --peer opa-envoy`: alp-authz against OPA-Envoy (opa-envoy-plugin, built
//! from its Go module by `tests/opa/build`) on the same policy, and against two baselines of
//! our own: the empty tonic handler and a raw HTTP/2 server (`raw_h2`) answering every POST
//! with a pre-encoded OK `CheckResponse` (the transport's limit). All four are driven by h2load
//! in alternating rounds; before any load, every request of the verdict set gets the same
//! verdict from alp-authz and OPA, or the bench refuses to run.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use serde_json::Value;

use crate::{
    authz::{check::Checker, descriptor, service::AuthzService},
    bench::{Baseline, H2loadStats, Shape, h2load, rego, spawn_server},
};

/// The peers `--peer` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// opa-envoy-plugin (OPA with the Envoy ext_authz gRPC plugin), with the data-driven Rego
    /// of `src/bench/calico.rego`.
    OpaEnvoy,
}

/// The opa-envoy-plugin binary: `$ALP_OPA_ENVOY`, else what `tests/opa/build` builds or reuses.
pub fn opa_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ALP_OPA_ENVOY").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let build = Path::new("tests/opa/build");
    anyhow::ensure!(
        build.exists(),
        "set ALP_OPA_ENVOY to an opa-envoy-plugin binary, or run from the repository (tests/opa/build)"
    );
    let out = Command::new(build)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run tests/opa/build")?;
    anyhow::ensure!(out.status.success(), "tests/opa/build failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    Ok(PathBuf::from(path))
}

/// A running opa-envoy-plugin, killed on drop.
#[derive(Debug)]
pub struct Opa {
    child: Child,
    dir: PathBuf,
    /// Its ext_authz gRPC address.
    pub addr: SocketAddr,
}

impl Drop for Opa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr().context("bound address")?.port())
}

impl Opa {
    /// Starts `binary` with the generic rule set and `data`, and waits until it answers Check.
    pub async fn start(binary: &Path, data: &Value, probe: &CheckRequest) -> anyhow::Result<Opa> {
        let dir = std::env::temp_dir().join(format!(
            "alp-authz-opa-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).context("cannot create OPA's directory")?;
        std::fs::write(dir.join("calico.rego"), rego::POLICY).context("cannot write the Rego")?;
        std::fs::write(dir.join("data.json"), data.to_string()).context("cannot write the data")?;
        let (grpc, http) = (free_port()?, free_port()?);
        let addr: SocketAddr = ([127, 0, 0, 1], grpc).into();
        let child = Command::new(binary)
            .args([
                "run",
                "--server",
                "--log-level=error",
                // OPA's documented tuning for data-heavy policies: data kept as AST values, not
                // converted on every read (policy-performance#storage-optimization).
                "--optimize-store-for-read-speed",
                &format!("--addr=127.0.0.1:{http}"),
                "--set",
                &format!("plugins.envoy_ext_authz_grpc.addr={addr}"),
                "--set",
                "plugins.envoy_ext_authz_grpc.path=alp/allow",
                "--set",
                "decision_logs.console=false",
            ])
            .arg(dir.join("calico.rego"))
            .arg(dir.join("data.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut opa = Opa { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = opa.child.try_wait().context("OPA's status")? {
                bail!("opa-envoy-plugin exited: {status}");
            }
            if let Ok(mut c) = AuthorizationClient::connect(format!("http://{addr}")).await
                && c.check(probe.clone()).await.is_ok()
            {
                return Ok(opa);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "opa-envoy-plugin did not answer in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Resident memory, bytes.
    pub fn rss(&self) -> Option<u64> {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }
}

/// `VmRSS` of a `/proc/<pid>/status` file, bytes.
pub fn rss_of(status: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Asks `addr` for each request's verdict (allowed or not).
pub async fn verdicts(addr: SocketAddr, requests: &[CheckRequest]) -> anyhow::Result<Vec<bool>> {
    let mut c = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let a = c
            .check(r.clone())
            .await
            .context("a Check failed")?
            .into_inner();
        out.push(a.status.is_some_and(|s| s.code == 0));
    }
    Ok(out)
}

/// The verdict set and the request the load sends.
pub struct Workload {
    /// The cluster's objects.
    pub objects: Vec<Value>,
    /// Named requests whose verdicts must agree.
    pub requests: Vec<(String, CheckRequest)>,
    /// Keep this many of `requests`, half of them (where there are enough) allowed by
    /// alp-authz: sampled pairs of pods are mostly denied, and the allow path needs checking too.
    pub balance: Option<usize>,
}

/// The worked example: the objects of `--state` (default `policies/`) and every request of
/// `<first state dir>/requests/`.
pub fn worked_example(state: &[PathBuf]) -> anyhow::Result<Workload> {
    let paths = if state.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        state.to_vec()
    };
    let objects = rego::objects_in(&paths)?;
    let dir = paths
        .iter()
        .find(|p| p.is_dir())
        .map(|p| p.join("requests"))
        .context("--peer needs a state directory with a requests/ directory")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut requests = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let r = descriptor::check_request_from_json(&text)
            .with_context(|| format!("{}: not a CheckRequest", f.display()))?;
        requests.push((f.display().to_string(), r));
    }
    anyhow::ensure!(!requests.is_empty(), "no request in {}", dir.display());
    Ok(Workload {
        objects,
        requests,
        balance: None,
    })
}

/// A synthetic cluster and `samples` requests between its pods (methods, paths and ports that
/// its rules allow and deny), deterministic: drawn from 20 × `samples` candidates, half of the
/// candidates from a caller in the destination's namespace, and balanced by [`Workload::balance`].
pub fn synthetic(spec: &crate::synth::Spec, samples: usize) -> anyhow::Result<Workload> {
    let objects = crate::synth::objects(spec);
    let calls = [
        ("GET", "/api/items", 8080),
        ("HEAD", "/healthz", 8080),
        ("POST", "/api/orders/7", 8080),
        ("GET", "/metrics", 9090),
        ("GET", "/metrics", 8080),
        ("DELETE", "/api/items", 8080),
        ("GET", "/api/items", 8443),
    ];
    let mut requests = Vec::with_capacity(samples);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let pods = spec.pods.max(1);
    for i in 0..samples.saturating_mul(20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let to = ((x >> 20) % pods as u64) as usize;
        // Pod i is in namespace i % namespaces: half the callers share the destination's.
        let ns = spec.namespaces.max(1);
        let from = if i % 2 == 0 {
            (to % ns + ns * ((x % (pods / ns).max(1) as u64) as usize)).min(pods - 1)
        } else {
            (x % pods as u64) as usize
        };
        let (m, p, port) = calls[i % calls.len()];
        let json = crate::synth::request_json(from, to, spec, m, p, port);
        let r = descriptor::check_request_from_json(&json).context("synthetic request")?;
        requests.push((format!("pod {from} → pod {to}: {m} {p} :{port}"), r));
    }
    Ok(Workload {
        objects,
        requests,
        balance: Some(samples),
    })
}

/// The workload of a `bench --peer` run: `--synthetic` sampled, else the worked example.
pub fn workload(
    synthetic_sizes: Option<&str>,
    samples: usize,
    state: &[PathBuf],
) -> anyhow::Result<Workload> {
    match synthetic_sizes {
        Some(sizes) => {
            let (policies, pods) = sizes
                .split_once(',')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .context("--synthetic takes POLICIES,PODS")?;
            synthetic(&crate::synth::Spec::sized(policies, pods), samples)
        }
        None => worked_example(state),
    }
}

/// Compares alp-authz's and OPA's verdicts; an error names every disagreement.
pub async fn check_verdicts(
    alp: SocketAddr,
    opa: SocketAddr,
    w: &Workload,
) -> anyhow::Result<(usize, usize)> {
    let reqs: Vec<CheckRequest> = w.requests.iter().map(|(_, r)| r.clone()).collect();
    let a = verdicts(alp, &reqs).await?;
    let o = verdicts(opa, &reqs).await?;
    let diff: Vec<String> = w
        .requests
        .iter()
        .zip(a.iter().zip(&o))
        .filter(|(_, (a, o))| a != o)
        .map(|((n, _), (a, o))| format!("  {n}: alp-authz {}, OPA {}", verdict(*a), verdict(*o)))
        .collect();
    if !diff.is_empty() {
        bail!(
            "OPA and alp-authz disagree on {} of {} requests; not measuring:\n{}",
            diff.len(),
            reqs.len(),
            diff.join("\n")
        );
    }
    Ok((a.iter().filter(|v| **v).count(), a.len()))
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// Options of a peer run (from `bench`'s arguments).
pub struct Run<'a> {
    /// h2load.
    pub h2load: &'a Path,
    /// Load shape.
    pub shape: Shape,
    /// Rounds.
    pub rounds: usize,
    /// Trust domains (for the Rego's principal check).
    pub trust_domains: Vec<String>,
}

fn mb(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

/// Measures alp-authz (`checker` over `workload`'s cluster, already published) against OPA-Envoy
/// and the two baselines; `request` is the allowed request the load sends.
pub async fn run(
    run: Run<'_>,
    checker: Checker,
    workload: &Workload,
    request: &CheckRequest,
) -> anyhow::Result<()> {
    let objects = &workload.objects;
    let balanced;
    let workload = match workload.balance {
        None => workload,
        Some(n) => {
            let (mut allow, mut deny) = (Vec::new(), Vec::new());
            for (name, r) in &workload.requests {
                let v = if checker.check(r).1.allowed() {
                    &mut allow
                } else {
                    &mut deny
                };
                v.push((name.clone(), r.clone()));
            }
            allow.truncate(n / 2);
            deny.truncate(n - allow.len());
            allow.append(&mut deny);
            balanced = Workload {
                objects: Vec::new(),
                requests: allow,
                balance: None,
            };
            &balanced
        }
    };
    let alp = spawn_server(AuthzService::new(checker)).await?;
    let tonic = spawn_server(Baseline).await?;
    let raw = super::raw_h2::spawn().await?;
    let binary = opa_binary()?;
    let started = Instant::now();
    let data = rego::data(objects, &run.trust_domains)?;
    let opa = Opa::start(&binary, &data, request).await?;
    println!(
        "OPA-Envoy {} ready in {:.1} s (data {:.1} MB of JSON)",
        binary.display(),
        started.elapsed().as_secs_f64(),
        data.to_string().len() as f64 / 1e6
    );
    drop(data);
    let (allowed, n) = check_verdicts(alp, opa.addr, workload).await?;
    println!(
        "verdicts  equal on all {n} requests ({allowed} allowed, {} denied)",
        n - allowed
    );
    println!(
        "h2load, {} connections × {} streams, {:.1} s each, {} round(s) of raw-h2, tonic-empty, alp-authz, OPA-Envoy",
        run.shape.connections,
        run.shape.streams,
        run.shape.duration.as_secs_f64(),
        run.rounds
    );
    let (mut vs_opa, mut vs_tonic, mut vs_raw) = (Vec::new(), Vec::new(), Vec::new());
    let mut opa_rss_max = 0;
    for round in 1..=run.rounds.max(1) {
        let one = |name: &str, s: &H2loadStats| println!("{name:<10}{s}");
        let r = h2load(run.h2load, raw, request, run.shape).await?;
        one("raw-h2", &r);
        let t = h2load(run.h2load, tonic, request, run.shape).await?;
        one("tonic", &t);
        let a = h2load(run.h2load, alp, request, run.shape).await?;
        one("alp-authz", &a);
        let o = h2load(run.h2load, opa.addr, request, run.shape).await?;
        one("OPA-Envoy", &o);
        opa_rss_max = opa_rss_max.max(opa.rss().unwrap_or(0));
        for (v, b) in [(&mut vs_opa, &o), (&mut vs_tonic, &t), (&mut vs_raw, &r)] {
            v.push(a.rate / b.rate.max(1e-9));
        }
        println!(
            "ratio     alp-authz/OPA {:.2}×, alp-authz/tonic {:.3}, alp-authz/raw-h2 {:.3}, tonic/raw-h2 {:.3}; mean latency alp-authz {:.0} µs, OPA {:.0} µs (round {round})",
            a.rate / o.rate.max(1e-9),
            a.rate / t.rate.max(1e-9),
            a.rate / r.rate.max(1e-9),
            t.rate / r.rate.max(1e-9),
            a.mean_us,
            o.mean_us
        );
    }
    println!(
        "median    alp-authz/OPA {:.2}×, alp-authz/tonic {:.3}, alp-authz/raw-h2 {:.3} over {} round(s)",
        median(&mut vs_opa),
        median(&mut vs_tonic),
        median(&mut vs_raw),
        run.rounds.max(1)
    );
    println!(
        "memory    OPA-Envoy RSS {} (max over rounds), bench process RSS {} (alp-authz in process with its two baselines)",
        mb(Some(opa_rss_max)),
        mb(rss_of("/proc/self/status"))
    );
    Ok(())
}

//! `alp-authz bench`: a load generator for the real gRPC server over loopback HTTP/2.
//!
//! N connections × M concurrent streams send one CheckRequest in a loop for a bounded time;
//! the run prints throughput and latency quantiles. In the same run it measures a *baseline*:
//! the same tonic server stack with a handler that answers OK without evaluating anything, and
//! prints alp-authz / baseline, so figures from a shared, noisy machine can be compared.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse,
    authorization_client::AuthorizationClient,
    authorization_server::{Authorization, AuthorizationServer},
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

use crate::authz::{check::Checker, response, service::AuthzService};

pub mod peer;
pub mod raw_h2;
pub mod rego;

/// One measured run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Answers received.
    pub requests: u64,
    /// Answers with gRPC status OK in the CheckResponse.
    pub allowed: u64,
    /// Calls that failed (transport or gRPC error).
    pub errors: u64,
    /// Wall time measured.
    pub elapsed: Duration,
    /// Latency quantiles (p50, p99, p99.9), microseconds.
    pub quantiles_us: (f64, f64, f64),
}

impl Stats {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p50, p99, p999) = self.quantiles_us;
        write!(
            f,
            "{:>9.0} checks/s  p50 {p50:>7.1} µs  p99 {p99:>7.1} µs  p99.9 {p999:>7.1} µs  ({} answers, {} allowed, {} errors)",
            self.throughput(),
            self.requests,
            self.allowed,
            self.errors
        )
    }
}

/// The shape of a load run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// HTTP/2 connections.
    pub connections: usize,
    /// Concurrent callers per connection.
    pub streams: usize,
    /// Time before measuring.
    pub warmup: Duration,
    /// Time measured.
    pub duration: Duration,
    /// Open loop at this many requests per second overall; `None`: closed loop.
    pub rate: Option<f64>,
}

/// Drives `addr` with `connections` × `streams` callers for `duration` (after `warmup`):
/// closed loop (each caller sends again as soon as it is answered) without `rate`, or open loop
/// at `rate` requests per second overall, with latency measured from each request's scheduled
/// time, so that queueing is not hidden (no coordinated omission).
pub async fn load(addr: SocketAddr, request: &CheckRequest, shape: Shape) -> anyhow::Result<Stats> {
    let Shape {
        connections,
        streams,
        warmup,
        duration,
        rate,
    } = shape;
    let callers = (connections.max(1) * streams.max(1)) as f64;
    let interval = rate.map(|r| Duration::from_secs_f64(callers / r.max(1e-3)));
    let mut tasks = Vec::new();
    let start = Instant::now() + warmup;
    let end = start + duration;
    for _ in 0..connections.max(1) {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .context("bad address")?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        for _ in 0..streams.max(1) {
            let mut client = AuthorizationClient::new(channel.clone());
            let req = request.clone();
            let offset = interval.map(|i| i.mul_f64(tasks.len() as f64 / callers));
            tasks.push(tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
                let (mut allowed, mut errors) = (0u64, 0u64);
                let mut next = Instant::now() + offset.unwrap_or_default();
                loop {
                    let t = match interval {
                        Some(i) => {
                            tokio::time::sleep_until(next.into()).await;
                            let scheduled = next;
                            next += i;
                            scheduled
                        }
                        None => Instant::now(),
                    };
                    if t >= end {
                        break;
                    }
                    let result = client.check(req.clone()).await;
                    if t < start {
                        continue;
                    }
                    match result {
                        Ok(r) => {
                            latencies.push(
                                u32::try_from(t.elapsed().as_nanos() / 100).unwrap_or(u32::MAX),
                            );
                            if r.get_ref().status.as_ref().is_some_and(|s| s.code == 0) {
                                allowed += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (latencies, allowed, errors)
            }));
        }
    }
    let (mut all, mut allowed, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, a, e) = t.await.context("a load task failed")?;
        all.extend(l);
        allowed += a;
        errors += e;
    }
    all.sort_unstable();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v) / 10.0)
    };
    Ok(Stats {
        requests: all.len() as u64,
        allowed,
        errors,
        elapsed: duration,
        quantiles_us: (q(0.5), q(0.99), q(0.999)),
    })
}

/// The baseline handler: answers OK without looking at the request.
#[derive(Debug, Clone, Copy)]
pub struct Baseline;

#[tonic::async_trait]
impl Authorization for Baseline {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(response::allowed(true)))
    }
}

/// Serves `svc` on an ephemeral loopback port with the same server settings for both runs.
pub async fn spawn_server<A: Authorization>(svc: A) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let addr = listener.local_addr().context("bound address")?;
    let router = Server::builder().add_service(AuthorizationServer::new(svc));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    Ok(addr)
}

/// The two servers a comparison drives: alp-authz and the baseline, both on loopback.
#[derive(Debug, Clone, Copy)]
pub struct Servers {
    /// alp-authz: in process, or the external server given as the target.
    pub alp: SocketAddr,
    /// The baseline handler, in process.
    pub baseline: SocketAddr,
}

impl Servers {
    /// Serves alp-authz over `checker` (unless `target` names a running one) and the baseline.
    pub async fn start(
        checker: Option<Checker>,
        target: Option<SocketAddr>,
    ) -> anyhow::Result<Servers> {
        let alp = match (target, checker) {
            (Some(t), _) => t,
            (None, Some(c)) => spawn_server(AuthzService::new(c)).await?,
            (None, None) => anyhow::bail!("nothing to measure"),
        };
        let baseline = spawn_server(Baseline).await?;
        Ok(Servers { alp, baseline })
    }
}

/// Drives the baseline and then alp-authz with the same shape; returns (alp-authz, baseline).
pub async fn compare(
    servers: Servers,
    request: &CheckRequest,
    shape: Shape,
) -> anyhow::Result<(Stats, Stats)> {
    let b = load(servers.baseline, request, shape).await?;
    let a = load(servers.alp, request, shape).await?;
    Ok((a, b))
}

/// What h2load reported for one run.
#[derive(Debug, Clone, Default)]
pub struct H2loadStats {
    /// Requests per second.
    pub rate: f64,
    /// Requests that completed.
    pub done: u64,
    /// Answers with HTTP status 2xx. In a timed run this can exceed `done`: h2load counts a
    /// status when the response headers arrive, and the run may end before that stream does.
    pub ok: u64,
    /// Answers with any other HTTP status (3xx, 4xx, 5xx).
    pub other: u64,
    /// Mean time for a request, microseconds.
    pub mean_us: f64,
}

impl std::fmt::Display for H2loadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} checks/s  mean {:>7.1} µs  ({} done, {} HTTP 2xx, {} other)",
            self.rate, self.mean_us, self.done, self.ok, self.other
        )
    }
}

impl H2loadStats {
    /// Reads h2load's summary (`finished in …, N req/s`, `requests: …`, `status codes: …`,
    /// `time for request: min max mean …`).
    pub fn parse(out: &str) -> anyhow::Result<H2loadStats> {
        let mut stats = H2loadStats::default();
        let number = |w: &str| w.trim_end_matches(',').parse::<f64>().ok();
        let duration_us = |w: &str| {
            let (n, scale) = if let Some(n) = w.strip_suffix("us") {
                (n, 1.0)
            } else if let Some(n) = w.strip_suffix("ms") {
                (n, 1e3)
            } else if let Some(n) = w.strip_suffix('s') {
                (n, 1e6)
            } else {
                (w, f64::NAN)
            };
            n.parse::<f64>().map(|v| v * scale).ok()
        };
        for line in out.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("finished in") {
                stats.rate = words
                    .iter()
                    .position(|w| *w == "req/s,")
                    .and_then(|i| number(words.get(i.checked_sub(1)?)?))
                    .context("h2load: no req/s")?;
            } else if let Some(rest) = line.strip_prefix("requests:") {
                stats.done = rest
                    .split(',')
                    .find_map(|p| p.trim().strip_suffix(" done")?.parse().ok())
                    .context("h2load: no `done` count")?;
            } else if let Some(rest) = line.strip_prefix("status codes:") {
                let mut ok = None;
                for part in rest.split(',').map(str::trim) {
                    let (n, class) = part.split_once(' ').context("h2load: bad status codes")?;
                    let n: u64 = n.parse().context("h2load: bad status count")?;
                    if class == "2xx" {
                        ok = Some(n);
                    } else {
                        stats.other += n;
                    }
                }
                stats.ok = ok.context("h2load: no 2xx count")?;
            } else if line.starts_with("time for request:") {
                stats.mean_us = words
                    .get(5)
                    .and_then(|w| duration_us(w))
                    .context("h2load: no mean time for request")?;
            }
        }
        anyhow::ensure!(stats.done > 0, "h2load completed no request:\n{out}");
        Ok(stats)
    }
}

/// The gRPC frame of a message: uncompressed flag, big-endian length, the protobuf bytes.
pub fn grpc_frame(request: &CheckRequest) -> Vec<u8> {
    use prost::Message as _;
    let body = request.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Drives `addr` with h2load (an independent HTTP/2 client) for the shape's duration.
pub async fn h2load(
    h2load: &std::path::Path,
    addr: SocketAddr,
    request: &CheckRequest,
    shape: Shape,
) -> anyhow::Result<H2loadStats> {
    // h2load counts any HTTP 200 as a success, whatever the grpc-status: check the answer
    // itself first, with a real gRPC client.
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .context("cannot connect to the server")?;
    let answer = client
        .check(request.clone())
        .await
        .context("the request is not answered")?
        .into_inner();
    let code = answer.status.map_or(-1, |s| s.code);
    anyhow::ensure!(
        code == 0,
        "the request is not allowed (status {code}): h2load would time a deny"
    );
    let body = std::env::temp_dir().join(format!("alp-authz-h2load-{}.bin", std::process::id()));
    std::fs::write(&body, grpc_frame(request)).context("cannot write the request body")?;
    let cmd = (
        h2load.to_owned(),
        vec![
            "-D".to_owned(),
            format!("{:.0}", shape.duration.as_secs_f64().max(1.0)),
            format!("--warm-up-time={:.0}", shape.warmup.as_secs_f64().max(0.0)),
            "-c".to_owned(),
            shape.connections.to_string(),
            "-m".to_owned(),
            shape.streams.to_string(),
            "-t".to_owned(),
            "1".to_owned(),
            "-H".to_owned(),
            "content-type: application/grpc".to_owned(),
            "-H".to_owned(),
            "te: trailers".to_owned(),
            "-d".to_owned(),
            body.display().to_string(),
            format!("http://{addr}/envoy.service.auth.v3.Authorization/Check"),
        ],
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&cmd.0).args(&cmd.1).output()
    })
    .await
    .context("h2load task")?
    .with_context(|| format!("cannot run {}", h2load.display()))?;
    let _ = std::fs::remove_file(&body);
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "h2load failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    H2loadStats::parse(&text)
}

/// [`compare`] with h2load as the client: (alp-authz, baseline).
pub async fn compare_h2load(
    h2load_path: &std::path::Path,
    servers: Servers,
    request: &CheckRequest,
    shape: Shape,
) -> anyhow::Result<(H2loadStats, H2loadStats)> {
    let b = h2load(h2load_path, servers.baseline, request, shape).await?;
    let a = h2load(h2load_path, servers.alp, request, shape).await?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h2load_output() {
        let out = "starting benchmark...\nfinished in 5.00s, 47123.40 req/s, 5.12MB/s\nrequests: 235617 total, 235617 started, 235617 done, 235617 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 235617 2xx, 0 3xx, 0 4xx, 0 5xx\ntraffic: 25.60MB (26843545) total, 1.12MB (1178085) headers (space savings 95.00%), 15.28MB (16023956) data\n                     min         max         mean         sd        +/- sd\ntime for request:      245us     12.45ms      2.71ms      1.09ms    80.40%\n";
        let s = H2loadStats::parse(out).unwrap();
        assert_eq!((s.done, s.ok, s.other), (235_617, 235_617, 0));
        assert!((s.rate - 47_123.4).abs() < 1e-6);
        assert!((s.mean_us - 2_710.0).abs() < 1e-6);
        assert!(H2loadStats::parse("nothing").is_err());
        let timed = out.replace(
            "status codes: 235617 2xx, 0 3xx, 0 4xx, 0 5xx",
            "status codes: 235619 2xx, 0 3xx, 1 4xx, 2 5xx",
        );
        let s = H2loadStats::parse(&timed).unwrap();
        assert_eq!((s.done, s.ok, s.other), (235_617, 235_619, 3));
    }

    #[test]
    fn grpc_frames() {
        let f = grpc_frame(&CheckRequest::default());
        assert_eq!(f, [0, 0, 0, 0, 0]);
    }
}

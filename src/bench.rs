//! `alp-authz bench`: a load generator for the real gRPC server over loopback HTTP/2.
//!
//! N connections × M concurrent streams send one CheckRequest in a loop for a bounded time;
//! the run prints throughput and latency quantiles. In the same run it measures a *baseline*:
//! the same tonic server stack with a handler that answers OK without evaluating anything, and
//! prints alp-authz / baseline, so figures from a shared, noisy machine can be compared.

use std::{
    net::SocketAddr,
    sync::Arc,
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

/// Runs alp-authz (in-process, over `checker`, or at `target`) and the baseline, one after the
/// other, with the same shape; returns (alp-authz, baseline).
pub async fn compare(
    checker: Option<Checker>,
    target: Option<SocketAddr>,
    request: Arc<CheckRequest>,
    shape: Shape,
) -> anyhow::Result<(Stats, Stats)> {
    let alp = match (target, checker) {
        (Some(t), _) => t,
        (None, Some(c)) => spawn_server(AuthzService::new(c)).await?,
        (None, None) => anyhow::bail!("nothing to measure"),
    };
    let baseline = spawn_server(Baseline).await?;
    let b = load(baseline, &request, shape).await?;
    let a = load(alp, &request, shape).await?;
    Ok((a, b))
}

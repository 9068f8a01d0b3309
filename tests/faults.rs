//! Fault tests (short versions): reload storms while serving, clients that disconnect in the
//! middle of a request, and slow clients. Bounded in time; loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{STATE_ALLOW, simple_request};

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alp_authz::{
    authz::{check::Checker, descriptor::check_request_from_json, settings::Settings},
    policy::store::Store,
    source::file::{Loaded, load_text},
    state::Shared,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

/// The tests that measure time or rates take this, so that they do not run beside each other
/// (or beside the reload storm, which keeps both cores busy).
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn store(action: &str) -> Store {
    let mut loaded = Loaded::default();
    load_text(
        std::path::Path::new("s.yaml"),
        &STATE_ALLOW.replace("Allow", action),
        &mut loaded,
    )
    .unwrap();
    loaded.store
}

/// Thousands of state changes per second while Checks run on other threads: every answer is
/// the answer of one whole generation (allow on odd generations, deny on even ones), nothing
/// panics, and counters add up.
#[test]
fn reload_storm_while_serving() {
    let _exclusive = EXCLUSIVE.blocking_lock();
    let state = Arc::new(Shared::new());
    let (allow, deny) = (store("Allow"), store("Deny"));
    state.publish(&allow);
    let checker = Checker::new(state.clone(), Settings::default());
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (checker, stop, checks) = (checker.clone(), stop.clone(), checks.clone());
        workers.push(std::thread::spawn(move || {
            let req = simple_request();
            while !stop.load(Ordering::Relaxed) {
                let snap = checker.state().load_full();
                let d = checker.decide(&snap, &req);
                // Generation 1 is Allow, then Deny and Allow alternate.
                assert_eq!(
                    d.allowed(),
                    snap.generation % 2 == 1,
                    "generation {}",
                    snap.generation
                );
                let (_, d2) = checker.check(&req);
                std::hint::black_box(d2);
                checks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut publishes = 1u64;
    while started.elapsed() < Duration::from_secs(2) {
        state.publish(if publishes.is_multiple_of(2) {
            &allow
        } else {
            &deny
        });
        publishes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a checker thread panicked");
    }
    let rate = publishes as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "{publishes} publishes ({rate:.0}/s), {} checks",
        checks.load(Ordering::Relaxed)
    );
    assert!(rate > 1_000.0, "only {rate:.0} publishes per second");
    assert!(checks.load(Ordering::Relaxed) > 1_000);
    assert_eq!(state.load().generation, publishes);
}

fn policies() -> String {
    common::root().join("policies").to_str().unwrap().to_owned()
}

fn example() -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    let path = common::root().join("policies/requests/frontend-get-product.json");
    check_request_from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Clients that vanish in the middle of a large request, or open connections and send nothing,
/// cost the server nothing that matters: other clients are answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_and_silent_clients_do_not_hurt_others() {
    use tokio::io::AsyncWriteExt;
    let server = common::Server::start(&["--state", &policies()]);
    let addr = server.addr.clone();

    // 50 connections that only send the HTTP/2 preface and then nothing.
    let mut silent = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        silent.push(s);
    }
    // 20 clients that start a 3 MB request and drop it mid-upload.
    for _ in 0..20 {
        let mut c = AuthorizationClient::connect(server.url())
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20);
        let mut req = example();
        let http = req
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        http.headers.insert("x-big".into(), "v".repeat(3_000_000));
        let call = tokio::spawn(async move { c.check(req).await });
        tokio::time::sleep(Duration::from_millis(2)).await;
        call.abort();
    }
    // Meanwhile and afterwards, ordinary clients are answered.
    let mut c = AuthorizationClient::connect(server.url()).await.unwrap();
    for _ in 0..200 {
        let r = c.check(example()).await.unwrap().into_inner();
        assert_eq!(r.status.unwrap().code, 0);
    }
    drop(silent);
    // And the server is still healthy afterwards.
    let r = AuthorizationClient::connect(server.url())
        .await
        .unwrap()
        .check(example())
        .await
        .unwrap();
    assert_eq!(r.into_inner().status.unwrap().code, 0);
}

/// A slow TLS client (TCP open, no handshake) does not block others: handshakes run in their
/// own tasks with a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_handshakes_do_not_block_accepting() {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![SanType::DnsName("alp-authz.test".try_into().unwrap())];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let (crt, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        k.to_str().unwrap(),
    ]);
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(tokio::net::TcpStream::connect(&server.addr).await.unwrap());
    }
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.pem()))
        .domain_name("alp-authz.test");
    let started = Instant::now();
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = AuthorizationClient::new(channel)
        .check(example())
        .await
        .unwrap();
    assert_eq!(r.into_inner().status.unwrap().code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "blocked behind silent clients"
    );
    drop(silent);
}

// --- Overload and shutdown ---------------------------------------------------------------

/// A destination (`10.0.0.20`) selected by `n` policies whose rules never match the test
/// requests, then one that allows paths under `/ok` (so `/no/…` is denied at the end of the
/// default tier). Each Check walks about 3n rules: the server saturates at a rate that a client
/// on the same machine can exceed several times over.
fn heavy_state(dir: &std::path::Path, n: usize) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: dst, namespace: default}\n\
         spec: {serviceAccountName: sue}\nstatus: {phase: Running, podIP: 10.0.0.20}\n",
    );
    for i in 0..n {
        s += &format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
             metadata: {{name: filler-{i:05}}}\nspec:\n  order: {i}\n  selector: all()\n  ingress:\n\
             \x20 - {{action: Allow, http: {{methods: [GET], paths: [{{prefix: /nothing-{i}}}]}}}}\n\
             \x20 - {{action: Deny, source: {{nets: [192.0.2.{}/32]}}}}\n\
             \x20 - {{action: Log, source: {{selector: app == 'x{i}'}}}}\n",
            i % 250
        );
    }
    s += &format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: allow-ok}}\nspec:\n  order: {n}\n  selector: all()\n  ingress:\n\
         \x20 - {{action: Allow, http: {{paths: [{{prefix: /ok}}]}}}}\n"
    );
    let path = dir.join("heavy.yaml");
    std::fs::write(&path, s).unwrap();
    path.to_str().unwrap().to_owned()
}

fn heavy_request(path: &str) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    check_request_from_json(&format!(
        r#"{{"attributes": {{"source": {{"address": {{"socketAddress": {{"address": "10.0.0.10"}}}}}},
            "destination": {{"address": {{"socketAddress": {{"address": "10.0.0.20", "portValue": 80}}}}}},
            "request": {{"http": {{"method": "GET", "path": "{path}"}}}}}}}}"#
    ))
    .unwrap()
}

type Client = AuthorizationClient<tonic::transport::Channel>;

async fn clients(server: &common::Server, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(AuthorizationClient::connect(server.url()).await.unwrap());
    }
    out
}

/// What happened to one request.
#[derive(Debug, Clone)]
enum Outcome {
    /// An answer with this gRPC code (0 allow, 7 deny).
    Answered(i32),
    /// A gRPC error.
    Failed(tonic::Code, String),
    /// No answer within the client deadline.
    TimedOut,
}

#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    latency: Duration,
    outcome: Outcome,
}

async fn send(mut c: Client, path: String, deadline: Duration) -> Sample {
    let sent = Instant::now();
    let outcome = match tokio::time::timeout(deadline, c.check(heavy_request(&path))).await {
        Ok(Ok(r)) => Outcome::Answered(r.into_inner().status.map_or(-1, |s| s.code)),
        Ok(Err(s)) => Outcome::Failed(s.code(), s.message().to_owned()),
        Err(_) => Outcome::TimedOut,
    };
    Sample {
        sent,
        latency: sent.elapsed(),
        outcome,
    }
}

/// `concurrency` clients, each sending one request after the other for `duration`: the
/// requests per second the server sustains at that concurrency.
async fn closed_loop(clients: &[Client], concurrency: usize, duration: Duration) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let c = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < duration {
                let s = send(c.clone(), "/ok/capacity".into(), Duration::from_secs(5)).await;
                assert!(matches!(s.outcome, Outcome::Answered(0)), "{s:?}");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Open loop: requests at `rate` per second for `duration`, whatever the answers do (each in its
/// own task, spread over the connections).
async fn open_loop(clients: &[Client], rate: f64, duration: Duration) -> Vec<Sample> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let c = clients[sent as usize % clients.len()].clone();
            tasks.push(tokio::spawn(send(
                c,
                format!("/ok/{sent}"),
                Duration::from_secs(2),
            )));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn p99(samples: &[&Sample]) -> Duration {
    let mut l: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    l.sort();
    l.get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn env_secs(name: &str, default: f64) -> Duration {
    Duration::from_secs_f64(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// At about 3× the rate the server sustains, with `--max-in-flight` low: the excess is refused
/// at once with RESOURCE_EXHAUSTED (nothing times out, nothing else fails), the admitted requests'
/// p99 stays within a generous bound of the p99 well below saturation and does not climb during
/// the overload (a queue would make it grow by the second), and the server's memory does not
/// grow. The server gets one worker thread (`TOKIO_WORKER_THREADS=1`), so that the client, on the
/// same machine, can offer 3× what it sustains. `ALP_OVERLOAD_SECS` sets the overload phase's
/// length (default 2.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_the_excess_and_keeps_admitted_latency_and_memory_flat() {
    let _exclusive = EXCLUSIVE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let state = heavy_state(dir.path(), 3000);
    let server = common::Server::start_with_env(
        &["--state", &state, "--max-in-flight", "4"],
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    let pid = server.pid();
    let cs = clients(&server, 8).await;

    // The sustainable rate: as many requests in flight as the server admits.
    let _ = closed_loop(&cs, 4, Duration::from_millis(300)).await; // warm-up
    let capacity = closed_loop(&cs, 4, Duration::from_secs(1)).await;

    // Well below saturation.
    let low = open_loop(&cs, capacity * 0.25, Duration::from_secs(2)).await;
    let low_ok: Vec<&Sample> = low
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Answered(0)))
        .collect();
    assert!(
        low_ok.len() * 100 >= low.len() * 99,
        "below saturation, {} of {} answered: {:?}",
        low_ok.len(),
        low.len(),
        low.iter()
            .find(|s| !matches!(s.outcome, Outcome::Answered(0)))
    );
    let p99_low = p99(&low_ok);

    // About 3× the sustainable rate, sampling the server's memory meanwhile.
    let overload_for = env_secs("ALP_OVERLOAD_SECS", 2.5);
    let rss_before = common::rss_kib(pid).unwrap();
    let sampler = tokio::spawn(async move {
        let started = Instant::now();
        let mut rss = Vec::new();
        while started.elapsed() < overload_for {
            rss.push(common::rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rss
    });
    let started = Instant::now();
    let over = open_loop(&cs, capacity * 3.0, overload_for).await;
    let offered = over.len() as f64 / started.elapsed().as_secs_f64();
    let rss = sampler.await.unwrap();

    let admitted: Vec<&Sample> = over
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Answered(0)))
        .collect();
    let shed = over
        .iter()
        .filter(|s| {
            matches!(
                s.outcome,
                Outcome::Failed(tonic::Code::ResourceExhausted, _)
            )
        })
        .count();
    let other: Vec<&Sample> = over
        .iter()
        .filter(|s| {
            !matches!(
                s.outcome,
                Outcome::Answered(0) | Outcome::Failed(tonic::Code::ResourceExhausted, _)
            )
        })
        .collect();
    let p99_over = p99(&admitted);
    let shed_samples: Vec<&Sample> = over
        .iter()
        .filter(|s| {
            matches!(
                s.outcome,
                Outcome::Failed(tonic::Code::ResourceExhausted, _)
            )
        })
        .collect();
    eprintln!(
        "shed answers: p99 {:?}; unloaded p50 {:?}",
        p99(&shed_samples),
        low_ok.get(low_ok.len() / 2).map(|s| s.latency)
    );
    let midpoint = started + overload_for / 2;
    let (early, late): (Vec<&Sample>, Vec<&Sample>) =
        admitted.iter().partition(|s| s.sent < midpoint);
    let (p99_early, p99_late) = (p99(&early), p99(&late));
    let half = rss.len() / 2;
    let (first, second) = rss.split_at(half);
    let max_first = first.iter().copied().max().unwrap_or(0);
    let max_second = second.iter().copied().max().unwrap_or(0);
    eprintln!(
        "capacity {capacity:.0}/s; below saturation {} requests, p99 {p99_low:?}; \
         overload offered {offered:.0}/s: {} admitted (p99 {p99_over:?}: {p99_early:?} in the first \
         half, {p99_late:?} in the second), {shed} shed, {} other; \
         RSS {rss_before} KiB before, max {max_first} then {max_second} KiB",
        low.len(),
        admitted.len(),
        other.len()
    );
    assert!(
        other.is_empty(),
        "{} requests neither answered nor shed (first: {:?})",
        other.len(),
        other[0]
    );
    assert!(
        shed as f64 >= over.len() as f64 * 0.25,
        "only {shed} of {} shed at 3x capacity",
        over.len()
    );
    assert!(!admitted.is_empty(), "nothing admitted under overload");
    assert!(
        offered > capacity * 2.0,
        "the client offered only {offered:.0}/s against a capacity of {capacity:.0}/s"
    );
    // Generous bounds for a shared machine: admitted requests wait behind at most the few
    // others in flight (and the shedding of the excess), so their p99 is a small multiple of the
    // unloaded one (5–11× measured with both cores busy elsewhere too), and it does not climb
    // from the first half of the overload to the second. A queue reaches the 2 s client
    // deadline within the first second.
    let bound = (p99_low * 20).max(Duration::from_millis(500));
    assert!(
        p99_over <= bound,
        "admitted p99 {p99_over:?} under overload vs {p99_low:?} below saturation"
    );
    // A queue climbs towards the 2 s deadline; on a machine busy elsewhere the second half's p99
    // can double without one (58 ms then 200 ms measured under a load average of 19 on 2 cores),
    // so the floor of this bound is 500 ms, still a quarter of what a queue reaches.
    assert!(
        p99_late <= (p99_early * 2 + Duration::from_millis(50)).max(Duration::from_millis(500)),
        "admitted p99 climbing: {p99_early:?} in the first half, {p99_late:?} in the second"
    );
    // Memory: no queue builds up. The bound is generous (allocator noise, buffers of the
    // connections); a queue of the excess requests would grow by the thousands per second.
    assert!(
        max_second <= max_first + 16 * 1024,
        "RSS still growing: {max_first} KiB in the first half, {max_second} KiB in the second"
    );
    assert!(
        max_second <= rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {max_second} KiB"
    );
}

/// SIGTERM while clients keep sending: every request the server admitted is answered (allow or
/// deny), and requests after it are refused (UNAVAILABLE: a refused stream, or no connection),
/// never reset or cancelled in flight. Every decision the server logged reached its client.
///
/// One client-side outcome is not a loss: hyper's own "operation was canceled" for a request
/// still queued in the client when the connection it was queued on closed (after the server's
/// GOAWAY). Such a request never left the client; the test also checks the server never
/// decided it.
/// `ALP_SIGTERM_LOAD_SECS` sets how long the load runs before SIGTERM (default 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_answers_every_admitted_request() {
    use std::collections::HashSet;
    let _exclusive = EXCLUSIVE.lock().await;

    let dir = tempfile::tempdir().unwrap();
    let state = heavy_state(dir.path(), 200);
    let log = dir.path().join("decisions.jsonl");
    let server =
        common::Server::start(&["--state", &state, "--decision-log", log.to_str().unwrap()]);
    let cs = clients(&server, 8).await;

    // 32 clients, 4 per connection, each sending one request after another (unique paths; every
    // third one denied) until 300 ms after the server has exited.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (c, stop) = (cs[i % cs.len()].clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let kind = if seq % 3 == 2 { "no" } else { "ok" };
                let path = format!("/{kind}/{i}-{seq}");
                let s = send(c.clone(), path.clone(), Duration::from_secs(10)).await;
                let failed = !matches!(s.outcome, Outcome::Answered(_));
                out.push((path, s));
                seq += 1;
                if failed {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            out
        }));
    }
    tokio::time::sleep(env_secs("ALP_SIGTERM_LOAD_SECS", 1.0)).await;
    let term_at = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let exited_at = Instant::now();
    assert!(status.success(), "exit status {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }

    let mut answered = HashSet::new();
    let mut never_sent = HashSet::new();
    let (mut in_flight, mut refused, mut after) = (0, 0, 0);
    let mut lost = Vec::new();
    for (path, s) in &samples {
        match &s.outcome {
            Outcome::Answered(code) => {
                let want = if path.starts_with("/ok/") { 0 } else { 7 };
                assert_eq!(*code, want, "{path}");
                answered.insert(path.clone());
                if s.sent < term_at && s.sent + s.latency > term_at {
                    in_flight += 1;
                }
            }
            Outcome::Failed(tonic::Code::Unavailable, _) => {
                refused += 1;
                if s.sent > exited_at {
                    after += 1;
                }
            }
            Outcome::Failed(tonic::Code::Cancelled, m) if m == "operation was canceled" => {
                never_sent.insert(path.clone());
            }
            other => lost.push((path.clone(), other.clone())),
        }
    }
    let logged: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_owned()
        })
        .collect();
    // A stream the client opened as the connection was going away (after the server's GOAWAY)
    // fails on the client with a connection error. The server never took it in: it has no
    // decision for it. That is a refusal, as safe to retry as UNAVAILABLE; a failure of a
    // request the server decided is not.
    let decided: HashSet<&String> = logged.iter().collect();
    // Under load hyper reports the same thing as a bare "transport error" (the connection
    // closed while the stream was still queued in the client or unread by the server): seen
    // three times in 2,227 requests under a load average of 19, none of them decided.
    lost.retain(|(path, outcome)| {
        let going_away = matches!(outcome, Outcome::Failed(tonic::Code::Internal, m) if m.starts_with("h2 protocol error"))
            || matches!(outcome, Outcome::Failed(tonic::Code::Unknown, m) if m == "transport error");
        if going_away && !decided.contains(path) {
            refused += 1;
            false
        } else {
            true
        }
    });
    let unanswered: Vec<&String> = logged.iter().filter(|p| !answered.contains(*p)).collect();
    eprintln!(
        "{} requests: {} answered ({in_flight} in flight at SIGTERM), {refused} refused \
         ({after} after exit), {} never sent, {} lost; {} decisions logged, {} of them \
         unanswered; exit {:?} after SIGTERM",
        samples.len(),
        answered.len(),
        never_sent.len(),
        lost.len(),
        logged.len(),
        unanswered.len(),
        exited_at - term_at
    );
    assert!(lost.is_empty(), "reset or cancelled in flight: {lost:?}");
    assert!(
        unanswered.is_empty(),
        "decided but never answered: {unanswered:?}"
    );
    assert!(in_flight > 0, "no request was in flight at SIGTERM");
    assert!(after > 0, "no request was sent after the server exited");
}

/// SIGTERM with silent clients connected (TCP only, or only the HTTP/2 preface, and one on the
/// Unix socket): the server still exits once the drain limit (request timeout + 1 s) has
/// passed, instead of waiting for them until the kubelet's SIGKILL, and removes its socket
/// file. A request in flight meanwhile is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("authz.sock");
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--request-timeout",
        "0.5",
        "--unix",
        sock.to_str().unwrap(),
    ]);
    let silent_unix = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let mut silent = Vec::new();
    for i in 0..10 {
        let mut s = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
        }
        silent.push(s);
    }
    let mut c = AuthorizationClient::connect(server.url()).await.unwrap();
    assert_eq!(
        c.check(example())
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .code,
        0
    );
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "exited {took:?} after SIGTERM with {} silent clients",
        silent.len()
    );
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    assert!(!sock.exists(), "the socket file is removed on exit");
    drop((silent, silent_unix));
}

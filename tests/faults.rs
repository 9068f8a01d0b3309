//! Fault tests (short versions): reload storms while serving, clients that disconnect in the
//! middle of a request, and slow clients. Bounded in time; loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alp_authz::{
    authz::{
        check::{Checker, Settings},
        descriptor::check_request_from_json,
    },
    policy::store::Store,
    source::file::{Loaded, load_text},
    state::Shared,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

const STATE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: dst, namespace: default}
spec: {serviceAccountName: sue}
status: {phase: Running, podIP: 10.0.0.20}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {ingress: [{action: ACTION}]}
"#;

fn store(action: &str) -> Store {
    let mut loaded = Loaded::default();
    load_text(
        std::path::Path::new("s.yaml"),
        &STATE.replace("ACTION", action),
        &mut loaded,
    )
    .unwrap();
    loaded.store
}

fn request() -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    check_request_from_json(
        r#"{"attributes": {"source": {"address": {"socketAddress": {"address": "10.0.0.10"}}},
            "destination": {"address": {"socketAddress": {"address": "10.0.0.20", "portValue": 80}}},
            "request": {"http": {"method": "GET", "path": "/"}}}}"#,
    )
    .unwrap()
}

/// Thousands of state changes per second while Checks run on other threads: every answer is
/// the answer of one whole generation (allow on odd generations, deny on even ones), nothing
/// panics, and counters add up.
#[test]
fn reload_storm_while_serving() {
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
            let req = request();
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

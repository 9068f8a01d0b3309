//! TLS and mutual TLS on the authz listener, and certificate rotation under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }

    /// (certificate PEM, key PEM)
    fn issue(&self, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        (
            p.signed_by(&key, &self.0).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    fn server(&self) -> (String, String) {
        self.issue(
            vec![SanType::DnsName("alp-authz.test".try_into().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self) -> (String, String) {
        self.issue(
            vec![SanType::URI(
                "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
                    .try_into()
                    .unwrap(),
            )],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

fn request() -> CheckRequest {
    let path = common::root().join("policies/requests/frontend-get-product.json");
    alp_authz::authz::descriptor::check_request_from_json(&std::fs::read_to_string(path).unwrap())
        .unwrap()
}

async fn channel(
    addr: &str,
    server_ca: &Ca,
    client: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.0.pem()))
        .domain_name("alp-authz.test");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

struct Setup {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
    server: common::Server,
}

fn start(mtls: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (Ca::new("server ca"), Ca::new("client ca"));
    let (cert, key) = server_ca.server();
    common::write_atomically(dir.path(), "tls.crt", &cert);
    common::write_atomically(dir.path(), "tls.key", &key);
    common::write_atomically(dir.path(), "client-ca.crt", &client_ca.0.pem());
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let policies = common::root().join("policies").to_str().unwrap().to_owned();
    let mut args = vec![
        "--state".to_owned(),
        policies,
        "--tls-cert".into(),
        p("tls.crt"),
        "--tls-key".into(),
        p("tls.key"),
        "--reload-interval".into(),
        "0.05".into(),
    ];
    if mtls {
        args.extend(["--client-ca".into(), p("client-ca.crt")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = common::Server::start(&args);
    Setup {
        dir,
        server_ca,
        client_ca,
        server,
    }
}

#[tokio::test]
async fn tls_without_client_certificates() {
    let s = start(false);
    let ch = channel(&s.server.addr, &s.server_ca, None).await.unwrap();
    let r = AuthorizationClient::new(ch)
        .check(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, 0);
    // Plaintext to a TLS listener fails.
    let plain = AuthorizationClient::connect(s.server.url()).await;
    match plain {
        Err(_) => {}
        Ok(mut c) => assert!(c.check(request()).await.is_err()),
    }
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let s = start(true);
    let good = s.client_ca.client();
    let ch = channel(&s.server.addr, &s.server_ca, Some(&good))
        .await
        .unwrap();
    let r = AuthorizationClient::new(ch)
        .check(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, 0);

    // No client certificate, or one from another CA: no answer at all.
    let stranger = Ca::new("stranger").client();
    for client in [None, Some(&stranger)] {
        let result = match channel(&s.server.addr, &s.server_ca, client).await {
            Err(e) => Err(e.to_string()),
            Ok(ch) => AuthorizationClient::new(ch)
                .check(request())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        assert!(
            result.is_err(),
            "a client without a valid certificate was answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_a_stream_of_checks_loses_nothing() {
    let s = start(true);
    let client = s.client_ca.client();
    let addr = s.server.addr.clone();
    let old = channel(&addr, &s.server_ca, Some(&client)).await.unwrap();

    // Keep checking on the established connection, and on fresh connections, while rotating.
    let stream = {
        let old = old.clone();
        tokio::spawn(async move {
            let mut c = AuthorizationClient::new(old);
            let mut n = 0u32;
            for _ in 0..400 {
                let r = c
                    .check(request())
                    .await
                    .expect("no request may fail during rotation");
                assert_eq!(r.into_inner().status.unwrap().code, 0);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };

    // Rotate to a certificate from a new server CA (key first, then certificate: a reload in
    // between sees a mismatched pair, logs it and keeps the previous one).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new_ca = Ca::new("server ca 2");
    let (cert, key) = new_ca.server();
    common::write_atomically(s.dir.path(), "tls.key", &key);
    common::write_atomically(s.dir.path(), "tls.crt", &cert);

    // New connections soon present the new certificate.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(ch) = channel(&addr, &new_ca, Some(&client)).await
            && AuthorizationClient::new(ch).check(request()).await.is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and no longer the old one.
    let stale = match channel(&addr, &s.server_ca, Some(&client)).await {
        Err(_) => true,
        Ok(ch) => AuthorizationClient::new(ch).check(request()).await.is_err(),
    };
    assert!(stale, "new connections still get the old certificate");

    assert_eq!(
        stream.await.unwrap(),
        400,
        "every check on the old connection was answered"
    );
}

#[test]
fn bad_tls_files_stop_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let (cert, _) = ca.server();
    let (_, other_key) = ca.server();
    common::write_atomically(dir.path(), "tls.crt", &cert);
    common::write_atomically(dir.path(), "tls.key", &other_key);
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the certificate and key do not match"),
        "{stderr}"
    );
}

/// `--trust-bundle`: a forwarded certificate from an unknown root is denied; adding its root to
/// the bundle file is picked up without a restart.
#[tokio::test]
async fn trust_bundle_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, other) = (Ca::new("mesh root"), Ca::new("other root"));
    common::write_atomically(dir.path(), "roots.pem", &mesh.0.pem());
    let policies = common::root().join("policies");
    let bundle = dir.path().join("roots.pem");
    let server = common::Server::start(&[
        "--state",
        policies.to_str().unwrap(),
        "--trust-bundle",
        bundle.to_str().unwrap(),
        "--reload-interval",
        "0.05",
        "--explain-denials",
    ]);
    let mut c = AuthorizationClient::connect(server.url()).await.unwrap();
    let forwarded = |ca: &Ca| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://cluster.local/ns/shop/sa/frontend"
                .try_into()
                .unwrap(),
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let pem = p
            .signed_by(&KeyPair::generate().unwrap(), &ca.0)
            .unwrap()
            .pem();
        let mut r = request();
        r.attributes
            .as_mut()
            .unwrap()
            .source
            .as_mut()
            .unwrap()
            .certificate =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        r
    };
    let ok = c.check(forwarded(&mesh)).await.unwrap().into_inner();
    assert_eq!(ok.status.unwrap().code, 0);
    let denied = c
        .check(forwarded(&other))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        (denied.code, denied.message.as_str()),
        (
            7,
            "identity rejected: the forwarded certificate does not chain to the trust bundle"
        )
    );

    common::write_atomically(
        dir.path(),
        "roots.pem",
        &format!("{}{}", mesh.0.pem(), other.0.pem()),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while c
        .check(forwarded(&other))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new bundle was never used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken bundle file is refused and the last good bundle stays.
    common::write_atomically(dir.path(), "roots.pem", "garbage");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.check(forwarded(&other))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .code,
        0
    );
}

/// Silent TCP connections to the TLS port from one peer (127.0.0.2), `n` of them; kept open
/// while the returned vector lives.
async fn silent_connections(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(c) = s.connect(target).await {
            v.push(c);
        }
    }
    v
}

/// Regression (#13 item 6): 256 silent TCP connections took every handshake slot for 10 s, and
/// new mTLS connections failed meanwhile. Now a peer that sends nothing holds only its own
/// share of connections, and peers that do handshake are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_do_not_lock_out_handshakes() {
    let s = start(true);
    let good = s.client_ca.client();
    let pid = s.server.pid();
    let before = common::rss_kib(pid).unwrap();
    let silent = silent_connections(&s.server.addr, 600).await;
    assert!(silent.len() >= 300, "only {} connections", silent.len());
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let ch = tokio::time::timeout(
            Duration::from_secs(3),
            channel(&s.server.addr, &s.server_ca, Some(&good)),
        )
        .await
        .expect("an mTLS connection waited behind silent peers")
        .unwrap();
        let r = AuthorizationClient::new(ch)
            .check(request())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.unwrap().code, 0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?} for 10 mTLS connections",
        started.elapsed()
    );
    let after = common::rss_kib(pid).unwrap();
    eprintln!(
        "RSS {before} KiB → {after} KiB with {} silent connections",
        silent.len()
    );
    assert!(after < before + 16 * 1024, "RSS {before} → {after} KiB");
    drop(silent);
}

/// #13 item 5: Explain off loopback only over mTLS, and only to the clients `--explain-allow`
/// names: a certificate from the right CA with another SPIFFE ID is refused.
#[tokio::test]
async fn explain_over_mtls_only_to_allowed_clients() {
    use alp_authz::authz::explain_service::pb::{
        ExplainRequest, ShortRequest, explain_request::Request as R,
        explainer_client::ExplainerClient,
    };
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (Ca::new("server ca"), Ca::new("client ca"));
    let (cert, key) = server_ca.server();
    common::write_atomically(dir.path(), "tls.crt", &cert);
    common::write_atomically(dir.path(), "tls.key", &key);
    common::write_atomically(dir.path(), "client-ca.crt", &client_ca.0.pem());
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let explain_addr = common::free_loopback_addr();
    let policies = common::root().join("policies").to_str().unwrap().to_owned();
    let _server = common::Server::start(&[
        "--state",
        &policies,
        "--tls-cert",
        &p("tls.crt"),
        "--tls-key",
        &p("tls.key"),
        "--explain-listen",
        &explain_addr,
        "--explain-client-ca",
        &p("client-ca.crt"),
        "--explain-allow",
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway",
    ]);
    let ask = |ch: Channel| async move {
        ExplainerClient::new(ch)
            .explain(ExplainRequest {
                request: Some(R::Short(ShortRequest {
                    from: "shop/frontend-7d4b9".into(),
                    to: "shop/productpage-5f6c8".into(),
                    ..ShortRequest::default()
                })),
            })
            .await
    };
    let allowed = client_ca.client();
    let ch = channel(&explain_addr, &server_ca, Some(&allowed))
        .await
        .unwrap();
    assert!(ask(ch).await.is_ok(), "the allowed client is answered");
    let other = client_ca.issue(
        vec![SanType::URI(
            "spiffe://cluster.local/ns/shop/sa/frontend"
                .try_into()
                .unwrap(),
        )],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    for client in [Some(&other), None] {
        let refused = match channel(&explain_addr, &server_ca, client).await {
            Err(_) => true,
            Ok(ch) => ask(ch).await.is_err(),
        };
        assert!(refused, "a client not in --explain-allow was answered");
    }
}

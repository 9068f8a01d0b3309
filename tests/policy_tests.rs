//! `alp-authz test`: the shipped policy tests pass; a failing case prints a diff and exits 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("test")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_policy_tests_pass() {
    let dir = common::root().join("policies/tests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn a_failing_case_prints_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    let policies = common::root().join("policies");
    std::fs::write(
        &file,
        format!(
            "state: [{}]\ncases:\n  - name: wrong expectation\n    from: shop/frontend-7d4b9\n    to: shop/productpage-5f6c8\n    method: POST\n    path: /products/1\n    expect: allow\n    policy: shop/productpage\n  - name: right expectation\n    from: shop/frontend-7d4b9\n    to: shop/productpage-5f6c8\n    expect: deny\n",
            policies.display()
        ),
    )
    .unwrap();
    let (code, out, _) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let expected = "test wrong expectation ... FAILED\n    verdict: expected allow, got deny\n    policy: expected shop/productpage, got none\n    reason: denied at the end of tier default: no rule matched\ntest right expectation ... ok\n";
    assert!(out.contains(expected), "{out}");
    assert!(out.ends_with("\n1 passed, 1 failed\n"), "{out}");
}

#[test]
fn bad_test_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, "cases:\n  - name: x\n    expect: maybe\n").unwrap();
    let (code, _, err) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cases[0].expect: unknown variant `maybe`"),
        "{err}"
    );

    std::fs::write(
        &file,
        "cases:\n  - name: no such pod\n    from: shop/nope\n    to: 10.0.0.1\n    expect: deny\n",
    )
    .unwrap();
    let (code, out, _) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("test no such pod ... ERROR\n    no pod `shop/nope` with an IP in the state"),
        "{out}"
    );
}

fn explain(request: &str) -> (i32, serde_json::Value) {
    let out = Command::new(common::bin())
        .args(["explain", "--state"])
        .arg(common::root().join("policies"))
        .arg("--request")
        .arg(common::root().join("policies/requests").join(request))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn explain_shows_every_rule_and_the_failing_field() {
    let (code, out) = explain("frontend-admin.json");
    assert_eq!(code, 1);
    assert_eq!(
        out["decision"]["reason"],
        "denied at the end of tier default: no rule matched"
    );
    assert_eq!(
        out["identity"]["spiffe"],
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert_eq!(out["destination"]["pod"], "shop/productpage-5f6c8");
    assert_eq!(out["sourcePod"]["pod"], "shop/frontend-7d4b9");
    let security = &out["tiers"][0];
    assert_eq!(security["tier"], "security");
    let rules = &security["policies"][0]["rules"];
    assert_eq!(rules[0]["failed"], "source.serviceAccounts");
    assert_eq!(rules[1]["matched"], true);
    assert_eq!(rules[1]["action"], "Pass");
    let default = &out["tiers"][1];
    assert_eq!(default["policies"][0]["policy"], "shop/productpage");
    assert_eq!(default["policies"][0]["rules"][0]["failed"], "http.paths");
    assert_eq!(
        default["policies"][0]["rules"][1]["failed"],
        "source.namespace"
    );
}

#[test]
fn explain_shows_the_deciding_rule() {
    let (code, out) = explain("legacy-get-product.json");
    assert_eq!(code, 1);
    assert_eq!(out["decision"]["policy"], "security.block-legacy-batch");
    assert_eq!(out["decision"]["rule"], 0);
    let rules = out["tiers"][0]["policies"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "evaluation stops at the deciding rule");
    assert_eq!(rules[0]["matched"], true);
    assert_eq!(out["tiers"].as_array().unwrap().len(), 1);

    let (code, out) = explain("unknown-destination.json");
    assert_eq!(code, 1);
    assert_eq!(out["destination"], serde_json::Value::Null);
    assert_eq!(out["decision"]["reason"], "unknown destination");
}

#[test]
fn bench_runs_and_compares_with_the_baseline() {
    let out = Command::new(common::bin())
        .current_dir(common::root())
        .args([
            "bench",
            "--seconds",
            "0.3",
            "--warmup",
            "0.1",
            "--connections",
            "2",
            "--streams",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |p: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line: {stdout}"))
            .to_owned()
    };
    assert!(line("baseline").contains(" 0 errors)"), "{stdout}");
    let alp = line("alp-authz");
    assert!(alp.contains(" 0 errors)"), "{stdout}");
    // Every answer to the worked example's allowed request is an allow.
    let answers: u64 = alp
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        answers > 0 && alp.contains(&format!("{answers} answers, {answers} allowed")),
        "{stdout}"
    );
    let ratio: f64 = line("ratio")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "{stdout}");
}

/// The same comparison with h2load as the client (Debian's nghttp2-client; `.ci/run` installs
/// it and sets `H2LOAD`, and then this test is mandatory), over two alternating rounds.
#[test]
fn bench_with_h2load_alternates_rounds() {
    let Some(h2load) = common::external_tool(Some("H2LOAD"), "h2load", &["--version"]) else {
        assert!(
            std::env::var_os("H2LOAD_REQUIRED").is_none(),
            "CI must provide h2load (H2LOAD)"
        );
        common::say_skipped(
            "bench_with_h2load_alternates_rounds",
            "h2load not installed (apt-get install nghttp2-client)",
        );
        return;
    };
    let out = Command::new(common::bin())
        .current_dir(common::root())
        .args([
            "bench",
            "--h2load",
            &h2load,
            "--rounds",
            "2",
            "--seconds",
            "1",
        ])
        .args(["--warmup", "0", "--connections", "2", "--streams", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("baseline") || l.starts_with("alp-authz"))
        .collect();
    assert_eq!(runs.len(), 4, "{stdout}");
    for run in runs {
        // Every request h2load completed was answered with HTTP 200: no other status, and at
        // least as many 2xx as completed requests (a timed run can end after a stream's headers
        // arrived and before it completed: h2load then counts its 2xx but not its completion).
        let (done, ok, other) = common::h2load_counts(run);
        assert!(done > 0 && ok >= done && other == 0, "{run}");
    }
    let median = stdout
        .lines()
        .find(|l| l.starts_with("median"))
        .unwrap_or_else(|| panic!("no median line: {stdout}"));
    let ratio: f64 = median.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "{median}");
}

#[test]
fn identity_only_source_is_an_explicit_widening() {
    // frontend's principal from an address that is no pod (a gateway's): denied by default, as
    // Calico's source IP sets would not hold it (SEMANTICS.md §1); allowed on the principal
    // alone only with `--identity-only-source`.
    let text = std::fs::read_to_string("policies/requests/frontend-get-product.json").unwrap();
    let text = text.replace("\"10.0.1.10\"", "\"10.250.0.1\"");
    assert!(text.contains("10.250.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("gateway.json");
    std::fs::write(&request, text).unwrap();
    let check = |extra: &[&str]| {
        let out = Command::new(common::bin())
            .args(["check", "--state", "policies", "--request"])
            .arg(&request)
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code(),
            v["reason"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        check(&[]),
        (
            Some(1),
            "denied at the end of tier default: no rule matched".to_owned()
        )
    );
    assert_eq!(
        check(&["--identity-only-source"]),
        (
            Some(0),
            "allowed by rule 0 of policy shop/productpage in tier default".to_owned()
        )
    );
}

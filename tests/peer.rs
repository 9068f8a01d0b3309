//! `alp-authz bench --peer opa-envoy`: OPA-Envoy (opa-envoy-plugin, built from its Go module by
//! `tests/opa/build`, or `$ALP_OPA_ENVOY`) on the same policy, verdict-checked, driven by h2load
//! beside alp-authz and the two baselines. Skipped where Go (or h2load) is missing; `.ci/run`
//! builds the peer, sets `ALP_OPA_ENVOY` and `ALP_OPA_ENVOY_REQUIRED`, and then it is mandatory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

/// (opa-envoy-plugin, h2load), or `None` after saying why the test is skipped.
fn tools(test: &str) -> Option<(String, String)> {
    let required = std::env::var_os("ALP_OPA_ENVOY_REQUIRED").is_some();
    let opa = match std::env::var("ALP_OPA_ENVOY") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let go = Command::new("go").arg("version").output();
            if !go.is_ok_and(|o| o.status.success()) {
                assert!(
                    !required,
                    "CI must provide opa-envoy-plugin (ALP_OPA_ENVOY)"
                );
                common::say_skipped(test, "Go not installed: cannot build opa-envoy-plugin");
                return None;
            }
            // Built once for the three tests (they run in parallel; the build is not).
            static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            BUILT
                .get_or_init(|| {
                    let out = Command::new(common::root().join("tests/opa/build"))
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    String::from_utf8_lossy(&out.stdout).trim().to_owned()
                })
                .clone()
        }
    };
    let Some(h2load) = common::external_tool(Some("H2LOAD"), "h2load", &["--version"]) else {
        assert!(
            !required && std::env::var_os("H2LOAD_REQUIRED").is_none(),
            "CI must provide h2load (H2LOAD)"
        );
        common::say_skipped(
            test,
            "h2load not installed (apt-get install nghttp2-client)",
        );
        return None;
    };
    Some((opa, h2load))
}

fn bench(opa: &str, h2load: &str, args: &[&str]) -> (Output, String) {
    let out = Command::new(common::bin())
        .current_dir(common::root())
        .env("ALP_OPA_ENVOY", opa)
        .args(["bench", "--peer", "opa-envoy", "--h2load", h2load])
        .args([
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--connections",
            "2",
            "--streams",
            "4",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn opa_envoy_decides_the_worked_example_alike_and_is_measured() {
    let Some((opa, h2load)) = tools("opa_envoy_decides_the_worked_example_alike_and_is_measured")
    else {
        return;
    };
    let (out, text) = bench(&opa, &h2load, &["--rounds", "2"]);
    assert!(out.status.success(), "{text}");
    let n = std::fs::read_dir(common::root().join("policies/requests"))
        .unwrap()
        .count();
    assert!(
        text.contains(&format!("verdicts  equal on all {n} requests")),
        "{text}"
    );
    for name in ["raw-h2", "tonic", "alp-authz", "OPA-Envoy"] {
        let runs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("checks/s"))
            .collect();
        assert_eq!(runs.len(), 2, "{name}: {text}");
        for run in runs {
            let (done, ok, other) = common::h2load_counts(run);
            assert!(done > 0 && ok >= done && other == 0, "{run}");
        }
    }
    let median = text
        .lines()
        .find(|l| l.starts_with("median"))
        .unwrap_or_else(|| panic!("no median line: {text}"));
    let vs_opa: f64 = median
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches("×,")
        .parse()
        .unwrap();
    assert!(vs_opa.is_finite() && vs_opa > 0.0, "{median}");
    let memory = text.lines().find(|l| l.starts_with("memory")).unwrap();
    assert!(!memory.contains("RSS ?"), "{memory}");
}

/// A request the Rego decides differently (a percent-encoded path: alp-authz reads it every
/// way an upstream may and allows it, the Rego denies any path it would have to normalize):
/// the bench refuses to measure and names it.
#[test]
fn a_verdict_disagreement_refuses_the_bench() {
    let Some((opa, h2load)) = tools("a_verdict_disagreement_refuses_the_bench") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = common::root().join("policies");
    for f in ["cluster.yaml", "shop.yaml", "tiers.yaml"] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("requests")).unwrap();
    let get = std::fs::read_to_string(root.join("requests/frontend-get-product.json")).unwrap();
    std::fs::write(dir.path().join("requests/a-get.json"), &get).unwrap();
    std::fs::write(
        dir.path().join("requests/b-encoded.json"),
        get.replace("/products/42?currency=eur", "/products/%34%32"),
    )
    .unwrap();
    let state = dir.path().display().to_string();
    let (out, text) = bench(&opa, &h2load, &["--state", &state]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("disagree on 1 of 2 requests") && text.contains("b-encoded.json"),
        "{text}"
    );
    assert!(!text.contains("checks/s"), "{text}");
}

/// The data-driven Rego generated for a synthetic cluster agrees with alp-authz on sampled
/// requests, allowed and denied.
#[test]
fn opa_envoy_decides_a_synthetic_cluster_alike() {
    let Some((opa, h2load)) = tools("opa_envoy_decides_a_synthetic_cluster_alike") else {
        return;
    };
    let (out, text) = bench(
        &opa,
        &h2load,
        &["--synthetic", "200,2000", "--samples", "300"],
    );
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("verdicts  equal on all 300 requests"))
        .unwrap_or_else(|| panic!("{text}"));
    let allowed: u64 = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(allowed, 150, "{line}");
}

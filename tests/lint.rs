//! `alp-authz lint`, the real binary, over the fixtures in `tests/data/lint/` and the
//! repository's own `policies/`: exact text and JSON output and exit codes.
//!
//! `tests/data/lint/findings/` has one instance of each file check (the expected reports are
//! `findings.txt` and `findings.json` beside it), `clean/` none, `broken/` a file that does
//! not parse (exit 2). Set `ALP_LINT_BLESS=1` to rewrite the expected files after a deliberate
//! change, then review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::Path, process::Command};

fn lint(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .current_dir(dir)
        .arg("lint")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fixtures() -> std::path::PathBuf {
    common::data().join("lint")
}

/// Compares with an expected file (or rewrites it with `ALP_LINT_BLESS=1`).
fn expect_file(name: &str, got: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("ALP_LINT_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        got == want,
        "{} differs (ALP_LINT_BLESS=1 rewrites it):\n--- got\n{got}\n--- want\n{want}",
        path.display()
    );
}

#[test]
fn every_check_is_reported_with_file_document_and_line() {
    let (code, out, err) = lint(&fixtures(), &["--state", "findings"]);
    assert_eq!(code, 1, "{err}");
    expect_file("findings.txt", &out);
    // Each check the fixture exercises, by code: a check that stops reporting fails here.
    for code in [
        "shadowed-rule",
        "unreachable-rule",
        "shadowed-across-policies",
        "tier-only-passes",
        "selects-nothing",
        "http-on-tcp-only-port",
        "path-trailing-slash",
        "path-query",
        "ignored-field",
        "egress-not-enforced",
        "staged-too-long",
    ] {
        assert!(out.contains(&format!("[{code}]")), "{code} missing");
    }
}

#[test]
fn json_output_is_stable() {
    let (code, out, err) = lint(&fixtures(), &["--state", "findings", "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    expect_file("findings.json", &out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["exit"], 1);
    let first = &v["findings"][0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    let mut want = vec![
        "severity",
        "code",
        "file",
        "document",
        "line",
        "kind",
        "namespace",
        "name",
        "field",
        "message",
        "hint",
    ];
    want.sort_unstable();
    assert_eq!(sorted, want);
}

#[test]
fn a_staged_policy_within_the_bound_is_not_reported() {
    // The fixture's staged policy dates from 2020: with a bound longer than that, it is not
    // reported (and everything else still is).
    let (code, out, _) = lint(
        &fixtures(),
        &["--state", "findings", "--staged-max-age", "36500d"],
    );
    assert_eq!(code, 1);
    assert!(!out.contains("staged-too-long"), "{out}");
    let (code, _, err) = lint(
        &fixtures(),
        &["--state", "findings", "--staged-max-age", "3w"],
    );
    assert_eq!(code, 2, "a bad flag value is a usage error: {err}");
}

#[test]
fn clean_state_exits_zero() {
    let (code, out, err) = lint(&fixtures(), &["--state", "clean"]);
    assert_eq!((code, out.as_str()), (0, "no findings\n"), "{err}");
    let (code, out, _) = lint(&fixtures(), &["--state", "clean", "--format", "json"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "{\n  \"version\": 1,\n  \"findings\": [],\n  \"errors\": 0,\n  \"warnings\": 0,\n  \"infos\": 0,\n  \"exit\": 0\n}\n"
    );
}

#[test]
fn unreadable_input_exits_two_with_file_and_line() {
    let (code, out, _) = lint(&fixtures(), &["--state", "broken"]);
    assert_eq!(code, 2);
    assert!(
        out.starts_with("broken/bad.yaml:"),
        "the load error names the file: {out}"
    );
    assert!(out.contains(": document 1: error[load-error]: "), "{out}");
    assert!(
        out.ends_with("1 finding: 1 error, 0 warnings, 0 info\n"),
        "{out}"
    );
    let (code, out, _) = lint(&fixtures(), &["--state", "missing-dir"]);
    assert_eq!(code, 2);
    assert!(
        out.starts_with("missing-dir: error[load-error]: cannot read"),
        "{out}"
    );
    let (code, out, _) = lint(&fixtures(), &["--state", "broken", "--format", "json"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"][0]["code"], "load-error");
    assert_eq!(v["findings"][0]["document"], 1);
    assert!(v["findings"][0]["line"].is_u64(), "{out}");
    assert_eq!(v["exit"], 2);
}

/// The repository's own policies lint clean but for three notes: their prefixes (`/products`,
/// `/admin`, `/reviews`) are segment-aligned here, and were raw prefixes under Calico's
/// Dikastes before 2026-04 (see the README's lint section).
#[test]
fn the_repository_policies_have_only_notes() {
    let (code, out, err) = lint(&common::root(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let codes: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("info[").map(|(_, r)| r))
        .map(|r| r.split(']').next().unwrap())
        .collect();
    assert_eq!(codes, ["path-prefix-legacy"; 3], "{out}");
    assert!(
        out.ends_with("3 findings: 0 errors, 0 warnings, 3 info\n"),
        "{out}"
    );
}

/// The README's examples are real output: every line it shows of a `lint` run is a line of
/// that run (lines left out are marked `…`).
#[test]
fn the_readme_shows_real_output() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Static checks: `alp-authz lint`").unwrap()..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    let mut shown = 0;
    for (command, args) in [
        (
            "$ alp-authz lint --state tests/data/lint/findings\n",
            &["--state", "tests/data/lint/findings"][..],
        ),
        ("$ alp-authz lint\n", &[][..]),
    ] {
        let start = section.find(command).unwrap() + command.len();
        let block = &section[start..];
        let block = &block[..block.find("$ echo $?").unwrap()];
        let (code, out, _) = lint(&common::root(), args);
        for line in block.lines().filter(|l| *l != "…") {
            assert!(
                out.lines().any(|o| o == line),
                "not in the output of `{}`: {line}\n{out}",
                command.trim()
            );
            shown += 1;
        }
        let want = section[start..]
            .split("$ echo $?\n")
            .nth(1)
            .unwrap()
            .lines()
            .next()
            .unwrap();
        assert_eq!(code.to_string(), want, "{command}");
    }
    assert!(shown >= 10, "{shown} lines compared");
}

/// Every code lint can report is in the README's table, and the fixtures' codes are known.
#[test]
fn every_code_is_documented() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Static checks: `alp-authz lint`").unwrap()..];
    for (code, _) in alp_authz::lint::CODES {
        assert!(
            section.contains(&format!("`{code}`")),
            "{code} is not in the README"
        );
    }
    let expected = std::fs::read_to_string(fixtures().join("findings.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&expected).unwrap();
    for f in v["findings"].as_array().unwrap() {
        let code = f["code"].as_str().unwrap();
        assert!(
            alp_authz::lint::CODES.iter().any(|(c, _)| *c == code),
            "{code} is not in lint::CODES"
        );
    }
}

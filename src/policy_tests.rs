//! `alp-authz test`: policy unit tests in YAML, run through the same evaluation path as the
//! server.
//!
//! ```yaml
//! state: [../]                 # files or directories, relative to this file (and/or inline objects)
//! objects: []                  # optional inline Kubernetes objects, added to the state
//! cases:
//!   - name: frontend may read products
//!     from: shop/frontend-7d4b9              # a pod (namespace/name) or a SPIFFE ID, or `unauthenticated`
//!     to: shop/productpage-5f6c8             # a pod (namespace/name) or an IP address
//!     port: 9080                             # default: the destination's first named container port, else 80
//!     method: GET                            # default GET
//!     path: /products/42                     # default /
//!     headers: {x-request-id: "1"}           # optional
//!     expect: allow                          # allow | deny
//!     policy: shop/productpage               # optional: the deciding policy (`null` for none)
//!     rule: 0                                # optional: the deciding rule
//!   - name: a full CheckRequest
//!     request: requests/legacy-get-product.json   # or an inline CheckRequest object
//!     expect: deny
//! ```

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use serde::Deserialize;

use crate::{
    authz::{
        check::Checker,
        descriptor,
        settings::Settings,
        short_form::{ShortForm, short_request},
    },
    policy::{decision::Verdict, snapshot::Snapshot},
    source::file::{self, Loaded},
    state::Shared,
};

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// State files or directories, relative to the test file.
    #[serde(default)]
    pub state: Vec<PathBuf>,
    /// Inline objects added to the state.
    #[serde(default)]
    pub objects: Vec<serde_json::Value>,
    /// The trust domain accepted, and the one SPIFFE IDs derived from pods are in (default
    /// `cluster.local`; `*` accepts any, and derives IDs in `cluster.local`).
    #[serde(default, rename = "trustDomain")]
    pub trust_domain: Option<String>,
    /// The cases.
    pub cases: Vec<TestCase>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Name shown in the report.
    pub name: String,
    /// Caller: `namespace/pod`, a SPIFFE ID, or `unauthenticated`.
    #[serde(default)]
    pub from: Option<String>,
    /// Destination: `namespace/pod` or an IP address.
    #[serde(default)]
    pub to: Option<String>,
    /// Destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// HTTP path (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A full CheckRequest instead of the short form: a JSON file path or an inline object.
    #[serde(default)]
    pub request: Option<serde_json::Value>,
    /// `allow` or `deny`.
    pub expect: Expect,
    /// The verdict expected of the staged policy set (the enforced set with the staged
    /// policies applied), when given.
    #[serde(default)]
    pub staged: Option<Expect>,
    /// The deciding policy, when given (`null` means no policy decided).
    #[serde(default, deserialize_with = "some_option")]
    pub policy: Option<Option<String>>,
    /// The deciding rule, when given.
    #[serde(default, deserialize_with = "some_option")]
    pub rule: Option<Option<u32>>,
}

fn some_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The expected verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// Outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Test files that could not be run (unreadable, bad YAML, a state that does not load, or
    /// one that warns under `--strict`).
    pub errors: usize,
    /// What to print on standard error: one `error: FILE: …` line per file with errors.
    pub error_output: String,
    /// What to print.
    pub output: String,
}

/// Runs every case of every file (a directory stands for its `*.yaml` and `*.yml` files). A
/// file that cannot be run is reported, and counted in [`Report::errors`], without hiding the
/// others' results; `strict` makes a state that warns such an error.
pub fn run(paths: &[PathBuf], settings: &Settings, strict: bool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for f in test_files(paths)? {
        if let Err(e) = run_file(&f, settings, strict, &mut report) {
            report.errors += 1;
            // Errors from the state loader name their own file; the others get this one's.
            let e = format!("{e:#}");
            let shown = f.display().to_string();
            if e.starts_with(&shown) {
                let _ = writeln!(report.error_output, "error: {e}");
            } else {
                let _ = writeln!(report.error_output, "error: {shown}: {e}");
            }
        }
    }
    let _ = write!(
        report.output,
        "\n{} passed, {} failed",
        report.passed, report.failed
    );
    if report.errors > 0 {
        let _ = write!(report.output, ", {} file(s) with errors", report.errors);
    }
    let _ = writeln!(report.output);
    Ok(report)
}

/// The test files named by `paths`: files as given, directories' `*.yaml`/`*.yml` (sorted,
/// hidden files left out, not recursive).
fn test_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("cannot list {}", p.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && (ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
                    && f.is_file()
            })
            .collect();
        if files.is_empty() {
            bail!(
                "{}: no test files (*.yaml, *.yml) in this directory",
                p.display()
            );
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

fn run_file(
    path: &Path,
    settings: &Settings,
    strict: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).context("cannot read")?;
    let tf: TestFile = serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(&text))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = tf.state.iter().map(|p| base.join(p)).collect();
    let mut loaded = if paths.is_empty() {
        Loaded::default()
    } else {
        file::load(&paths)?
    };
    if !tf.objects.is_empty() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": tf.objects});
        file::load_text(
            &path.with_extension("objects.json"),
            &list.to_string(),
            &mut loaded,
        )?;
    }
    for w in &loaded.warnings {
        let _ = writeln!(report.output, "warning: {w}");
    }
    if strict && !loaded.warnings.is_empty() {
        bail!(
            "{} warning(s), and --strict makes them errors",
            loaded.warnings.len()
        );
    }
    let state = Arc::new(Shared::new());
    let snap = state.publish(&loaded.store);
    // The file's trust domain is the one accepted (as `--trust-domain` is for the server), and
    // the one pods' SPIFFE IDs are derived in; `*` accepts any.
    let td = tf.trust_domain.as_deref().unwrap_or("cluster.local");
    let accepted = crate::identity::trust_domain::parse_trust_domain(td)
        .map_err(|e| anyhow::anyhow!("trustDomain: {e}"))?;
    let mut settings = settings.clone();
    settings.identity.trust_domains = crate::identity::trust_domain::trust_domains(&[accepted]);
    let td = if td == "*" { "cluster.local" } else { td };
    let checker = Checker::new(state, settings);
    let _ = writeln!(
        report.output,
        "running {} cases from {}",
        tf.cases.len(),
        path.display()
    );
    for case in &tf.cases {
        let request = match build_request(case, &snap, base, td) {
            Ok(r) => r,
            Err(e) => {
                report.failed += 1;
                let _ = writeln!(report.output, "test {} ... ERROR\n    {e:#}", case.name);
                continue;
            }
        };
        let d = checker.decide(&snap, &request);
        let got_allow = d.verdict == Verdict::Allow;
        let mut diffs = Vec::new();
        if got_allow != (case.expect == Expect::Allow) {
            diffs.push(format!(
                "verdict: expected {}, got {}",
                if case.expect == Expect::Allow {
                    "allow"
                } else {
                    "deny"
                },
                if got_allow { "allow" } else { "deny" }
            ));
        }
        let policy = d.policy(&snap);
        if let Some(want) = &case.policy
            && *want != policy
        {
            diffs.push(format!(
                "policy: expected {}, got {}",
                show(want),
                show(&policy)
            ));
        }
        if let Some(want) = case.staged {
            let shadow = snap.shadow.as_deref().unwrap_or(&snap);
            let got = checker.decide(shadow, &request).verdict == Verdict::Allow;
            if got != (want == Expect::Allow) {
                diffs.push(format!(
                    "staged verdict: expected {}, got {} ({})",
                    if want == Expect::Allow {
                        "allow"
                    } else {
                        "deny"
                    },
                    if got { "allow" } else { "deny" },
                    checker.decide(shadow, &request).reason(shadow)
                ));
            }
        }
        if let Some(want) = case.rule
            && want != d.rule()
        {
            diffs.push(format!(
                "rule: expected {}, got {}",
                show(&want),
                show(&d.rule())
            ));
        }
        if diffs.is_empty() {
            report.passed += 1;
            let _ = writeln!(report.output, "test {} ... ok", case.name);
        } else {
            report.failed += 1;
            let _ = writeln!(report.output, "test {} ... FAILED", case.name);
            for diff in diffs {
                let _ = writeln!(report.output, "    {diff}");
            }
            let _ = writeln!(report.output, "    reason: {}", d.reason(&snap));
        }
    }
    Ok(())
}

fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// Builds the CheckRequest for a case: the full form as given, or the short form resolved
/// against the state (pods give addresses, service accounts and ports).
fn build_request(
    case: &TestCase,
    snap: &Snapshot,
    base: &Path,
    td: &str,
) -> anyhow::Result<CheckRequest> {
    if let Some(r) = &case.request {
        let json = match r {
            serde_json::Value::String(f) => std::fs::read_to_string(base.join(f))
                .with_context(|| format!("cannot read {}", base.join(f).display()))?,
            other => other.to_string(),
        };
        return Ok(descriptor::check_request_from_json(&json)?);
    }
    short_request(
        snap,
        &ShortForm {
            from: case.from.as_deref(),
            to: case.to.as_deref(),
            port: case.port,
            method: case.method.as_deref(),
            path: case.path.as_deref(),
            headers: &case.headers,
        },
        td,
    )
}

//! `alp-authz lint`: static checks over policy files or the live state.
//!
//! ```text
//!  files:  source::file::load (the server's loader: a file that does not load is exit 2)
//!          locate::read (a second read that keeps file, document, List item and the line of
//!          each field; objects decoded by the same store::decode_document)
//!  live:   live::list (discovery and one list per resource, k8s::resource decoding)
//!                         │ Vec<Located> + Store
//!                         ▼
//!  checks::run         Snapshot::build, then each check → Vec<Finding>
//!  render_text / render_json, exit_code
//! ```
//!
//! Every finding has a severity, a stable code (the table in the README, and [`CODES`]),
//! where it is (file, document and line, or the object's kind, namespace and name), a message
//! and a fix hint. Exit codes: 0 when nothing is at warning or above, 1 when something is, 2
//! when the input cannot be read at all (itself reported with its file and line).
//!
//! In the tools layer: imports `policy`, `source` and `k8s`, never `cli` or `app`.

pub mod checks;
pub mod live;
pub mod locate;
pub mod subsume;

use std::{path::PathBuf, time::Duration};

use serde::Serialize;

pub use locate::Located;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails the run.
    Info,
    /// Probably not what the author meant; exit 1.
    Warning,
    /// Fails closed or never works as written; exit 1.
    Error,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Every finding code, with its severity (some codes have two, by case) and what it means.
pub const CODES: &[(&str, &str)] = &[
    (
        "load-error",
        "a file or the API could not be read: nothing was linted (exit 2)",
    ),
    (
        "invalid-policy",
        "a policy that does not decode or compile: it fails closed",
    ),
    (
        "invalid-tier",
        "a tier that does not compile: its policies fail closed",
    ),
    (
        "missing-tier",
        "a policy in a tier that does not exist: it fails closed",
    ),
    (
        "unreachable-rule",
        "a rule after a catch-all terminal rule of the same policy",
    ),
    (
        "shadowed-rule",
        "a rule matching only requests an earlier terminal rule of the same policy decides",
    ),
    (
        "shadowed-across-policies",
        "a rule matching only requests a terminal rule of an earlier policy of the same tier decides, on every endpoint",
    ),
    (
        "tier-only-passes",
        "a tier whose policies have only Pass rules",
    ),
    (
        "selects-nothing",
        "a policy, rule selector, namespace selector or service-account name that matches nothing in the state",
    ),
    (
        "selects-everything",
        "a global policy written with a selector that selects every pod in the state",
    ),
    (
        "no-pods",
        "the state has no pods: selector checks were skipped",
    ),
    (
        "http-on-tcp-only-port",
        "http criteria on ports that carry no HTTP",
    ),
    ("path-query", "a query string in a rule path"),
    ("path-trailing-slash", "an exact rule path ending in `/`"),
    (
        "path-normalized",
        "a rule path compared in another form than written",
    ),
    ("path-unnormalizable", "a rule path entry that is skipped"),
    (
        "path-prefix-legacy",
        "a prefix that Calico's older Dikastes compared as a raw string prefix",
    ),
    ("ignored-field", "a field accepted but ignored at L7"),
    (
        "host-endpoint-only",
        "a policy that never applies to a workload",
    ),
    (
        "egress-not-enforced",
        "egress rules: validated, never enforced",
    ),
    (
        "no-ingress",
        "a policy that governs no ingress: never evaluated",
    ),
    (
        "staged-too-long",
        "a staged policy older than --staged-max-age",
    ),
    (
        "staged-no-age",
        "a staged policy in a file, whose age is unknown",
    ),
];

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `error`, `warning` or `info`.
    pub severity: Severity,
    /// Stable code, e.g. `shadowed-rule`.
    pub code: &'static str,
    /// The file (files mode).
    pub file: Option<String>,
    /// 1-based document in the file (files mode).
    pub document: Option<usize>,
    /// 1-based line of the field at fault (files mode).
    pub line: Option<usize>,
    /// The object's kind as written (`GlobalNetworkPolicy`, `Tier`, …).
    pub kind: String,
    /// Its namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Its name as written.
    pub name: String,
    /// The field at fault, e.g. `spec.ingress[1].http.paths[0]`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Finding {
    /// The object as `kind namespace/name`.
    pub fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What to lint and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// A staged policy older than this is reported (`staged-too-long`).
    pub staged_max_age: Duration,
    /// The time ages are measured at.
    pub now: std::time::SystemTime,
}

/// Where the state comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// State files and directories, as `--state` takes them.
    Files(Vec<PathBuf>),
    /// The Kubernetes API, listed once.
    Kubernetes(crate::k8s::Options),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per finding and a hint line, then a summary.
    Text,
    /// One JSON object (see the README for its fields).
    Json,
}

/// The result of a run: findings (sorted), or why nothing could be linted.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was found.
    pub findings: Vec<Finding>,
    /// Set when the input could not be read: the run exits 2.
    pub load_error: Option<Finding>,
}

/// Reads the input and runs every check.
pub fn lint(input: &Input, opts: &Options) -> Report {
    let read = match input {
        Input::Files(paths) => read_files(paths),
        Input::Kubernetes(k) => live::list(k),
    };
    match read {
        Ok((located, store)) => Report {
            findings: checks::run(&located, &store, input, opts),
            load_error: None,
        },
        Err(e) => Report {
            findings: Vec::new(),
            load_error: Some(*e),
        },
    }
}

/// Loads files as the server does (failing as it fails), then locates their objects.
fn read_files(
    paths: &[PathBuf],
) -> Result<(Vec<Located>, crate::policy::store::Store), Box<Finding>> {
    let loaded = crate::source::file::load(paths).map_err(|e| load_error(&e))?;
    let located = locate::read(&loaded.files).map_err(|e| load_error(&e))?;
    Ok((located, loaded.store))
}

fn load_error(e: &crate::source::file::LoadError) -> Box<Finding> {
    Box::new(Finding {
        severity: Severity::Error,
        code: "load-error",
        file: Some(e.file.display().to_string()),
        document: e.document,
        line: e.line,
        kind: String::new(),
        namespace: None,
        name: String::new(),
        field: None,
        message: e.message.clone(),
        hint: "fix the file: nothing was linted (the server would refuse it too)".into(),
    })
}

impl Report {
    /// 0: nothing at warning or above; 1: findings; 2: the input could not be read.
    pub fn exit_code(&self) -> u8 {
        if self.load_error.is_some() {
            2
        } else {
            u8::from(
                self.findings
                    .iter()
                    .any(|f| f.severity >= Severity::Warning),
            )
        }
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
            + usize::from(self.load_error.as_ref().is_some_and(|f| f.severity == s))
    }

    /// The text form: per finding `where: severity[code]: object field: message` and an
    /// indented hint, then a summary line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for f in self.load_error.iter().chain(&self.findings) {
            let mut at = String::new();
            if let Some(file) = &f.file {
                at.push_str(file);
                if let Some(l) = f.line {
                    at.push_str(&format!(":{l}"));
                }
                if let Some(d) = f.document {
                    at.push_str(&format!(": document {d}"));
                }
                at.push_str(": ");
            }
            let mut what = if f.kind.is_empty() {
                String::new()
            } else {
                f.object()
            };
            if let Some(field) = &f.field {
                what.push(' ');
                what.push_str(field);
            }
            let what = what.trim();
            let sep = if what.is_empty() { "" } else { ": " };
            out.push_str(&format!(
                "{at}{}[{}]: {what}{sep}{}\n    hint: {}\n",
                f.severity.as_str(),
                f.code,
                f.message,
                f.hint
            ));
        }
        let (e, w, i) = (
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info),
        );
        if e + w + i == 0 {
            out.push_str("no findings\n");
        } else {
            out.push_str(&format!(
                "{} finding{}: {e} error{}, {w} warning{}, {i} info\n",
                e + w + i,
                if e + w + i == 1 { "" } else { "s" },
                if e == 1 { "" } else { "s" },
                if w == 1 { "" } else { "s" },
            ));
        }
        out
    }

    /// The JSON form: `{"version": 1, "findings": [...], "errors": n, "warnings": n,
    /// "infos": n, "exit": n}`; a load error is the only finding.
    pub fn render_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            findings: Vec<&'a Finding>,
            errors: usize,
            warnings: usize,
            infos: usize,
            exit: u8,
        }
        let out = Out {
            version: 1,
            findings: self.load_error.iter().chain(&self.findings).collect(),
            errors: self.count(Severity::Error),
            warnings: self.count(Severity::Warning),
            infos: self.count(Severity::Info),
            exit: self.exit_code(),
        };
        let mut s = serde_json::to_string_pretty(&out).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The report in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.render_text(),
            Format::Json => self.render_json(),
        }
    }
}

/// Parses an age: a number of seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 30d, 12h or 3600"))?;
    let unit = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("`{s}`: the unit is one of s, m, h, d")),
    };
    Duration::try_from_secs_f64(n * unit).map_err(|_| format!("`{s}` is not a usable age"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_age("3w").is_err());
        assert!(parse_age("-1d").is_err());
        assert!(parse_age("d").is_err());
    }

    #[test]
    fn exit_codes_follow_the_worst_severity() {
        let f = |severity| Finding {
            severity,
            code: "x",
            file: None,
            document: None,
            line: None,
            kind: "Tier".into(),
            namespace: None,
            name: "t".into(),
            field: None,
            message: "m".into(),
            hint: "h".into(),
        };
        let report = |findings| Report {
            findings,
            load_error: None,
        };
        assert_eq!(report(vec![]).exit_code(), 0);
        assert_eq!(report(vec![f(Severity::Info)]).exit_code(), 0);
        assert_eq!(
            report(vec![f(Severity::Info), f(Severity::Warning)]).exit_code(),
            1
        );
        assert_eq!(report(vec![f(Severity::Error)]).exit_code(), 1);
        let r = Report {
            findings: vec![],
            load_error: Some(f(Severity::Error)),
        };
        assert_eq!(r.exit_code(), 2);
        assert_eq!(
            report(vec![f(Severity::Warning)]).render_text(),
            "warning[x]: Tier t: m\n    hint: h\n1 finding: 0 errors, 1 warning, 0 info\n"
        );
    }
}

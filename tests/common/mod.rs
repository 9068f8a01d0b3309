//! Shared helpers for the integration tests: the conformance cases, temp state files, and the
//! real `alp-authz` binary started on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde::Deserialize;

pub mod upstream;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_alp-authz")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's own test data (`tests/data/`): the conformance cases and example messages.
/// Nothing under it is read from outside the repository.
pub fn data() -> PathBuf {
    root().join("tests/data")
}

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub state: Vec<serde_json::Value>,
    pub request: serde_json::Value,
    pub expected: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

/// Every case of every file in `tests/data/cases/`.
pub fn cases() -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(data().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let file: CaseFile =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        out.extend(file.cases);
    }
    assert!(
        out.len() >= 100,
        "expected the full case set, found {}",
        out.len()
    );
    out
}

/// Fails with every failure listed, not just the first.
pub fn assert_all_passed(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Writes a case's state (as one `kind: List`) and request into `dir`.
pub fn write_case(dir: &Path, case: &Case) -> (PathBuf, PathBuf) {
    let state = dir.join("state.json");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": case.state});
    std::fs::write(&state, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    let request = dir.join("request.json");
    std::fs::write(
        &request,
        serde_json::to_string_pretty(&case.request).unwrap(),
    )
    .unwrap();
    (state, request)
}

/// Runs `alp-authz check`; returns (exit code, stdout, stderr).
pub fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("check")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `alp-authz serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Log lines after startup.
    pub log: mpsc::Receiver<String>,
    /// Log lines printed before the "listening" line, for [`Server::wait_for_log`] to see
    /// (state sources may report before the listener is up).
    early: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl Server {
    /// Starts the server on an ephemeral loopback port with extra arguments and waits until it
    /// listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// [`Server::start`] with extra environment variables (e.g. `TOKIO_WORKER_THREADS`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        return Server {
                            child,
                            addr,
                            log: rx,
                            early: std::sync::Mutex::new(std::mem::take(&mut seen).into()),
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server did not start listening; log:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// Waits (at most 15 s) for a log line containing `needle`, and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, Duration::from_secs(15))
    }

    /// Waits at most `within` for a log line containing `needle`, and returns it.
    pub fn wait_for_log_within(&self, needle: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        {
            let mut early = self.early.lock().unwrap();
            while let Some(line) = early.pop_front() {
                if line.contains(needle) {
                    return line;
                }
                seen.push(line);
            }
        }
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no log line containing {needle:?} within {within:?}; meanwhile:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT` for a tonic channel.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the TCP address in the server's "listening" log line.
fn listening_addr(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    line.split(|c: char| c.is_whitespace() || c == '"' || c == '=')
        .find(|w| w.starts_with("127.0.0.1:") && w[10..].chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// A process's resident set size in KiB (`VmRSS` in `/proc/PID/status`), if it is running.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A loopback address (`127.0.0.1:PORT`) that was free a moment ago, for a listener the server
/// opens itself (`--metrics`).
pub fn free_loopback_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// `GET /metrics` at `addr`: the answer must be a 200 in the OpenMetrics format, and its samples
/// are parsed strictly (series, labels included, to value).
pub fn scrape_metrics(addr: &str) -> HashMap<String, f64> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    parse_metrics(body)
}

/// Parses the Prometheus/OpenMetrics text exposition strictly: every sample belongs to a
/// declared family, names and labels are well-formed, values are numbers.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut families: Vec<String> = Vec::new();
    let mut samples = HashMap::new();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            families.iter().any(|f| name == f
                || name
                    .strip_prefix(f.as_str())
                    .is_some_and(|s| ["_total", "_sum", "_count", "_bucket"].contains(&s))),
            "sample without a family: {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(!v.trim_end_matches('"').contains('"'), "{line}");
            }
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// Says on the terminal that `test` skipped and why. Cargo reports a test that returns early as
/// `ok`; this line is written past the test harness's output capture, so a reader sees it.
pub fn say_skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// An external program a test drives: the path in the environment variable `env` when it is set
/// (`.ci/run` sets it), else `program` if running it with `version_args` succeeds; `None` when
/// neither is there.
pub fn external_tool(env: Option<&str>, program: &str, version_args: &[&str]) -> Option<String> {
    env.and_then(|var| std::env::var(var).ok()).or_else(|| {
        Command::new(program)
            .args(version_args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| program.to_owned())
    })
}

/// Writes `dir/name` atomically (write a hidden sibling, then rename it into place), as
/// Kubernetes (ConfigMap and Secret volumes) and cert-manager do: a poller never sees it half
/// written.
pub fn write_atomically(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// One pod (10.0.0.20) and one GlobalNetworkPolicy `p` that allows everything: replace
/// `Allow` to change its action.
pub const STATE_ALLOW: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: dst, namespace: default}
spec: {serviceAccountName: sue}
status: {phase: Running, podIP: 10.0.0.20}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {ingress: [{action: Allow}]}
"#;

/// GET / from 10.0.0.10 to [`STATE_ALLOW`]'s pod, port 80.
pub fn simple_request() -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    alp_authz::authz::descriptor::check_request_from_json(
        r#"{"attributes": {"source": {"address": {"socketAddress": {"address": "10.0.0.10"}}},
            "destination": {"address": {"socketAddress": {"address": "10.0.0.20", "portValue": 80}}},
            "request": {"http": {"method": "GET", "path": "/"}}}}"#,
    )
    .unwrap()
}

/// Counts `… N done, N HTTP 2xx, N other)` of one h2load line.
pub fn h2load_counts(run: &str) -> (u64, u64, u64) {
    let counts = run.split('(').nth(1).unwrap().trim_end_matches(')');
    let count = |what: &str| -> u64 {
        counts
            .split(", ")
            .find_map(|p| p.strip_suffix(what)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` in {run}"))
    };
    (count("done"), count("HTTP 2xx"), count("other"))
}

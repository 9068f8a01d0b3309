//! Decision logs: one JSON line per decision (sampled and filtered by configuration), written by
//! a background task. The hot path only `try_send`s a small record into a bounded channel: when
//! the writer cannot keep up, records are dropped and counted, and `Check` never waits.
//!
//! A record holds what the evaluator decided on (the caller's identity as resolved, addresses,
//! ports, protocol, method, the raw path), never headers or bodies, so that `alp-authz replay`
//! can read it back ([`Logged`]) and decide the same request again against other policies.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    identity::{Rejection, resolve::Source, spiffe::SpiffeRef},
    policy::{
        decision::Verdict,
        eval::{Addr, HttpRequest, Principal, Request},
        path::RequestPath,
        protocol::{TCP, UDP},
    },
};

/// Which decisions are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Filter {
    /// Every decision (subject to sampling).
    All,
    /// Denials only (subject to sampling).
    Deny,
}

/// Decision log settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to write: a file (appended), or `-` for standard output.
    pub path: PathBuf,
    /// Which decisions.
    pub filter: Filter,
    /// Log one in this many of the decisions that pass the filter (1 = all).
    pub sample: u64,
    /// Records buffered between the hot path and the writer.
    pub buffer: usize,
}

/// One logged decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Policy version the decision was made on.
    pub generation: u64,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Why.
    pub reason: String,
    /// Deciding tier.
    pub tier: Option<String>,
    /// Deciding policy.
    pub policy: Option<String>,
    /// Deciding rule.
    pub rule: Option<u32>,
    /// What decided, as [`crate::policy::decision::Decision::cause_name`] names it (`rule`,
    /// `end-of-tier`, `no-policy`, …).
    pub cause: &'static str,
    /// Caller identity as presented (principal); `null` when none.
    pub source_principal: Option<String>,
    /// Caller identity as identity resolution decided it, and from which source.
    pub identity: IdentityRecord,
    /// Envoy's request id (`request.http.id`, from `x-request-id`); `null` when none.
    pub request_id: Option<String>,
    /// The verdict of the staged policy set, when the state has staged policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<&'static str>,
    /// Caller address, `IP:PORT` (`[IP]:PORT` for IPv6); empty when Envoy sent no IP.
    pub source_address: String,
    /// Caller port (0 when absent).
    pub source_port: u32,
    /// Destination address, as `source_address`.
    pub destination_address: String,
    /// Destination port (0 when absent).
    pub destination_port: u32,
    /// L4 protocol: `TCP` or `UDP`.
    pub protocol: &'static str,
    /// Whether the check was for an HTTP request (`false`: a TCP-level check).
    pub http: bool,
    /// HTTP method (empty for a TCP check).
    pub method: String,
    /// HTTP path as sent, with its query (empty for a TCP check).
    pub path: String,
    /// The path as upstreams read it (query cut, escapes decoded, SEMANTICS.md §4), when they
    /// all read it one way; `null` for a TCP check or when there is no single reading.
    pub normalized_path: Option<String>,
    /// The distinct readings, when upstreams may read the path in several ways.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path_readings: Vec<String>,
    /// The path cannot be read (bad escape, NUL, not starting with `/`, …).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_undecodable: bool,
    /// Time to decide, in microseconds.
    pub latency_us: u64,
    /// The answer was allowed although policy denied (`--dry-run`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// An Explain call, not a Check: nothing was let through or refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
}

/// The caller as identity resolution decided it (`identity` in a decision record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityRecord {
    /// `valid`, `untrusted` (valid, but outside `--trust-domain`), `absent`, `invalid` (not a
    /// SPIFFE ID of the expected form) or `rejected` (identity material that must not be used).
    pub status: IdentityStatus,
    /// The source that decided it: `principal`, `certificate` or `xfcc` (absent: none present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The SPIFFE ID (`valid` and `untrusted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Why it was rejected (`rejected`), as [`Rejection::code`] names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<String>,
}

/// [`IdentityRecord::status`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdentityStatus {
    /// A valid, trusted SPIFFE ID.
    Valid,
    /// A valid SPIFFE ID from a trust domain that is not accepted.
    Untrusted,
    /// No identity.
    Absent,
    /// Not a SPIFFE ID of the expected form.
    Invalid,
    /// Identity material that must not be used.
    Rejected,
}

impl IdentityRecord {
    /// The record of `principal`, decided by `from`.
    pub fn new(principal: &Principal<'_>, from: Option<Source>) -> Self {
        let mut r = IdentityRecord {
            status: IdentityStatus::Absent,
            from: from.map(|s| s.as_str().to_owned()),
            spiffe_id: None,
            namespace: None,
            service_account: None,
            rejection: None,
        };
        let id = match principal {
            Principal::Absent => return r,
            Principal::Invalid => {
                r.status = IdentityStatus::Invalid;
                return r;
            }
            Principal::Rejected(why) => {
                r.status = IdentityStatus::Rejected;
                r.rejection = Some(why.code().to_owned());
                return r;
            }
            Principal::Untrusted(id) => {
                r.status = IdentityStatus::Untrusted;
                id
            }
            Principal::Valid(id) => {
                r.status = IdentityStatus::Valid;
                id
            }
        };
        r.spiffe_id = Some(id.to_string());
        r.namespace = Some(id.namespace().to_owned());
        r.service_account = Some(id.service_account().to_owned());
        r
    }

    /// The evaluator's view of the recorded identity (borrowing from this record).
    pub fn principal(&self) -> Result<Principal<'_>, LineError> {
        let id = || -> Result<SpiffeRef<'_>, LineError> {
            let text = self
                .spiffe_id
                .as_deref()
                .ok_or(LineError::Field("identity.spiffe_id", "missing".into()))?;
            let id = SpiffeRef::parse(text)
                .map_err(|e| LineError::Field("identity.spiffe_id", format!("`{text}`: {e}")))?;
            for (field, logged, parsed) in [
                ("identity.namespace", &self.namespace, id.namespace()),
                (
                    "identity.service_account",
                    &self.service_account,
                    id.service_account(),
                ),
            ] {
                if let Some(logged) = logged
                    && logged != parsed
                {
                    return Err(LineError::Field(
                        field,
                        format!("`{logged}` disagrees with the SPIFFE ID `{text}`"),
                    ));
                }
            }
            Ok(id)
        };
        Ok(match self.status {
            IdentityStatus::Absent => Principal::Absent,
            IdentityStatus::Invalid => Principal::Invalid,
            IdentityStatus::Valid => Principal::Valid(id()?),
            IdentityStatus::Untrusted => Principal::Untrusted(id()?),
            IdentityStatus::Rejected => {
                let code = self
                    .rejection
                    .as_deref()
                    .ok_or(LineError::Field("identity.rejection", "missing".into()))?;
                Principal::Rejected(Rejection::from_code(code).ok_or_else(|| {
                    LineError::Field("identity.rejection", format!("unknown code `{code}`"))
                })?)
            }
        })
    }
}

/// Why a decision log line cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not a JSON record of the expected shape (or written before records held what replay
    /// needs: then `identity` is missing).
    #[error("not a decision record: {0}")]
    Json(String),
    /// A field with a value replay cannot use.
    #[error("`{0}`: {1}")]
    Field(&'static str, String),
}

/// One decision log line, read back (the reading side of [`Record`]; unknown fields are
/// ignored, so that logs may gain fields).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Logged {
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub ts_ms: u64,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why (the text).
    #[serde(default)]
    pub reason: String,
    /// What decided ([`Record::cause`]).
    pub cause: String,
    /// Deciding tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Deciding policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Deciding rule.
    #[serde(default)]
    pub rule: Option<u32>,
    /// Envoy's request id.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The caller.
    pub identity: IdentityRecord,
    /// Caller address.
    pub source_address: String,
    /// Caller port.
    pub source_port: u32,
    /// Destination address.
    pub destination_address: String,
    /// Destination port.
    pub destination_port: u32,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// An HTTP request (else a TCP-level check).
    pub http: bool,
    /// HTTP method.
    #[serde(default)]
    pub method: String,
    /// HTTP path as sent.
    #[serde(default)]
    pub path: String,
    /// The normalized path as recorded.
    #[serde(default)]
    pub normalized_path: Option<String>,
    /// An Explain call, not a Check.
    #[serde(default)]
    pub explain: bool,
}

impl Logged {
    /// Parses one line.
    pub fn parse(line: &str) -> Result<Logged, LineError> {
        serde_json::from_str(line).map_err(|e| {
            // The position is within the line; replay reports the line's number.
            let mut text = e.to_string();
            if let Some(at) = text.rfind(" at line ") {
                text.truncate(at);
            }
            LineError::Json(text)
        })
    }

    /// The recorded verdict.
    pub fn verdict(&self) -> Result<Verdict, LineError> {
        match self.decision.as_str() {
            "allow" => Ok(Verdict::Allow),
            "deny" => Ok(Verdict::Deny),
            other => Err(LineError::Field(
                "decision",
                format!("`{other}` is not `allow` or `deny`"),
            )),
        }
    }

    /// The request as the evaluator saw it: addresses, ports, protocol, the recorded identity,
    /// and the HTTP part read again from the raw path (so that path normalization is applied
    /// as the evaluator applies it now).
    pub fn request(&self) -> Result<Request<'_>, LineError> {
        Ok(Request {
            source: addr("source_address", &self.source_address, self.source_port)?,
            destination: addr(
                "destination_address",
                &self.destination_address,
                self.destination_port,
            )?,
            principal: self.identity.principal()?,
            protocol: match self.protocol.as_str() {
                "TCP" => TCP,
                "UDP" => UDP,
                other => {
                    return Err(LineError::Field(
                        "protocol",
                        format!("`{other}` is not `TCP` or `UDP`"),
                    ));
                }
            },
            http: self
                .http
                .then(|| HttpRequest::new(&self.method, &self.path)),
        })
    }
}

/// An address of a record: `IP:PORT` (the port must be the one recorded beside it), or empty.
fn addr(field: &'static str, text: &str, port: u32) -> Result<Addr, LineError> {
    if text.is_empty() {
        return Ok(Addr { ip: None, port });
    }
    let sock: std::net::SocketAddr = text
        .parse()
        .map_err(|_| LineError::Field(field, format!("`{text}` is not IP:PORT")))?;
    if u32::from(sock.port()) != port {
        return Err(LineError::Field(
            field,
            format!(
                "port {} disagrees with the recorded port {port}",
                sock.port()
            ),
        ));
    }
    Ok(Addr {
        ip: Some(sock.ip().to_canonical()),
        port,
    })
}

/// The path fields of a record: the single reading, the readings, or undecodable.
pub fn path_fields(path: &RequestPath<'_>) -> (Option<String>, Vec<String>, bool) {
    match path {
        RequestPath::One(p) => (Some(p.to_string()), Vec::new(), false),
        RequestPath::Many(all) => (None, all.iter().map(|p| p.to_string()).collect(), false),
        RequestPath::Undecodable => (None, Vec::new(), true),
    }
}

/// The sending side, held by the checker.
#[derive(Debug)]
pub struct DecisionLog {
    tx: mpsc::Sender<Record>,
    filter: Filter,
    sample: u64,
    seen: AtomicU64,
    /// Records dropped because the buffer was full.
    pub dropped: Arc<AtomicU64>,
    /// Records handed to the writer.
    sent: AtomicU64,
    /// Records the writer has written and flushed.
    flushed: Arc<AtomicU64>,
}

impl DecisionLog {
    /// A log with its receiving end (for the writer task, or a test).
    pub fn channel(filter: Filter, sample: u64, buffer: usize) -> (Self, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let log = DecisionLog {
            tx,
            filter,
            sample: sample.max(1),
            seen: AtomicU64::new(0),
            dropped: Arc::new(AtomicU64::new(0)),
            sent: AtomicU64::new(0),
            flushed: Arc::new(AtomicU64::new(0)),
        };
        (log, rx)
    }

    /// Counts drops in `counter` (shared with the metrics).
    pub fn with_dropped_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        self.dropped = counter;
        self
    }

    /// Starts a writer thread for `config`; fails if the file cannot be opened.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let mut out: Box<dyn std::io::Write + Send> = if config.path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot open the decision log {}: {e}",
                            config.path.display()
                        )
                    })?,
            )
        };
        let (log, mut rx) = Self::channel(config.filter, config.sample, config.buffer);
        let flushed = log.flushed.clone();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::new(&mut out);
                let mut written = 0;
                while let Some(r) = rx.blocking_recv() {
                    if serde_json::to_writer(&mut w, &r).is_err() || w.write_all(b"\n").is_err() {
                        break;
                    }
                    written += 1;
                    // Flush when the buffer is drained, so lines appear promptly without a
                    // system call per record under load.
                    if rx.is_empty() {
                        if w.flush().is_err() {
                            break;
                        }
                        flushed.store(written, Ordering::Release);
                    }
                }
                let _ = w.flush();
            })
            .map_err(|e| anyhow::anyhow!("cannot start the decision log writer: {e}"))?;
        Ok(log)
    }

    /// Whether a decision should be logged (filter, then 1-in-N sampling). Cheap: no
    /// allocation, one atomic add.
    pub fn wants(&self, denied: bool) -> bool {
        if self.filter == Filter::Deny && !denied {
            return false;
        }
        self.sample == 1
            || self
                .seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.sample)
    }

    /// Hands a record to the writer without waiting; counts it as dropped if the buffer is full.
    pub fn send(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most `within`) until every record handed to the writer is written and
    /// flushed: at shutdown, so that the last decisions are not lost with the process. Returns
    /// whether it got there.
    pub fn drain(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.flushed.load(Ordering::Acquire) >= self.sent.load(Ordering::Relaxed) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn record() -> Record {
        Record {
            ts_ms: 1,
            generation: 2,
            decision: "deny",
            reason: "r".into(),
            tier: None,
            policy: None,
            rule: None,
            cause: "end-of-tier",
            source_principal: None,
            identity: IdentityRecord::new(&Principal::Absent, None),
            request_id: None,
            staged: None,
            source_address: String::new(),
            source_port: 0,
            destination_address: String::new(),
            destination_port: 0,
            protocol: "TCP",
            http: false,
            method: String::new(),
            path: String::new(),
            normalized_path: None,
            path_readings: Vec::new(),
            path_undecodable: false,
            latency_us: 3,
            dry_run: false,
            explain: false,
        }
    }

    #[test]
    fn drain_waits_for_the_writer() {
        let dir = std::env::temp_dir().join(format!("alp-authz-dlog-{}", std::process::id()));
        let log = DecisionLog::start(&Config {
            path: dir.clone(),
            filter: Filter::All,
            sample: 1,
            buffer: 64,
        })
        .unwrap();
        for _ in 0..50 {
            log.send(record());
        }
        assert!(log.drain(Duration::from_secs(5)));
        let lines = std::fs::read_to_string(&dir).unwrap().lines().count();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(lines as u64, 50 - log.dropped.load(Ordering::Relaxed));
        // Nothing sent: nothing to wait for.
        let (idle, _rx) = DecisionLog::channel(Filter::All, 1, 1);
        assert!(idle.drain(Duration::ZERO));
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let (log, mut rx) = DecisionLog::channel(Filter::All, 1, 2);
        for _ in 0..5 {
            log.send(record());
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn filter_and_sampling() {
        let (log, _rx) = DecisionLog::channel(Filter::Deny, 1, 1);
        assert!(!log.wants(false));
        assert!(log.wants(true));
        let (log, _rx) = DecisionLog::channel(Filter::All, 3, 1);
        let picked = (0..9).filter(|_| log.wants(false)).count();
        assert_eq!(picked, 3);
    }

    #[test]
    fn records_serialize_as_one_json_object() {
        let line = serde_json::to_string(&record()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["generation"], 2);
        assert!(v.get("dry_run").is_none());
        assert!(!line.contains('\n'));
    }

    /// The record of `req` as the checker writes it (the fields replay reads).
    fn record_of(req: &Request<'_>, raw_path: &str, from: Option<Source>) -> Record {
        let addr = |a: &Addr| match a.ip {
            Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", a.port),
            Some(ip) => format!("{ip}:{}", a.port),
            None => String::new(),
        };
        let (normalized_path, path_readings, path_undecodable) = match &req.http {
            Some(h) => path_fields(&h.path),
            None => (None, Vec::new(), false),
        };
        Record {
            identity: IdentityRecord::new(&req.principal, from),
            source_address: addr(&req.source),
            source_port: req.source.port,
            destination_address: addr(&req.destination),
            destination_port: req.destination.port,
            protocol: crate::policy::protocol::name(req.protocol).unwrap_or("TCP"),
            http: req.http.is_some(),
            method: req.http.as_ref().map_or("", |h| h.method).to_owned(),
            path: raw_path.to_owned(),
            normalized_path,
            path_readings,
            path_undecodable,
            ..record()
        }
    }

    fn ip(s: &str) -> Option<std::net::IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test_case("/products/42?currency=eur", Some("/products/42"), 0, false; "plain path, query cut")]
    #[test_case("/products/%34%32/", Some("/products/42"), 0, false; "escapes decoded, trailing slash dropped")]
    #[test_case("/a/../admin", None, 2, false; "dot segments: resolved or not")]
    #[test_case("/a%2fb", None, 2, false; "an escaped slash has two readings")]
    #[test_case("/a%zz", None, 0, true; "a bad escape cannot be read")]
    fn an_http_record_reads_back_as_the_request_it_was_made_from(
        raw: &str,
        normalized: Option<&str>,
        readings: usize,
        undecodable: bool,
    ) {
        let id = SpiffeRef::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        let req = Request {
            source: Addr {
                ip: ip("10.0.1.10"),
                port: 41234,
            },
            destination: Addr {
                ip: ip("10.0.1.20"),
                port: 9080,
            },
            principal: Principal::Valid(id),
            protocol: TCP,
            http: Some(HttpRequest::new("GET", raw)),
        };
        let r = record_of(&req, raw, Some(Source::Principal));
        assert_eq!(r.normalized_path.as_deref(), normalized);
        assert_eq!(r.path_readings.len(), readings);
        assert_eq!(r.path_undecodable, undecodable);
        let line = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["identity"],
            serde_json::json!({"status": "valid", "from": "principal",
                "spiffe_id": "spiffe://cluster.local/ns/shop/sa/frontend",
                "namespace": "shop", "service_account": "frontend"})
        );
        assert!(v.get("headers").is_none());
        let logged = Logged::parse(&line).unwrap();
        assert_eq!(logged.request().unwrap(), req);
        assert_eq!(logged.verdict(), Ok(Verdict::Deny));
    }

    #[test]
    fn tcp_udp_ipv6_and_every_identity_status_read_back() {
        let id = SpiffeRef::parse("spiffe://other.example/ns/a/sa/b").unwrap();
        for principal in [
            Principal::Absent,
            Principal::Invalid,
            Principal::Untrusted(id),
            Principal::Valid(id),
            Principal::Rejected(Rejection::XfccMalformed),
            Principal::Rejected(Rejection::Certificate(
                crate::identity::cert::CertError::Expired,
            )),
        ] {
            for protocol in [TCP, UDP] {
                let req = Request {
                    source: Addr { ip: None, port: 0 },
                    destination: Addr {
                        ip: ip("fd00::20"),
                        port: 5432,
                    },
                    principal,
                    protocol,
                    http: None,
                };
                let line = serde_json::to_string(&record_of(&req, "", None)).unwrap();
                assert_eq!(
                    Logged::parse(&line).unwrap().request().unwrap(),
                    req,
                    "{line}"
                );
            }
        }
    }

    /// A valid record line with one field replaced (or removed, for `null`).
    fn line_with(field: &str, value: serde_json::Value) -> String {
        let id = SpiffeRef::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        let req = Request {
            source: Addr {
                ip: ip("10.0.1.10"),
                port: 1,
            },
            destination: Addr {
                ip: ip("10.0.1.20"),
                port: 80,
            },
            principal: Principal::Valid(id),
            protocol: TCP,
            http: Some(HttpRequest::new("GET", "/")),
        };
        let mut v = serde_json::to_value(record_of(&req, "/", None)).unwrap();
        let (obj, key) = match field.split_once('.') {
            Some((outer, inner)) => (&mut v[outer], inner),
            None => (&mut v, field),
        };
        let obj = obj.as_object_mut().unwrap();
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_owned(), value);
        }
        v.to_string()
    }

    #[test_case("identity", serde_json::Value::Null, "not a decision record: missing field `identity`"; "a record written before replay support")]
    #[test_case("decision", "maybe".into(), "`decision`: `maybe` is not `allow` or `deny`"; "bad verdict")]
    #[test_case("protocol", "SCTP".into(), "`protocol`: `SCTP` is not `TCP` or `UDP`"; "bad protocol")]
    #[test_case("source_address", "10.0.1.10".into(), "`source_address`: `10.0.1.10` is not IP:PORT"; "address without port")]
    #[test_case("destination_port", 81.into(), "`destination_address`: port 80 disagrees with the recorded port 81"; "port disagrees")]
    #[test_case("identity.spiffe_id", "spiffe://cluster.local/ns/shop".into(), "`identity.spiffe_id`: `spiffe://cluster.local/ns/shop`: expected `/ns/<namespace>/sa/<service-account>`, found `/ns/shop`"; "bad SPIFFE ID")]
    #[test_case("identity.spiffe_id", serde_json::Value::Null, "`identity.spiffe_id`: missing"; "valid without an id")]
    #[test_case("identity.namespace", "other".into(), "`identity.namespace`: `other` disagrees with the SPIFFE ID `spiffe://cluster.local/ns/shop/sa/frontend`"; "namespace disagrees")]
    #[test_case("identity.status", "great".into(), "not a decision record: unknown variant `great`, expected one of `valid`, `untrusted`, `absent`, `invalid`, `rejected`"; "bad status")]
    fn bad_fields_are_named(field: &str, value: serde_json::Value, error: &str) {
        let line = line_with(field, value);
        let got = Logged::parse(&line).and_then(|l| {
            l.verdict()?;
            l.request().map(|_| ())
        });
        assert_eq!(got.unwrap_err().to_string(), error, "{line}");
    }

    #[test]
    fn a_rejection_needs_a_known_code() {
        let mut r = IdentityRecord::new(&Principal::Rejected(Rejection::XfccAmbiguous), None);
        assert_eq!(r.rejection.as_deref(), Some("xfcc-ambiguous"));
        r.rejection = Some("nope".into());
        assert_eq!(
            r.principal().unwrap_err().to_string(),
            "`identity.rejection`: unknown code `nope`"
        );
    }
}

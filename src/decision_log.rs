//! Decision logs: one JSON line per decision (sampled and filtered by configuration), written by
//! a background task. The hot path only `try_send`s a small record into a bounded channel: when
//! the writer cannot keep up, records are dropped and counted, and `Check` never waits.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::sync::mpsc;

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
    /// Caller identity as presented (principal); `null` when none.
    pub source_principal: Option<String>,
    /// Envoy's request id (`request.http.id`, from `x-request-id`); `null` when none.
    pub request_id: Option<String>,
    /// The verdict of the staged policy set, when the state has staged policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<&'static str>,
    /// Caller address.
    pub source_address: String,
    /// Destination address.
    pub destination_address: String,
    /// HTTP method (empty for a TCP check).
    pub method: String,
    /// HTTP path (empty for a TCP check).
    pub path: String,
    /// Time to decide, in microseconds.
    pub latency_us: u64,
    /// The answer was allowed although policy denied (`--dry-run`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// An Explain call, not a Check: nothing was let through or refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
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
            source_principal: None,
            request_id: None,
            staged: None,
            source_address: String::new(),
            destination_address: String::new(),
            method: String::new(),
            path: String::new(),
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
}

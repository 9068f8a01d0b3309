//! `alp-authz replay`: "what would this change deny?" Every request recorded in a decision log
//! is decided again against proposed state, and the verdicts that would flip are reported,
//! grouped by the deciding policy and rule before and after, with counts and examples.
//!
//! Step one: read a line back into a [`Logged`] record (`decision_log`); a line that cannot be
//! read is counted with its number, never fatal. Step two: rebuild the evaluator's request from
//! it: the identity as recorded (not resolved again: certificates expire, XFCC is not logged),
//! the HTTP part from the raw path, so that path normalization is applied as it is now. Step
//! three: `policy::eval::evaluate`, the server's evaluator, against the proposed snapshot.
//! Step four: compare with the recorded verdict and group the flips.
//!
//! A tool: imports `decision_log` and `policy`, never `authz` or `cli`.

use std::{collections::BTreeMap, fmt, io::BufRead};

use serde::Serialize;

use crate::{
    decision_log::{IdentityStatus, LineError, Logged},
    policy::{
        decision::{Decision, Verdict},
        eval::{self, Options},
        snapshot::Snapshot,
    },
};

/// Unreadable lines listed in the text report (all are counted).
const TEXT_UNREADABLE_SHOWN: usize = 20;

/// Unreadable lines kept in the report (all are counted): a file that is no decision log at
/// all must not cost memory per line.
const UNREADABLE_KEPT: usize = 1000;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}

/// Which flips fail the run (exit status 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any flip.
    Any,
    /// Requests allowed before and denied now.
    AllowToDeny,
    /// Requests denied before and allowed now.
    DenyToAllow,
}

/// The direction of a flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flip {
    /// Allowed when logged, denied by the proposed state.
    AllowToDeny,
    /// Denied when logged, allowed by the proposed state.
    DenyToAllow,
}

impl fmt::Display for Flip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flip::AllowToDeny => "allow -> deny",
            Flip::DenyToAllow => "deny -> allow",
        })
    }
}

/// What decided a request: the deciding policy and rule, or the default that applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Decider {
    /// [`Decision::cause_name`]: `rule`, `end-of-tier`, `no-policy`, ….
    pub cause: String,
    /// Deciding tier.
    pub tier: Option<String>,
    /// Deciding policy.
    pub policy: Option<String>,
    /// Deciding rule.
    pub rule: Option<u32>,
}

impl Decider {
    /// The decider of a decision made on `snap`.
    pub fn of(d: &Decision, snap: &Snapshot) -> Self {
        Decider {
            cause: d.cause_name().to_owned(),
            tier: d.tier(snap).map(str::to_owned),
            policy: d.policy(snap),
            rule: d.rule(),
        }
    }

    /// The decider a log record names.
    pub fn logged(l: &Logged) -> Self {
        Decider {
            cause: l.cause.clone(),
            tier: l.tier.clone(),
            policy: l.policy.clone(),
            rule: l.rule,
        }
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tier = self.tier.as_deref().unwrap_or("?");
        let policy = self.policy.as_deref().unwrap_or("?");
        let rule = self.rule.map_or_else(|| "?".to_owned(), |r| r.to_string());
        match self.cause.as_str() {
            "rule" => write!(f, "policy {policy} rule {rule} (tier {tier})"),
            "ambiguous-path" => {
                write!(
                    f,
                    "ambiguous path at policy {policy} rule {rule} (tier {tier})"
                )
            }
            "end-of-tier" => write!(f, "end of tier {tier} (no rule matched)"),
            "passed-all-tiers" => write!(f, "every tier passed (last: {tier})"),
            "no-policy" => f.write_str("no policy selects the destination"),
            "invalid-policy" => write!(f, "invalid policy {policy}"),
            other => f.write_str(&other.replace('-', " ")),
        }
    }
}

/// One request of a group, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// Line number in the decision log (1-based).
    pub line: u64,
    /// Envoy's request id, when logged.
    pub request_id: Option<String>,
    /// The caller: its SPIFFE ID, or what identity resolution decided (`unauthenticated`, …).
    pub caller: String,
    /// Caller address.
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// HTTP method (empty for a TCP check).
    pub method: String,
    /// HTTP path as sent.
    pub path: String,
    /// The logged reason.
    pub was: String,
    /// The reason now.
    pub now: String,
}

/// The flips with the same direction, old decider and new decider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Direction.
    pub flip: Flip,
    /// What decided when logged.
    pub was: Decider,
    /// What decides now.
    pub now: Decider,
    /// Requests in the group.
    pub count: u64,
    /// The first few, in log order.
    pub examples: Vec<Example>,
}

/// A line that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// Line number (1-based).
    pub line: u64,
    /// Why.
    pub error: String,
}

/// Counts over the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Non-empty lines read.
    pub lines: u64,
    /// Records decided again.
    pub replayed: u64,
    /// Same verdict.
    pub unchanged: u64,
    /// Of those, decided by another policy, rule or default.
    pub unchanged_other_decider: u64,
    /// Other verdict.
    pub flipped: u64,
    /// Allowed then, denied now.
    pub allow_to_deny: u64,
    /// Denied then, allowed now.
    pub deny_to_allow: u64,
    /// Records of Explain calls (nothing was let through or refused): not replayed.
    pub explain_skipped: u64,
    /// Lines that are not a readable decision record.
    pub unreadable: u64,
}

/// The result of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Counts.
    pub totals: Totals,
    /// Flips, largest group first.
    pub groups: Vec<Group>,
    /// The unreadable lines (the first thousand; `totals.unreadable` counts them all).
    pub unreadable: Vec<Unreadable>,
}

impl Report {
    /// Whether the flips that `fail_on` names occurred.
    pub fn fails(&self, fail_on: FailOn) -> bool {
        match fail_on {
            FailOn::Any => self.totals.flipped > 0,
            FailOn::AllowToDeny => self.totals.allow_to_deny > 0,
            FailOn::DenyToAllow => self.totals.deny_to_allow > 0,
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        use fmt::Write as _;
        let t = &self.totals;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "replayed {} decisions: {} unchanged ({} decided by another rule), {} flipped ({} allow -> deny, {} deny -> allow)",
            t.replayed,
            t.unchanged,
            t.unchanged_other_decider,
            t.flipped,
            t.allow_to_deny,
            t.deny_to_allow
        );
        if t.explain_skipped > 0 {
            let _ = write!(s, "; {} explain record(s) skipped", t.explain_skipped);
        }
        let _ = writeln!(
            s,
            "; {} unreadable line{}",
            t.unreadable,
            if t.unreadable == 1 { "" } else { "s" }
        );
        for g in &self.groups {
            let _ = writeln!(
                s,
                "\n{}: {} request{}",
                g.flip,
                g.count,
                if g.count == 1 { "" } else { "s" }
            );
            let _ = writeln!(s, "  was: {}", g.was);
            let _ = writeln!(s, "  now: {}", g.now);
            for e in &g.examples {
                let _ = write!(
                    s,
                    "    line {}: {} from {} to {}",
                    e.line, e.caller, e.source, e.destination
                );
                if !e.method.is_empty() || !e.path.is_empty() {
                    let _ = write!(s, " {} {}", e.method, e.path);
                }
                if let Some(id) = &e.request_id {
                    let _ = write!(s, " (request {id})");
                }
                s.push('\n');
            }
        }
        if !self.unreadable.is_empty() {
            s.push_str("\nunreadable lines:\n");
            for u in self.unreadable.iter().take(TEXT_UNREADABLE_SHOWN) {
                let _ = writeln!(s, "  line {}: {}", u.line, u.error);
            }
            let shown = self.unreadable.len().min(TEXT_UNREADABLE_SHOWN) as u64;
            if t.unreadable > shown {
                let _ = writeln!(
                    s,
                    "  … and {} more (the first {UNREADABLE_KEPT} in --format json)",
                    t.unreadable - shown
                );
            }
        }
        s
    }
}

/// Replays every record of `log` against `snap` with the evaluation options `opts` (give the
/// server's), keeping `examples` requests per group. Fails only when `log` cannot be read.
pub fn replay(
    mut log: impl BufRead,
    snap: &Snapshot,
    opts: &Options,
    examples: usize,
) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut groups: BTreeMap<(Flip, Decider, Decider), Group> = BTreeMap::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if log.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim_end_matches(['\n', '\r']),
            Err(_) => {
                report.totals.lines += 1;
                report.unreadable(line_no, "not UTF-8".into());
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        report.totals.lines += 1;
        match decide_again(line, snap, opts) {
            Err(e) => report.unreadable(line_no, e.to_string()),
            Ok(None) => report.totals.explain_skipped += 1,
            Ok(Some(again)) => report.count(&mut groups, line_no, &again, snap, examples),
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    // Largest first; the BTreeMap order breaks ties, so the output is deterministic.
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    report.groups = groups;
    Ok(report)
}

/// A record and its new decision.
struct Again {
    logged: Logged,
    was: Verdict,
    now: Decision,
}

/// Steps one to three for one line; `None` for an Explain record.
fn decide_again(line: &str, snap: &Snapshot, opts: &Options) -> Result<Option<Again>, LineError> {
    let logged = Logged::parse(line)?;
    let was = logged.verdict()?;
    if logged.explain {
        return Ok(None);
    }
    let now = eval::evaluate(snap, &logged.request()?, opts);
    Ok(Some(Again { logged, was, now }))
}

impl Report {
    fn unreadable(&mut self, line: u64, error: String) {
        self.totals.unreadable += 1;
        if self.unreadable.len() < UNREADABLE_KEPT {
            self.unreadable.push(Unreadable { line, error });
        }
    }

    /// Step four for one record.
    fn count(
        &mut self,
        groups: &mut BTreeMap<(Flip, Decider, Decider), Group>,
        line: u64,
        again: &Again,
        snap: &Snapshot,
        examples: usize,
    ) {
        let t = &mut self.totals;
        t.replayed += 1;
        let was = Decider::logged(&again.logged);
        let now = Decider::of(&again.now, snap);
        let flip = match (again.was, again.now.verdict) {
            (Verdict::Allow, Verdict::Deny) => Flip::AllowToDeny,
            (Verdict::Deny, Verdict::Allow) => Flip::DenyToAllow,
            _ => {
                t.unchanged += 1;
                if was != now {
                    t.unchanged_other_decider += 1;
                }
                return;
            }
        };
        t.flipped += 1;
        match flip {
            Flip::AllowToDeny => t.allow_to_deny += 1,
            Flip::DenyToAllow => t.deny_to_allow += 1,
        }
        let group = groups
            .entry((flip, was.clone(), now.clone()))
            .or_insert_with(|| Group {
                flip,
                was,
                now,
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < examples {
            group
                .examples
                .push(example(line, &again.logged, &again.now, snap));
        }
    }
}

fn example(line: u64, l: &Logged, now: &Decision, snap: &Snapshot) -> Example {
    let id = &l.identity;
    let caller = match id.status {
        IdentityStatus::Valid => id.spiffe_id.clone().unwrap_or_default(),
        IdentityStatus::Untrusted => {
            format!(
                "{} (untrusted)",
                id.spiffe_id.as_deref().unwrap_or_default()
            )
        }
        IdentityStatus::Absent => "unauthenticated".into(),
        IdentityStatus::Invalid => "an invalid principal".into(),
        IdentityStatus::Rejected => format!(
            "a rejected identity ({})",
            id.rejection.as_deref().unwrap_or_default()
        ),
    };
    let or_none = |a: &str| {
        if a.is_empty() {
            "?".to_owned()
        } else {
            a.to_owned()
        }
    };
    Example {
        line,
        request_id: l.request_id.clone(),
        caller,
        source: or_none(&l.source_address),
        destination: or_none(&l.destination_address),
        method: l.method.clone(),
        path: l.path.clone(),
        was: l.reason.clone(),
        now: now.reason(snap),
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::*;
    use crate::{
        authz::{check::Checker, descriptor::check_request_from_json, settings::Settings},
        decision_log::{DecisionLog, Filter},
        source::file,
        state::Shared,
    };

    fn policies() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
    }

    fn snapshot_of(paths: &[PathBuf]) -> Arc<Snapshot> {
        Shared::new().publish(&file::load(paths).unwrap().store)
    }

    /// The decision log lines the checker writes for these example requests
    /// (`policies/requests/NAME.json`), decided against `policies/`.
    fn log_of(names: &[&str]) -> String {
        let state = Arc::new(Shared::new());
        state.publish(&file::load(&[policies()]).unwrap().store);
        let (log, mut rx) = DecisionLog::channel(Filter::All, 1, 1024);
        let checker = Checker::new(state, Settings::default()).with_decision_log(Arc::new(log));
        let mut out = String::new();
        for name in names {
            let path = policies().join("requests").join(format!("{name}.json"));
            let req = check_request_from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
            checker.check(&req);
            out.push_str(&serde_json::to_string(&rx.try_recv().unwrap()).unwrap());
            out.push('\n');
        }
        out
    }

    const ALL: &[&str] = &[
        "frontend-admin",
        "frontend-get-product",
        "frontend-get-reviews",
        "frontend-post-product",
        "frontend-traversal",
        "legacy-get-product",
        "oncall-admin",
        "plaintext-get-product",
        "productpage-get-reviews",
        "unknown-destination",
    ];

    #[test]
    fn the_same_state_flips_nothing() {
        let log = log_of(ALL);
        let report = replay(
            log.as_bytes(),
            &snapshot_of(&[policies()]),
            &Options::default(),
            3,
        )
        .unwrap();
        assert_eq!(
            report.totals,
            Totals {
                lines: 10,
                replayed: 10,
                unchanged: 10,
                ..Totals::default()
            },
            "{}",
            report.text()
        );
        assert!(report.groups.is_empty());
        assert!(!report.fails(FailOn::Any));
    }

    /// `policies/` with the productpage rule allowing HEAD and POST (no longer GET), and the
    /// legacy batch job no longer denied by the security tier.
    fn changed_state(dir: &std::path::Path) -> Vec<PathBuf> {
        let shop = std::fs::read_to_string(policies().join("shop.yaml")).unwrap();
        let changed = shop.replacen("methods: [GET, HEAD]", "methods: [HEAD, POST]", 1);
        assert_ne!(shop, changed);
        std::fs::write(dir.join("shop.yaml"), changed).unwrap();
        let tiers = std::fs::read_to_string(policies().join("tiers.yaml")).unwrap();
        let changed = tiers.replacen("names: [legacy-batch]", "names: [nobody]", 1);
        assert_ne!(tiers, changed);
        std::fs::write(dir.join("tiers.yaml"), changed).unwrap();
        std::fs::copy(policies().join("cluster.yaml"), dir.join("cluster.yaml")).unwrap();
        vec![dir.to_owned()]
    }

    #[test]
    fn flips_are_grouped_by_old_and_new_decider_with_counts_and_examples() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_of(&changed_state(dir.path()));
        let log = log_of(&[
            "frontend-get-product",
            "legacy-get-product",
            "frontend-get-product",
            "frontend-post-product",
            "frontend-get-product",
        ]);
        let report = replay(log.as_bytes(), &snap, &Options::default(), 2).unwrap();
        let t = &report.totals;
        assert_eq!(
            (t.replayed, t.unchanged, t.flipped),
            (5, 1, 4),
            "{}",
            report.text()
        );
        // The legacy batch job is still denied, now at the end of the default tier.
        assert_eq!(t.unchanged_other_decider, 1);
        assert_eq!((t.allow_to_deny, t.deny_to_allow), (3, 1));
        let rule = |policy: &str, tier: &str, rule| Decider {
            cause: "rule".into(),
            tier: Some(tier.into()),
            policy: Some(policy.into()),
            rule: Some(rule),
        };
        let summary: Vec<_> = report
            .groups
            .iter()
            .map(|g| {
                (
                    g.flip,
                    g.was.clone(),
                    g.now.clone(),
                    g.count,
                    g.examples.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Flip::AllowToDeny,
                    rule("shop/productpage", "default", 0),
                    Decider {
                        cause: "end-of-tier".into(),
                        tier: Some("default".into()),
                        policy: None,
                        rule: None
                    },
                    3,
                    2
                ),
                (
                    Flip::DenyToAllow,
                    Decider {
                        cause: "end-of-tier".into(),
                        tier: Some("default".into()),
                        policy: None,
                        rule: None
                    },
                    rule("shop/productpage", "default", 0),
                    1,
                    1
                ),
            ]
        );
        let e = &report.groups[0].examples[0];
        assert_eq!(
            (
                e.line,
                e.caller.as_str(),
                e.method.as_str(),
                e.path.as_str()
            ),
            (
                1,
                "spiffe://cluster.local/ns/shop/sa/frontend",
                "GET",
                "/products/42?currency=eur"
            )
        );
        assert_eq!(report.groups[0].examples[1].line, 3);
        assert_eq!(e.now, "denied at the end of tier default: no rule matched");
        assert!(report.fails(FailOn::Any));
        assert!(report.fails(FailOn::AllowToDeny));
        assert!(report.fails(FailOn::DenyToAllow));
        let text = report.text();
        assert!(
            text.starts_with("replayed 5 decisions: 1 unchanged (1 decided by another rule), 4 flipped (3 allow -> deny, 1 deny -> allow); 0 unreadable lines\n\nallow -> deny: 3 requests\n  was: policy shop/productpage rule 0 (tier default)\n  now: end of tier default (no rule matched)\n    line 1: spiffe://cluster.local/ns/shop/sa/frontend from 10.0.1.10:41234 to 10.0.1.20:9080 GET /products/42?currency=eur (request 1)\n"),
            "{text}"
        );
    }

    #[test]
    fn fail_on_picks_a_direction() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_of(&changed_state(dir.path()));
        let report = replay(
            log_of(&["frontend-post-product"]).as_bytes(),
            &snap,
            &Options::default(),
            3,
        )
        .unwrap();
        assert!(report.fails(FailOn::Any));
        assert!(!report.fails(FailOn::AllowToDeny));
        assert!(report.fails(FailOn::DenyToAllow));
    }

    #[test]
    fn bad_lines_are_counted_with_their_numbers_and_explain_records_skipped() {
        let good = log_of(&["frontend-get-product"]);
        let explain = good.replacen("{", "{\"explain\":true,", 1);
        let mut log = Vec::new();
        log.extend_from_slice(b"not json\n\n");
        log.extend_from_slice(good.as_bytes());
        log.extend_from_slice(b"\xff\xfe\n");
        log.extend_from_slice(b"{\"decision\":\"allow\"}\n");
        log.extend_from_slice(explain.as_bytes());
        // A last line cut off mid-write, without its newline.
        log.extend_from_slice(&good.as_bytes()[..40]);
        let report = replay(
            &log[..],
            &snapshot_of(&[policies()]),
            &Options::default(),
            3,
        )
        .unwrap();
        let t = &report.totals;
        assert_eq!(
            (t.lines, t.replayed, t.unreadable, t.explain_skipped),
            (6, 1, 4, 1)
        );
        let lines: Vec<_> = report.unreadable.iter().map(|u| u.line).collect();
        assert_eq!(lines, [1, 4, 5, 7]);
        assert_eq!(
            report.unreadable[0].error,
            "not a decision record: expected ident"
        );
        assert_eq!(report.unreadable[1].error, "not UTF-8");
        assert!(
            report.unreadable[2]
                .error
                .starts_with("not a decision record: missing field"),
            "{}",
            report.unreadable[2].error
        );
        assert!(
            report
                .text()
                .contains("\nunreadable lines:\n  line 1: not a decision record")
        );
        assert!(!report.fails(FailOn::Any));
    }

    #[test]
    fn a_file_that_is_no_log_is_counted_not_kept() {
        let junk = "junk\n".repeat(UNREADABLE_KEPT + 5);
        let report = replay(
            junk.as_bytes(),
            &snapshot_of(&[policies()]),
            &Options::default(),
            3,
        )
        .unwrap();
        assert_eq!(report.totals.unreadable, UNREADABLE_KEPT as u64 + 5);
        assert_eq!(report.unreadable.len(), UNREADABLE_KEPT);
        assert!(
            report
                .text()
                .ends_with("  line 20: not a decision record: expected value\n  … and 985 more (the first 1000 in --format json)\n"),
            "{}",
            report.text()
        );
    }

    #[test]
    fn deciders_read_as_text() {
        let d = |cause: &str, tier: Option<&str>, policy: Option<&str>, rule| Decider {
            cause: cause.into(),
            tier: tier.map(Into::into),
            policy: policy.map(Into::into),
            rule,
        };
        for (decider, text) in [
            (
                d("rule", Some("t"), Some("ns/p"), Some(2)),
                "policy ns/p rule 2 (tier t)",
            ),
            (
                d("ambiguous-path", Some("t"), Some("p"), Some(0)),
                "ambiguous path at policy p rule 0 (tier t)",
            ),
            (
                d("end-of-tier", Some("t"), None, None),
                "end of tier t (no rule matched)",
            ),
            (
                d("passed-all-tiers", Some("t"), None, None),
                "every tier passed (last: t)",
            ),
            (
                d("no-policy", None, None, None),
                "no policy selects the destination",
            ),
            (
                d("invalid-policy", None, Some("p"), None),
                "invalid policy p",
            ),
            (
                d("unknown-destination", None, None, None),
                "unknown destination",
            ),
        ] {
            assert_eq!(decider.to_string(), text);
        }
    }
}

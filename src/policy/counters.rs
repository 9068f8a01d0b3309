//! Decision counters: how often each policy, tier and fail-closed cause decided, for the
//! metrics scrape. One [`Counters`] per snapshot generation, indexed like it; recording is a
//! relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

use super::decision::{Cause, Decision, Verdict};

/// Decision counts of one snapshot, indexed like the snapshot. Only atomics: recording a
/// decision takes no lock.
#[derive(Debug, Default)]
pub struct Counters {
    /// Per policy: decided by one of its rules (allowed, denied).
    pub rule: Box<[[AtomicU64; 2]]>,
    /// Per tier: denied at its end.
    pub end_of_tier: Box<[AtomicU64]>,
    /// Per tier: allowed after every tier passed, this one last.
    pub passed: Box<[AtomicU64]>,
    /// Allowed because no policy selects the destination.
    pub no_policy: AtomicU64,
    /// Denied fail-closed: the destination is not a known workload.
    pub unknown_destination: AtomicU64,
    /// Denied fail-closed: the caller's identity material was rejected.
    pub identity_rejected: AtomicU64,
    /// Denied fail-closed: the source pod is not the workload the principal names.
    pub identity_mismatch: AtomicU64,
    /// Per invalid policy: denials it caused.
    pub invalid: Box<[AtomicU64]>,
    /// On a shadow snapshot, per policy (plus one last slot for decisions no rule made):
    /// requests where this set's answer differed from the enforced one's.
    pub disagreements: Box<[AtomicU64]>,
}

impl Counters {
    pub(super) fn sized(policies: usize, tiers: usize, invalid: usize) -> Self {
        Counters {
            rule: (0..policies).map(|_| Default::default()).collect(),
            end_of_tier: (0..tiers).map(|_| AtomicU64::new(0)).collect(),
            passed: (0..tiers).map(|_| AtomicU64::new(0)).collect(),
            no_policy: AtomicU64::new(0),
            unknown_destination: AtomicU64::new(0),
            identity_rejected: AtomicU64::new(0),
            identity_mismatch: AtomicU64::new(0),
            invalid: (0..invalid).map(|_| AtomicU64::new(0)).collect(),
            disagreements: (0..=policies).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts a shadow decision that differs from the enforced one.
    pub fn record_disagreement(&self, shadow: &Decision) {
        let i = match shadow.cause {
            Cause::Rule { policy, .. } => policy.get(),
            _ => self.disagreements.len().saturating_sub(1),
        };
        if let Some(c) = self.disagreements.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one decision.
    pub fn record(&self, d: &Decision) {
        let slot = match d.cause {
            Cause::Rule { policy, .. } => self
                .rule
                .get(policy.get())
                .map(|c| &c[usize::from(d.verdict == Verdict::Deny)]),
            Cause::EndOfTier { tier } => self.end_of_tier.get(tier.get()),
            Cause::PassedAllTiers { tier } => self.passed.get(tier.get()),
            Cause::NoPolicy => Some(&self.no_policy),
            Cause::UnknownDestination => Some(&self.unknown_destination),
            Cause::IdentityRejected { .. } => Some(&self.identity_rejected),
            Cause::IdentityMismatch { .. } => Some(&self.identity_mismatch),
            Cause::InvalidPolicy { invalid } => self.invalid.get(invalid.get()),
        };
        if let Some(c) = slot {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

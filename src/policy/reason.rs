//! A [`Decision`] in words, with the names it indexes read from the [`Snapshot`] it was
//! decided on: the deny body, the `x-alp-authz-reason` header, logs and the CLI.

use std::fmt;

use super::{
    compile::{Action, PolicyId},
    decision::{Cause, Decision},
    snapshot::Snapshot,
};

impl Decision {
    /// The deciding tier's name, if a tier decided.
    pub fn tier<'s>(&self, snap: &'s Snapshot) -> Option<&'s str> {
        match self.cause {
            Cause::Rule { policy, .. } => Some(&snap.tier_of(policy).name),
            Cause::EndOfTier { tier } | Cause::PassedAllTiers { tier } => {
                snap.tiers.get(tier.get()).map(|t| &*t.name)
            }
            _ => None,
        }
    }

    /// The deciding policy, as `name` or `namespace/name`.
    pub fn policy(&self, snap: &Snapshot) -> Option<String> {
        self.policy_id(snap).map(PolicyId::to_string)
    }

    /// The deciding policy's id, borrowed from `snap` (displays as [`Decision::policy`]).
    pub fn policy_id<'s>(&self, snap: &'s Snapshot) -> Option<&'s PolicyId> {
        match self.cause {
            Cause::Rule { policy, .. } => snap.policies.get(policy.get()).map(|p| &p.id),
            Cause::InvalidPolicy { invalid } => snap.invalid.get(invalid.get()).map(|p| &p.id),
            _ => None,
        }
    }

    /// A one-line explanation, lower-case, with names from `snap`. Allocates: where the text
    /// is only written somewhere (a log field, a header), use [`Decision::describe`].
    pub fn reason(&self, snap: &Snapshot) -> String {
        use fmt::Write as _;
        let reason = self.describe(snap);
        // Measured first, so that the text is one allocation of its final size rather than a
        // string grown by doubling.
        let mut len = Len(0);
        let _ = write!(len, "{reason}");
        let mut s = String::with_capacity(len.0);
        // Writing to a String cannot fail.
        let _ = write!(s, "{reason}");
        s
    }

    /// The explanation of [`Decision::reason`], rendered only when displayed: building it
    /// copies two words and allocates nothing, so a deny whose reason nobody reads costs no
    /// text.
    pub fn describe<'s>(&self, snap: &'s Snapshot) -> Reason<'s> {
        Reason {
            decision: *self,
            snap,
        }
    }
}
/// Counts the bytes written.
struct Len(usize);

impl fmt::Write for Len {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// A decision's explanation, displayed on demand (see [`Decision::describe`]).
#[derive(Debug, Clone, Copy)]
pub struct Reason<'s> {
    decision: Decision,
    snap: &'s Snapshot,
}

impl Reason<'_> {
    /// The deciding policy (empty if the index is not in the snapshot).
    fn policy(&self) -> &dyn fmt::Display {
        match self.decision.policy_id(self.snap) {
            Some(id) => id,
            None => &"",
        }
    }

    /// The deciding tier (empty if the index is not in the snapshot).
    fn tier(&self) -> &str {
        self.decision.tier(self.snap).unwrap_or_default()
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.snap;
        match self.decision.cause {
            Cause::Rule {
                rule,
                ambiguous_path: true,
                ..
            } => write!(
                f,
                "ambiguous path: upstreams may read the request path so that rule {rule} of policy {} in tier {} matches it, or so that it does not",
                self.policy(),
                self.tier()
            ),
            Cause::Rule { rule, action, .. } => write!(
                f,
                "{} by rule {rule} of policy {} in tier {}",
                if action == Action::Allow {
                    "allowed"
                } else {
                    "denied"
                },
                self.policy(),
                self.tier()
            ),
            Cause::EndOfTier { tier } => {
                debug_assert!(tier.get() < snap.tiers.len());
                write!(
                    f,
                    "denied at the end of tier {}: no rule matched",
                    self.tier()
                )
            }
            Cause::NoPolicy => f.write_str("allowed: no policy selects the destination"),
            Cause::PassedAllTiers { .. } => {
                write!(f, "allowed: every tier passed (last: {})", self.tier())
            }
            Cause::UnknownDestination => f.write_str("unknown destination"),
            Cause::IdentityMismatch { source } => match snap.endpoints.get(source.get()) {
                Some(ep) => write!(
                    f,
                    "identity mismatch: the source address belongs to pod {}/{} (service account {}), not to the authenticated principal",
                    ep.namespace, ep.name, ep.service_account
                ),
                None => f.write_str("identity mismatch"),
            },
            Cause::IdentityRejected { rejection } => write!(f, "identity rejected: {rejection}"),
            Cause::InvalidPolicy { invalid } => match snap.invalid.get(invalid.get()) {
                Some(p) => write!(f, "policy {} invalid: {}", p.id, p.error),
                None => f.write_str("policy invalid"),
            },
        }
    }
}

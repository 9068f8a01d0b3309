//! The outcome of one evaluation: a small `Copy` value of indexes into the [`Snapshot`] it was
//! decided on, rendered to text only when someone needs to read it (deny answers, logs, CLI).

use std::fmt;

use super::{
    compile::{Action, PolicyId},
    snapshot::{EndpointIdx, InvalidIdx, PolicyIdx, Snapshot, TierIdx},
};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

/// Why the verdict is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A rule with action Allow or Deny matched.
    Rule {
        /// The policy.
        policy: PolicyIdx,
        /// The rule's index in the policy's ingress rules.
        rule: u32,
        /// The rule's action (Allow, Deny, Pass or Log).
        action: Action,
        /// The rule's path criterion matched some readings of the request path but not
        /// others (or the path cannot be read): denied whatever the action.
        ambiguous_path: bool,
    },
    /// A tier had policies selecting the destination but none decided: its default (Deny).
    EndOfTier {
        /// The tier.
        tier: TierIdx,
    },
    /// No policy selects the destination: Calico's Kubernetes profile allows.
    NoPolicy,
    /// Every applicable tier passed: Calico's Kubernetes profile allows.
    PassedAllTiers {
        /// The last tier that passed.
        tier: TierIdx,
    },
    /// The destination address is not a known workload (fail closed).
    UnknownDestination,
    /// The source pod (by IP) is not the workload the authenticated principal names.
    IdentityMismatch {
        /// The pod found at the source address.
        source: EndpointIdx,
    },
    /// The caller presented identity material that must not be trusted.
    IdentityRejected {
        /// Why.
        rejection: crate::identity::Rejection,
    },
    /// An invalid policy could select the destination (fail closed).
    InvalidPolicy {
        /// The invalid policy.
        invalid: InvalidIdx,
    },
}

/// A decision: verdict plus cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Why.
    pub cause: Cause,
}

impl Decision {
    pub(crate) fn allow(cause: Cause) -> Self {
        Decision {
            verdict: Verdict::Allow,
            cause,
        }
    }

    pub(crate) fn deny(cause: Cause) -> Self {
        Decision {
            verdict: Verdict::Deny,
            cause,
        }
    }

    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The deciding tier's name, if a tier decided.
    pub fn tier<'s>(&self, snap: &'s Snapshot) -> Option<&'s str> {
        match self.cause {
            Cause::Rule { policy, .. } => Some(&snap.tier_of(policy).name),
            Cause::EndOfTier { tier } | Cause::PassedAllTiers { tier } => {
                snap.tiers.get(tier as usize).map(|t| &*t.name)
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
            Cause::Rule { policy, .. } => snap.policies.get(policy as usize).map(|p| &p.id),
            Cause::InvalidPolicy { invalid } => snap.invalid.get(invalid as usize).map(|p| &p.id),
            _ => None,
        }
    }

    /// The deciding rule's index.
    pub fn rule(&self) -> Option<u32> {
        match self.cause {
            Cause::Rule { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// A stable name of the cause, for the decision log and `alp-authz replay`: `rule`,
    /// `ambiguous-path`, `end-of-tier`, `no-policy`, `passed-all-tiers`,
    /// `unknown-destination`, `identity-mismatch`, `identity-rejected`, `invalid-policy`.
    pub fn cause_name(&self) -> &'static str {
        match self.cause {
            Cause::Rule {
                ambiguous_path: true,
                ..
            } => "ambiguous-path",
            Cause::Rule { .. } => "rule",
            Cause::EndOfTier { .. } => "end-of-tier",
            Cause::NoPolicy => "no-policy",
            Cause::PassedAllTiers { .. } => "passed-all-tiers",
            Cause::UnknownDestination => "unknown-destination",
            Cause::IdentityMismatch { .. } => "identity-mismatch",
            Cause::IdentityRejected { .. } => "identity-rejected",
            Cause::InvalidPolicy { .. } => "invalid-policy",
        }
    }

    /// The action that produced the verdict: the rule's, or the default that applied.
    pub fn action(&self) -> &'static str {
        match self.cause {
            Cause::Rule {
                ambiguous_path: true,
                ..
            } => "Deny",
            Cause::Rule { action, .. } => action.as_str(),
            _ => match self.verdict {
                Verdict::Allow => "Allow",
                Verdict::Deny => "Deny",
            },
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
                debug_assert!((tier as usize) < snap.tiers.len());
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
            Cause::IdentityMismatch { source } => match snap.endpoints.get(source as usize) {
                Some(ep) => write!(
                    f,
                    "identity mismatch: the source address belongs to pod {}/{} (service account {}), not to the authenticated principal",
                    ep.namespace, ep.name, ep.service_account
                ),
                None => f.write_str("identity mismatch"),
            },
            Cause::IdentityRejected { rejection } => write!(f, "identity rejected: {rejection}"),
            Cause::InvalidPolicy { invalid } => match snap.invalid.get(invalid as usize) {
                Some(p) => write!(f, "policy {} invalid: {}", p.id, p.error),
                None => f.write_str("policy invalid"),
            },
        }
    }
}

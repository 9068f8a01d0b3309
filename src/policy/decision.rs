//! The outcome of one evaluation: a small `Copy` value of indexes into the
//! [`Snapshot`](super::snapshot::Snapshot) it was decided on, rendered to text
//! ([`super::reason`]) only when someone needs to read it (deny answers, logs, CLI).

use super::{
    compile::Action,
    index::{EndpointIdx, InvalidIdx, PolicyIdx, TierIdx},
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
}

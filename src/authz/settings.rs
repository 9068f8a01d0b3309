//! What shapes every decision and answer: evaluation options, who counts as authenticated,
//! what an answer carries. Built once by `app` from the command line, read by
//! [`super::check::Checker`] and [`super::explain`].

use crate::{identity::resolve::IdentityConfig, policy::eval::Options};

/// Settings that shape every decision and answer.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Evaluation options.
    pub eval: Options,
    /// Who counts as authenticated.
    pub identity: IdentityConfig,
    /// Send the deny reason to the caller (status message and `x-alp-authz-reason`).
    pub explain_denials: bool,
    /// What else goes into answers.
    pub answer: AnswerSettings,
    /// Allow everything; log and count what policy would have denied (first rollouts).
    pub dry_run: bool,
}

/// Optional parts of an answer.
#[derive(Debug, Clone, Default)]
pub struct AnswerSettings {
    /// Attach `dynamic_metadata` (generation, decision, tier, policy, rule) to every answer, for
    /// Envoy access logs (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:policy)%`).
    pub dynamic_metadata: bool,
    /// On allow, set this upstream request header to the caller's SPIFFE ID (and remove it when
    /// the caller has none, so it cannot be spoofed).
    pub identity_header: Option<String>,
    /// On allow, set this upstream request header to the decision
    /// (`allow; generation=G; tier=T; policy=P; rule=R`).
    pub decision_header: Option<String>,
}

//! The one evaluation path shared by the gRPC server and the `check` CLI:
//! CheckRequest → request view → evaluate against the current snapshot → CheckResponse.

use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};

use super::{request, response};
use crate::{
    policy::{
        decision::{Decision, Verdict},
        eval::{self, Options},
        snapshot::Snapshot,
    },
    state::Shared,
};

/// Settings that shape every decision and answer.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Evaluation options.
    pub eval: Options,
    /// Who counts as authenticated.
    pub identity: crate::identity::resolve::IdentityConfig,
    /// Send the deny reason to the caller (status message and `x-alp-authz-reason`).
    pub explain_denials: bool,
}

/// Decides CheckRequests against the published state.
#[derive(Debug, Clone)]
pub struct Checker {
    state: Arc<Shared>,
    settings: Arc<Settings>,
}

impl Checker {
    /// A checker over `state`.
    pub fn new(state: Arc<Shared>, settings: Settings) -> Self {
        Checker {
            state,
            settings: Arc::new(settings),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The published state.
    pub fn state(&self) -> &Arc<Shared> {
        &self.state
    }

    /// Decides a request against `snap`.
    pub fn decide(&self, snap: &Snapshot, req: &CheckRequest) -> Decision {
        let resolved = self.settings.identity.resolve(req);
        let principal = request::principal(&self.settings.identity, &resolved);
        let view = request::to_request(req, principal);
        eval::evaluate(snap, &view, &self.settings.eval)
    }

    /// Decides a request and builds the answer. No lock; allocates only to deny.
    pub fn check(&self, req: &CheckRequest) -> (CheckResponse, Decision) {
        let snap = self.state.load();
        let decision = self.decide(&snap, req);
        let http = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .is_some_and(|r| r.http.is_some());
        let resp = match decision.verdict {
            Verdict::Allow => response::allowed(http),
            Verdict::Deny => {
                let reason = decision.reason(&snap);
                tracing::debug!(target: "decision", generation = snap.generation, %reason, "denied");
                response::denied(
                    http,
                    self.settings.explain_denials.then_some(reason.as_str()),
                )
            }
        };
        (resp, decision)
    }
}

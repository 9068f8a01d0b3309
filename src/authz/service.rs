//! The tonic `envoy.service.auth.v3.Authorization` service.

use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, authorization_server::Authorization,
};
use tonic::{Request, Response, Status};

use super::check::Checker;

/// `Authorization/Check` over a [`Checker`].
#[derive(Debug, Clone)]
pub struct AuthzService {
    checker: Checker,
}

impl AuthzService {
    /// Serves `checker`.
    pub fn new(checker: Checker) -> Self {
        AuthzService { checker }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        if !self.checker.state().is_ready() {
            return Err(not_ready());
        }
        // The evaluation is synchronous CPU work. Yield once first (holding this request's slot
        // of `--max-in-flight`), so that the requests that arrived meanwhile are taken in and
        // count against the limit: beyond it they are shed at once with RESOURCE_EXHAUSTED,
        // instead of waiting unseen in the runtime's queue behind each evaluation until the
        // caller's deadline passes.
        tokio::task::yield_now().await;
        let (resp, _decision) = self.checker.check(request.get_ref());
        Ok(Response::new(resp))
    }
}

/// The answer before a first state is published: `UNAVAILABLE`, so that Envoy's configured
/// failure mode (`failure_mode_allow`, `status_on_error`) decides, not an empty policy set.
pub fn not_ready() -> Status {
    Status::unavailable("no policy state yet: waiting for the first sync with the state source")
}

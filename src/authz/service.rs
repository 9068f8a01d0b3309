//! The tonic `envoy.service.auth.v3.Authorization` service.

use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, authorization_server::Authorization,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tonic::{Request, Response, Status};

use super::check::Checker;

/// `Authorization/Check` over a [`Checker`].
#[derive(Debug, Clone)]
pub struct AuthzService {
    checker: Checker,
    /// How long the last evaluation took, in nanoseconds (see [`SLOW_EVALUATION_NS`]).
    last_evaluation_ns: Arc<AtomicU64>,
}

/// Evaluations slower than this make later requests yield before evaluating.
///
/// The evaluation is synchronous CPU work. When it is slow (huge policy sets, a starved
/// machine), requests that arrived meanwhile wait unseen in the runtime's queue behind each
/// evaluation, never counted against `--max-in-flight`, until the caller's deadline passes.
/// Yielding once first, holding the request's slot, lets them be taken in and, beyond the
/// limit, shed at once with RESOURCE_EXHAUSTED. A typical evaluation takes about a
/// microsecond, and the yield (a task reschedule) would then cost a fifth of the throughput:
/// it is only paid when evaluations are slow enough for the queue to matter.
pub const SLOW_EVALUATION_NS: u64 = 50_000;

impl AuthzService {
    /// Serves `checker`.
    pub fn new(checker: Checker) -> Self {
        AuthzService {
            checker,
            last_evaluation_ns: Arc::new(AtomicU64::new(0)),
        }
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
        if self.last_evaluation_ns.load(Ordering::Relaxed) > SLOW_EVALUATION_NS {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let (resp, _decision) = self.checker.check(request.get_ref());
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_evaluation_ns.store(took, Ordering::Relaxed);
        Ok(Response::new(resp))
    }
}

/// The answer before a first state is published: `UNAVAILABLE`, so that Envoy's configured
/// failure mode (`failure_mode_allow`, `status_on_error`) decides, not an empty policy set.
pub fn not_ready() -> Status {
    Status::unavailable("no policy state yet: waiting for the first sync with the state source")
}

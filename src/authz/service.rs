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
        let (resp, _decision) = self.checker.check(request.get_ref());
        Ok(Response::new(resp))
    }
}

//! `alp.authz.v1.Explainer/Explain`: the `explain` trace over gRPC, against the live state.

use std::collections::BTreeMap;

use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage};
use tonic::{Request, Response, Status};

use super::short_form::{ShortForm, short_request};
use super::{check::Checker, descriptor};

/// Generated code for `proto/alp_authz.proto`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod pb {
    tonic::include_proto!("alp.authz.v1");
}

/// The Explainer service over a [`Checker`].
#[derive(Debug, Clone)]
pub struct ExplainService {
    checker: Checker,
}

impl ExplainService {
    /// Explains against `checker`'s live state and settings.
    pub fn new(checker: Checker) -> Self {
        ExplainService { checker }
    }

    /// Wrapped for tonic.
    pub fn into_server(self) -> pb::explainer_server::ExplainerServer<Self> {
        pb::explainer_server::ExplainerServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::explainer_server::Explainer for ExplainService {
    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        if !self.checker.state().is_ready() {
            return Err(super::service::not_ready());
        }
        let snap = self.checker.state().load_full();
        let check = match request.into_inner().request {
            Some(pb::explain_request::Request::CheckRequest(c)) => c,
            Some(pb::explain_request::Request::Short(s)) => {
                let headers: BTreeMap<String, String> = s.headers.into_iter().collect();
                let td = if s.trust_domain.is_empty() {
                    "cluster.local"
                } else {
                    s.trust_domain.as_str()
                };
                let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
                let (from, to, method, path) = (
                    nonempty(&s.from),
                    nonempty(&s.to),
                    nonempty(&s.method),
                    nonempty(&s.path),
                );
                let form = ShortForm {
                    from: from.as_deref(),
                    to: to.as_deref(),
                    port: (s.port != 0).then_some(s.port),
                    method: method.as_deref(),
                    path: path.as_deref(),
                    headers: &headers,
                };
                short_request(&snap, &form, td)
                    .map_err(|e| Status::invalid_argument(format!("{e:#}")))?
            }
            None => return Err(Status::invalid_argument("give `checkRequest` or `short`")),
        };
        let trace = self.checker.explain_counted(&snap, &check);
        to_proto(trace).map(Response::new)
    }
}

/// The trace JSON mirrors `ExplainResponse` field for field (proto3 JSON accepts the original
/// field names), so one trace serves the CLI and the RPC.
fn to_proto(trace: serde_json::Value) -> Result<pb::ExplainResponse, Status> {
    let internal = |e: String| Status::internal(format!("cannot encode the trace: {e}"));
    let desc = descriptor::pool()
        .map_err(|e| internal(e.to_string()))?
        .get_message_by_name("alp.authz.v1.ExplainResponse")
        .ok_or_else(|| internal("ExplainResponse is not in the descriptor set".into()))?;
    let msg = DynamicMessage::deserialize_with_options(
        desc,
        trace,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| internal(e.to_string()))?;
    pb::ExplainResponse::decode(msg.encode_to_vec().as_slice()).map_err(|e| internal(e.to_string()))
}

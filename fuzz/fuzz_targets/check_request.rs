//! Arbitrary bytes as a CheckRequest (the gRPC payload), decided against a fixed index: never
//! panics, and a request that decodes is always answered.
#![no_main]

use std::sync::{Arc, OnceLock};

use alp_authz::{
    authz::{check::Checker, settings::Settings},
    source::embedded,
    state::Shared,
};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fn checker() -> &'static Checker {
    static C: OnceLock<Checker> = OnceLock::new();
    C.get_or_init(|| {
        let state = Arc::new(Shared::new());
        state.publish(&embedded::load().expect("embedded policies").store);
        Checker::new(state, Settings::default())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = CheckRequest::decode(data) {
        let (resp, _) = checker().check(&req);
        assert!(resp.status.is_some());
    }
});

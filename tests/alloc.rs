//! Heap allocations of one Check, counted (a counting allocator, per thread) on the same
//! `Checker` the gRPC service uses, answer extras off as by default in the library:
//! - the allow path allocates nothing (a CheckRequest without headers to copy);
//! - the deny path allocates only the strings the fixed answer owns (prost messages own
//!   their strings), never the reason, unless something reads it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use alp_authz::{
    authz::{check::Checker, descriptor::check_request_from_json, settings::Settings},
    state::Shared,
    synth,
};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

const SPEC: synth::Spec = synth::Spec {
    namespaces: 4,
    pods: 400,
    policies: 200,
    seed: 3,
};

fn state() -> Arc<Shared> {
    let state = Arc::new(Shared::new());
    state.publish(&synth::load(&SPEC).unwrap().store);
    state
}

/// A request from some pod to pod 4 (ns-0/app-1) that `checker` decides as `allowed` says.
fn find(checker: &Checker, method: &str, path: &str, http: bool, allowed: bool) -> CheckRequest {
    (0..SPEC.pods)
        .map(|from| {
            let mut r =
                check_request_from_json(&synth::request_json(from, 4, &SPEC, method, path, 8080))
                    .unwrap();
            if !http {
                r.attributes.as_mut().unwrap().request = None;
            }
            r
        })
        .find(|r| checker.check(r).1.allowed() == allowed)
        .expect("a request decided as wanted")
}

/// Allocations of `n` Checks of `req`, each dropped before the next (as the server does
/// once it has encoded the answer).
fn allocations(checker: &Checker, req: &CheckRequest, n: u64) -> u64 {
    let allowed = checker.check(req).1.allowed();
    let info = allocation_counter::measure(|| {
        for _ in 0..n {
            let (resp, d) = checker.check(req);
            assert_eq!(d.allowed(), allowed);
            std::hint::black_box(resp);
        }
    });
    assert_eq!(info.count_current, 0, "{info:?}");
    info.count_total
}

#[test]
fn the_allow_path_allocates_nothing() {
    let checker = Checker::new(state(), Settings::default());
    let allowed = find(&checker, "GET", "/api/items", true, true);
    assert_eq!(allocations(&checker, &allowed, 100), 0);
}

/// A denied HTTP request costs exactly the five strings of the fixed 403 (`CheckResponse`
/// owns them: prost has no borrowed fields): the status message `denied`, the header list,
/// the `content-type` header's name and value, and the body. A TCP denial has no HTTP part:
/// the status message only. Nothing else: the reason (`denied at the end of tier …`) is not
/// rendered, nor the decision's policy name.
#[test]
fn the_deny_path_allocates_the_fixed_answer_only() {
    let checker = Checker::new(state(), Settings::default());
    let denied = find(&checker, "DELETE", "/x", true, false);
    assert_eq!(allocations(&checker, &denied, 100), 5 * 100);
    let tcp = find(&checker, "GET", "/", false, false);
    assert_eq!(allocations(&checker, &tcp, 100), 100);
}

/// The server runs with a subscriber (INFO by default): the `decision` event of a denial is
/// at DEBUG, so it is off, and its reason field is never formatted.
#[test]
fn a_deny_with_logging_at_info_renders_no_reason() {
    let checker = Checker::new(state(), Settings::default());
    let denied = find(&checker, "DELETE", "/x", true, false);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(allocations(&checker, &denied, 100), 5 * 100);
    });
}

/// With `--explain-denials` the reason is sent, at three allocations more than the fixed
/// answer: the reason rendered once at its final size (measured first, not grown by
/// doubling), then the `x-alp-authz-reason` header's name and value; the status message
/// (one of the five) carries the reason instead of `denied`. 5 + 3 = 8.
#[test]
fn a_deny_with_explain_denials_renders_the_reason_once() {
    let settings = Settings {
        explain_denials: true,
        ..Settings::default()
    };
    let checker = Checker::new(state(), settings);
    let denied = find(&checker, "DELETE", "/x", true, false);
    assert_eq!(allocations(&checker, &denied, 100), 8 * 100);
}

/// `--dry-run` lets a denied request through as an allow: nothing to allocate either.
#[test]
fn a_dry_run_deny_allocates_nothing() {
    let settings = Settings {
        dry_run: true,
        ..Settings::default()
    };
    let checker = Checker::new(state(), settings);
    let enforcing = Checker::new(checker.state().clone(), Settings::default());
    let denied = find(&enforcing, "DELETE", "/x", true, false);
    assert!(checker.check(&denied).1.verdict == alp_authz::policy::decision::Verdict::Deny);
    assert_eq!(allocations(&checker, &denied, 100), 0);
}

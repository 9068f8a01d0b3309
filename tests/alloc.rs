//! The allow path allocates nothing: a CheckRequest without headers to copy, decided and
//! answered by the same `Checker` the gRPC service uses (answer extras off, as by default in
//! the library).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use alp_authz::{
    authz::{
        check::{Checker, Settings},
        descriptor::check_request_from_json,
    },
    state::Shared,
    synth,
};

#[test]
fn allow_and_end_of_tier_deny_paths() {
    let spec = synth::Spec {
        namespaces: 4,
        pods: 400,
        policies: 200,
        seed: 3,
    };
    let state = Arc::new(Shared::new());
    state.publish(&synth::load(&spec).unwrap().store);
    let checker = Checker::new(state, Settings::default());

    // Pod 4 is ns-0/app-1; the policies of ns-0 for app-1 allow GET /api from one other app;
    // find a caller that is allowed, so that the allow path is the one measured.
    let allowed = (0..spec.pods)
        .map(|from| {
            check_request_from_json(&synth::request_json(
                from,
                4,
                &spec,
                "GET",
                "/api/items",
                8080,
            ))
            .unwrap()
        })
        .find(|r| checker.check(r).1.allowed())
        .expect("some caller is allowed");
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            let (resp, d) = checker.check(&allowed);
            assert!(d.allowed());
            std::hint::black_box(resp);
        }
    });
    assert_eq!(info.count_total, 0, "the allow path allocated: {info:?}");

    // The counter does see allocations: a deny builds its reason and 403 body.
    let denied = (0..spec.pods)
        .map(|from| {
            check_request_from_json(&synth::request_json(from, 4, &spec, "DELETE", "/x", 8080))
                .unwrap()
        })
        .find(|r| !checker.check(r).1.allowed())
        .expect("some caller is denied");
    let info = allocation_counter::measure(|| {
        std::hint::black_box(checker.check(&denied));
    });
    assert!(info.count_total > 0, "{info:?}");
}

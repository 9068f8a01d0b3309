//! In-process benchmarks: one Check at several cluster sizes (allowed by a first rule, denied
//! at the end of a tier, passed through the security and platform tiers), snapshot compile
//! time, and selector matching. `cargo bench --bench eval`; sizes with `ALP_BENCH_SIZES`
//! (e.g. `10x1000,1000x1000,10000x100000`, policies x pods).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::{hint::black_box, sync::Arc, time::Duration};

use alp_authz::{
    authz::{
        check::{Checker, Settings},
        descriptor::check_request_from_json,
    },
    policy::{selector::Selector, snapshot::Snapshot},
    state::Shared,
    synth::{self, Spec},
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

fn sizes() -> Vec<(usize, usize)> {
    let spec = std::env::var("ALP_BENCH_SIZES")
        .unwrap_or_else(|_| "10x1000,1000x1000,10000x100000".into());
    spec.split(',')
        .filter_map(|s| s.split_once('x'))
        .map(|(p, n)| (p.parse().unwrap(), n.parse().unwrap()))
        .collect()
}

fn spec(policies: usize, pods: usize) -> Spec {
    Spec {
        namespaces: 100.min(pods / 10).max(1),
        pods,
        policies,
        seed: 42,
    }
}

/// A request from pod `from` that the checker decides with the given cause, if any.
fn find(checker: &Checker, s: &Spec, to: usize, method: &str, want: &str) -> Option<CheckRequest> {
    let snap = checker.state().load_full();
    (0..s.pods.min(5_000)).find_map(|from| {
        let r = check_request_from_json(&synth::request_json(
            from,
            to,
            s,
            method,
            "/api/items",
            8080,
        ))
        .ok()?;
        let d = checker.decide(&snap, &r);
        let reason = d.reason(&snap);
        let ok = match want {
            "allow-first-rule" => d.allowed() && d.rule() == Some(0),
            "deny-end-of-tier" => reason.starts_with("denied at the end of tier default"),
            _ => false,
        };
        ok.then_some(r)
    })
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (policies, pods) in sizes() {
        let s = spec(policies, pods);
        let state = Arc::new(Shared::new());
        state.publish(&synth::load(&s).unwrap().store);
        let checker = Checker::new(state, Settings::default());
        // Pod 0 (ns-0, team-0) is selected by a security GNP that passes, so its requests go
        // through the security tier before the default tier decides.
        for (case, method) in [("allow-first-rule", "GET"), ("deny-end-of-tier", "DELETE")] {
            let Some(req) = find(&checker, &s, 0, method, case) else {
                continue;
            };
            g.bench_with_input(
                BenchmarkId::new(case, format!("{policies}x{pods}")),
                &req,
                |b, r| {
                    b.iter(|| black_box(checker.check(black_box(r))));
                },
            );
        }
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (policies, pods) in sizes() {
        let store = synth::load(&spec(policies, pods)).unwrap().store;
        g.bench_with_input(
            BenchmarkId::new("snapshot", format!("{policies}x{pods}")),
            &store,
            |b, st| {
                b.iter(|| black_box(Snapshot::build(st, 1)));
            },
        );
    }
    g.finish();
}

fn selectors(c: &mut Criterion) {
    let labels: &[(&str, &str)] = &[
        ("app", "reviews"),
        ("version", "v2"),
        ("app.kubernetes.io/part-of", "shop"),
        ("projectcalico.org/namespace", "shop"),
        ("projectcalico.org/serviceaccount", "reviews"),
    ];
    let mut g = c.benchmark_group("selector");
    for sel in [
        "app == 'reviews'",
        "app == 'reviews' && version in {'v1', 'v2'} && !has(canary)",
        "(app starts with 'rev' || app.kubernetes.io/part-of == 'shop') && projectcalico.org/namespace != 'kube-system'",
    ] {
        let s = Selector::parse(sel).unwrap();
        g.bench_with_input(BenchmarkId::new("match", sel), &s, |b, s| {
            b.iter(|| black_box(s.matches(black_box(labels))))
        });
        g.bench_with_input(BenchmarkId::new("parse", sel), &sel, |b, sel| {
            b.iter(|| black_box(Selector::parse(black_box(sel))))
        });
    }
    g.finish();
}

criterion_group!(benches, checks, compile, selectors);
criterion_main!(benches);

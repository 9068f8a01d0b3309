//! In-process benchmarks: one Check at several cluster sizes (allowed by a first rule, denied
//! at the end of a tier, passed through the security and platform tiers), snapshot compile
//! time, and selector matching. `cargo bench --bench eval`; sizes with `ALP_BENCH_SIZES`
//! (e.g. `10x1000,1000x1000,10000x100000`, policies x pods).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::{hint::black_box, sync::Arc, time::Duration};

use alp_authz::{
    authz::{
        check::Checker, descriptor::check_request_from_json, explain::explain, settings::Settings,
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

/// The benchmarked cases: what the deciding step must be.
const CASES: [&str; 3] = ["allow-first-rule", "deny-end-of-tier", "pass-3-tiers"];

/// A request (some source pod to some destination pod) that the checker decides as `case`
/// says, and the number of tiers its evaluation visits; `None` if the cluster has none.
/// - `allow-first-rule`: allowed by the first rule of the deciding policy, after as few tiers
///   as the cluster allows (every namespace of the larger clusters is selected by a security
///   and a platform policy, so there that is three);
/// - `deny-end-of-tier`: denied by the default tier's end (no policy allowed it);
/// - `pass-3-tiers`: allowed in the default tier after a Pass in both the security and the
///   platform tier.
fn find(checker: &Checker, s: &Spec, case: &str) -> Option<(CheckRequest, usize)> {
    let snap = checker.state().load_full();
    let mut best: Option<(CheckRequest, usize)> = None;
    for to in 0..s.pods.min(50) {
        for from in 0..s.pods.min(2_000) {
            let method = if case == "deny-end-of-tier" {
                "DELETE"
            } else {
                "GET"
            };
            let json = synth::request_json(from, to, s, method, "/api/items", 8080);
            let Ok(r) = check_request_from_json(&json) else {
                continue;
            };
            let d = checker.decide(&snap, &r);
            let candidate = match case {
                "deny-end-of-tier" => d
                    .reason(&snap)
                    .starts_with("denied at the end of tier default"),
                _ => d.allowed() && d.rule() == Some(0),
            };
            if !candidate {
                continue;
            }
            let trace = explain(checker.settings(), &snap, &r);
            let visited = list(&trace["tiers"]);
            let tiers = visited.len();
            // Whether a rule of tier `name` matched with Pass.
            let passed = |name: &str| {
                visited
                    .iter()
                    .filter(|t| t["tier"] == name)
                    .flat_map(|t| list(&t["policies"]))
                    .flat_map(|p| list(&p["rules"]))
                    .any(|r| r["matched"] == true && r["action"] == "Pass")
            };
            match case {
                "pass-3-tiers" if tiers == 3 && passed("security") && passed("platform") => {
                    return Some((r, tiers));
                }
                "pass-3-tiers" => {}
                "allow-first-rule" if tiers == 1 => return Some((r, tiers)),
                _ if best.as_ref().is_none_or(|(_, t)| tiers < *t) => best = Some((r, tiers)),
                _ => {}
            }
        }
        if case == "deny-end-of-tier" && best.is_some() {
            break;
        }
    }
    best
}

/// An array's elements (none when it is not one).
fn list(v: &serde_json::Value) -> &[serde_json::Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (policies, pods) in sizes() {
        let s = Spec::sized(policies, pods);
        let state = Arc::new(Shared::new());
        state.publish(&synth::load(&s).unwrap().store);
        let checker = Checker::new(state, Settings::default());
        for case in CASES {
            let Some((req, tiers)) = find(&checker, &s, case) else {
                eprintln!("{policies}x{pods}: no request for {case} in this cluster");
                continue;
            };
            eprintln!("{policies}x{pods} {case}: {tiers} tier(s) visited");
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
        let store = synth::load(&Spec::sized(policies, pods)).unwrap().store;
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

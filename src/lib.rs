//! alp-authz: Calico-style application-layer policy for Envoy's external authorization API.
//!
//! ```text
//!  YAML / JSON files (source::file)      Kubernetes API (k8s: watchers → one sync thread,
//!  default state (source::embedded)        k8s::sync::WatchedStore, k8s::status)
//!                 └─────────────────┬─────────────────┘
//!                                   ▼
//!  policy::model      serde types shaped like the Calico / Kubernetes objects
//!  policy::compile    selectors parsed (policy::selector), rules compiled, NetworkPolicies
//!                     converted (policy::cluster_policy), paths normalized (policy::path)
//!  policy::store      objects by key; apply / delete
//!  policy::snapshot   immutable index: tiers, ordered policies, per-class plans, net sets
//!                     (policy::netsets), decision counters (policy::counters); a shadow
//!                     snapshot with the staged policies applied. Its endpoint side (pods by IP
//!                     and name, classes, inherited profile labels) is policy::endpoints, its
//!                     typed indexes policy::index; protocol names/numbers: policy::protocol
//!  state::Shared      ArcSwap<Snapshot>: published whole, read without a lock; readiness
//!
//!  Check:  authz::service (gRPC, tonic) ─┐
//!          `alp-authz check` (app) ──────┴▶ authz::check::Checker
//!            1 identity   authz::request reads the caller's fields from the CheckRequest;
//!                         identity::resolve (principal, certificate, XFCC; identity::cert,
//!                         identity::spiffe, identity::xfcc) decides who is calling
//!            2 request    authz::request: CheckRequest → policy::eval::Request (borrowed)
//!            3 decide     policy::eval::evaluate(&Snapshot, &Request) -> Decision (pure, no
//!                         I/O; policy::decision, in words policy::reason); the staged set
//!                         evaluated beside it, disagreements counted; authz::settings shape it
//!            4 answer     authz::response: Decision → CheckResponse (deny body, headers)
//!            5 record     Snapshot counters, telemetry (latency; /metrics), decision_log
//!  Explain: authz::explain (the trace: every tier, policy and rule evaluated) for
//!           `alp-authz explain` and the Explainer RPC (authz::explain_service, requests in
//!           the short form of authz::short_form)
//!  Serving: authz::server (listeners, TLS in authz::tls, limits in authz::limits, health,
//!           reflection), reloads through poll; cli parses, app wires everything
//!  Tools:   policy_tests (`alp-authz test`), bench (`alp-authz bench`), synth (synthetic
//!           clusters for benchmarks and tests), replay (`alp-authz replay`: a decision log
//!           decided again against proposed state), lint (`alp-authz lint`: static checks over
//!           files or the live state)
//! ```
//!
//! Layers, bottom first; a module imports only its own layer and those below
//! (`tests/layering.rs` fails otherwise, or on an import cycle): `identity`, `poll` →
//! `policy` → `state` → `telemetry`, `decision_log` → `source`, `k8s` → `authz` → tools
//! (`synth`, `bench`, `policy_tests`, `replay`, `lint`) → `cli` → `app`.
//!
//! Start here:
//! - a new policy field or rule criterion: `policy::model` (the field), `policy::compile` (what
//!   it compiles to), `policy::eval` (how it matches); the explain trace in `authz::explain`;
//! - a selector operator: `policy::selector` (lexer, parser, eval);
//! - who the caller is (a new identity source, trust rules): `identity::resolve`;
//! - what Envoy sends or gets back: `authz::request` (in), `authz::response` (out), the
//!   per-request flow in `authz::check`;
//! - a new Kubernetes kind or watch behaviour: `k8s::resource` (the kind), `k8s::sync` (how
//!   updates reach the store), `k8s/mod.rs` (discovery, watchers);
//! - file loading and reloads: `source::file`, `poll`;
//! - a metric: `telemetry` (the encoder), counters in `policy::counters`;
//! - a command-line flag: `cli` (the flag), `app` (what it does);
//! - listeners, TLS, connection limits: `authz::server`, `authz::tls`, `authz::limits`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod authz;
pub mod bench;
pub mod cli;
pub mod decision_log;
pub mod identity;
pub mod k8s;
pub mod lint;
pub mod policy;
pub mod policy_tests;
pub mod poll;
pub mod replay;
pub mod source;
pub mod state;
pub mod synth;
pub mod telemetry;

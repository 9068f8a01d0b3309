//! alp-authz: Calico-style application-layer policy for Envoy's external authorization API.
//!
//! ```text
//!  YAML / JSON files (source::file)    Kubernetes API (k8s: watchers → one sync thread)
//!                 └───────────────┬───────────────┘
//!                                 ▼
//!  step 1  policy::model      serde types shaped like the Calico / Kubernetes objects
//!  step 2  policy::compile    selectors parsed, rules compiled, NetworkPolicies converted
//!          policy::store      objects by key; apply / delete
//!  step 3  policy::snapshot   immutable index: tiers, ordered policies, pods by IP, per-class plans
//!          state::Shared      ArcSwap<Snapshot>: published whole, read without a lock
//!  step 4  policy::eval       evaluate(&Snapshot, &Request) -> Decision   (pure, no I/O)
//!  step 5  authz              CheckRequest → Request (borrowed) → Decision → CheckResponse
//!                             served over gRPC (tonic) and by `alp-authz check`
//! ```
//!
//! Dependency direction: `policy` imports nothing of `authz`, `source`, `k8s` or tonic.

#![forbid(unsafe_code)]

pub mod app;
pub mod authz;
pub mod bench;
pub mod cli;
pub mod decision_log;
pub mod identity;
pub mod k8s;
pub mod policy;
pub mod policy_tests;
pub mod poll;
pub mod source;
pub mod state;
pub mod synth;
pub mod telemetry;

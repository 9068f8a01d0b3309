//! The policy engine: Calico-shaped model, selector language, compiler, snapshot, evaluator.
//! Must not import `authz`, `source`, tonic or Kubernetes-client code, so it can be tested,
//! fuzzed and benchmarked alone.

pub mod cluster_policy;
pub mod compile;
pub mod counters;
pub mod cow;
pub mod decision;
pub mod endpoints;
pub mod eval;
pub mod index;
pub mod model;
pub mod netsets;
pub mod path;
pub mod protocol;
pub mod reason;
pub mod selector;
pub mod snapshot;
pub mod store;

#[cfg(test)]
mod labels_tests;

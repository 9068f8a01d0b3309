//! Snapshots of the explain trace (issue #15 item 8): a request allowed by a rule after a Pass
//! from an earlier tier, one denied at the end of a tier, and one denied at the end of the tier
//! a Pass led to.

use std::{collections::BTreeMap, sync::Arc};

use super::explain;
use crate::{
    authz::{
        check::Checker,
        settings::Settings,
        short_form::{ShortForm, short_request},
    },
    policy::{snapshot::Snapshot, store::Store},
    state::Shared,
};

/// `shop/db` is the destination; `shop/web` and `batch/job` call it. Tier `security` passes
/// `web` on to the default tier and only logs `job`; in the default tier `web` may only `GET`
/// under `/api/`.
const STATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: batch}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {serviceAccountName: db}
status: {phase: Running, podIP: 10.1.0.20}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: web}
status: {phase: Running, podIP: 10.1.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: batch, labels: {app: job}}
spec: {serviceAccountName: job}
status: {phase: Running, podIP: 10.1.1.30}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gate}
spec:
  tier: security
  order: 10
  selector: app == 'db'
  ingress:
  - {action: Pass, source: {selector: app == 'web', namespaceSelector: all()}}
  - {action: Log, source: {selector: app == 'job', namespaceSelector: all()}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-api, namespace: shop}
spec:
  order: 100
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {serviceAccounts: {names: [web]}}
    http: {methods: [GET], paths: [{prefix: /api/}]}
"#;

fn setup() -> (Checker, Arc<Snapshot>) {
    let mut store = Store::new();
    store.apply_yaml(STATE);
    let state = Arc::new(Shared::new());
    let snap = state.publish(&store);
    (Checker::new(state, Settings::default()), snap)
}

fn explained(from: &str, method: &str, path: &str) -> String {
    let (checker, snap) = setup();
    let headers = BTreeMap::new();
    let req = short_request(
        &snap,
        &ShortForm {
            from: Some(from),
            to: Some("shop/db"),
            port: Some(8080),
            method: Some(method),
            path: Some(path),
            headers: &headers,
        },
        "cluster.local",
    )
    .unwrap();
    serde_json::to_string_pretty(&explain(checker.settings(), &snap, &req)).unwrap()
}

#[test]
fn allowed_by_a_rule_after_a_pass() {
    insta::assert_snapshot!(explained("shop/web", "GET", "/api/items"));
}

#[test]
fn denied_at_the_end_of_the_tier_a_pass_led_to() {
    insta::assert_snapshot!(explained("shop/web", "DELETE", "/api/items"));
}

#[test]
fn denied_at_the_end_of_a_tier() {
    insta::assert_snapshot!(explained("batch/job", "GET", "/api/items"));
}

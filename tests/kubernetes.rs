//! `serve --kubernetes` against the in-process fake API server (`tests/fakeapi`), which speaks
//! the real Kubernetes protocol to the real kube client: initial sync and readiness, changes
//! flowing through, API-server outages, expired watches, malformed objects, both Calico APIs,
//! per-node and per-namespace scoping, and the RBAC the manifests grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod fakeapi;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use alp_authz::authz::descriptor::check_request_from_json;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use fakeapi::{Calico, FakeApi, yaml_docs};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long a change may take to reach decisions before a test fails.
const BOUND: Duration = Duration::from_secs(20);

// === the cluster ===

/// A Pod as kube-apiserver returns it (the fields a real, scheduled, running Pod has).
fn pod(ns: &str, name: &str, labels: Value, sa: &str, ip: &str, node: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": format!("{}-", name.rsplit_once('-').map_or(name, |(a, _)| a)),
            "namespace": ns,
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/default-container": "app"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-rs"),
                                 "uid": "3f1d2c4e-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        },
        "spec": {
            "containers": [{
                "name": "app", "image": format!("registry.example/{name}:1"), "imagePullPolicy": "IfNotPresent",
                "ports": ports,
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
            }],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {},
            "serviceAccount": sa, "serviceAccountName": sa, "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-12-01T00:00:05Z"}],
            "hostIP": "192.168.0.10", "hostIPs": [{"ip": "192.168.0.10"}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": "2026-12-01T00:00:00Z", "qosClass": "Burstable",
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "started": true,
                                   "image": format!("registry.example/{name}:1"), "imageID": "",
                                   "containerID": "containerd://0123", "state": {"running": {"startedAt": "2026-12-01T00:00:04Z"}},
                                   "lastState": {}}]
        }
    })
}

fn http_port(port: u16) -> Value {
    json!([{"name": "http", "containerPort": port, "protocol": "TCP"}])
}

/// The shop of `policies/` as a cluster: its Namespaces, ServiceAccounts and policies from the
/// files, and its Pods as the API server would return them.
fn shop(api: &FakeApi) {
    shop_as(api, |doc| doc);
}

/// The shop, with its Calico objects passed through `form` (e.g. [`to_crd_v1`]).
fn shop_as(api: &FakeApi, form: fn(Value) -> Value) {
    for file in ["tiers.yaml", "shop.yaml", "cluster.yaml"] {
        let text = std::fs::read_to_string(common::root().join("policies").join(file)).unwrap();
        for mut doc in yaml_docs(&text) {
            if doc["kind"] == "Pod" {
                continue;
            }
            if doc["kind"] == "Namespace" || doc["kind"] == "ServiceAccount" {
                doc["metadata"]["uid"] = json!(format!("uid-{}", doc["metadata"]["name"]));
            }
            api.apply(form(doc));
        }
    }
    for p in shop_pods() {
        api.apply(p);
    }
}

fn shop_pods() -> Vec<Value> {
    vec![
        pod(
            "shop",
            "frontend-7d4b9",
            json!({"app": "frontend", "version": "v1"}),
            "frontend",
            "10.0.1.10",
            "node-a",
            http_port(8080),
        ),
        pod(
            "shop",
            "productpage-5f6c8",
            json!({"app": "productpage", "version": "v1"}),
            "productpage",
            "10.0.1.20",
            "node-a",
            http_port(9080),
        ),
        pod(
            "shop",
            "reviews-9c2d1",
            json!({"app": "reviews", "version": "v2"}),
            "reviews",
            "10.0.1.30",
            "node-b",
            http_port(9080),
        ),
        pod(
            "shop",
            "legacy-batch-28431",
            json!({"app": "legacy-batch"}),
            "legacy-batch",
            "10.0.1.40",
            "node-b",
            json!([]),
        ),
        pod(
            "ops",
            "oncall-shell",
            json!({"app": "oncall-shell"}),
            "oncall",
            "10.0.9.5",
            "node-a",
            json!([]),
        ),
    ]
}

/// The shop's objects in the `crd.projectcalico.org/v1` storage form of Calico 3.29–3.31:
/// names prefixed with their tier, the v3 metadata in the `projectcalico.org/metadata`
/// annotation, no `tier` defaulting by the CRD.
fn to_crd_v1(mut obj: Value) -> Value {
    let kind = obj["kind"].as_str().unwrap().to_owned();
    if obj["apiVersion"] != "projectcalico.org/v3" {
        return obj;
    }
    obj["apiVersion"] = json!("crd.projectcalico.org/v1");
    if kind == "Tier" {
        return obj;
    }
    let v3_meta = obj["metadata"].clone();
    let name = v3_meta["name"].as_str().unwrap().to_owned();
    let tier = obj["spec"]["tier"].as_str().unwrap_or("default").to_owned();
    let stored = if name.starts_with(&format!("{tier}.")) {
        name
    } else {
        format!("{tier}.{name}")
    };
    obj["metadata"]["name"] = json!(stored);
    obj["metadata"]["annotations"] = json!({"projectcalico.org/metadata": json!({"name": v3_meta["name"], "creationTimestamp": null}).to_string()});
    if tier == "default" {
        // ≤3.31 CRDs do not default `tier`; the Calico API server would have.
        obj["spec"].as_object_mut().unwrap().remove("tier");
    }
    obj
}

// === requests ===

fn request(
    src: &str,
    principal: &str,
    dst: &str,
    port: u16,
    method: &str,
    path: &str,
) -> CheckRequest {
    let json = json!({"attributes": {
        "source": {"address": {"socketAddress": {"address": src, "portValue": 40000}}, "principal": principal},
        "destination": {"address": {"socketAddress": {"address": dst, "portValue": port}}},
        "request": {"http": {"id": "1", "method": method, "path": path, "host": "svc", "scheme": "http", "protocol": "HTTP/1.1",
                             "headers": {":method": method, ":path": path, ":authority": "svc"}}}
    }});
    check_request_from_json(&json.to_string()).unwrap()
}

fn spiffe(ns: &str, sa: &str) -> String {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
}

/// frontend → productpage GET /products/1 (allowed by the shop policy).
fn frontend_get_product() -> CheckRequest {
    request(
        "10.0.1.10",
        &spiffe("shop", "frontend"),
        "10.0.1.20",
        9080,
        "GET",
        "/products/1",
    )
}

/// oncall → productpage GET /products/1 (denied at the end of the default tier).
fn oncall_get_product() -> CheckRequest {
    request(
        "10.0.9.5",
        &spiffe("ops", "oncall"),
        "10.0.1.20",
        9080,
        "GET",
        "/products/1",
    )
}

/// frontend → reviews GET /reviews/1 (allowed).
fn frontend_get_reviews() -> CheckRequest {
    request(
        "10.0.1.10",
        &spiffe("shop", "frontend"),
        "10.0.1.30",
        9080,
        "GET",
        "/reviews/1",
    )
}

/// productpage → oncall-shell (no policy selects it: allowed).
fn to_oncall_shell() -> CheckRequest {
    request(
        "10.0.1.20",
        &spiffe("shop", "productpage"),
        "10.0.9.5",
        8080,
        "GET",
        "/",
    )
}

const OK: i32 = 0;
const DENIED: i32 = 7;

/// The real gRPC client, on a runtime of its own (the tests are synchronous so that the fake
/// API server's own runtime can be driven from them).
struct Client {
    rt: tokio::runtime::Runtime,
    authz: AuthorizationClient<Channel>,
    health: HealthClient<Channel>,
}

impl Client {
    fn connect(server: &common::Server) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(Channel::from_shared(server.url()).unwrap().connect())
            .unwrap();
        Client {
            rt,
            authz: AuthorizationClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }

    /// The CheckResponse's status code, or the gRPC error code.
    fn check(&mut self, req: &CheckRequest) -> Result<i32, tonic::Code> {
        let r = self.rt.block_on(self.authz.check(req.clone()));
        match r {
            Ok(resp) => Ok(resp.into_inner().status.map_or(-1, |s| s.code)),
            Err(status) => Err(status.code()),
        }
    }

    fn health(&mut self, service: &str) -> i32 {
        let r = self.rt.block_on(self.health.check(HealthCheckRequest {
            service: service.into(),
        }));
        r.unwrap().into_inner().status
    }

    /// Polls until `req` gets `want`; returns how long that took.
    fn wait_for(&mut self, req: &CheckRequest, want: i32, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.check(req);
            if got == Ok(want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < BOUND,
                "{what}: still {got:?} after {BOUND:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts `alp-authz serve --kubernetes` against `api`.
fn serve(api: &FakeApi, dir: &tempfile::TempDir, extra: &[&str]) -> common::Server {
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = vec![
        "--kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--kube-probe-interval",
        "0.2",
    ];
    args.extend_from_slice(extra);
    common::Server::start(&args)
}

// === the tests ===

#[test]
fn not_serving_until_every_watch_synced_then_decides_like_file_mode() {
    let api = FakeApi::start(Calico::V3);
    api.stop(); // the API server is not there yet
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    let mut c = Client::connect(&server);
    assert_eq!(c.health(""), 2, "NOT_SERVING before the first sync");
    assert_eq!(c.health("envoy.service.auth.v3.Authorization"), 2);
    assert_eq!(c.health("liveness"), 1, "liveness is SERVING all along");
    assert_eq!(
        c.check(&frontend_get_product()),
        Err(tonic::Code::Unavailable),
        "a Check before the first sync is UNAVAILABLE, for Envoy's failure mode to decide"
    );

    shop(&api);
    api.restart();
    server.wait_for_log("synced with the Kubernetes API");
    // The health service follows readiness asynchronously: give it a moment.
    let started = Instant::now();
    while c.health("") != 1 {
        assert!(
            started.elapsed() < BOUND,
            "still NOT_SERVING after the sync"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.health("envoy.service.auth.v3.Authorization"), 1);

    // Every example request is decided as `alp-authz check` decides it from the files.
    let mut compared = 0;
    for entry in std::fs::read_dir(common::root().join("policies/requests")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (code, _, _) = common::check(&[
            "--state",
            common::root().join("policies").to_str().unwrap(),
            "--request",
            path.to_str().unwrap(),
        ]);
        let want = if code == 0 { OK } else { DENIED };
        let got = c.check(&check_request_from_json(&text).unwrap());
        assert_eq!(got, Ok(want), "{}", path.display());
        compared += 1;
    }
    assert!(compared >= 10, "{compared} requests compared");
}

#[test]
fn policy_added_modified_deleted_and_pod_relabelled() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    let req = frontend_get_product();
    assert_eq!(c.check(&req), Ok(OK));

    // Added: the security tier denies frontend on productpage's port.
    let mut deny = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.freeze-products"},
        "spec": {"tier": "security", "order": 1, "selector": "app == \"productpage\"", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP", "source": {"serviceAccounts": {"names": ["frontend"]}},
                              "destination": {"ports": [9080]}}]}
    });
    api.apply(deny.clone());
    c.wait_for(&req, DENIED, "policy added");
    // Unrelated requests are unaffected.
    assert_eq!(c.check(&frontend_get_reviews()), Ok(OK));

    // Modified: now it only freezes another port.
    deny["spec"]["ingress"][0]["destination"]["ports"] = json!([9443]);
    api.apply(deny);
    c.wait_for(&req, OK, "policy modified");

    // Deleted: the shop's own policy decides again.
    api.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "reviews"}}, "policyTypes": ["Ingress"]}
    }));
    c.wait_for(
        &frontend_get_reviews(),
        OK,
        "the reviews policy decides first",
    );
    assert!(api.delete(
        "projectcalico.org/v3",
        "GlobalNetworkPolicy",
        "",
        "security.freeze-products"
    ));
    assert!(api.delete("projectcalico.org/v3", "NetworkPolicy", "shop", "reviews"));
    // Only the Kubernetes NetworkPolicy (no rules: deny all ingress) selects reviews now.
    c.wait_for(&frontend_get_reviews(), DENIED, "policy deleted");

    // A Pod relabelled: productpage stops matching `app == "productpage"`, so no default-tier
    // policy selects it and the caller that was denied at the end of the tier gets through.
    let oncall = oncall_get_product();
    assert_eq!(c.check(&oncall), Ok(DENIED));
    let mut pp = shop_pods()[1].clone();
    pp["metadata"]["labels"]["app"] = json!("productpage-canary");
    api.apply(pp.clone());
    c.wait_for(&oncall, OK, "pod relabelled");
    pp["metadata"]["labels"]["app"] = json!("productpage");
    api.apply(pp);
    c.wait_for(&oncall, DENIED, "pod relabelled back");

    // A Pod deleted: its IP is an unknown destination.
    api.delete("v1", "Pod", "shop", "productpage-5f6c8");
    c.wait_for(&req, DENIED, "pod deleted");
}

#[test]
fn an_api_server_outage_keeps_the_last_good_state_serving() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = common::free_loopback_addr();
    let server = serve(&api, &dir, &["--metrics", &metrics_addr]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    let before = [
        c.check(&frontend_get_product()),
        c.check(&oncall_get_product()),
        c.check(&frontend_get_reviews()),
        c.check(&to_oncall_shell()),
    ];
    assert_eq!(before, [Ok(OK), Ok(DENIED), Ok(OK), Ok(OK)]);
    let m = common::scrape_metrics(&metrics_addr);
    assert_eq!(
        m.get("alp_authz_kubernetes_apiserver_up").copied(),
        Some(1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("alp_authz_kubernetes_calico_api{api_version=\"projectcalico.org/v3\"}")
            .copied(),
        Some(1.0),
        "{m:?}"
    );
    for resource in [
        "pods",
        "namespaces",
        "tiers.projectcalico.org",
        "networkpolicies.networking.k8s.io",
    ] {
        let synced = format!("alp_authz_kubernetes_watch_synced{{resource=\"{resource}\"}}");
        assert_eq!(m.get(&synced).copied(), Some(1.0), "{synced}\n{m:?}");
    }
    assert_eq!(
        m.get("alp_authz_kubernetes_objects{resource=\"pods\"}")
            .copied(),
        Some(5.0),
        "{m:?}"
    );

    api.stop();
    server.wait_for_log("API server unreachable");
    for _ in 0..20 {
        let now = [
            c.check(&frontend_get_product()),
            c.check(&oncall_get_product()),
            c.check(&frontend_get_reviews()),
            c.check(&to_oncall_shell()),
        ];
        assert_eq!(now, before, "decisions unchanged during the outage");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(c.health(""), 1, "still SERVING during the outage");
    let m = common::scrape_metrics(&metrics_addr);
    assert_eq!(
        m.get("alp_authz_kubernetes_apiserver_up").copied(),
        Some(0.0),
        "{m:?}"
    );
    let age = m
        .get("alp_authz_kubernetes_apiserver_last_contact_age_seconds")
        .copied()
        .unwrap();
    assert!(age > 0.0, "the age of the last contact is reported: {age}");

    api.restart();
    server.wait_for_log("API server reachable again");
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "lockdown", "namespace": "ops"},
        "spec": {"selector": "all()", "ingress": [{"action": "Deny"}]}
    }));
    c.wait_for(&to_oncall_shell(), DENIED, "a change after the restart");
    let m = common::scrape_metrics(&metrics_addr);
    assert_eq!(
        m.get("alp_authz_kubernetes_apiserver_up").copied(),
        Some(1.0),
        "{m:?}"
    );
}

#[test]
fn an_expired_watch_relists_with_nothing_lost() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    assert_eq!(c.check(&frontend_get_reviews()), Ok(OK));
    assert_eq!(c.check(&oncall_get_product()), Ok(DENIED));
    assert_eq!(c.check(&to_oncall_shell()), Ok(OK));
    let lists_before = pod_lists(&api);

    // While the server is away, objects change and the history is compacted: the watches
    // cannot resume from their resourceVersion and must relist.
    api.stop();
    api.delete("v1", "Pod", "shop", "reviews-9c2d1");
    assert!(api.delete(
        "projectcalico.org/v3",
        "NetworkPolicy",
        "shop",
        "productpage"
    ));
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "lockdown", "namespace": "ops"},
        "spec": {"selector": "all()", "ingress": [{"action": "Deny"}]}
    }));
    api.compact();
    api.restart();

    c.wait_for(
        &frontend_get_reviews(),
        DENIED,
        "a pod deleted while the watch was down",
    );
    c.wait_for(
        &oncall_get_product(),
        OK,
        "a policy deleted while the watch was down",
    );
    c.wait_for(
        &to_oncall_shell(),
        DENIED,
        "a policy added while the watch was down",
    );
    assert!(pod_lists(&api) > lists_before, "the pods were listed again");

    // A watch expiring while connected (ERROR 410 on the stream) relists too.
    let lists_before = pod_lists(&api);
    api.apply(pod(
        "ops",
        "oncall-shell-2",
        json!({"app": "oncall-shell"}),
        "oncall",
        "10.0.9.6",
        "node-a",
        json!([]),
    ));
    api.expire_watches();
    let to_new = request(
        "10.0.1.20",
        &spiffe("shop", "productpage"),
        "10.0.9.6",
        8080,
        "GET",
        "/",
    );
    c.wait_for(
        &to_new,
        DENIED,
        "an object added just before the watch expired",
    );
    let started = Instant::now();
    while pod_lists(&api) == lists_before {
        assert!(started.elapsed() < BOUND, "no relist after ERROR 410");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.check(&frontend_get_reviews()), Ok(DENIED));

    // Any other ERROR event (an internal error) is logged and the watch carries on.
    api.watch_error(500);
    server.wait_for_log("watch failed");
    api.delete("projectcalico.org/v3", "NetworkPolicy", "ops", "lockdown");
    c.wait_for(&to_oncall_shell(), OK, "a change after an ERROR event");
}

#[test]
fn a_paginated_list_whose_continue_token_expired_starts_over() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    // Enough pods for three pages of 500.
    for i in 0..1_200 {
        let ip = format!("10.1.{}.{}", i / 250, i % 250);
        api.apply(pod(
            "bulk",
            &format!("bulk-{i:04}"),
            json!({"app": "bulk"}),
            "default",
            &ip,
            "node-a",
            json!([]),
        ));
    }
    api.set_list_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    // Between two pages of the pods list, etcd compacts: the continue token is now too old.
    let started = Instant::now();
    while !api
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/pods" && r.query.contains("continue="))
    {
        assert!(started.elapsed() < BOUND, "no paginated pods list");
        std::thread::sleep(Duration::from_millis(5));
    }
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}}));
    api.compact();
    let started = Instant::now();
    while !api.requests().iter().any(|r| r.status == 410) {
        assert!(started.elapsed() < BOUND, "no 410 Gone");
        std::thread::sleep(Duration::from_millis(5));
    }
    api.set_list_delay(Duration::ZERO);
    server.wait_for_log_within("synced with the Kubernetes API", BOUND);
    // The list started over and completed: every pod is there.
    let mut c = Client::connect(&server);
    let last = request(
        "10.0.1.10",
        &spiffe("shop", "frontend"),
        "10.1.4.199",
        8080,
        "GET",
        "/",
    );
    assert_eq!(c.check(&last), Ok(OK), "the last page's pods are known");
    let fresh_lists = api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/pods" && !r.watch && !r.query.contains("continue="))
        .count();
    assert!(
        fresh_lists >= 2,
        "the list started over after 410: {fresh_lists}"
    );
}

#[test]
fn services_criteria_follow_endpoint_slices() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    // ops accepts only the endpoints of the shop's productpage Service.
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "from-productpage", "namespace": "ops"},
        "spec": {"selector": "all()", "ingress": [
            {"action": "Allow", "source": {"services": {"name": "productpage", "namespace": "shop"}}}
        ]}
    }));
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    assert_eq!(c.check(&to_oncall_shell()), Ok(DENIED), "no endpoints yet");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "productpage-x7k2p", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "productpage", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "productpage", "uid": "5a1e0000-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.1.20"], "conditions": {"ready": true, "serving": true, "terminating": false},
                       "nodeName": "node-a", "targetRef": {"kind": "Pod", "name": "productpage-5f6c8", "namespace": "shop", "uid": "00000000-0000-4000-8000-000000000002"}}],
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]
    });
    api.apply(slice);
    c.wait_for(&to_oncall_shell(), OK, "an EndpointSlice added");
    // Another source is not an endpoint of the Service.
    let from_reviews = request(
        "10.0.1.30",
        &spiffe("shop", "reviews"),
        "10.0.9.5",
        8080,
        "GET",
        "/",
    );
    assert_eq!(c.check(&from_reviews), Ok(DENIED));
    api.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "shop",
        "productpage-x7k2p",
    );
    c.wait_for(&to_oncall_shell(), DENIED, "the EndpointSlice deleted");
}

/// List (not watch) requests for pods the fake has seen.
fn pod_lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| !r.watch && r.path.ends_with("/pods"))
        .count()
}

#[test]
fn malformed_objects_are_logged_fail_closed_and_isolated() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);

    // An unknown action on a policy that selects reviews: reviews is denied, nothing else.
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "maybe"},
        "spec": {"selector": "app == \"reviews\"", "ingress": [{"action": "Maybe"}]}
    }));
    let line = server.wait_for_log("invalid policy");
    assert!(line.contains("maybe"), "the log names the policy: {line}");
    c.wait_for(
        &frontend_get_reviews(),
        DENIED,
        "invalid policy fails closed",
    );
    assert_eq!(
        c.check(&frontend_get_product()),
        Ok(OK),
        "other policies keep working"
    );
    assert_eq!(c.check(&to_oncall_shell()), Ok(OK));

    // A policy whose selector does not parse fails closed on its whole namespace.
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "typo", "namespace": "ops"},
        "spec": {"selector": "app == ", "ingress": [{"action": "Allow"}]}
    }));
    let line = server.wait_for_log("invalid policy");
    assert!(line.contains("ops/typo"), "{line}");
    c.wait_for(
        &to_oncall_shell(),
        DENIED,
        "unparsable selector fails closed",
    );
    assert_eq!(c.check(&frontend_get_product()), Ok(OK));

    // A policy that is not even policy-shaped.
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "garbage", "namespace": "shop"},
        "spec": {"ingress": "allow everything please", "selector": 42}
    }));
    let line = server.wait_for_log("invalid policy");
    assert!(line.contains("shop/garbage"), "{line}");
    c.wait_for(
        &frontend_get_product(),
        DENIED,
        "a malformed policy fails closed",
    );

    // A Pod with a bad IP is skipped (logged); the others stay.
    let mut bad = pod(
        "ops",
        "broken",
        json!({"app": "x"}),
        "oncall",
        "10.0.9.7",
        "node-a",
        json!([]),
    );
    bad["status"]["podIP"] = json!("10.0.9.300");
    bad["status"]["podIPs"] = json!([{"ip": "10.0.9.300"}]);
    api.apply(bad);
    let line = server.wait_for_log("object skipped");
    assert!(line.contains("broken"), "{line}");

    // Fixed, everything is back.
    api.delete("projectcalico.org/v3", "GlobalNetworkPolicy", "", "maybe");
    api.delete("projectcalico.org/v3", "NetworkPolicy", "ops", "typo");
    api.delete("projectcalico.org/v3", "NetworkPolicy", "shop", "garbage");
    c.wait_for(&frontend_get_reviews(), OK, "fixed");
    c.wait_for(&to_oncall_shell(), OK, "fixed");
    c.wait_for(&frontend_get_product(), OK, "fixed");
}

#[test]
fn crd_v1_storage_objects_of_calico_3_31_decide_like_v3() {
    let api = FakeApi::start(Calico::Crd);
    let v3 = FakeApi::start(Calico::V3);
    shop(&v3);
    // The same objects in storage form.
    shop_as(&api, to_crd_v1);
    let dir = tempfile::tempdir().unwrap();
    let crd_server = serve(&api, &dir, &["--decision-header", "x-decision"]);
    crd_server.wait_for_log("synced with the Kubernetes API");
    let dir3 = tempfile::tempdir().unwrap();
    let v3_server = serve(&v3, &dir3, &[]);
    v3_server.wait_for_log("synced with the Kubernetes API");
    let mut crd = Client::connect(&crd_server);
    let mut v3c = Client::connect(&v3_server);
    for req in [
        frontend_get_product(),
        oncall_get_product(),
        frontend_get_reviews(),
        to_oncall_shell(),
        request(
            "10.0.1.40",
            &spiffe("shop", "legacy-batch"),
            "10.0.1.20",
            9080,
            "GET",
            "/products/1",
        ),
        request(
            "10.0.9.5",
            &spiffe("ops", "oncall"),
            "10.0.1.20",
            9080,
            "POST",
            "/admin/flush",
        ),
    ] {
        assert_eq!(crd.check(&req), v3c.check(&req), "{req:?}");
    }
    // The policy that decided is named by its v3 name, not the storage name.
    let resp = crd
        .rt
        .block_on(crd.authz.check(frontend_get_product()))
        .unwrap()
        .into_inner();
    let decision = format!("{resp:?}");
    assert!(decision.contains("policy=shop/productpage"), "{decision}");
    assert!(!decision.contains("default.productpage"), "{decision}");
    // Only the v1 group was read.
    assert!(
        api.requests()
            .iter()
            .all(|r| !r.path.starts_with("/apis/projectcalico.org"))
    );
}

#[test]
fn auto_prefers_v3_and_the_flag_overrides_it() {
    let api = FakeApi::start(Calico::Both);
    shop(&api);
    // A conflicting object only in the storage group: it must not be read when v3 is served.
    api.apply(json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "default.deny-everything"},
        "spec": {"selector": "all()", "ingress": [{"action": "Deny"}]}
    }));
    let dir = tempfile::tempdir().unwrap();
    let auto = serve(&api, &dir, &[]);
    let line = auto.wait_for_log("watching the Kubernetes API");
    assert!(line.contains("projectcalico.org/v3"), "{line}");
    auto.wait_for_log("synced with the Kubernetes API");
    assert_eq!(Client::connect(&auto).check(&to_oncall_shell()), Ok(OK));
    drop(auto);

    let forced = serve(&api, &dir, &["--calico-api", "crd"]);
    let line = forced.wait_for_log("watching the Kubernetes API");
    assert!(line.contains("crd.projectcalico.org/v1"), "{line}");
    forced.wait_for_log("synced with the Kubernetes API");
    assert_eq!(
        Client::connect(&forced).check(&to_oncall_shell()),
        Ok(DENIED)
    );
}

#[test]
fn per_node_and_per_namespace_deployments_watch_less() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&api, &dir, &["--node", "node-a"]);
    node.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&node);
    assert_eq!(
        c.check(&frontend_get_product()),
        Ok(OK),
        "productpage is on node-a"
    );
    assert_eq!(
        c.check(&frontend_get_reviews()),
        Ok(DENIED),
        "reviews is on node-b: not a destination here (unknown destination)"
    );
    // Every Pod is watched (Felix's IP sets know every workload): a caller on node-b is known
    // by its address, so legacy-batch's pod presenting frontend's certificate is a mismatch.
    let spoofed = request(
        "10.0.1.40",
        &spiffe("shop", "frontend"),
        "10.0.1.20",
        9080,
        "GET",
        "/products/1",
    );
    assert_eq!(
        c.check(&spoofed),
        Ok(DENIED),
        "legacy-batch (node-b) is a known pod that is not frontend"
    );
    let pods: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(
        !pods.is_empty() && pods.iter().all(|r| !r.query.contains("fieldSelector")),
        "pods are listed cluster-wide, with no node field selector: {pods:?}"
    );
    drop(node);

    let before = api.requests().len();
    let ns = serve(&api, &dir, &["--namespace", "shop"]);
    ns.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&ns);
    assert_eq!(c.check(&frontend_get_product()), Ok(OK));
    assert_eq!(
        c.check(&to_oncall_shell()),
        Ok(DENIED),
        "ops pods are not watched"
    );
    let paths: BTreeSet<String> = api.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    for namespaced in ["pods", "serviceaccounts", "networkpolicies"] {
        assert!(
            paths.iter().all(|p| !p.ends_with(&format!("/{namespaced}")) || p.contains("/namespaces/shop/")),
            "{namespaced} only in shop: {paths:?}"
        );
    }
    assert!(
        paths.contains("/api/v1/namespaces"),
        "namespaces are cluster-wide: {paths:?}"
    );
}

#[test]
fn the_cluster_role_grants_exactly_what_is_watched() {
    // Every (group, resource) a server reads, with each Calico API.
    let mut read: BTreeSet<(String, String)> = BTreeSet::new();
    for calico in [Calico::V3, Calico::Crd] {
        let api = FakeApi::start(calico);
        shop_as(
            &api,
            if calico == Calico::Crd {
                to_crd_v1
            } else {
                |d| d
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let server = serve(&api, &dir, &[]);
        server.wait_for_log("synced with the Kubernetes API");
        for r in api.requests() {
            let seg: Vec<&str> = r.path.trim_matches('/').split('/').collect();
            let (group, resource) = match seg.as_slice() {
                ["api", "v1", .., res] if seg.len() > 2 => ("", *res),
                ["apis", g, _, .., res] if seg.len() > 3 => (*g, *res),
                _ => continue, // discovery
            };
            read.insert((group.to_owned(), resource.to_owned()));
        }
    }
    // What istio-config/rbac.yaml grants, and with which verbs.
    let text = std::fs::read_to_string(common::root().join("istio-config/rbac.yaml"))
        .expect("istio-config/rbac.yaml");
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for doc in yaml_docs(&text)
        .into_iter()
        .filter(|d| d["kind"] == "ClusterRole")
    {
        for rule in doc["rules"].as_array().unwrap() {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "no non-resource URLs: {rule}"
            );
            if rule["apiGroups"] == json!(["events.k8s.io"]) {
                // The one write, not a read: Events on invalid policies (k8s::events).
                assert_eq!(rule["resources"], json!(["events"]), "{rule}");
                assert_eq!(rule["verbs"], json!(["create"]), "{rule}");
                continue;
            }
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    let verbs = granted
                        .entry((
                            g.as_str().unwrap().to_owned(),
                            r.as_str().unwrap().to_owned(),
                        ))
                        .or_default();
                    for v in rule["verbs"].as_array().unwrap() {
                        verbs.insert(v.as_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    let granted_keys: BTreeSet<_> = granted.keys().cloned().collect();
    // The staged kinds are served by both groups; every watched one must be granted, and
    // nothing else.
    assert_eq!(
        granted_keys, read,
        "the ClusterRole must grant exactly what the server reads"
    );
    for (k, verbs) in &granted {
        let want: BTreeSet<String> = ["get", "list", "watch"].map(String::from).into();
        assert_eq!(verbs, &want, "{k:?}: read-only verbs");
    }
}

#[test]
fn a_kubeconfig_that_cannot_work_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "clusters: [this is not a kubeconfig").unwrap();
    for path in [&missing, &garbage] {
        let out = std::process::Command::new(common::bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--kubernetes",
                "--kubeconfig",
            ])
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("kubeconfig"), "{stderr}");
    }
}

#[test]
fn cluster_network_policies_are_watched_when_served_and_decide_in_kube_admin() {
    // Served: a ClusterNetworkPolicy in the Admin tier (kube-admin, before every Calico tier)
    // denies frontend on productpage, and is watched (added, then deleted).
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    let req = frontend_get_product();
    assert_eq!(c.check(&req), Ok(OK));
    api.apply(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "freeze-products"},
        "spec": {"tier": "Admin", "priority": 5,
                 "subject": {"pods": {"namespaceSelector": {},
                                      "podSelector": {"matchLabels": {"app": "productpage"}}}},
                 "ingress": [{"name": "no-frontend", "action": "Deny",
                              "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "frontend"}}}}]}]}
    }));
    c.wait_for(&req, DENIED, "ClusterNetworkPolicy added");
    assert_eq!(c.check(&frontend_get_reviews()), Ok(OK), "only productpage");
    assert!(api.delete(
        "policy.networking.k8s.io/v1alpha2",
        "ClusterNetworkPolicy",
        "",
        "freeze-products"
    ));
    c.wait_for(&req, OK, "ClusterNetworkPolicy deleted");
    assert_watched(
        &api,
        &[
            "/clusternetworkpolicies",
            "/adminnetworkpolicies",
            "/baselineadminnetworkpolicies",
        ],
    );

    // Not served: not watched, and the server still syncs.
    let bare = FakeApi::start_with(Calico::V3, false);
    shop(&bare);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&bare, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    assert!(
        bare.requests()
            .iter()
            .all(|r| !r.path.contains("policy.networking.k8s.io")),
        "nothing of policy.networking.k8s.io is asked for when it is not served"
    );
}

#[test]
fn network_sets_are_watched_and_select_source_addresses() {
    // A GlobalNetworkPolicy first in the default tier denies sources in sets labelled `blocked`; a
    // GlobalNetworkSet, then a NetworkSet in `shop`, holding frontend's address take effect
    // when added and lapse when deleted (Felix's IP sets hold network sets' nets).
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    api.apply(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "block-sets"},
        "spec": {"order": 1, "selector": "all()", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "source": {"selector": "blocked == 'yes'"}},
                             {"action": "Pass"}]}
    }));
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&api, &dir, &[]);
    server.wait_for_log("synced with the Kubernetes API");
    let mut c = Client::connect(&server);
    let req = frontend_get_product();
    assert_eq!(c.check(&req), Ok(OK));
    for (kind, ns) in [("GlobalNetworkSet", None), ("NetworkSet", Some("shop"))] {
        let mut meta = json!({"name": "blocked", "labels": {"blocked": "yes"}});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        api.apply(json!({
            "apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta,
            "spec": {"nets": ["10.0.1.0/28"]}
        }));
        c.wait_for(&req, DENIED, &format!("{kind} added"));
        assert!(api.delete("projectcalico.org/v3", kind, ns.unwrap_or(""), "blocked"));
        c.wait_for(&req, OK, &format!("{kind} deleted"));
    }
    assert_watched(&api, &["/networksets", "/globalnetworksets"]);
}

/// Every one of `plurals` (with a leading `/`) was read from `api`.
fn assert_watched(api: &FakeApi, plurals: &[&str]) {
    let paths: BTreeSet<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    for plural in plurals {
        assert!(
            paths.iter().any(|p| p.ends_with(plural)),
            "{plural} watched: {paths:?}"
        );
    }
}

/// `alp-authz lint --kubernetes`: discovery and one list per resource (no watch), decoded as
/// `serve` decodes them, the same checks as on files, and findings that name the objects.
#[test]
fn lint_lists_the_state_once_and_names_the_objects() {
    let api = FakeApi::start(Calico::V3);
    shop(&api);
    // A rule its own first rule shadows, a policy that selects no pod, a staged policy.
    api.apply_yaml(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: shadow, namespace: shop}\nspec:\n  order: 200\n  selector: app == 'reviews'\n  types: [Ingress]\n  ingress:\n  - {action: Deny, source: {nets: [10.99.0.0/16]}}\n  - {action: Deny, source: {nets: [10.99.1.0/24]}}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: ghost}\nspec: {selector: app == 'ghost', types: [Ingress], ingress: [{action: Deny}]}\n---\napiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: rollout, namespace: shop, creationTimestamp: '2020-01-01T00:00:00Z'}\nspec: {selector: app == 'reviews', types: [Ingress], ingress: [{action: Deny}]}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let lint = |extra: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(["lint", "--kubernetes", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, out) = lint(&["--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let found: BTreeSet<(String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(
                f["file"].is_null() && f["document"].is_null() && f["line"].is_null(),
                "{f}"
            );
            (
                f["code"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}/{}",
                    f["kind"].as_str().unwrap(),
                    f["namespace"].as_str().unwrap_or(""),
                    f["name"].as_str().unwrap()
                ),
                f["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    let prefix = |name: &str, rule: usize| {
        s(
            "path-prefix-legacy",
            &format!("NetworkPolicy shop/{name}"),
            &format!("spec.ingress[{rule}].http.paths[0].prefix"),
        )
    };
    assert_eq!(
        found,
        BTreeSet::from([
            s(
                "shadowed-rule",
                "NetworkPolicy shop/shadow",
                "spec.ingress[1]"
            ),
            s(
                "selects-nothing",
                "GlobalNetworkPolicy /ghost",
                "spec.selector"
            ),
            s(
                "staged-too-long",
                "StagedNetworkPolicy shop/rollout",
                "metadata.creationTimestamp"
            ),
            prefix("productpage", 0),
            prefix("productpage", 1),
            prefix("reviews", 0),
        ]),
        "{out}"
    );
    // One list per resource, never a watch.
    let requests = api.requests();
    assert!(requests.iter().all(|r| !r.watch), "{requests:?}");
    for path in ["/api/v1/pods", "/apis/projectcalico.org/v3/networkpolicies"] {
        assert_eq!(
            requests.iter().filter(|r| r.path == path).count(),
            1,
            "{path}: {requests:?}"
        );
    }
    // With `--namespace`, pods of other namespaces are not listed: a global policy is not said
    // to select nothing, the namespace's own findings still are.
    let (code, out) = lint(&["--namespace", "shop"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("GlobalNetworkPolicy ghost"), "{out}");
    assert!(
        out.contains("[shadowed-rule]: NetworkPolicy shop/shadow"),
        "{out}"
    );
    // The text form names the object instead of a file.
    let (code, out) = lint(&[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("warning[shadowed-rule]: NetworkPolicy shop/shadow spec.ingress[1]: rule 1 (Deny) never decides"),
        "{out}"
    );
    // No API server: exit 2, said as a finding.
    api.stop();
    let (code, out) = lint(&[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("error[load-error]"), "{out}");
}

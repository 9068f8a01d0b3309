//! `serve --kubernetes` against a real kube-apiserver and etcd, built from their Go modules by
//! `tests/cluster/build` and started by `tests/cluster/run` (which sets `ALP_CLUSTER` to the
//! cluster's state directory). Without `ALP_CLUSTER` every test here says so and passes without
//! checking anything: `cargo test` on a machine without Go stays green, and the suite of record
//! is `tests/cluster/run`, which fails if no test ran against the cluster.
//!
//! The server always reads the API with the ServiceAccount token of `istio-config/`'s RBAC,
//! minted through the TokenRequest API: every test is also a test of the shipped ClusterRole.
//! The tests share one cluster: `tests/cluster/run` runs them one at a time, each in namespaces
//! of its own (a namespace cannot be deleted without kube-controller-manager's namespace
//! controller, so none is), and each removes what it created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use alp_authz::authz::descriptor::check_request_from_json;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, authorization_client::AuthorizationClient,
};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::ApiResource,
};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long a change may take to reach decisions before a test fails.
const BOUND: Duration = Duration::from_secs(30);
/// After an outage of tens of seconds: the watchers' backoff has grown towards its 30 s cap
/// (kube-runtime's default, with jitter), so the first retry that succeeds may be that far off.
const AFTER_OUTAGE: Duration = Duration::from_secs(90);
const OK: i32 = 0;
const DENIED: i32 = 7;
const MANAGER: &str = "alp-authz-tests";

// === the cluster ===

/// The running cluster `tests/cluster/run` started: its `env` file and an admin client.
struct Cluster {
    dir: PathBuf,
    env: HashMap<String, String>,
    rt: tokio::runtime::Runtime,
    admin: kube::Client,
    /// Objects this test created, deleted on drop (newest first).
    created: std::cell::RefCell<Vec<Value>>,
}

impl Cluster {
    /// The cluster, or `None` (with a message) when `ALP_CLUSTER` is not set.
    fn get(test: &str) -> Option<Cluster> {
        let Some(dir) = std::env::var_os("ALP_CLUSTER").map(PathBuf::from) else {
            eprintln!(
                "{test}: skipped: no cluster (ALP_CLUSTER unset); run tests/cluster/run for the real kube-apiserver suite"
            );
            return None;
        };
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let admin = rt.block_on(client(&dir.join("admin.kubeconfig")));
        Some(Cluster {
            dir,
            env,
            rt,
            admin,
            created: Default::default(),
        })
    }

    fn env(&self, key: &str) -> &str {
        &self.env[key]
    }

    /// The (apiVersion, kind) pairs of `policy.networking.k8s.io` that the installed
    /// network-policy-api CRDs serve (`tests/cluster/cluster` found them in discovery): empty
    /// when none is installed (`NETWORK_POLICY_API_MODULES=none`).
    fn network_policy_api_served(&self) -> BTreeSet<(String, String)> {
        let kind = |plural: &str| match plural {
            "clusternetworkpolicies" => "ClusterNetworkPolicy",
            "adminnetworkpolicies" => "AdminNetworkPolicy",
            "baselineadminnetworkpolicies" => "BaselineAdminNetworkPolicy",
            other => panic!("an unexpected network-policy-api resource {other}"),
        };
        self.env
            .get("NETWORK_POLICY_API_SERVED")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (gv, plural) = s.rsplit_once('/').unwrap();
                (gv.to_owned(), kind(plural).to_owned())
            })
            .collect()
    }

    /// `obj` as the API server holds it now.
    fn stored(&self, obj: &Value) -> Value {
        let name = obj["metadata"]["name"].as_str().unwrap();
        serde_json::to_value(self.rt.block_on(self.api(obj).get(name)).unwrap()).unwrap()
    }

    /// Runs `tests/cluster/cluster CMD DIR ARGS…` (faults: stop, start, compact).
    fn ctl(&self, cmd: &str, args: &[&str]) -> String {
        let out = Command::new(common::root().join("tests/cluster/cluster"))
            .arg(cmd)
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn api_for(&self, client: &kube::Client, obj: &Value) -> Api<DynamicObject> {
        let (api_version, kind) = (
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        );
        let (plural, namespaced) = resource_of(api_version, kind);
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        if namespaced {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        }
    }

    fn api(&self, obj: &Value) -> Api<DynamicObject> {
        self.api_for(&self.admin, obj)
    }

    /// Creates or updates `obj` (server-side apply, as `kubectl apply --server-side`), creating
    /// its namespace first. A Pod is then bound to its `spec.nodeName` (the scheduler's
    /// `binding` subresource) and given its `status` (the status subresource), as the scheduler
    /// and kubelet would. Returns the object as the API server stored it.
    fn apply(&self, obj: Value) -> Value {
        self.try_apply(obj.clone())
            .unwrap_or_else(|e| panic!("apply {obj}: {e}"))
    }

    fn try_apply(&self, mut obj: Value) -> Result<Value, kube::Error> {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            self.ensure_namespace(ns);
        }
        let is_pod = obj["kind"] == "Pod";
        let (status, node) = if is_pod {
            let sa = obj["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            self.ensure(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": sa, "namespace": ns}}));
            let node = obj["spec"]
                .as_object_mut()
                .and_then(|s| s.remove("nodeName"));
            (obj.as_object_mut().unwrap().remove("status"), node)
        } else {
            (None, None)
        };
        let api = self.api(&obj);
        let pp = PatchParams::apply(MANAGER).force();
        let stored = self
            .rt
            .block_on(api.patch(&name, &pp, &Patch::Apply(&obj)))?;
        self.remember(&obj);
        if let Some(Value::String(node)) = node
            && stored.data["spec"]["nodeName"].is_null()
        {
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                                 "metadata": {"name": name},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let _: Value = self.rt.block_on(api.create_subresource(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            ))?;
        }
        if let Some(status) = status {
            let stored = self.rt.block_on(api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            ))?;
            return Ok(serde_json::to_value(stored).unwrap());
        }
        Ok(serde_json::to_value(stored).unwrap())
    }

    /// Creates `obj` (a plain POST, as `kubectl create` or Calico's clients send it).
    fn create(&self, obj: Value) -> Result<Value, kube::Error> {
        let api = self.api(&obj);
        let created = self.rt.block_on(api.create(
            &PostParams::default(),
            &serde_json::from_value(obj.clone()).unwrap(),
        ))?;
        self.remember(&obj);
        Ok(serde_json::to_value(created).unwrap())
    }

    /// Creates `obj` if it does not exist (another field manager: it never takes fields a
    /// test applied).
    fn ensure(&self, obj: Value) {
        let api = self.api(&obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        if self.rt.block_on(api.get_opt(name)).unwrap().is_none() {
            match self.rt.block_on(api.create(
                &PostParams::default(),
                &serde_json::from_value(obj.clone()).unwrap(),
            )) {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("create {obj}: {e}"),
            }
            if obj["kind"] != "Namespace" {
                self.remember(&obj);
            }
        }
    }

    fn ensure_namespace(&self, ns: &str) {
        self.ensure(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }

    fn remember(&self, obj: &Value) {
        if obj["kind"] == "Namespace" {
            return;
        }
        let key = |o: &Value| {
            (
                o["apiVersion"].clone(),
                o["kind"].clone(),
                o["metadata"]["namespace"].clone(),
                o["metadata"]["name"].clone(),
            )
        };
        let mut created = self.created.borrow_mut();
        if !created.iter().any(|o| key(o) == key(obj)) {
            created.push(obj.clone());
        }
    }

    /// Deletes `obj` at once (a Pod with grace period 0: no kubelet will confirm it).
    fn delete(&self, obj: &Value) {
        if let Err(e) = self.try_delete(obj) {
            panic!("delete {obj}: {e}");
        }
    }

    fn try_delete(&self, obj: &Value) -> Result<(), kube::Error> {
        let api = self.api(obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match self.rt.block_on(api.delete(name, &dp)) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes everything this test created so far.
    fn clean(&self) {
        let created = std::mem::take(&mut *self.created.borrow_mut());
        for obj in created.iter().rev() {
            if let Err(e) = self.try_delete(obj) {
                eprintln!("cleaning up {obj}: {e}");
            }
        }
    }

    /// Merge-patches a Namespace's or another object's metadata labels (`null` removes one).
    fn label(&self, obj: &Value, labels: Value) {
        let api = self.api(obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        self.rt
            .block_on(api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": labels}})),
            ))
            .unwrap();
    }

    /// The ServiceAccount, ClusterRoles and bindings of `istio-config/`, applied as shipped
    /// (or with `edit` applied to the ClusterRole `alp-authz` first); then a token for the
    /// ServiceAccount from the TokenRequest API, in a kubeconfig that holds nothing else.
    fn alp_kubeconfig(&self, dir: &Path, edit: impl Fn(&mut Value)) -> PathBuf {
        self.apply_rbac(edit);
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.admin.clone(), "alp-system");
        let request = k8s_openapi::api::authentication::v1::TokenRequest {
            spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = self
            .rt
            .block_on(sa.create_token_request("alp-authz", &PostParams::default(), &request))
            .unwrap()
            .status
            .unwrap()
            .token;
        let ca = std::fs::read(self.env("CA")).unwrap();
        let path = dir.join("alp-authz.kubeconfig");
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.env("APISERVER_URL"),
                          "certificate-authority-data": base64(&ca)}}],
            "users": [{"name": "alp-authz", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "alp-authz"}}],
            "current-context": "test"
        });
        std::fs::write(&path, kubeconfig.to_string()).unwrap();
        path
    }

    fn apply_rbac(&self, edit: impl Fn(&mut Value)) {
        for file in [
            "namespace.yaml",
            "serviceaccount.yaml",
            "rbac.yaml",
            "rbac-calico-apiserver.yaml",
        ] {
            let text =
                std::fs::read_to_string(common::root().join("istio-config").join(file)).unwrap();
            for mut doc in yaml_docs(&text) {
                if doc["kind"] == "ClusterRole" && doc["metadata"]["name"] == "alp-authz" {
                    edit(&mut doc);
                }
                let api = self.api(&doc);
                let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
                self.rt
                    .block_on(api.patch(
                        &name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(&doc),
                    ))
                    .unwrap();
            }
        }
    }

    /// `alp-authz serve --kubernetes` with the ServiceAccount's kubeconfig.
    fn serve(&self, dir: &tempfile::TempDir, extra: &[&str]) -> common::Server {
        let kubeconfig = self.alp_kubeconfig(dir.path(), |_| {});
        serve_with(&kubeconfig, extra)
    }

    /// [`Cluster::serve`], then waits for the first sync and connects a gRPC client.
    fn serve_synced(&self, dir: &tempfile::TempDir, extra: &[&str]) -> (common::Server, Grpc) {
        let server = self.serve(dir, extra);
        server.wait_for_log("synced with the Kubernetes API");
        let g = Grpc::connect(&server);
        (server, g)
    }

    /// Applies every object, in order.
    fn apply_all(&self, objects: &[Value]) {
        for o in objects {
            self.apply(o.clone());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Also after a failure: the next test must not find this one's global policies.
        self.clean();
    }
}

fn serve_with(kubeconfig: &Path, extra: &[&str]) -> common::Server {
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

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn resource_of(api_version: &str, kind: &str) -> (&'static str, bool) {
    match (api_version, kind) {
        ("v1", "Namespace") => ("namespaces", false),
        ("v1", "Node") => ("nodes", false),
        ("v1", "ServiceAccount") => ("serviceaccounts", true),
        ("v1", "Pod") => ("pods", true),
        ("v1", "Service") => ("services", true),
        ("networking.k8s.io/v1", "NetworkPolicy") => ("networkpolicies", true),
        ("discovery.k8s.io/v1", "EndpointSlice") => ("endpointslices", true),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => ("clusterroles", false),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => ("clusterrolebindings", false),
        (_, "GlobalNetworkPolicy") => ("globalnetworkpolicies", false),
        (_, "NetworkPolicy") => ("networkpolicies", true),
        (_, "Tier") => ("tiers", false),
        (_, "StagedGlobalNetworkPolicy") => ("stagedglobalnetworkpolicies", false),
        (_, "StagedNetworkPolicy") => ("stagednetworkpolicies", true),
        (_, "StagedKubernetesNetworkPolicy") => ("stagedkubernetesnetworkpolicies", true),
        (_, "ClusterNetworkPolicy") => ("clusternetworkpolicies", false),
        (_, "AdminNetworkPolicy") => ("adminnetworkpolicies", false),
        (_, "BaselineAdminNetworkPolicy") => ("baselineadminnetworkpolicies", false),
        _ => panic!("no resource for {api_version} {kind}"),
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The documents of a YAML text, as JSON values.
fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// A `projectcalico.org/v3` object in the `crd.projectcalico.org/v1` storage form the installed
/// CRDs serve: the name prefixed with its tier (`default.`), the v3 name in the
/// `projectcalico.org/metadata` annotation. Other objects are returned as they are.
fn to_crd_v1(mut obj: Value) -> Value {
    if obj["apiVersion"] != "projectcalico.org/v3" {
        return obj;
    }
    obj["apiVersion"] = json!("crd.projectcalico.org/v1");
    if obj["kind"] == "Tier" {
        return obj;
    }
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    let tier = obj["spec"]["tier"].as_str().unwrap_or("default").to_owned();
    let stored = if name.starts_with(&format!("{tier}.")) {
        name.clone()
    } else {
        format!("{tier}.{name}")
    };
    obj["metadata"]["name"] = json!(stored);
    obj["metadata"]["annotations"] = json!({"projectcalico.org/metadata":
        json!({"name": name, "creationTimestamp": null}).to_string()});
    obj
}

// === objects ===

fn pod(ns: &str, name: &str, labels: Value, sa: &str, ip: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"serviceAccountName": sa, "nodeName": node,
                 "containers": [{"name": "app", "image": "registry.example/app:1",
                                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}],
                   "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
           "labels": {"kubernetes.io/hostname": name}}})
}

fn gnp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": format!("default.{name}"),
                        "annotations": {"projectcalico.org/metadata": json!({"name": name}).to_string()}},
           "spec": spec})
}

fn cnp(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
           "metadata": {"name": format!("default.{name}"), "namespace": ns,
                        "annotations": {"projectcalico.org/metadata": json!({"name": name, "namespace": ns}).to_string()}},
           "spec": spec})
}

/// A request from `src` (its pod IP, and its SPIFFE ID in trust domain `cluster.local`) to
/// `dst`.
fn request(src: (&str, &str, &str), dst: &str, port: u16, method: &str, path: &str) -> Req {
    let (ip, ns, sa) = src;
    let json = json!({"attributes": {
        "source": {"address": {"socketAddress": {"address": ip, "portValue": 40000}},
                   "principal": format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")},
        "destination": {"address": {"socketAddress": {"address": dst, "portValue": port}}},
        "request": {"http": {"id": "1", "method": method, "path": path, "host": "svc", "scheme": "http",
                             "protocol": "HTTP/1.1", "headers": {":method": method, ":path": path, ":authority": "svc"}}}
    }});
    Req::new(json)
}

/// A CheckRequest and its JSON (for `alp-authz check --request`).
#[derive(Debug)]
struct Req {
    json: Value,
    msg: CheckRequest,
}

impl Req {
    fn new(json: Value) -> Req {
        let msg = check_request_from_json(&json.to_string()).unwrap();
        Req { json, msg }
    }
}

/// The real gRPC client on a runtime of its own.
struct Grpc {
    rt: tokio::runtime::Runtime,
    authz: AuthorizationClient<Channel>,
    health: HealthClient<Channel>,
}

impl Grpc {
    fn connect(server: &common::Server) -> Grpc {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(Channel::from_shared(server.url()).unwrap().connect())
            .unwrap();
        Grpc {
            rt,
            authz: AuthorizationClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }

    fn check(&mut self, req: &Req) -> Result<i32, tonic::Code> {
        match self.rt.block_on(self.authz.check(req.msg.clone())) {
            Ok(resp) => Ok(resp.into_inner().status.map_or(-1, |s| s.code)),
            Err(status) => Err(status.code()),
        }
    }

    fn health(&mut self, service: &str) -> i32 {
        self.rt
            .block_on(self.health.check(HealthCheckRequest {
                service: service.into(),
            }))
            .unwrap()
            .into_inner()
            .status
    }

    fn wait_for(&mut self, req: &Req, want: i32, what: &str) -> Duration {
        self.wait_for_within(req, want, what, BOUND)
    }

    fn wait_for_within(&mut self, req: &Req, want: i32, what: &str, bound: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.check(req);
            if got == Ok(want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < bound,
                "{what}: still {got:?} after {bound:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_health(&mut self, want: i32, what: &str) {
        let started = Instant::now();
        while self.health("") != want {
            assert!(started.elapsed() < BOUND, "{what}: health never {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What `alp-authz check --state` decides for `req` on `objects` (v3 and v1 objects, as files
/// hold them): OK or DENIED.
fn file_mode(objects: &[Value], req: &Req) -> i32 {
    file_mode_with(objects, req, &[])
}

/// [`file_mode`] with more `check` arguments.
fn file_mode_with(objects: &[Value], req: &Req, extra: &[&str]) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&state, list.to_string()).unwrap();
    let request = dir.path().join("request.json");
    std::fs::write(&request, req.json.to_string()).unwrap();
    let mut args = vec![
        "--state",
        state.to_str().unwrap(),
        "--request",
        request.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = common::check(&args);
    assert!(code == 0 || code == 1, "check failed: {out}{err}");
    if code == 0 { OK } else { DENIED }
}

// === the tests ===

/// A small shop in namespace `ns`, in the default tier (the installed Calico 3.28 CRDs have no
/// Tier kind): frontend may GET productpage; productpage's namespace denies the rest.
fn shop(ns: &str, net: u8) -> (Vec<Value>, [String; 3]) {
    let ip = |i: u8| format!("10.{net}.0.{i}");
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": "shop"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "frontend", "namespace": ns, "labels": {"role": "web"}}}),
        pod(
            ns,
            "frontend",
            json!({"app": "frontend"}),
            "frontend",
            &ip(10),
            "node-a",
        ),
        pod(
            ns,
            "productpage",
            json!({"app": "productpage"}),
            "productpage",
            &ip(20),
            "node-a",
        ),
        pod(
            ns,
            "oncall",
            json!({"app": "oncall"}),
            "oncall",
            &ip(30),
            "node-b",
        ),
        cnp(
            ns,
            "productpage",
            json!({
                "order": 100, "selector": "app == 'productpage'", "types": ["Ingress"],
                "ingress": [{"action": "Allow", "protocol": "TCP",
                             "source": {"serviceAccounts": {"names": ["frontend"]}},
                             "destination": {"ports": [8080]},
                             "http": {"methods": ["GET"]}}]
            }),
        ),
    ];
    (objects, [ip(10), ip(20), ip(30)])
}

/// The v3 form (as files hold it) of what was applied in CRD form.
fn as_files(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            if o["apiVersion"] == "crd.projectcalico.org/v1" {
                let meta: Value = serde_json::from_str(
                    o["metadata"]["annotations"]["projectcalico.org/metadata"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap();
                o["apiVersion"] = json!("projectcalico.org/v3");
                o["metadata"]["name"] = meta["name"].clone();
                o["metadata"].as_object_mut().unwrap().remove("annotations");
            }
            o
        })
        .collect()
}

#[test]
fn shipped_rbac_suffices_first_sync_and_decisions_equal_file_mode() {
    let Some(c) = Cluster::get("shipped_rbac") else {
        return;
    };
    c.apply(node("node-a"));
    c.apply(node("node-b"));
    let (objects, [fe, pp, oc]) = shop("rbac-shop", 1);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let server = c.serve(&dir, &[]);
    let line = server.wait_for_log("watching the Kubernetes API");
    assert!(line.contains("crd.projectcalico.org/v1"), "{line}");
    server.wait_for_log("synced with the Kubernetes API");
    let mut g = Grpc::connect(&server);
    g.wait_health(1, "after the first sync");
    let requests = [
        request((&fe, "rbac-shop", "frontend"), &pp, 8080, "GET", "/"),
        request((&fe, "rbac-shop", "frontend"), &pp, 8080, "POST", "/"),
        request((&oc, "rbac-shop", "oncall"), &pp, 8080, "GET", "/"),
        request((&pp, "rbac-shop", "productpage"), &oc, 8080, "GET", "/"),
    ];
    let files = as_files(&objects);
    let mut got = Vec::new();
    for req in &requests {
        let want = file_mode(&files, req);
        got.push(g.check(req));
        assert_eq!(got.last().copied(), Some(Ok(want)), "{req:?}");
    }
    assert_eq!(got, [Ok(OK), Ok(DENIED), Ok(DENIED), Ok(OK)]);
    // Nothing the server read was refused.
    drop(server);
}

#[test]
fn a_missing_rbac_rule_is_named_fails_closed_and_recovers() {
    let Some(c) = Cluster::get("missing_rbac_rule") else {
        return;
    };
    let (objects, [fe, pp, _]) = shop("rbac-missing", 2);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    // The ClusterRole without `pods`.
    let kubeconfig = c.alp_kubeconfig(dir.path(), |role| {
        for rule in role["rules"].as_array_mut().unwrap() {
            if let Some(resources) = rule["resources"].as_array_mut() {
                resources.retain(|r| r != "pods");
            }
        }
    });
    let server = serve_with(&kubeconfig, &[]);
    let line = server.wait_for_log("watch failed");
    assert!(
        line.contains("resource=pods"),
        "the log names the resource: {line}"
    );
    assert!(
        line.contains("forbidden"),
        "and says it is forbidden: {line}"
    );
    let mut g = Grpc::connect(&server);
    let req = request((&fe, "rbac-missing", "frontend"), &pp, 8080, "GET", "/");
    for _ in 0..10 {
        assert_eq!(g.health(""), 2, "NOT_SERVING while pods cannot be listed");
        assert_eq!(g.check(&req), Err(tonic::Code::Unavailable), "fail closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The rule comes back: the watch's next retry lists, and the server starts serving.
    c.apply_rbac(|_| {});
    server.wait_for_log_within("synced with the Kubernetes API", Duration::from_secs(60));
    g.wait_health(1, "after the rule came back");
    assert_eq!(g.check(&req), Ok(OK));
}

#[test]
fn calico_policies_created_modified_deleted_through_the_api() {
    let Some(c) = Cluster::get("calico_policies") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("pol", 3);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let (server, mut g) = c.serve_synced(&dir, &[]);
    let get = request((&fe, "pol", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "pol", "productpage"), &oc, 8080, "GET", "/");
    assert_eq!(g.check(&get), Ok(OK));
    assert_eq!(g.check(&to_oncall), Ok(OK));

    // Created: a GlobalNetworkPolicy ahead of the namespace's denies frontend.
    let mut freeze = gnp(
        "freeze",
        json!({
            "order": 10, "selector": "app == 'productpage'", "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"serviceAccounts": {"names": ["frontend"]}}}]
        }),
    );
    c.apply(freeze.clone());
    g.wait_for(&get, DENIED, "policy created");
    // Modified: it now denies another account only.
    freeze["spec"]["ingress"][0]["source"]["serviceAccounts"]["names"] = json!(["nobody"]);
    c.apply(freeze.clone());
    g.wait_for(&get, OK, "policy modified");
    // Deleted.
    c.apply(cnp(
        "pol",
        "lock-oncall",
        json!({"selector": "app == 'oncall'", "ingress": [{"action": "Deny"}]}),
    ));
    g.wait_for(&to_oncall, DENIED, "namespaced policy created");
    c.delete(&cnp("pol", "lock-oncall", json!({})));
    g.wait_for(&to_oncall, OK, "namespaced policy deleted");
    c.delete(&freeze);

    // The CRD's schema applies: an object of the wrong shape never reaches the server.
    let bad = cnp(
        "pol",
        "bad-shape",
        json!({"selector": "all()", "ingress": "allow everything"}),
    );
    let err = c
        .create(bad)
        .expect_err("the API server refuses a wrongly typed policy");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "422 Invalid: {err}"
    );
    // Fields the CRD does not declare are pruned on create and update (server-side apply
    // refuses them instead): a `tier` on the 3.28 CRD is dropped by the API server, so the
    // policy lands in the default tier, as Calico 3.28 itself reads it.
    let pruned = gnp(
        "pruned",
        json!({"tier": "security", "order": 5, "selector": "app == 'oncall'",
               "ingress": [{"action": "Deny"}], "unknownField": 1}),
    );
    let stored = c.create(pruned).unwrap();
    assert!(stored["spec"].get("tier").is_none(), "{stored}");
    assert!(stored["spec"].get("unknownField").is_none(), "{stored}");
    g.wait_for(
        &to_oncall,
        DENIED,
        "the pruned policy applies in the default tier",
    );
    // A policy that the schema admits but that does not compile fails closed.
    c.apply(gnp(
        "pruned",
        json!({"order": 5, "selector": "app == ", "ingress": [{"action": "Allow"}]}),
    ));
    let line = server.wait_for_log("invalid policy");
    assert!(line.contains("pruned"), "{line}");
    g.wait_for(
        &get,
        DENIED,
        "an invalid global policy fails closed on every endpoint",
    );
    c.delete(&gnp("pruned", json!({})));
    g.wait_for(&get, OK, "the invalid policy deleted");
}

#[test]
fn pods_namespaces_and_service_accounts_change_decisions() {
    let Some(c) = Cluster::get("pods_labels") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("labels", 4);
    c.apply_all(&objects);
    // Ingress to oncall from namespaces labelled team=shop and accounts labelled role=web.
    c.apply(cnp("labels", "oncall", json!({
        "selector": "app == 'oncall'",
        "ingress": [{"action": "Allow", "source": {"namespaceSelector": "team == 'shop'",
                                                    "serviceAccounts": {"selector": "role == 'web'"}}}]
    })));
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut g) = c.serve_synced(&dir, &[]);
    let fe_to_oncall = request((&fe, "labels", "frontend"), &oc, 8080, "GET", "/");
    let get = request((&fe, "labels", "frontend"), &pp, 8080, "GET", "/");
    assert_eq!(g.check(&fe_to_oncall), Ok(OK));

    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "labels"}});
    c.label(&ns, json!({"team": "other"}));
    g.wait_for(&fe_to_oncall, DENIED, "namespace relabelled");
    c.label(&ns, json!({"team": "shop"}));
    g.wait_for(&fe_to_oncall, OK, "namespace relabelled back");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "frontend", "namespace": "labels"}});
    c.label(&sa, json!({"role": null}));
    g.wait_for(&fe_to_oncall, DENIED, "service account relabelled");
    c.label(&sa, json!({"role": "web"}));
    g.wait_for(&fe_to_oncall, OK, "service account relabelled back");

    // productpage relabelled: no policy selects it any more.
    let oncall_get = request((&oc, "labels", "oncall"), &pp, 8080, "GET", "/");
    assert_eq!(g.check(&oncall_get), Ok(DENIED));
    let ppod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "productpage", "namespace": "labels"}});
    c.label(&ppod, json!({"app": "canary"}));
    g.wait_for(&oncall_get, OK, "pod relabelled");
    c.label(&ppod, json!({"app": "productpage"}));
    g.wait_for(&oncall_get, DENIED, "pod relabelled back");

    // A new pod gets its IP through the status subresource: until then it is unknown.
    let late = pod(
        "labels",
        "late",
        json!({"app": "late"}),
        "late",
        "10.4.0.40",
        "node-a",
    );
    let mut no_status = late.clone();
    no_status.as_object_mut().unwrap().remove("status");
    c.apply(no_status);
    let to_late = request((&fe, "labels", "frontend"), "10.4.0.40", 8080, "GET", "/");
    assert_eq!(
        g.check(&to_late),
        Ok(DENIED),
        "no IP yet: unknown destination"
    );
    c.apply(late);
    g.wait_for(&to_late, OK, "pod given its IP");

    // Deleted: an unknown destination.
    c.delete(&ppod);
    g.wait_for(&get, DENIED, "pod deleted");
}

#[test]
fn endpoint_slices_follow_services_rules() {
    let Some(c) = Cluster::get("endpoint_slices") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("svc", 5);
    c.apply_all(&objects);
    c.apply(cnp("svc", "from-productpage", json!({
        "selector": "app == 'oncall'",
        "ingress": [{"action": "Allow", "source": {"services": {"name": "productpage", "namespace": "svc"}}}]
    })));
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut g) = c.serve_synced(&dir, &[]);
    let from_pp = request((&pp, "svc", "productpage"), &oc, 8080, "GET", "/");
    let from_fe = request((&fe, "svc", "frontend"), &oc, 8080, "GET", "/");
    assert_eq!(g.check(&from_pp), Ok(DENIED), "no endpoints yet");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "productpage-x7k2p", "namespace": "svc",
                     "labels": {"kubernetes.io/service-name": "productpage"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pp], "conditions": {"ready": true}, "nodeName": "node-a",
                       "targetRef": {"kind": "Pod", "name": "productpage", "namespace": "svc"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    });
    c.apply(slice.clone());
    g.wait_for(&from_pp, OK, "EndpointSlice created");
    assert_eq!(g.check(&from_fe), Ok(DENIED));
    c.delete(&slice);
    g.wait_for(&from_pp, DENIED, "EndpointSlice deleted");
}

#[test]
fn kubernetes_network_policies_apply() {
    let Some(c) = Cluster::get("kubernetes_network_policies") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("knp", 6);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut g) = c.serve_synced(&dir, &[]);
    let to_oncall = request((&pp, "knp", "productpage"), &oc, 8080, "GET", "/");
    let fe_to_oncall = request((&fe, "knp", "frontend"), &oc, 8080, "GET", "/");
    assert_eq!(g.check(&to_oncall), Ok(OK));
    let knp = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "oncall-from-frontend", "namespace": "knp"},
        "spec": {"podSelector": {"matchLabels": {"app": "oncall"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}
    });
    let stored = c.apply(knp.clone());
    assert_eq!(stored["spec"]["policyTypes"], json!(["Ingress"]));
    g.wait_for(&to_oncall, DENIED, "Kubernetes NetworkPolicy created");
    assert_eq!(g.check(&fe_to_oncall), Ok(OK));
    // The decisions equal file mode's on the same objects.
    let mut files = as_files(&objects);
    files.push(knp.clone());
    for req in [&to_oncall, &fe_to_oncall] {
        assert_eq!(g.check(req), Ok(file_mode(&files, req)), "{req:?}");
    }
    c.delete(&knp);
    g.wait_for(&to_oncall, OK, "Kubernetes NetworkPolicy deleted");
}

/// A `policy.networking.k8s.io` ClusterNetworkPolicy (network-policy-api v0.3.0 serves
/// `v1alpha2`, which Calico 3.32 watches and so do we, and `v1beta1`, its storage version) on
/// the `app: db` pods of namespaces labelled `npa: prod`.
fn cluster_np(version: &str, name: &str, tier: &str, priority: u32, ingress: Value) -> Value {
    json!({"apiVersion": format!("policy.networking.k8s.io/{version}"), "kind": "ClusterNetworkPolicy",
           "metadata": {"name": name},
           "spec": {"tier": tier, "priority": priority,
                    "subject": {"pods": {"namespaceSelector": {"matchLabels": {"npa": "prod"}},
                                         "podSelector": {"matchLabels": {"app": "db"}}}},
                    "ingress": ingress}})
}

/// A ClusterNetworkPolicy at `v1alpha2`, the version alp-authz (and Calico 3.32) watches; other
/// objects as they are.
fn at_watched_version(obj: &Value) -> Value {
    let mut o = obj.clone();
    if o["kind"] == "ClusterNetworkPolicy" {
        o["apiVersion"] = json!("policy.networking.k8s.io/v1alpha2");
    }
    o
}

/// An object as file mode reads it: what the API server stored, less the server's metadata.
fn as_file(stored: &Value) -> Value {
    let mut o = stored.clone();
    let meta = o["metadata"].as_object_mut().unwrap();
    meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
    o.as_object_mut().unwrap().remove("status");
    o
}

/// SIG Network's cluster-scoped policies through the real API server, with the
/// network-policy-api CRDs `tests/cluster/cluster` installs from their Go modules (v0.3.0's
/// ClusterNetworkPolicy, v0.1.5's AdminNetworkPolicy and BaselineAdminNetworkPolicy):
/// discovered and watched, created, modified and deleted (also through v1beta1, the version
/// v0.3.0 stores, while we watch v1alpha2 as Calico does), with the CRDs' validation and
/// defaulting applied, and decisions equal to file mode's on the objects as stored.
#[test]
fn network_policy_api_policies_through_the_real_api() {
    let Some(c) = Cluster::get("network_policy_api") else {
        return;
    };
    let served = c.network_policy_api_served();
    let v1alpha2 = (
        "policy.networking.k8s.io/v1alpha2".to_owned(),
        "ClusterNetworkPolicy".to_owned(),
    );
    if served.is_empty() && std::env::var_os("ALP_CLUSTER_REQUIRED").is_none() {
        eprintln!("network_policy_api: skipped: no network-policy-api CRDs installed");
        return;
    }
    assert!(served.contains(&v1alpha2), "served: {served:?}");
    let served_at = |version: &str, kind: &str| {
        served.contains(&(
            format!("policy.networking.k8s.io/{version}"),
            kind.to_owned(),
        ))
    };
    // Where v1beta1 is served (v0.3.0), policies are also written through it.
    let storage = if served_at("v1beta1", "ClusterNetworkPolicy") {
        "v1beta1"
    } else {
        "v1alpha2"
    };
    let admin_v1alpha1 = served_at("v1alpha1", "AdminNetworkPolicy");
    let baseline_v1alpha1 = served_at("v1alpha1", "BaselineAdminNetworkPolicy");

    let ip = |i: u8| format!("10.12.0.{i}");
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "npa-prod", "labels": {"npa": "prod"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "npa-dev", "labels": {"npa": "dev"}}}),
        pod(
            "npa-prod",
            "db",
            json!({"app": "db"}),
            "db",
            &ip(10),
            "node-a",
        ),
        pod(
            "npa-dev",
            "job",
            json!({"app": "job"}),
            "job",
            &ip(20),
            "node-a",
        ),
        pod(
            "npa-dev",
            "web",
            json!({"app": "web"}),
            "web",
            &ip(30),
            "node-b",
        ),
    ];
    for o in &objects {
        if o["kind"] == "Namespace" {
            let name = o["metadata"]["name"].as_str().unwrap();
            c.ensure_namespace(name);
            set_labels(&c, name, o["metadata"]["labels"].clone());
        } else {
            c.apply(o.clone());
        }
    }
    for sa in ["db", "job", "web"] {
        let ns = if sa == "db" { "npa-prod" } else { "npa-dev" };
        objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": sa, "namespace": ns}}));
    }
    let job = request((&ip(20), "npa-dev", "job"), &ip(10), 8080, "GET", "/");
    let web = request((&ip(30), "npa-dev", "web"), &ip(10), 8080, "GET", "/");
    let job_9090 = request((&ip(20), "npa-dev", "job"), &ip(10), 9090, "GET", "/");

    let dir = tempfile::tempdir().unwrap();
    let metrics = common::free_loopback_addr();
    let server = c.serve(&dir, &["--metrics", &metrics]);
    let line = server.wait_for_log("watching the Kubernetes API");
    assert!(
        line.contains("clusternetworkpolicies.policy.networking.k8s.io"),
        "{line}"
    );
    for (present, plural) in [
        (admin_v1alpha1, "adminnetworkpolicies"),
        (baseline_v1alpha1, "baselineadminnetworkpolicies"),
    ] {
        assert_eq!(
            line.contains(&format!("{plural}.policy.networking.k8s.io")),
            present,
            "{plural} watched exactly when served: {line}"
        );
    }
    server.wait_for_log("synced with the Kubernetes API");
    let m = common::scrape_metrics(&metrics);
    assert_eq!(
        m.get("alp_authz_kubernetes_watch_synced{resource=\"clusternetworkpolicies.policy.networking.k8s.io\"}"),
        Some(&1.0),
        "the ClusterNetworkPolicy watch listed"
    );
    let mut g = Grpc::connect(&server);
    assert_eq!(
        (g.check(&job), g.check(&web)),
        (Ok(OK), Ok(OK)),
        "no policy"
    );

    // Each decision equals file mode's on the objects as the API server stored them, read at
    // the version alp-authz watches (file mode, as Calico, reads no v1beta1).
    let same_as_files = |g: &mut Grpc, policies: &[&Value], reqs: &[&Req]| {
        let mut files = objects.clone();
        files.extend(
            policies
                .iter()
                .map(|p| as_file(&c.stored(&at_watched_version(p)))),
        );
        for req in reqs {
            assert_eq!(g.check(req), Ok(file_mode(&files, req)), "{req:?}");
        }
    };

    // Created (v1alpha2): the Admin tier denies the dev namespaces.
    let mut deny = cluster_np(
        "v1alpha2",
        "npa-deny-dev",
        "Admin",
        10,
        json!([{"action": "Deny", "name": "no-dev", "from": [{"namespaces": {"matchLabels": {"npa": "dev"}}}]}]),
    );
    c.apply(deny.clone());
    g.wait_for(&job, DENIED, "ClusterNetworkPolicy created");
    assert_eq!(g.check(&web), Ok(DENIED));
    same_as_files(&mut g, &[&deny], &[&job, &web]);
    // Modified: only the job pods.
    deny["spec"]["ingress"][0]["from"] = json!([{"pods": {"namespaceSelector": {},
        "podSelector": {"matchLabels": {"app": "job"}}}}]);
    c.apply(deny.clone());
    g.wait_for(&web, OK, "ClusterNetworkPolicy modified");
    assert_eq!(g.check(&job), Ok(DENIED));
    same_as_files(&mut g, &[&deny], &[&job, &web]);
    // Through the storage version: what is written at v1beta1 reaches the v1alpha2 watch.
    let deny_web = cluster_np(
        storage,
        "npa-deny-web",
        "Admin",
        5,
        json!([{"action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}]}]),
    );
    c.apply(deny_web.clone());
    g.wait_for(&web, DENIED, &format!("a {storage} ClusterNetworkPolicy"));
    same_as_files(&mut g, &[&deny, &deny_web], &[&job, &web]);
    c.delete(&deny_web);
    g.wait_for(
        &web,
        OK,
        &format!("the {storage} ClusterNetworkPolicy deleted"),
    );
    // Deleted.
    c.delete(&deny);
    g.wait_for(&job, OK, "ClusterNetworkPolicy deleted");

    // The Baseline tier comes after the default tier: a Calico policy there decides first.
    let baseline = cluster_np(
        storage,
        "npa-baseline",
        "Baseline",
        10,
        json!([{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"npa": "dev"}}}]}]),
    );
    c.apply(baseline.clone());
    g.wait_for(&job, DENIED, "Baseline ClusterNetworkPolicy created");
    let allow_job = cnp(
        "npa-prod",
        "db-from-job",
        json!({"selector": "app == 'db'", "types": ["Ingress"],
               "ingress": [{"action": "Allow", "source": {"namespaceSelector": "all()",
                                                   "serviceAccounts": {"names": ["job"]}}}]}),
    );
    c.apply(allow_job.clone());
    g.wait_for(&job, OK, "a default-tier Allow before kube-baseline");
    // The default tier selects db now and ends with no match for web: denied there.
    assert_eq!(g.check(&web), Ok(DENIED));
    {
        let mut files = objects.clone();
        files.push(as_file(&c.stored(&at_watched_version(&baseline))));
        files.extend(as_files(std::slice::from_ref(&allow_job)));
        for req in [&job, &web] {
            assert_eq!(g.check(req), Ok(file_mode(&files, req)), "{req:?}");
        }
    }
    c.delete(&allow_job);
    c.delete(&baseline);
    g.wait_for(&job, OK, "Baseline ClusterNetworkPolicy deleted");

    // v1alpha1 AdminNetworkPolicy (Calico <= 3.31): the CRD defaults a port's protocol to TCP.
    if admin_v1alpha1 {
        let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": "npa-anp"},
            "spec": {"priority": 5,
                     "subject": {"pods": {"namespaceSelector": {"matchLabels": {"npa": "prod"}},
                                          "podSelector": {"matchLabels": {"app": "db"}}}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"npa": "dev"}}}],
                                  "ports": [{"portNumber": {"port": 8080}}]}]}});
        let stored = c.apply(anp.clone());
        assert_eq!(
            stored["spec"]["ingress"][0]["ports"][0]["portNumber"]["protocol"], "TCP",
            "defaulted by the CRD: {stored}"
        );
        g.wait_for(&job, DENIED, "AdminNetworkPolicy created");
        assert_eq!(g.check(&job_9090), Ok(OK), "another port");
        same_as_files(&mut g, &[&anp], &[&job, &web, &job_9090]);
        c.delete(&anp);
        g.wait_for(&job, OK, "AdminNetworkPolicy deleted");
    }
    // v1alpha1 BaselineAdminNetworkPolicy: a singleton, named `default` (the CRD's CEL rule).
    if baseline_v1alpha1 {
        let banp = |name: &str| {
            json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
                "metadata": {"name": name},
                "spec": {"subject": {"namespaces": {"matchLabels": {"npa": "prod"}}},
                         "ingress": [{"action": "Deny", "from": [{"pods": {"namespaceSelector": {},
                                      "podSelector": {"matchLabels": {"app": "web"}}}}]}]}})
        };
        let err = c.create(banp("npa")).expect_err("only `default` may exist");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("default")),
            "{err}"
        );
        let banp = banp("default");
        c.apply(banp.clone());
        g.wait_for(&web, DENIED, "BaselineAdminNetworkPolicy created");
        assert_eq!(g.check(&job), Ok(OK));
        same_as_files(&mut g, &[&banp], &[&job, &web]);
        c.delete(&banp);
        g.wait_for(&web, OK, "BaselineAdminNetworkPolicy deleted");
    }

    // What the CRD refuses never reaches us (file mode would read each of them).
    let refused = [
        (
            "a tier outside the enum (Admin, Baseline)",
            cluster_np(
                "v1alpha2",
                "npa-typo",
                "Admn",
                1,
                json!([{"action": "Deny", "from": [{"namespaces": {}}]}]),
            ),
        ),
        (
            "a priority above 1000",
            cluster_np(
                "v1alpha2",
                "npa-priority",
                "Admin",
                1001,
                json!([{"action": "Deny", "from": [{"namespaces": {}}]}]),
            ),
        ),
        (
            "an unknown action",
            cluster_np(
                "v1alpha2",
                "npa-action",
                "Admin",
                1,
                json!([{"action": "Allow", "from": [{"namespaces": {}}]}]),
            ),
        ),
    ];
    for (what, obj) in refused {
        let err = c
            .create(obj.clone())
            .expect_err(&format!("the API server refuses {what}"));
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422),
            "{what}: 422 Invalid: {err}"
        );
    }
    // v0.3.0 moved `destinationNamedPort` to the experimental channel: the standard CRD prunes
    // it, and the entry left empty is refused (Calico 3.32's v0.2.0 CRD accepts it).
    let named = cluster_np(
        "v1alpha2",
        "npa-named-port",
        "Admin",
        1,
        json!([{"action": "Deny", "from": [{"namespaces": {}}],
                "protocols": [{"destinationNamedPort": "http"}]}]),
    );
    match c.create(named.clone()) {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            eprintln!(
                "network_policy_api: a destinationNamedPort rule: {}",
                s.message
            );
        }
        Ok(stored) => {
            // An experimental-channel CRD keeps it.
            assert_eq!(
                stored["spec"]["ingress"][0]["protocols"][0]["destinationNamedPort"], "http",
                "{stored}"
            );
            c.delete(&named);
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!((g.check(&job), g.check(&web)), (Ok(OK), Ok(OK)));
    let m = common::scrape_metrics(&metrics);
    assert_eq!(
        m.get("alp_authz_policies{state=\"invalid\"}"),
        Some(&0.0),
        "nothing refused reached the server"
    );
}

#[test]
fn per_node_and_per_namespace_modes() {
    let Some(c) = Cluster::get("node_and_namespace") else {
        return;
    };
    c.apply(node("node-a"));
    c.apply(node("node-b"));
    let (objects, [fe, pp, oc]) = shop("scoped", 7);
    c.apply_all(&objects);
    let (others, [ofe, _, _]) = shop("scoped-other", 8);
    c.apply_all(&others);
    let dir = tempfile::tempdir().unwrap();
    let get = request((&fe, "scoped", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "scoped", "productpage"), &oc, 8080, "GET", "/");
    let other_get = request(
        (&ofe, "scoped-other", "frontend"),
        "10.8.0.20",
        8080,
        "GET",
        "/",
    );

    // --node: the API server filters Pods by spec.nodeName (set by the binding subresource).
    let (server, mut g) = c.serve_synced(&dir, &["--node", "node-a"]);
    assert_eq!(g.check(&get), Ok(OK), "productpage is on node-a");
    assert_eq!(
        g.check(&to_oncall),
        Ok(DENIED),
        "oncall is on node-b: unknown here"
    );
    assert_eq!(g.check(&other_get), Ok(OK), "node-a of another namespace");
    drop(g);
    drop(server);

    // --namespace: only scoped's pods and policies.
    let (_server, mut g) = c.serve_synced(&dir, &["--namespace", "scoped"]);
    assert_eq!(g.check(&get), Ok(OK));
    assert_eq!(g.check(&to_oncall), Ok(OK));
    assert_eq!(
        g.check(&other_get),
        Ok(DENIED),
        "another namespace's pods are not watched"
    );
}

/// kube-apiserver stopped while the server serves: the last good state keeps serving; changes
/// made meanwhile (through a second kube-apiserver on the same etcd) arrive after the restart.
#[test]
fn apiserver_stopped_and_restarted_while_serving() {
    let Some(c) = Cluster::get("apiserver_restart") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("outage", 9);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let (server, mut g) = c.serve_synced(&dir, &[]);
    let get = request((&fe, "outage", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "outage", "productpage"), &oc, 8080, "GET", "/");
    assert_eq!((g.check(&get), g.check(&to_oncall)), (Ok(OK), Ok(OK)));

    c.ctl("apiserver-stop", &[]);
    server.wait_for_log("API server unreachable");
    for _ in 0..10 {
        assert_eq!((g.check(&get), g.check(&to_oncall)), (Ok(OK), Ok(OK)));
        assert_eq!(g.health(""), 1, "SERVING during the outage");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Meanwhile, through another kube-apiserver: a policy added, a pod deleted.
    let alt = c.env("APISERVER_ALT_PORT").to_owned();
    c.ctl("apiserver-start", &[&alt]);
    let alt_client = {
        let text = std::fs::read_to_string(c.dir.join("admin.kubeconfig"))
            .unwrap()
            .replace(c.env("APISERVER_PORT"), &alt);
        let path = dir.path().join("alt.kubeconfig");
        std::fs::write(&path, text).unwrap();
        c.rt.block_on(client(&path))
    };
    let lock = cnp(
        "outage",
        "lock-oncall",
        json!({"selector": "app == 'oncall'", "ingress": [{"action": "Deny"}]}),
    );
    let api = c.api_for(&alt_client, &lock);
    c.rt.block_on(api.patch(
        "default.lock-oncall",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&lock),
    ))
    .unwrap();
    c.remember(&lock);
    let ppod = pod(
        "outage",
        "productpage",
        json!({}),
        "productpage",
        &pp,
        "node-a",
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    c.rt.block_on(c.api_for(&alt_client, &ppod).delete("productpage", &dp))
        .unwrap();
    c.ctl("apiserver-stop", &[&alt]);
    assert_eq!(
        (g.check(&get), g.check(&to_oncall)),
        (Ok(OK), Ok(OK)),
        "nothing arrived yet"
    );

    c.ctl("apiserver-start", &[]);
    server.wait_for_log_within("API server reachable again", BOUND);
    g.wait_for_within(
        &to_oncall,
        DENIED,
        "a policy added during the outage",
        AFTER_OUTAGE,
    );
    g.wait_for_within(
        &get,
        DENIED,
        "a pod deleted during the outage",
        AFTER_OUTAGE,
    );
}

/// etcd compacted past the server's watch position while it was away: its watch cannot resume
/// (410 Gone) and it relists, with nothing lost or kept stale.
#[test]
fn an_etcd_compaction_expires_the_watch_and_it_relists() {
    let Some(c) = Cluster::get("etcd_compaction") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("compact", 10);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let metrics = common::free_loopback_addr();
    let (server, mut g) = c.serve_synced(&dir, &["--metrics", &metrics]);
    let get = request((&fe, "compact", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "compact", "productpage"), &oc, 8080, "GET", "/");
    assert_eq!((g.check(&get), g.check(&to_oncall)), (Ok(OK), Ok(OK)));
    let lists = |m: &HashMap<String, f64>| {
        m.get("alp_authz_kubernetes_watch_lists_total{resource=\"pods\"}")
            .copied()
            .unwrap_or(0.0)
    };
    let before = lists(&common::scrape_metrics(&metrics));

    c.ctl("apiserver-stop", &[]);
    server.wait_for_log("API server unreachable");
    let alt = c.env("APISERVER_ALT_PORT").to_owned();
    c.ctl("apiserver-start", &[&alt]);
    let text = std::fs::read_to_string(c.dir.join("admin.kubeconfig"))
        .unwrap()
        .replace(c.env("APISERVER_PORT"), &alt);
    let path = dir.path().join("alt.kubeconfig");
    std::fs::write(&path, text).unwrap();
    let alt_client = c.rt.block_on(client(&path));
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let ppod = pod(
        "compact",
        "productpage",
        json!({}),
        "productpage",
        &pp,
        "node-a",
    );
    c.rt.block_on(c.api_for(&alt_client, &ppod).delete("productpage", &dp))
        .unwrap();
    let lock = cnp(
        "compact",
        "lock-oncall",
        json!({"selector": "app == 'oncall'", "ingress": [{"action": "Deny"}]}),
    );
    c.rt.block_on(c.api_for(&alt_client, &lock).patch(
        "default.lock-oncall",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&lock),
    ))
    .unwrap();
    c.remember(&lock);
    // Some churn elsewhere, then etcd forgets all history up to now.
    for i in 0..20 {
        let cm = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("churn-{i}"), "namespace": "compact"}});
        c.rt.block_on(c.api_for(&alt_client, &cm).patch(
            &format!("churn-{i}"),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cm),
        ))
        .unwrap();
        c.remember(&cm);
    }
    c.ctl("etcd-compact", &[]);
    c.ctl("apiserver-stop", &[&alt]);
    c.ctl("apiserver-start", &[]);

    g.wait_for_within(
        &get,
        DENIED,
        "a pod deleted before the compaction",
        AFTER_OUTAGE,
    );
    g.wait_for_within(
        &to_oncall,
        DENIED,
        "a policy added before the compaction",
        AFTER_OUTAGE,
    );
    let started = Instant::now();
    while lists(&common::scrape_metrics(&metrics)) <= before {
        assert!(started.elapsed() < AFTER_OUTAGE, "pods were never relisted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = server.wait_for_log("watch expired (410 Gone): relisting");
    assert!(line.contains("too old resource version"), "{line}");
}

#[test]
fn etcd_restarted_while_serving() {
    let Some(c) = Cluster::get("etcd_restart") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("etcd", 11);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut g) = c.serve_synced(&dir, &[]);
    let get = request((&fe, "etcd", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "etcd", "productpage"), &oc, 8080, "GET", "/");
    assert_eq!((g.check(&get), g.check(&to_oncall)), (Ok(OK), Ok(OK)));
    c.ctl("etcd-stop", &[]);
    for _ in 0..20 {
        assert_eq!(
            (g.check(&get), g.check(&to_oncall)),
            (Ok(OK), Ok(OK)),
            "etcd away: still serving"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ctl("etcd-start", &[]);
    // kube-apiserver reconnects to etcd; a change made after that arrives.
    let started = Instant::now();
    let lock = cnp(
        "etcd",
        "lock-oncall",
        json!({"selector": "app == 'oncall'", "ingress": [{"action": "Deny"}]}),
    );
    while c.try_apply(lock.clone()).is_err() {
        assert!(
            started.elapsed() < BOUND,
            "kube-apiserver never wrote to etcd again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    g.wait_for(&to_oncall, DENIED, "a change after etcd came back");
    assert_eq!(g.check(&get), Ok(OK));
}

/// Whether a conformance case can be stored in the installed CRDs: no Tier, staged kind or
/// network set, and no tier but `default` (Calico 3.28's CRDs have none of them); a
/// `policy.networking.k8s.io` kind only at a version the installed network-policy-api CRDs
/// serve (`served`: `NETWORK_POLICY_API_SERVED`), and a ClusterNetworkPolicy only in a tier of
/// the CRD's enum (the API server refuses another:
/// `network_policy_api_policies_through_the_real_api` checks that it does).
fn storable(case: &common::Case, served: &BTreeSet<(String, String)>) -> Result<(), String> {
    for o in &case.state {
        let kind = o["kind"].as_str().unwrap_or_default();
        if kind == "Tier" || kind.starts_with("Staged") || kind.ends_with("NetworkSet") {
            return Err(format!("a {kind}"));
        }
        let api_version = o["apiVersion"].as_str().unwrap_or_default();
        if api_version.starts_with("policy.networking.k8s.io/") {
            if !served.contains(&(api_version.to_owned(), kind.to_owned())) {
                return Err(format!("a {api_version} {kind} (not served)"));
            }
            if kind == "ClusterNetworkPolicy"
                && !matches!(o["spec"]["tier"].as_str(), Some("Admin" | "Baseline"))
            {
                return Err(
                    "a ClusterNetworkPolicy tier the CRD refuses (not Admin or Baseline)".into(),
                );
            }
            continue;
        }
        // Only the API server sets a deletionTimestamp, when an object is deleted: a terminating
        // Pod cannot be created as such.
        if !o["metadata"]["deletionTimestamp"].is_null() {
            return Err(format!("a terminating {kind}"));
        }
        if o["spec"]["tier"].as_str().is_some_and(|t| t != "default") {
            return Err("a tier other than default".into());
        }
    }
    Ok(())
}

/// Every conformance case whose objects the installed CRDs can hold: loaded into the real API
/// server (Pods created, bound and given their status), decided through `--kubernetes`, and
/// compared with the case's expected answer and with file mode.
#[test]
fn conformance_cases_through_the_real_api_server() {
    let Some(c) = Cluster::get("conformance") else {
        return;
    };
    let cases = common::cases();
    let served = c.network_policy_api_served();
    let mut failures = Vec::new();
    let mut skipped = BTreeMap::<String, usize>::new();
    let mut ran = 0;
    let mut ran_network_policy_api = 0;
    let mut labelled: BTreeSet<String> = BTreeSet::new();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = c.alp_kubeconfig(dir.path(), |_| {});
    for case in &cases {
        if let Err(why) = storable(case, &served) {
            *skipped.entry(why).or_default() += 1;
            continue;
        }
        // Namespaces are kept between cases (they cannot be deleted here): set each one's
        // labels to the case's, and clear those of earlier cases.
        let mut in_case = BTreeMap::new();
        for o in case.state.iter().filter(|o| o["kind"] == "Namespace") {
            in_case.insert(
                o["metadata"]["name"].as_str().unwrap().to_owned(),
                o["metadata"]["labels"].clone(),
            );
        }
        for ns in labelled
            .iter()
            .chain(in_case.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
        {
            c.ensure_namespace(&ns);
            set_labels(&c, &ns, in_case.get(&ns).cloned().unwrap_or(Value::Null));
        }
        labelled.extend(in_case.keys().cloned());
        let mut failed = None;
        for o in &case.state {
            if o["kind"] == "Namespace" {
                continue;
            }
            if let Err(e) = c.try_apply(to_crd_v1(o.clone())) {
                failed = Some(format!(
                    "{}: the API server refused {} {}: {e}",
                    case.name, o["kind"], o["metadata"]["name"]
                ));
                break;
            }
        }
        if let Some(f) = failed {
            failures.push(f);
            c.clean();
            continue;
        }
        // Any trust domain, as the other conformance runs: a shared case uses `foo.bar.com`.
        let server = serve_with(&kubeconfig, &["--trust-domain", "*"]);
        server.wait_for_log("synced with the Kubernetes API");
        let mut g = Grpc::connect(&server);
        let req = Req::new(case.request.clone());
        let got = g.check(&req);
        let want = if case.expected == "allow" { OK } else { DENIED };
        let file = file_mode_with(&case.state, &req, &["--trust-domain", "*"]);
        if got != Ok(want) || file != want {
            failures.push(format!(
                "{}: expected {}, --kubernetes {got:?}, file mode {file}",
                case.name, case.expected
            ));
        }
        ran += 1;
        if case.state.iter().any(|o| {
            o["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("policy.networking.k8s.io/"))
        }) {
            ran_network_policy_api += 1;
        }
        drop(g);
        drop(server);
        c.clean();
    }
    eprintln!(
        "conformance through kube-apiserver: {ran} cases decided ({ran_network_policy_api} with policy.networking.k8s.io objects), skipped (not storable in the installed CRDs): {skipped:?}"
    );
    assert!(ran >= 90, "only {ran} cases ran");
    if !served.is_empty() {
        // Every ClusterNetworkPolicy / AdminNetworkPolicy / BaselineAdminNetworkPolicy case but
        // the one whose tier the CRD refuses.
        assert!(
            ran_network_policy_api >= 12,
            "only {ran_network_policy_api} network-policy-api cases ran"
        );
    }
    common::assert_all_passed(&failures, ran);
}

/// Replaces a Namespace's labels with `labels` (the API server keeps its own
/// `kubernetes.io/metadata.name`).
fn set_labels(c: &Cluster, ns: &str, labels: Value) {
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let api = c.api(&obj);
    let mut current = c.rt.block_on(api.get(ns)).unwrap();
    let mut want: BTreeMap<String, String> =
        serde_json::from_value(if labels.is_null() { json!({}) } else { labels }).unwrap();
    want.insert("kubernetes.io/metadata.name".into(), ns.into());
    current.metadata.labels = Some(want);
    current.metadata.managed_fields = None;
    c.rt.block_on(api.replace(ns, &PostParams::default(), &current))
        .unwrap();
}

#[test]
fn the_cluster_suite_ran_when_asked_to() {
    // tests/cluster/run sets ALP_CLUSTER_REQUIRED: a suite that silently skipped would pass.
    if std::env::var_os("ALP_CLUSTER_REQUIRED").is_some() {
        assert!(
            std::env::var_os("ALP_CLUSTER").is_some(),
            "ALP_CLUSTER_REQUIRED but no ALP_CLUSTER"
        );
        let c = Cluster::get("required").unwrap();
        let list =
            c.rt.block_on(
                Api::<k8s_openapi::api::core::v1::Namespace>::all(c.admin.clone())
                    .list(&ListParams::default()),
            )
            .unwrap();
        assert!(
            list.items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some("kube-system"))
        );
    }
}

/// `alp-authz lint --kubernetes`: one list of each resource through the shipped RBAC (Calico
/// objects in their `crd.projectcalico.org/v1` storage form, named by their v3 names), the
/// same checks as on files, findings naming the objects (no file or line).
#[test]
fn lint_lists_the_live_state_once() {
    let Some(c) = Cluster::get("lint_live") else {
        return;
    };
    let ns = "lint-live";
    let (mut objects, _) = shop(ns, 19);
    objects.push(cnp(
        ns,
        "shadow",
        json!({
            "order": 200, "selector": "app == 'productpage'", "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"nets": ["10.99.0.0/16"]}},
                        {"action": "Deny", "source": {"nets": ["10.99.1.0/24"]}}]
        }),
    ));
    objects.push(cnp(
        ns,
        "ghost",
        json!({"selector": "app == 'ghost'", "types": ["Ingress"], "ingress": [{"action": "Deny"}]}),
    ));
    // (No staged policy: the Calico CRDs installed here serve no staged kinds; the staged
    // checks are tested against the fake API server in tests/kubernetes.rs.)
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = c.alp_kubeconfig(dir.path(), |_| {});
    let lint = |extra: &[&str]| {
        let t = Instant::now();
        let out = Command::new(common::bin())
            .args(["lint", "--kubernetes", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--namespace", ns, "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        eprintln!("lint --kubernetes {extra:?}: {:?}", t.elapsed());
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), v)
    };
    let mine = |v: &Value| -> BTreeSet<(String, String, String)> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["namespace"] == ns)
            .map(|f| {
                assert!(f["file"].is_null() && f["line"].is_null(), "{f}");
                (
                    f["code"].as_str().unwrap().to_owned(),
                    f["name"].as_str().unwrap().to_owned(),
                    f["field"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let (code, v) = lint(&[]);
    assert_eq!(code, 1, "{v}");
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        mine(&v),
        BTreeSet::from([
            s("shadowed-rule", "shadow", "spec.ingress[1]"),
            s("selects-nothing", "ghost", "spec.selector"),
        ]),
        "{v}"
    );
    // An unreachable API server is exit 2, reported as a finding.
    let bad = dir.path().join("bad.kubeconfig");
    std::fs::write(&bad, "not: [a kubeconfig").unwrap();
    let out = Command::new(common::bin())
        .args(["lint", "--kubernetes", "--kubeconfig"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("error[load-error]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// === policy Events (issue #19 item 3) ===

impl Cluster {
    /// The Events on one object, read as `kubectl describe` reads them: core/v1, with a field
    /// selector on `involvedObject` (kind, name, uid; and namespace for a namespaced object,
    /// whose Events live in its namespace; a cluster-scoped object's are searched everywhere).
    fn describe_events(&self, obj: &Value) -> Vec<Value> {
        let meta = &obj["metadata"];
        let (name, uid) = (
            meta["name"].as_str().unwrap(),
            meta["uid"].as_str().unwrap(),
        );
        let mut fields = format!(
            "involvedObject.kind={},involvedObject.name={name},involvedObject.uid={uid}",
            obj["kind"].as_str().unwrap()
        );
        let api: Api<k8s_openapi::api::core::v1::Event> = match meta["namespace"].as_str() {
            Some(ns) => {
                fields.push_str(&format!(",involvedObject.namespace={ns}"));
                Api::namespaced(self.admin.clone(), ns)
            }
            None => Api::all(self.admin.clone()),
        };
        let list = self
            .rt
            .block_on(api.list(&ListParams::default().fields(&fields)))
            .unwrap();
        list.items
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    /// Waits (at most [`BOUND`]) until `obj` has `n` Events of `reason`, and returns them all.
    fn wait_events(&self, obj: &Value, reason: &str, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let events = self.describe_events(obj);
            let got = events.iter().filter(|e| e["reason"] == reason).count();
            if got >= n {
                return events;
            }
            assert!(
                started.elapsed() < BOUND,
                "{} {}: {got} {reason} Events after {BOUND:?}, want {n}: {events:#?}",
                obj["kind"],
                obj["metadata"]["name"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn count(events: &[Value], reason: &str) -> usize {
    events.iter().filter(|e| e["reason"] == reason).count()
}

fn metric(addr: &str, name: &str) -> f64 {
    common::scrape_metrics(addr)
        .get(name)
        .copied()
        .unwrap_or(0.0)
}

#[test]
fn an_invalid_policy_gets_exactly_one_event_that_describe_shows() {
    let Some(c) = Cluster::get("policy_events") else {
        return;
    };
    let (objects, [fe, pp, _]) = shop("events", 12);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let metrics = common::free_loopback_addr();
    let (server, mut g) = c.serve_synced(&dir, &["--metrics", &metrics]);
    let get = request((&fe, "events", "frontend"), &pp, 8080, "GET", "/");
    assert_eq!(g.check(&get), Ok(OK));

    // A namespaced policy whose selector does not parse (the CRD schema admits it).
    let bad = c.apply(cnp(
        "events",
        "bad-selector",
        json!({"order": 50, "selector": "app == ", "ingress": [{"action": "Allow"}]}),
    ));
    // A global one whose rule's selector does not parse.
    let gbad = c.apply(gnp(
        "bad-rule",
        json!({"order": 60, "selector": "app == 'oncall'",
               "ingress": [{"action": "Allow", "source": {"selector": "role in {'a'"}}]}),
    ));
    g.wait_for(&get, DENIED, "the invalid policy fails closed");
    let events = c.wait_events(&bad, "InvalidPolicy", 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    println!(
        "the Event on events/default.bad-selector:\n{}",
        serde_json::to_string_pretty(e).unwrap()
    );
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["metadata"]["namespace"], "events");
    assert_eq!(
        e["involvedObject"]["apiVersion"],
        "crd.projectcalico.org/v1"
    );
    assert_eq!(e["involvedObject"]["kind"], "NetworkPolicy");
    assert_eq!(e["involvedObject"]["namespace"], "events");
    assert_eq!(e["involvedObject"]["name"], "default.bad-selector");
    assert_eq!(e["involvedObject"]["uid"], bad["metadata"]["uid"]);
    assert_eq!(e["reportingComponent"], "alp-authz");
    assert_eq!(e["action"], "FailClosed");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid policy: it fails closed"),
        "{message}"
    );
    assert!(
        message.contains("spec.selector: invalid selector `app == `"),
        "the field path and the selector: {message}"
    );
    assert!(
        message.ends_with("\napp == \n       ^ expected string literal"),
        "the parser's caret: {message}"
    );
    // The global policy's Event: in `default`, its field path the rule's.
    let gevents = c.wait_events(&gbad, "InvalidPolicy", 1);
    assert_eq!(gevents.len(), 1, "{gevents:#?}");
    assert_eq!(gevents[0]["metadata"]["namespace"], "default");
    assert!(gevents[0]["involvedObject"].get("namespace").is_none());
    let gmessage = gevents[0]["message"].as_str().unwrap();
    assert!(
        gmessage.contains("spec.ingress[0].source.selector: invalid selector `role in {'a'`"),
        "{gmessage}"
    );
    assert!(gmessage.contains('^'), "{gmessage}");

    // Unrelated changes, each published (the state's generation moves): a new policy, a
    // relabelled namespace, the invalid policy relabelled (a new resourceVersion, the same
    // generation), the new policy deleted.
    let generation = "alp_authz_state_generation";
    let published_after = |before: f64| {
        let started = Instant::now();
        while metric(&metrics, generation) <= before {
            assert!(started.elapsed() < BOUND, "no publication");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let lock = cnp(
        "events",
        "lock-frontend",
        json!({"order": 10, "selector": "app == 'frontend'", "ingress": [{"action": "Deny"}]}),
    );
    let g0 = metric(&metrics, generation);
    c.apply(lock.clone());
    published_after(g0);
    let g1 = metric(&metrics, generation);
    set_labels(&c, "events", json!({"team": "shop", "touched": "yes"}));
    published_after(g1);
    let g2 = metric(&metrics, generation);
    c.label(&bad, json!({"relabelled": "yes"}));
    published_after(g2);
    let g3 = metric(&metrics, generation);
    c.delete(&lock);
    published_after(g3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&c.describe_events(&bad), "InvalidPolicy"), 1);
    assert_eq!(count(&c.describe_events(&gbad), "InvalidPolicy"), 1);
    assert!(metric(&metrics, "alp_authz_policy_events_deduplicated_total") >= 1.0);
    let created = "alp_authz_policy_events_total{result=\"created\"}";
    assert_eq!(metric(&metrics, created), 2.0);

    // A restart lists everything again, with nothing remembered: the same Events are
    // refused as existing (409), and nothing is duplicated.
    drop(g);
    drop(server);
    let metrics = common::free_loopback_addr();
    let server = c.serve(&dir, &["--metrics", &metrics]);
    server.wait_for_log("synced with the Kubernetes API");
    let exists = "alp_authz_policy_events_total{result=\"already_exists\"}";
    let started = Instant::now();
    while metric(&metrics, exists) < 2.0 {
        assert!(
            started.elapsed() < BOUND,
            "the relisted policies were never reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&metrics, created), 0.0);
    assert_eq!(count(&c.describe_events(&bad), "InvalidPolicy"), 1);
    assert_eq!(count(&c.describe_events(&gbad), "InvalidPolicy"), 1);

    // Fixed: a Normal Event says it is enforced again.
    let fixed = c.apply(cnp(
        "events",
        "bad-selector",
        json!({"order": 50, "selector": "app == 'productpage'", "ingress": [{"action": "Allow"}]}),
    ));
    let mut g = Grpc::connect(&server);
    g.wait_for(&get, OK, "the fixed policy allows");
    let events = c.wait_events(&fixed, "PolicyValid", 1);
    assert_eq!(count(&events, "PolicyValid"), 1, "{events:#?}");
    assert_eq!(count(&events, "InvalidPolicy"), 1, "{events:#?}");
    let normal = events
        .iter()
        .find(|e| e["reason"] == "PolicyValid")
        .unwrap();
    assert_eq!(normal["type"], "Normal");
}

#[test]
fn policy_events_off_with_the_flag_and_refused_without_the_rule() {
    let Some(c) = Cluster::get("policy_events_off") else {
        return;
    };
    let (objects, [fe, pp, oc]) = shop("events-off", 13);
    c.apply_all(&objects);
    let dir = tempfile::tempdir().unwrap();
    let metrics = common::free_loopback_addr();
    let get = request((&fe, "events-off", "frontend"), &pp, 8080, "GET", "/");
    let to_oncall = request((&pp, "events-off", "productpage"), &oc, 8080, "GET", "/");

    // --no-policy-events: the policy fails closed, and no Event is written.
    let (server, mut g) = c.serve_synced(&dir, &["--metrics", &metrics, "--no-policy-events"]);
    assert_eq!(g.check(&get), Ok(OK));
    // Invalid in a rule: it fails closed on what its own selector selects (productpage).
    let bad = c.apply(cnp(
        "events-off",
        "bad-selector",
        json!({"order": 50, "selector": "app == 'productpage'",
               "ingress": [{"action": "Allow", "source": {"selector": "("}}]}),
    ));
    server.wait_for_log("invalid policy");
    g.wait_for(&get, DENIED, "the invalid policy fails closed");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.describe_events(&bad), Vec::<Value>::new());
    assert_eq!(
        metric(
            &metrics,
            "alp_authz_policy_events_total{result=\"created\"}"
        ),
        0.0
    );
    drop(g);
    drop(server);

    // The ClusterRole without its `events` rule: the create is refused (403), said once,
    // counted, and serving goes on.
    let kubeconfig = c.alp_kubeconfig(dir.path(), |role| {
        role["rules"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r["resources"] != json!(["events"]));
    });
    let metrics = common::free_loopback_addr();
    let server = serve_with(&kubeconfig, &["--metrics", &metrics]);
    let line = server.wait_for_log("cannot create Kubernetes Events (403 Forbidden)");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("default.bad-selector"),
        "names the object: {line}"
    );
    let mut g = Grpc::connect(&server);
    g.wait_health(1, "serving without the events rule");
    assert_eq!(g.check(&get), Ok(DENIED), "still fails closed");
    assert_eq!(g.check(&to_oncall), Ok(OK), "and serves the rest");
    let forbidden = "alp_authz_policy_events_total{result=\"forbidden\"}";
    assert!(metric(&metrics, forbidden) >= 1.0);
    // Another invalid policy: refused again, logged at debug only, counted.
    c.apply(gnp(
        "bad-too",
        json!({"order": 60, "selector": "(", "ingress": [{"action": "Allow"}]}),
    ));
    let started = Instant::now();
    while metric(&metrics, forbidden) < 2.0 {
        assert!(
            started.elapsed() < BOUND,
            "the second refusal was not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.describe_events(&bad), Vec::<Value>::new());
    assert_eq!(
        g.check(&to_oncall),
        Ok(DENIED),
        "the global one fails closed everywhere"
    );
    // The other tests get the shipped role back (Cluster::serve applies it).
    c.apply_rbac(|_| {});
}

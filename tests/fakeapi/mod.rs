//! An in-process fake Kubernetes API server that speaks the real HTTP protocol, so that the real
//! kube client code (discovery, paginated lists, watches, backoff, relists) runs against it.
//!
//! What it serves, as kube-apiserver does:
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}/{version}`;
//! - `list` (`GET` a collection) with `resourceVersion` in the list metadata, `limit` and
//!   `continue` pagination, and `410 Gone` (`Expired`) for a `continue` token older than the
//!   last compaction;
//! - `watch` (`?watch=true`): a chunked stream of JSON lines with `ADDED`, `MODIFIED`,
//!   `DELETED`, `BOOKMARK` (when `allowWatchBookmarks`) and `ERROR` events, starting after the
//!   given `resourceVersion`; one older than the last compaction gets an `ERROR` event with a
//!   `410` Status (`too old resource version`), as the real server sends it;
//! - metadata-only lists and watches (`Accept: …;as=PartialObjectMetadataList`);
//! - namespaced collections (`/namespaces/{ns}/…`) and field selectors on `metadata.name`,
//!   `metadata.namespace` and `spec.nodeName`;
//! - `404 NotFound` Status objects for what it does not serve.
//!
//! The test drives it: [`FakeApi::apply`] / [`FakeApi::delete`] change objects (a new
//! `resourceVersion` each, as etcd would), [`FakeApi::compact`] forgets history,
//! [`FakeApi::expire_watches`] ends every open watch with `410`, [`FakeApi::stop`] and
//! [`FakeApi::restart`] take the server away (all connections dropped) and bring it back on the
//! same port with the same objects. [`FakeApi::requests`] records what clients asked for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Frame, Incoming},
    service::service_fn,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;

/// Which Calico API the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calico {
    /// `projectcalico.org/v3` (the Calico API server, or 3.32 v3 CRDs).
    V3,
    /// `crd.projectcalico.org/v1` only (a manifest install without the Calico API server).
    Crd,
    /// Both (a cluster with the Calico API server over its CRDs).
    Both,
    /// No Calico at all.
    None,
}

/// A served resource.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl ResourceDef {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Built-in kinds' list items carry no `apiVersion`/`kind`; custom resources' do.
    fn builtin(&self) -> bool {
        self.group.is_empty() || self.group.ends_with(".k8s.io")
    }
}

const CALICO_KINDS: [(&str, &str, bool); 8] = [
    ("tiers", "Tier", false),
    ("globalnetworkpolicies", "GlobalNetworkPolicy", false),
    ("networkpolicies", "NetworkPolicy", true),
    (
        "stagedglobalnetworkpolicies",
        "StagedGlobalNetworkPolicy",
        false,
    ),
    ("stagednetworkpolicies", "StagedNetworkPolicy", true),
    (
        "stagedkubernetesnetworkpolicies",
        "StagedKubernetesNetworkPolicy",
        true,
    ),
    ("networksets", "NetworkSet", true),
    ("globalnetworksets", "GlobalNetworkSet", false),
];

fn served(calico: Calico, network_policy_api: bool) -> Vec<ResourceDef> {
    let def = |g: &str, v: &str, plural: &str, kind: &str, namespaced| ResourceDef {
        group: g.into(),
        version: v.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
    };
    let mut out = vec![
        def("", "v1", "namespaces", "Namespace", false),
        def("", "v1", "serviceaccounts", "ServiceAccount", true),
        def("", "v1", "pods", "Pod", true),
        def("", "v1", "configmaps", "ConfigMap", true),
        def(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
        def(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
    ];
    if network_policy_api {
        // SIG Network's network-policy-api CRDs: ClusterNetworkPolicy, and the kinds before it.
        out.extend([
            def(
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies",
                "ClusterNetworkPolicy",
                false,
            ),
            def(
                "policy.networking.k8s.io",
                "v1alpha1",
                "adminnetworkpolicies",
                "AdminNetworkPolicy",
                false,
            ),
            def(
                "policy.networking.k8s.io",
                "v1alpha1",
                "baselineadminnetworkpolicies",
                "BaselineAdminNetworkPolicy",
                false,
            ),
        ]);
    }
    let groups: &[(&str, &str)] = match calico {
        Calico::V3 => &[("projectcalico.org", "v3")],
        Calico::Crd => &[("crd.projectcalico.org", "v1")],
        Calico::Both => &[("projectcalico.org", "v3"), ("crd.projectcalico.org", "v1")],
        Calico::None => &[],
    };
    for (g, v) in groups {
        for (plural, kind, namespaced) in CALICO_KINDS {
            out.push(def(g, v, plural, kind, namespaced));
        }
    }
    out
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub query: String,
    pub watch: bool,
    /// The HTTP status of the response.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    resource: usize,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    rv: u64,
    /// Watches from a resourceVersion older than this get `410`.
    compacted: u64,
    objects: Vec<BTreeMap<(String, String), Value>>,
    history: Vec<Event>,
    requests: Vec<Logged>,
}

#[derive(Debug)]
struct Inner {
    resources: Vec<ResourceDef>,
    store: Mutex<Store>,
    /// The newest resourceVersion, for watches to wake on.
    changed: watch::Sender<u64>,
    /// Bumped to send every open watch an `ERROR` event with this code (`410` ends it).
    inject: watch::Sender<(u64, u16)>,
    bookmark_every: Duration,
    port: u16,
    /// Delay before answering a (non-watch) request, to catch a paginated list between pages.
    list_delay: Mutex<Duration>,
}

/// The fake API server.
pub struct FakeApi {
    rt: tokio::runtime::Runtime,
    inner: Arc<Inner>,
    stop: Mutex<Option<watch::Sender<bool>>>,
}

impl FakeApi {
    /// Starts serving on an ephemeral loopback port, with the `policy.networking.k8s.io` kinds.
    pub fn start(calico: Calico) -> FakeApi {
        FakeApi::start_with(calico, true)
    }

    /// Starts serving, with or without the `policy.networking.k8s.io` kinds.
    pub fn start_with(calico: Calico, network_policy_api: bool) -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let resources = served(calico, network_policy_api);
        let inner = Arc::new(Inner {
            store: Mutex::new(Store {
                rv: 1000,
                compacted: 0,
                objects: vec![BTreeMap::new(); resources.len()],
                ..Store::default()
            }),
            resources,
            changed: watch::Sender::new(1000),
            inject: watch::Sender::new((0, 0)),
            bookmark_every: Duration::from_millis(500),
            port,
            list_delay: Mutex::new(Duration::ZERO),
        });
        let api = FakeApi {
            rt,
            inner,
            stop: Mutex::new(None),
        };
        api.serve(listener);
        api
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (stop_tx, stop_rx) = watch::channel(false);
        *lock(&self.stop) = Some(stop_tx);
        let inner = self.inner.clone();
        self.rt.spawn(accept(listener, inner, stop_rx));
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.port)
    }

    /// Writes a kubeconfig for this server into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Stops serving: the listener closes and every connection (watches included) is dropped.
    /// Objects and history are kept, as etcd keeps them.
    pub fn stop(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(true);
        }
        // Let the tasks see the signal and drop their sockets.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Serves again on the same port.
    pub fn restart(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.inner.port));
        let listener = self.rt.block_on(async {
            for _ in 0..100 {
                if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("cannot bind {addr} again");
        });
        self.serve(listener);
    }

    /// Adds or replaces an object (its `apiVersion` and `kind` pick the resource). Sets
    /// `resourceVersion`, and `uid` and `creationTimestamp` when absent. Returns the new
    /// resourceVersion.
    pub fn apply(&self, mut obj: Value) -> u64 {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let r = self
            .resource_of(&api_version, &kind)
            .unwrap_or_else(|| panic!("the fake does not serve {api_version} {kind}"));
        let key = key_of(&obj);
        let mut st = lock(&self.inner.store);
        st.rv += 1;
        let rv = st.rv;
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), rv.to_string().into());
        meta.entry("uid")
            .or_insert_with(|| format!("00000000-0000-4000-8000-{rv:012}").into());
        meta.entry("creationTimestamp")
            .or_insert_with(|| "2026-12-01T00:00:00Z".into());
        let kind = if st.objects[r].insert(key, obj.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.history.push(Event {
            rv,
            resource: r,
            kind,
            object: obj,
        });
        drop(st);
        self.inner.changed.send_replace(rv);
        rv
    }

    /// Applies every object of a YAML text (documents separated by `---`).
    pub fn apply_yaml(&self, text: &str) {
        for doc in yaml_docs(text) {
            self.apply(doc);
        }
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let r = self
            .resource_of(api_version, kind)
            .unwrap_or_else(|| panic!("the fake does not serve {api_version} {kind}"));
        let mut st = lock(&self.inner.store);
        let Some(mut obj) = st.objects[r].remove(&(namespace.to_owned(), name.to_owned())) else {
            return false;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        st.history.push(Event {
            rv,
            resource: r,
            kind: "DELETED",
            object: obj,
        });
        drop(st);
        self.inner.changed.send_replace(rv);
        true
    }

    /// Forgets the history (as etcd compaction does): a watch or `continue` from any earlier
    /// resourceVersion now gets `410 Gone`.
    pub fn compact(&self) {
        let mut st = lock(&self.inner.store);
        st.compacted = st.rv;
        st.history.clear();
    }

    /// Compacts and ends every open watch with an `ERROR` event carrying `410`, as when the
    /// watch cache falls too far behind.
    pub fn expire_watches(&self) {
        self.compact();
        self.watch_error(410);
    }

    /// Sends every open watch an `ERROR` event with this HTTP code, as kube-apiserver does on
    /// an internal error; `410` ends the watch, any other code leaves it open.
    pub fn watch_error(&self, code: u16) {
        self.inner.inject.send_modify(|(n, c)| {
            *n += 1;
            *c = code;
        });
    }

    /// Delays every answer to a non-watch request (lists, discovery) by `d`.
    pub fn set_list_delay(&self, d: Duration) {
        *lock(&self.inner.list_delay) = d;
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner.store).rv
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner.store).requests.clone()
    }

    fn resource_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.inner
            .resources
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(true);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The documents of a YAML text, as JSON values.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

async fn accept(
    listener: tokio::net::TcpListener,
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let inner = inner.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let inner = inner.clone();
                async move {
                    let delay = *lock(&inner.list_delay);
                    let listing = !req.uri().query().unwrap_or("").contains("watch=");
                    if listing && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let resp = handle(&inner, req);
                    if let Some(last) = lock(&inner.store).requests.last_mut() {
                        last.status = resp.status().as_u16();
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code.as_u16(), reason, message))
}

fn not_found() -> Response<Body> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let q = query_map(&query);
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    lock(&inner.store).requests.push(Logged {
        path: path.clone(),
        query: query.clone(),
        watch: watching,
        status: 0,
    });
    if req.method() != hyper::Method::GET {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake serves reads only",
        );
    }
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-fake", "platform": "linux/amd64"}),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", inner.port)}]}),
        ),
        ["apis"] => json_response(StatusCode::OK, &group_list(inner)),
        ["api", "v1"] => resource_list(inner, "", "v1"),
        ["apis", g, v] => resource_list(inner, g, v),
        ["api", "v1", rest @ ..] => collection(inner, "", "v1", rest, &q, watching, metadata_only),
        ["apis", g, v, rest @ ..] => collection(inner, g, v, rest, &q, watching, metadata_only),
        _ => not_found(),
    }
}

fn group_list(inner: &Inner) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in inner.resources.iter().filter(|r| !r.group.is_empty()) {
        let versions = groups.entry(&r.group).or_default();
        if !versions.contains(&r.version.as_str()) {
            versions.push(&r.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(inner: &Inner, group: &str, version: &str) -> Response<Body> {
    let resources: Vec<Value> = inner
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            })
        })
        .collect();
    if resources.is_empty() {
        return not_found();
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Field selector terms: (field, negated, value).
fn field_selector(q: &BTreeMap<String, String>) -> Result<Vec<(String, bool, String)>, String> {
    let Some(s) = q.get("fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    s.split(',')
        .map(|term| {
            let (field, neg, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, false, v)
            } else {
                return Err(format!("invalid field selector term `{term}`"));
            };
            match field {
                "metadata.name" | "metadata.namespace" | "spec.nodeName" => {
                    Ok((field.to_owned(), neg, value.to_owned()))
                }
                _ => Err(format!("field label not supported: {field}")),
            }
        })
        .collect()
}

fn field_value<'a>(obj: &'a Value, field: &str) -> &'a str {
    let v = match field {
        "metadata.name" => &obj["metadata"]["name"],
        "metadata.namespace" => &obj["metadata"]["namespace"],
        _ => &obj["spec"]["nodeName"],
    };
    v.as_str().unwrap_or("")
}

struct Filter {
    resource: usize,
    namespace: Option<String>,
    fields: Vec<(String, bool, String)>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && self
                .fields
                .iter()
                .all(|(f, neg, v)| (field_value(obj, f) == v) != *neg)
    }
}

/// How an object is sent: full, or as `PartialObjectMetadata`; list items of built-in kinds
/// without their type fields.
fn render(def: &ResourceDef, obj: &Value, metadata_only: bool, in_list: bool) -> Value {
    if metadata_only {
        return json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]});
    }
    let mut obj = obj.clone();
    if in_list
        && def.builtin()
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("apiVersion");
        m.remove("kind");
    }
    obj
}

fn collection(
    inner: &Arc<Inner>,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &BTreeMap<String, String>,
    watching: bool,
    metadata_only: bool,
) -> Response<Body> {
    let (namespace, plural) = match rest {
        [plural] => (None, *plural),
        ["namespaces", ns, plural] => (Some((*ns).to_owned()), *plural),
        _ => return not_found(),
    };
    let Some(resource) = inner
        .resources
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
    else {
        return not_found();
    };
    if namespace.is_some() && !inner.resources[resource].namespaced {
        return not_found();
    }
    let fields = match field_selector(q) {
        Ok(f) => f,
        Err(e) => return failure(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let filter = Filter {
        resource,
        namespace,
        fields,
    };
    if watching {
        watch_response(inner, filter, q, metadata_only)
    } else {
        list_response(inner, &filter, q, metadata_only)
    }
}

fn list_response(
    inner: &Inner,
    filter: &Filter,
    q: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response<Body> {
    let def = &inner.resources[filter.resource];
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let st = lock(&inner.store);
    // `continue` is "<resourceVersion of the first page>/<namespace>/<name>" of the last item.
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => {
            let mut parts = token.splitn(3, '/');
            let (Some(rv), Some(ns), Some(name)) = (
                parts.next().and_then(|r| r.parse::<u64>().ok()),
                parts.next(),
                parts.next(),
            ) else {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid continue token",
                );
            };
            if rv < st.compacted {
                return failure(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
            }
            (rv, Some((ns.to_owned(), name.to_owned())))
        }
    };
    let objects = &st.objects[filter.resource];
    let range = match &after {
        None => objects.range::<(String, String), _>(..),
        Some(k) => objects.range((
            std::ops::Bound::Excluded(k.clone()),
            std::ops::Bound::Unbounded,
        )),
    };
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, obj) in range {
        if !filter.matches(obj) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(render(def, obj, metadata_only, true));
        last = Some(k.clone());
    }
    drop(st);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if more && let Some((ns, name)) = last {
        metadata["continue"] = format!("{list_rv}/{ns}/{name}").into();
    }
    let (kind, api_version) = if metadata_only {
        (
            "PartialObjectMetadataList".to_owned(),
            "meta.k8s.io/v1".to_owned(),
        )
    } else {
        (format!("{}List", def.kind), def.api_version())
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
    )
}

fn watch_response(
    inner: &Arc<Inner>,
    filter: Filter,
    q: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response<Body> {
    let from = q.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let inner = inner.clone();
    tokio::spawn(async move {
        let _ = stream_events(
            &inner,
            &filter,
            &from,
            bookmarks,
            timeout,
            metadata_only,
            &tx,
        )
        .await;
    });
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(body.boxed())
        .unwrap()
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Writes watch events until the client goes away, the timeout passes or the watch expires.
async fn stream_events(
    inner: &Inner,
    filter: &Filter,
    from: &str,
    bookmarks: bool,
    timeout: Duration,
    metadata_only: bool,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    let def = &inner.resources[filter.resource];
    let mut changed = inner.changed.subscribe();
    let mut inject = inner.inject.subscribe();
    inject.borrow_and_update();
    let deadline = tokio::time::Instant::now() + timeout;
    let send = |b: Bytes| async move { tx.send(b).await.map_err(|_| ()) };

    // Where the stream starts: after `from`, or with the current state ("" and "0").
    let mut last: u64 = match from {
        "" | "0" => {
            let (rv, initial): (u64, Vec<Value>) = {
                let st = lock(&inner.store);
                let objs = st.objects[filter.resource]
                    .values()
                    .filter(|o| filter.matches(o))
                    .map(|o| render(def, o, metadata_only, false))
                    .collect();
                (st.rv, objs)
            };
            for o in initial {
                send(line("ADDED", o)).await?;
            }
            rv
        }
        rv => match rv.parse::<u64>() {
            Ok(rv) => rv,
            Err(_) => {
                let s = status_object(
                    400,
                    "BadRequest",
                    &format!("invalid resource version `{rv}`"),
                );
                return send(line("ERROR", s)).await;
            }
        },
    };
    let mut bookmark = tokio::time::interval(inner.bookmark_every);
    bookmark.tick().await;
    loop {
        // Everything after `last`, or `410` if that history is gone.
        let (pending, now, gone) = {
            let st = lock(&inner.store);
            if last < st.compacted {
                (Vec::new(), st.rv, Some(st.compacted))
            } else {
                let pending: Vec<(&'static str, Value)> = st
                    .history
                    .iter()
                    .filter(|e| {
                        e.rv > last && e.resource == filter.resource && filter.matches(&e.object)
                    })
                    .map(|e| (e.kind, render(def, &e.object, metadata_only, false)))
                    .collect();
                (pending, st.rv, None)
            }
        };
        if let Some(compacted) = gone {
            let s = status_object(
                410,
                "Expired",
                &format!("too old resource version: {last} ({compacted})"),
            );
            return send(line("ERROR", s)).await;
        }
        for (kind, obj) in pending {
            send(line(kind, obj)).await?;
        }
        last = now;
        tokio::select! {
            _ = changed.changed() => {}
            _ = inject.changed() => {
                let code = inject.borrow_and_update().1;
                if code == 410 {
                    let s = status_object(410, "Expired", "the watch expired: too old resource version");
                    return send(line("ERROR", s)).await;
                }
                let s = status_object(code, "InternalError", "an error on the server (\"injected\") has prevented the request from succeeding");
                send(line("ERROR", s)).await?;
            }
            _ = bookmark.tick(), if bookmarks => {
                let mark = json!({"kind": def.kind, "apiVersion": def.api_version(),
                                  "metadata": {"resourceVersion": last.to_string()}});
                send(line("BOOKMARK", mark)).await?;
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = tx.closed() => return Err(()),
        }
    }
}

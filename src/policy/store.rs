//! The mutable set of objects a state source (the files or the Kubernetes API) has seen,
//! keyed like the API server keys them, with an `apply` / `delete` surface. `Snapshot::build`
//! compiles it into the immutable index that `Check` reads.
//!
//! Decoding an object never fails the whole state: a policy that cannot be decoded or compiled
//! is kept as *invalid* (and fails closed, see `snapshot`), a bad Pod is dropped with a warning
//! (an unknown destination is denied; an unknown source matches no selector).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

use serde::Deserialize;

use super::{
    cluster_policy::{self, ClusterPolicy},
    compile::{self, Applies, Policy, PolicyId},
    model::{self, CalicoPolicy, K8sNetworkPolicy, ObjectMeta, PolicyKind, TypeMeta},
    protocol,
};

/// A decoded object, ready for [`Store::apply`].
#[derive(Debug, Clone)]
pub enum Object {
    /// A tier (or why it is invalid).
    Tier {
        /// Tier name.
        name: String,
        /// The compiled tier.
        tier: Result<compile::Tier, compile::CompileError>,
    },
    /// A policy of any kind (or why it is invalid).
    Policy(PolicyEntry),
    /// A namespace and its labels.
    Namespace {
        /// Name.
        name: String,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// A service account and its labels.
    ServiceAccount {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// A pod.
    Pod(PodInfo),
    /// An EndpointSlice: some endpoints of a Service.
    EndpointSlice(SliceInfo),
    /// A NetworkSet or GlobalNetworkSet.
    NetworkSet(NetSetInfo),
}

/// A NetworkSet (`namespace` set) or GlobalNetworkSet (`namespace` empty): its own labels and
/// nets. The labels rule selectors see (namespace, inherited `pcns.`) are added by the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSetInfo {
    /// Namespace; empty for a GlobalNetworkSet.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its own labels.
    pub labels: BTreeMap<String, String>,
    /// Its nets.
    pub nets: Vec<ipnet::IpNet>,
}

/// An EndpointSlice reduced to what `services` rule criteria need.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceInfo {
    /// Namespace.
    pub namespace: String,
    /// The slice's name.
    pub name: String,
    /// The Service it belongs to (`kubernetes.io/service-name`); `None`: none (ignored).
    pub service: Option<String>,
    /// Every endpoint address (ready or not: membership, not routing).
    pub ips: Vec<IpAddr>,
    /// The ports its endpoints serve: (port, protocol number); `None` as a port: any.
    pub ports: Vec<(Option<u16>, u8)>,
}

/// A policy as stored: its identity and either its compiled form or its error.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    /// Kind, namespace and user-facing name.
    pub id: PolicyId,
    /// The compiled policy, or the invalid one with what it could apply to.
    pub compiled: Result<Policy, InvalidPolicy>,
}

/// A policy that failed to decode or compile.
#[derive(Debug, Clone)]
pub struct InvalidPolicy {
    /// What is wrong.
    pub error: PolicyError,
    /// The endpoints it could apply to: its applicability when that much compiled, else every
    /// endpoint of its namespace (namespaced kinds) or every endpoint (global kinds).
    pub scope: Option<Applies>,
}

/// Why a policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The object does not have the policy's shape (a misspelt field, a wrong type): serde's
    /// message, with the field's path.
    #[error("{0}")]
    Decode(String),
    /// It decoded, but does not compile.
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
}

impl PolicyError {
    /// The field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Compile(e) => Some(&e.field),
            PolicyError::Decode(_) => None,
        }
    }

    /// A caret under the offending part of a selector (see [`compile::CompileError::caret`]).
    pub fn caret(&self) -> Option<String> {
        match self {
            PolicyError::Compile(e) => e.caret(),
            PolicyError::Decode(_) => None,
        }
    }
}

/// A pod reduced to what policy needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service account name.
    pub service_account: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Pod IPs (empty while pending, or for pods that are not workload endpoints).
    pub ips: Vec<IpAddr>,
    /// Named container ports: (name, port, protocol number).
    pub named_ports: Vec<(String, u16, u8)>,
    /// `spec.nodeName`, when scheduled.
    pub node: Option<String>,
}

/// A pod as the endpoint index uses it, prepared once when it arrives: its strings shared, its
/// labels as selectors see them (with Calico's `projectcalico.org/namespace`,
/// `…/serviceaccount` and `…/orchestrator`), and identical label sets interned, so that the
/// replicas of a Deployment share one map and a snapshot build only copies pointers.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Service account name.
    pub service_account: Arc<str>,
    /// Endpoint labels.
    pub labels: Arc<LabelMap>,
    /// Named container ports: (name, port, protocol number).
    pub named_ports: Arc<[(Arc<str>, u16, u8)]>,
    /// Pod IPs (empty: not a workload endpoint).
    pub ips: Vec<IpAddr>,
    /// Whether requests to it are decided here: always, unless the store serves one node
    /// ([`Store::set_node`]) and the pod runs elsewhere (then it is only ever a source).
    pub local: bool,
}

/// Labels as the evaluator sees them.
pub type LabelMap = BTreeMap<Arc<str>, Arc<str>>;

/// Why a document could not become an [`Object`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `apiVersion` or `kind` is missing.
    #[error("document has no `apiVersion` and `kind`")]
    NoKind,
    /// `metadata.name` is missing.
    #[error("{kind} has no `metadata.name`")]
    NoName {
        /// The kind.
        kind: String,
    },
    /// A non-policy object that does not have the expected shape.
    #[error("invalid {kind} `{name}`: {message}")]
    Invalid {
        /// The kind.
        kind: String,
        /// The object name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// What kind of object a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tier.
    Tier,
    /// A policy of the given kind.
    Policy(PolicyKind),
    /// A namespace.
    Namespace,
    /// A service account.
    ServiceAccount,
    /// A pod.
    Pod,
    /// An EndpointSlice.
    EndpointSlice,
    /// A Calico NetworkSet.
    NetworkSet,
    /// A Calico GlobalNetworkSet.
    GlobalNetworkSet,
    /// `kind: List` (items decoded one by one).
    List,
    /// Anything else: skipped.
    Other,
}

impl Kind {
    /// Classifies a document by `apiVersion` and `kind`.
    pub fn of(tm: &TypeMeta) -> Result<Kind, DecodeError> {
        if tm.kind.is_empty() || tm.api_version.is_empty() {
            return Err(DecodeError::NoKind);
        }
        let calico = tm.api_version == model::CALICO_V3 || tm.api_version == model::CALICO_CRD_V1;
        Ok(match (tm.api_version.as_str(), tm.kind.as_str()) {
            (_, "Tier") if calico => Kind::Tier,
            (_, "NetworkSet") if calico => Kind::NetworkSet,
            (_, "GlobalNetworkSet") if calico => Kind::GlobalNetworkSet,
            (model::CORE_V1, "Namespace") => Kind::Namespace,
            (model::CORE_V1, "ServiceAccount") => Kind::ServiceAccount,
            (model::CORE_V1, "Pod") => Kind::Pod,
            (model::DISCOVERY_V1, "EndpointSlice") => Kind::EndpointSlice,
            (_, "List") => Kind::List,
            (api, kind) => PolicyKind::classify(api, kind).map_or(Kind::Other, Kind::Policy),
        })
    }
}

#[derive(Deserialize)]
struct NameOnly {
    metadata: NameMeta,
}

#[derive(Deserialize)]
struct NameMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// What can still be read of a document that does not decode: its metadata (to name it) and,
/// for a policy, the endpoint selectors that say what it could apply to. Unknown fields are
/// ignored and a field of the wrong type reads as absent: either only widens the scope, so the
/// policy still fails closed over at least what it was meant to select (SEMANTICS.md §3.6).
#[derive(Debug, Default, Deserialize)]
pub struct Recovered {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Lenient<ScopeSpec>,
}

/// The endpoint selectors of a policy spec (Calico's, and a Kubernetes `podSelector`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpec {
    #[serde(default)]
    selector: Lenient<String>,
    #[serde(default)]
    namespace_selector: Lenient<String>,
    #[serde(default)]
    service_account_selector: Lenient<String>,
    #[serde(default)]
    pod_selector: Lenient<model::LabelSelector>,
}

/// A value that reads as absent when it does not have the expected shape.
#[derive(Debug)]
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Lenient(serde_json::from_value(v).ok()))
    }
}

impl Recovered {
    /// What a policy of `kind` that did not decode could apply to, from its readable
    /// selectors; `None` when they cannot be read either (then: its namespace, or everything).
    fn scope(&self, kind: PolicyKind) -> Option<Applies> {
        let ns = self.metadata.namespace.as_deref();
        if kind.is_kubernetes_shaped() {
            let pods = self.spec.0.as_ref()?.pod_selector.0.as_ref()?;
            return compile::kubernetes_applies(kind, ns, pods).ok();
        }
        let spec = self.spec.0.as_ref();
        let text = |f: fn(&ScopeSpec) -> &Lenient<String>| spec.and_then(|s| f(s).0.clone());
        let spec = model::PolicySpec {
            selector: text(|s| &s.selector),
            namespace_selector: text(|s| &s.namespace_selector),
            service_account_selector: text(|s| &s.service_account_selector),
            ..model::PolicySpec::default()
        };
        compile::compile_applies(
            kind,
            &CalicoPolicy {
                metadata: self.metadata.clone(),
                spec,
            },
        )
        .ok()
    }
}

/// Decodes one object of a known kind. `decode` is called with a fresh deserializer each time
/// it is needed (a document is read again to recover the name of an object that fails to
/// decode), and returns the error text (with the field path) on failure.
pub fn decode_object<F, G>(
    tm: &TypeMeta,
    kind: Kind,
    decode: F,
    meta: G,
) -> Result<Object, DecodeError>
where
    F: DecodeFn,
    G: FnOnce() -> Option<Recovered>,
{
    let invalid = |name: &str, message: String| DecodeError::Invalid {
        kind: tm.kind.clone(),
        name: name.to_owned(),
        message,
    };
    match kind {
        Kind::Tier => {
            let t: model::Tier = decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            if t.metadata.name.is_empty() {
                return Err(DecodeError::NoName {
                    kind: tm.kind.clone(),
                });
            }
            Ok(Object::Tier {
                name: t.metadata.name.clone(),
                tier: compile::Tier::try_from(&t),
            })
        }
        Kind::Namespace => {
            let n: model::Namespace = decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            named(tm, &n.metadata)?;
            Ok(Object::Namespace {
                name: n.metadata.name,
                labels: n.metadata.labels,
            })
        }
        Kind::ServiceAccount => {
            let s: model::ServiceAccount =
                decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            named(tm, &s.metadata)?;
            Ok(Object::ServiceAccount {
                namespace: s.metadata.namespace.unwrap_or_else(|| "default".into()),
                name: s.metadata.name,
                labels: s.metadata.labels,
            })
        }
        Kind::Pod => {
            let p: model::Pod = decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            named(tm, &p.metadata)?;
            let name = p.metadata.name.clone();
            PodInfo::try_from(&p)
                .map(Object::Pod)
                .map_err(|m| invalid(&name, m))
        }
        Kind::EndpointSlice => {
            let e: model::EndpointSlice =
                decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            named(tm, &e.metadata)?;
            let name = e.metadata.name.clone();
            SliceInfo::try_from(&e)
                .map(Object::EndpointSlice)
                .map_err(|m| invalid(&name, m))
        }
        Kind::NetworkSet | Kind::GlobalNetworkSet => {
            let n: model::NetworkSet = decode.decode().map_err(|m| invalid(&meta_name(meta), m))?;
            named(tm, &n.metadata)?;
            let name = n.metadata.name.clone();
            NetSetInfo::decode(kind == Kind::NetworkSet, tm, n)
                .map(Object::NetworkSet)
                .map_err(|m| invalid(&name, m))
        }
        Kind::Policy(pk) => Ok(Object::Policy(decode_policy(tm, pk, decode, meta)?)),
        Kind::List | Kind::Other => Err(DecodeError::NoKind),
    }
}

fn meta_name<G: FnOnce() -> Option<Recovered>>(meta: G) -> String {
    meta().map(|m| m.metadata.name).unwrap_or_default()
}

fn named(tm: &TypeMeta, m: &ObjectMeta) -> Result<(), DecodeError> {
    if m.name.is_empty() {
        Err(DecodeError::NoName {
            kind: tm.kind.clone(),
        })
    } else {
        Ok(())
    }
}

/// A way to decode the current document into any type, returning the error text on failure.
pub trait DecodeFn {
    /// Decodes into `T`.
    fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

/// An in-memory document (`yaml_serde::Value` or `serde_json::Value`) to decode from; errors
/// name the path of the field at fault (`spec.ingress[0].action: …`).
#[derive(Debug, Clone)]
pub struct FromValue<V>(pub V);

impl<V> DecodeFn for FromValue<V>
where
    V: for<'de> serde::Deserializer<'de>,
    for<'de> <V as serde::Deserializer<'de>>::Error: std::fmt::Display,
{
    fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        serde_path_to_error::deserialize(self.0).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })
    }
}

/// Decodes one object document (not a `List`). `Ok(None)` for kinds alp-authz does not read.
pub fn decode_document<V>(v: V) -> Result<Option<(TypeMeta, Object)>, DecodeError>
where
    V: Clone + for<'de> serde::Deserializer<'de>,
    for<'de> <V as serde::Deserializer<'de>>::Error: std::fmt::Display,
{
    let tm: TypeMeta = FromValue(v.clone())
        .decode()
        .map_err(|_| DecodeError::NoKind)?;
    let kind = Kind::of(&tm)?;
    if kind == Kind::Other {
        return Ok(None);
    }
    if kind == Kind::List {
        return Err(DecodeError::Invalid {
            kind: tm.kind.clone(),
            name: String::new(),
            message: "a List must be expanded by its caller".into(),
        });
    }
    let meta_doc = v.clone();
    let meta = move || {
        FromValue(meta_doc.clone())
            .decode::<Recovered>()
            .ok()
            .or_else(|| {
                // Metadata that does not decode whole (a label that is not a string) still
                // names the object in the error.
                let n = FromValue(meta_doc).decode::<NameOnly>().ok()?.metadata;
                Some(Recovered {
                    metadata: ObjectMeta {
                        name: n.name,
                        namespace: n.namespace,
                        ..ObjectMeta::default()
                    },
                    ..Recovered::default()
                })
            })
    };
    let obj = decode_object(&tm, kind, FromValue(v), meta)?;
    Ok(Some((tm, obj)))
}

fn decode_policy<F: DecodeFn, G: FnOnce() -> Option<Recovered>>(
    tm: &TypeMeta,
    kind: PolicyKind,
    decode: F,
    meta: G,
) -> Result<PolicyEntry, DecodeError> {
    type Decoded = (
        String,
        Option<String>,
        Result<Policy, compile::CompileError>,
        Option<Applies>,
    );
    let decoded: Result<Decoded, String> = if kind.is_cluster_network_policy() {
        decode.decode::<ClusterPolicy>().map(|p| {
            let compiled = cluster_policy::compile(kind, &p);
            let name = cluster_policy::calico_name(kind, &p.metadata.name);
            let scope = compiled
                .is_err()
                .then(|| cluster_policy::scope(&p))
                .flatten();
            (name, None, compiled, scope)
        })
    } else if kind.is_kubernetes_shaped() {
        decode.decode::<K8sNetworkPolicy>().map(|p| {
            let compiled = compile::compile_kubernetes(kind, &p);
            let name = format!("{}{}", compile::KNP_PREFIX, p.metadata.name);
            let scope = compiled
                .is_err()
                .then(|| {
                    compile::kubernetes_applies(
                        kind,
                        p.metadata.namespace.as_deref(),
                        &p.spec.pod_selector,
                    )
                    .ok()
                })
                .flatten();
            (name, p.metadata.namespace, compiled, scope)
        })
    } else {
        decode.decode::<CalicoPolicy>().map(|p| {
            let name = compile::calico_policy_name(&p, &tm.api_version);
            let compiled = compile::compile_named(kind, &name, &p);
            let scope = compiled
                .is_err()
                .then(|| compile::compile_applies(kind, &p).ok())
                .flatten();
            (name, p.metadata.namespace, compiled, scope)
        })
    };
    match decoded {
        Ok((name, ns, compiled, scope)) => {
            let (id, compiled) = match compiled {
                Ok(p) => (p.id.clone(), Ok(p)),
                Err(e) => (
                    policy_id(kind, ns.as_deref(), &name)?,
                    Err(InvalidPolicy {
                        error: PolicyError::Compile(e),
                        scope,
                    }),
                ),
            };
            Ok(PolicyEntry { id, compiled })
        }
        Err(message) => {
            // The object does not even have the policy shape (a misspelt field, a wrong type):
            // recover its name and its readable selectors, so that it still fails closed over
            // what it could have selected, and no more (SEMANTICS.md §3.6).
            let recovered = meta().unwrap_or_default();
            let m = &recovered.metadata;
            let name = if kind.is_kubernetes_shaped() {
                format!("{}{}", compile::KNP_PREFIX, m.name)
            } else if kind.is_cluster_network_policy() {
                cluster_policy::calico_name(kind, &m.name)
            } else if tm.api_version == model::CALICO_CRD_V1 {
                compile::calico_policy_name(
                    &CalicoPolicy {
                        metadata: m.clone(),
                        spec: model::PolicySpec::default(),
                    },
                    &tm.api_version,
                )
            } else {
                m.name.clone()
            };
            Ok(PolicyEntry {
                id: policy_id(kind, m.namespace.as_deref(), &name)?,
                compiled: Err(InvalidPolicy {
                    error: PolicyError::Decode(message),
                    scope: recovered.scope(kind),
                }),
            })
        }
    }
}

fn policy_id(kind: PolicyKind, ns: Option<&str>, name: &str) -> Result<PolicyId, DecodeError> {
    if name.is_empty()
        || [
            compile::KNP_PREFIX,
            cluster_policy::ANP_PREFIX,
            cluster_policy::BANP_PREFIX,
        ]
        .contains(&name)
    {
        return Err(DecodeError::NoName {
            kind: kind.as_str().to_owned(),
        });
    }
    let namespace = match (kind.is_namespaced(), ns.filter(|n| !n.is_empty())) {
        (true, Some(ns)) => Some(Arc::from(ns)),
        (true, None) => {
            return Err(DecodeError::Invalid {
                kind: kind.as_str().to_owned(),
                name: name.to_owned(),
                message: "a namespaced policy needs `metadata.namespace`".into(),
            });
        }
        (false, _) => None,
    };
    Ok(PolicyId {
        kind,
        namespace,
        name: name.into(),
    })
}

impl TryFrom<&model::EndpointSlice> for SliceInfo {
    type Error = String;

    fn try_from(e: &model::EndpointSlice) -> Result<SliceInfo, String> {
        let ips = match e.address_type.as_str() {
            "IPv4" | "IPv6" => e
                .endpoints
                .iter()
                .flat_map(|ep| &ep.addresses)
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| format!("`{a}` is not an IP address"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            // FQDN endpoints are not workloads a request can come from or go to by address.
            _ => Vec::new(),
        };
        let ports = e
            .ports
            .iter()
            .map(|p| {
                let port = p
                    .port
                    .map(|n| u16::try_from(n).map_err(|_| format!("port `{n}` is outside 0–65535")))
                    .transpose()?;
                let proto = protocol::kubernetes(p.protocol.as_deref())
                    .map_err(|other| format!("port protocol `{other}` is not TCP, UDP or SCTP"))?;
                Ok((port, proto))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SliceInfo {
            namespace: e
                .metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            name: e.metadata.name.clone(),
            service: e.metadata.labels.get(model::SERVICE_NAME_LABEL).cloned(),
            ips,
            ports,
        })
    }
}

impl TryFrom<&model::Pod> for PodInfo {
    type Error = String;

    fn try_from(p: &model::Pod) -> Result<PodInfo, String> {
        let namespace = p
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let service_account = p
            .spec
            .service_account_name
            .clone()
            .or_else(|| p.spec.service_account.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        // Host-network and finished pods are not Calico workload endpoints: their IPs belong to
        // the node or may be reused, so they must never resolve to this pod.
        let ips = if is_finished(p) || p.spec.host_network == Some(true) {
            Vec::new()
        } else {
            pod_ips(p)?
        };
        let mut named_ports = Vec::new();
        for c in p.spec.containers.iter().chain(&p.spec.init_containers) {
            for port in &c.ports {
                let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let number = u16::try_from(port.container_port).map_err(|_| {
                    format!(
                        "container port `{}` is outside 0–65535",
                        port.container_port
                    )
                })?;
                let proto = protocol::kubernetes(port.protocol.as_deref()).map_err(|other| {
                    format!("container port protocol `{other}` is not TCP, UDP or SCTP")
                })?;
                named_ports.push((name.to_owned(), number, proto));
            }
        }
        Ok(PodInfo {
            namespace,
            name: p.metadata.name.clone(),
            service_account,
            labels: p.metadata.labels.clone(),
            ips,
            named_ports,
            node: p.spec.node_name.clone().filter(|n| !n.is_empty()),
        })
    }
}

/// Whether a Pod is finished (Calico's `conversion.go` IsFinished): phase `Failed`,
/// `Succeeded` or `Completed`, or being deleted after its CNI emptied its IP annotation (the
/// moment the pod loses its IP, which may already belong to a new pod).
fn is_finished(p: &model::Pod) -> bool {
    let annotations = &p.metadata.annotations;
    let released = |key: &str| annotations.get(key).is_some_and(|v| v.is_empty());
    if p.metadata.deletion_timestamp.is_some()
        && (released(model::ANNOTATION_POD_IP) || released(model::ANNOTATION_AWS_POD_IPS))
    {
        return true;
    }
    matches!(
        p.status.phase.as_deref(),
        Some("Failed" | "Succeeded" | "Completed")
    )
}

/// A Pod's IPs as Calico's `conversion.go` getPodIPs reads them: `status.podIPs`, else
/// `status.podIP`, else Calico CNI's `podIPs` then `podIP` annotation, else the AWS VPC CNI's
/// `pod-ips` (annotations hold CIDRs or addresses, comma-separated). A value that is no
/// address is an error (the pod is dropped, as Calico drops it).
fn pod_ips(p: &model::Pod) -> Result<Vec<IpAddr>, String> {
    let annotation = |key: &str| {
        p.metadata
            .annotations
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let listed: Vec<&str> = if !p.status.pod_ips.is_empty() {
        p.status.pod_ips.iter().map(|i| i.ip.as_str()).collect()
    } else if let Some(ip) = p.status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
        vec![ip]
    } else if let Some(ips) = annotation(model::ANNOTATION_POD_IPS) {
        ips.split(',').collect()
    } else if let Some(ip) = annotation(model::ANNOTATION_POD_IP) {
        vec![ip]
    } else if let Some(ips) = annotation(model::ANNOTATION_AWS_POD_IPS) {
        ips.split(',').collect()
    } else {
        Vec::new()
    };
    let mut ips = Vec::new();
    for raw in listed {
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        // `cnet.ParseCIDROrIP`: an address, or a CIDR whose address part is taken.
        let ip = match text.parse::<ipnet::IpNet>() {
            Ok(net) => Ok(net.addr()),
            Err(_) => text.parse::<IpAddr>(),
        }
        .map_err(|_| format!("`{text}` is not an IP address"))?;
        let ip = ip.to_canonical();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

impl NetSetInfo {
    /// From the API object. The `crd.projectcalico.org/v1` storage form keeps the v3 labels in
    /// the `projectcalico.org/metadata` annotation when it has them (libcalico-go
    /// `resources/customresource.go`). A net that does not parse is skipped with a warning and
    /// the rest kept, as libcalico-go `updateprocessors/networksetprocessor.go`
    /// convertNetworkSetV2ToV1Value does (dropping the whole set would drop more addresses
    /// from the Deny rules that select it).
    fn decode(namespaced: bool, tm: &TypeMeta, n: model::NetworkSet) -> Result<NetSetInfo, String> {
        let mut labels = n.metadata.labels;
        if tm.api_version == model::CALICO_CRD_V1
            && let Some(v3) = n
                .metadata
                .annotations
                .get(model::CALICO_METADATA_ANNOTATION)
                .and_then(|a| serde_json::from_str::<model::CalicoV3Metadata>(a).ok())
                .and_then(|m| m.labels)
        {
            labels = v3;
        }
        let nets = n
            .spec
            .nets
            .iter()
            .enumerate()
            .filter_map(
                |(i, s)| match compile::parse_cidr(&format!("spec.nets[{i}]"), s) {
                    Ok(net) => Some(net),
                    Err(e) => {
                        tracing::warn!(
                            "{} `{}`: {e}: skipped, the other nets kept",
                            tm.kind,
                            n.metadata.name
                        );
                        None
                    }
                },
            )
            .collect();
        Ok(NetSetInfo {
            namespace: if namespaced {
                n.metadata.namespace.unwrap_or_else(|| "default".into())
            } else {
                String::new()
            },
            name: n.metadata.name,
            labels,
            nets,
        })
    }
}

/// Every object a state source has given us, keyed as the API server keys them.
#[derive(Debug)]
pub struct Store {
    pub(crate) tiers: BTreeMap<String, Result<compile::Tier, compile::CompileError>>,
    /// Compiled policies are shared with every snapshot built from them (never copied).
    pub(crate) policies: BTreeMap<PolicyId, Result<Arc<Policy>, InvalidPolicy>>,
    pub(crate) namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) service_accounts: BTreeMap<(String, String), BTreeMap<String, String>>,
    pub(crate) pods: BTreeMap<(String, String), Workload>,
    pub(crate) endpoint_slices: BTreeMap<(String, String), SliceInfo>,
    /// NetworkSets by (namespace, name); GlobalNetworkSets with an empty namespace.
    pub(crate) net_sets: BTreeMap<(String, String), NetSetInfo>,
    /// Every label set of a pod, once (see [`Workload`]).
    interned: std::collections::HashSet<Arc<LabelMap>>,
    /// Every namespace and service-account name of a pod, once: 100k pods share a few thousand.
    names: std::collections::HashSet<Arc<str>>,
    /// Identifies this store, so that a snapshot built from it can be updated from it.
    pub(crate) lineage: u64,
    changes: Changes,
    /// Per-node mode: the node whose pods are destinations here (see [`Store::set_node`]).
    node: Option<Arc<str>>,
}

impl Default for Store {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Store {
            tiers: BTreeMap::new(),
            policies: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            service_accounts: BTreeMap::new(),
            pods: BTreeMap::new(),
            endpoint_slices: BTreeMap::new(),
            net_sets: BTreeMap::new(),
            interned: std::collections::HashSet::new(),
            names: std::collections::HashSet::new(),
            lineage: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            changes: Changes::everything(),
            node: None,
        }
    }
}

/// What changed in a [`Store`] since the last [`Store::take_changes`]: what a snapshot built
/// before needs to be brought up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Everything may have changed (a new store).
    pub all: bool,
    /// Pods, Namespaces or ServiceAccounts.
    pub endpoints: bool,
    /// Pods applied or deleted, by (namespace, name): what the endpoint side must take out
    /// and put back.
    pub pods: BTreeSet<(String, String)>,
    /// Tiers.
    pub tiers: bool,
    /// Policies added, modified or deleted.
    pub policies: BTreeSet<PolicyId>,
    /// Namespaces whose Namespace object or one of whose ServiceAccounts changed: the labels
    /// that namespace and service-account selectors see there.
    pub namespaces: BTreeSet<String>,
    /// EndpointSlices (what `services` criteria match).
    pub services: bool,
    /// NetworkSets or GlobalNetworkSets.
    pub net_sets: bool,
}

impl Changes {
    /// Everything changed.
    pub fn everything() -> Self {
        Changes {
            all: true,
            ..Changes::default()
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all
            && !self.endpoints
            && !self.tiers
            && !self.services
            && !self.net_sets
            && self.policies.is_empty()
    }

    fn key(&mut self, key: &Key) {
        match key {
            Key::Tier(_) => self.tiers = true,
            Key::Policy(id) => {
                self.policies.insert(id.clone());
            }
            Key::Namespace(ns) | Key::ServiceAccount(ns, _) => {
                self.endpoints = true;
                self.namespaces.insert(ns.clone());
            }
            Key::Pod(ns, name) => {
                self.endpoints = true;
                self.pods.insert((ns.clone(), name.clone()));
            }
            Key::EndpointSlice(..) => self.services = true,
            Key::NetworkSet(..) => self.net_sets = true,
        }
    }
}

/// The key of an object, for [`Store::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A tier.
    Tier(String),
    /// A policy.
    Policy(PolicyId),
    /// A namespace.
    Namespace(String),
    /// A service account (namespace, name).
    ServiceAccount(String, String),
    /// A pod (namespace, name).
    Pod(String, String),
    /// An EndpointSlice (namespace, name).
    EndpointSlice(String, String),
    /// A NetworkSet (namespace, name), or a GlobalNetworkSet (empty namespace, name).
    NetworkSet(String, String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Tier(n) => write!(f, "Tier {n}"),
            Key::Policy(id) => write!(f, "{} {id}", id.kind.as_str()),
            Key::Namespace(n) => write!(f, "Namespace {n}"),
            Key::ServiceAccount(ns, n) => write!(f, "ServiceAccount {ns}/{n}"),
            Key::Pod(ns, n) => write!(f, "Pod {ns}/{n}"),
            Key::EndpointSlice(ns, n) => write!(f, "EndpointSlice {ns}/{n}"),
            Key::NetworkSet(ns, n) if ns.is_empty() => write!(f, "GlobalNetworkSet {n}"),
            Key::NetworkSet(ns, n) => write!(f, "NetworkSet {ns}/{n}"),
        }
    }
}

impl Object {
    /// The key the object is stored under.
    pub fn key(&self) -> Key {
        match self {
            Object::Tier { name, .. } => Key::Tier(name.clone()),
            Object::Policy(p) => Key::Policy(p.id.clone()),
            Object::Namespace { name, .. } => Key::Namespace(name.clone()),
            Object::ServiceAccount {
                namespace, name, ..
            } => Key::ServiceAccount(namespace.clone(), name.clone()),
            Object::Pod(p) => Key::Pod(p.namespace.clone(), p.name.clone()),
            Object::EndpointSlice(e) => Key::EndpointSlice(e.namespace.clone(), e.name.clone()),
            Object::NetworkSet(n) => Key::NetworkSet(n.namespace.clone(), n.name.clone()),
        }
    }
}

impl Store {
    /// Tests: decodes every document of a multi-document YAML text and applies it; panics on
    /// a document that does not decode or is of a kind the store does not read.
    #[cfg(test)]
    pub(crate) fn apply_yaml(&mut self, text: &str) {
        for doc in yaml_serde::Deserializer::from_str(text) {
            let v = <yaml_serde::Value as serde::Deserialize>::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let (_, obj) = decode_document(v).unwrap().expect("a known kind");
            self.apply(obj);
        }
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an object. Returns the key of an object of the same identity that it
    /// replaced, if any (a file source uses this to report duplicates).
    pub fn apply(&mut self, obj: Object) -> Option<Key> {
        let key = obj.key();
        self.changes.key(&key);
        let replaced = match obj {
            Object::Tier { name, tier } => self.tiers.insert(name, tier).is_some(),
            Object::Policy(p) => self
                .policies
                .insert(p.id, p.compiled.map(Arc::new))
                .is_some(),
            Object::Namespace { name, labels } => self.namespaces.insert(name, labels).is_some(),
            Object::ServiceAccount {
                namespace,
                name,
                labels,
            } => self
                .service_accounts
                .insert((namespace, name), labels)
                .is_some(),
            Object::Pod(p) => {
                let at = (p.namespace.clone(), p.name.clone());
                let w = self.workload(p);
                self.pods.insert(at, w).is_some()
            }
            Object::EndpointSlice(e) => self
                .endpoint_slices
                .insert((e.namespace.clone(), e.name.clone()), e)
                .is_some(),
            Object::NetworkSet(n) => self
                .net_sets
                .insert((n.namespace.clone(), n.name.clone()), n)
                .is_some(),
        };
        replaced.then_some(key)
    }

    /// Per-node mode (`--node`): pods of other nodes are still indexed (address, namespace,
    /// service account, labels, named ports: what Felix's IP sets hold for every workload), so
    /// that a caller on another node is known, but they get no policy plan, since no request
    /// to them reaches this node. Set before any pod is applied.
    pub fn set_node(&mut self, node: Option<&str>) {
        self.node = node.map(Arc::from);
    }

    /// The shared copy of a namespace or service-account name.
    fn name(&mut self, s: &str) -> Arc<str> {
        match self.names.get(s) {
            Some(shared) => shared.clone(),
            None => {
                let a: Arc<str> = s.into();
                self.names.insert(a.clone());
                a
            }
        }
    }

    /// Prepares a pod for the endpoint index, interning its label set.
    fn workload(&mut self, pod: PodInfo) -> Workload {
        let local = self
            .node
            .as_deref()
            .is_none_or(|n| pod.node.as_deref() == Some(n));
        let namespace = self.name(&pod.namespace);
        let service_account = self.name(&pod.service_account);
        let mut labels: LabelMap = pod
            .labels
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
            .collect();
        labels.insert(compile::LABEL_NAMESPACE.into(), namespace.clone());
        labels.insert(compile::LABEL_ORCHESTRATOR.into(), "k8s".into());
        // "projectcalico.org/serviceaccount … only if the SA name is shorter than 63
        // characters" (reference/calico-selectors.md §5).
        if service_account.len() < 63 {
            labels.insert(
                compile::LABEL_SERVICE_ACCOUNT.into(),
                service_account.clone(),
            );
        }
        let labels = match self.interned.get(&labels) {
            Some(shared) => shared.clone(),
            None => {
                let l = Arc::new(labels);
                self.interned.insert(l.clone());
                l
            }
        };
        Workload {
            namespace,
            name: pod.name.as_str().into(),
            service_account,
            labels,
            named_ports: pod
                .named_ports
                .iter()
                .map(|(n, p, proto)| (Arc::from(n.as_str()), *p, *proto))
                .collect(),
            ips: pod.ips,
            local,
        }
    }

    /// Removes an object; returns whether it was there.
    pub fn delete(&mut self, key: &Key) -> bool {
        let removed = self.remove(key);
        if removed {
            self.changes.key(key);
        }
        removed
    }

    fn remove(&mut self, key: &Key) -> bool {
        match key {
            Key::Tier(n) => self.tiers.remove(n).is_some(),
            Key::Policy(id) => self.policies.remove(id).is_some(),
            Key::Namespace(n) => self.namespaces.remove(n).is_some(),
            Key::ServiceAccount(ns, n) => self
                .service_accounts
                .remove(&(ns.clone(), n.clone()))
                .is_some(),
            Key::Pod(ns, n) => self.pods.remove(&(ns.clone(), n.clone())).is_some(),
            Key::EndpointSlice(ns, n) => self
                .endpoint_slices
                .remove(&(ns.clone(), n.clone()))
                .is_some(),
            Key::NetworkSet(ns, n) => self.net_sets.remove(&(ns.clone(), n.clone())).is_some(),
        }
    }

    /// What changed since the last call (everything, for a new store).
    pub fn take_changes(&mut self) -> Changes {
        if self.changes.endpoints {
            // Label sets and names no pod uses any more (only the interner holds them).
            self.interned.retain(|l| Arc::strong_count(l) > 1);
            self.names.retain(|n| Arc::strong_count(n) > 1);
        }
        std::mem::take(&mut self.changes)
    }

    /// Counts of what the store holds: (tiers, policies, invalid policies, pods).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.tiers.len(),
            self.policies.len(),
            self.policies.values().filter(|p| p.is_err()).count(),
            self.pods.len(),
        )
    }

    /// Namespaces that pods live in but that have no Namespace object: namespace selectors see
    /// no labels for them, which is worth a warning in file mode.
    pub fn namespaces_without_object(&self) -> BTreeSet<&str> {
        self.pods
            .values()
            .map(|p| &*p.namespace)
            .filter(|ns| !self.namespaces.contains_key(*ns))
            .collect()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

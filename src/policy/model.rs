//! Calico- and Kubernetes-shaped resources as users and the API server write them.
//!
//! Step one of the pipeline: text (YAML or JSON) → these serde types. Nothing here interprets a
//! selector or decides anything; `compile` does that. This module must not import `compile`,
//! `snapshot`, tonic or anything Kubernetes-client specific.
//!
//! Policy specs reject unknown fields: a misspelt criterion (`serviceAcounts`) would otherwise be
//! dropped and the rule would match more than its author meant. Every field of the real Calico
//! schemas (`shared/schemas/`) is accepted, including the L3-only ones (`icmp`, `ipVersion`,
//! `doNotTrack`, …), which the compiler documents and ignores. Metadata, Pods, Namespaces and
//! ServiceAccounts accept unknown fields: they carry far more than we read.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `projectcalico.org/v3` API group and version.
pub const CALICO_V3: &str = "projectcalico.org/v3";
/// The `crd.projectcalico.org/v1` storage form of the same kinds.
pub const CALICO_CRD_V1: &str = "crd.projectcalico.org/v1";
/// Kubernetes NetworkPolicy.
pub const NETWORKING_V1: &str = "networking.k8s.io/v1";
/// Kubernetes `ClusterNetworkPolicy` (the version Calico ≥ 3.32 reads).
pub const POLICY_V1ALPHA2: &str = "policy.networking.k8s.io/v1alpha2";
/// Kubernetes `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy` (Calico ≤ 3.31).
pub const POLICY_V1ALPHA1: &str = "policy.networking.k8s.io/v1alpha1";
/// The core Kubernetes API.
pub const CORE_V1: &str = "v1";
/// EndpointSlices.
pub const DISCOVERY_V1: &str = "discovery.k8s.io/v1";
/// The label that names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation in which `crd.projectcalico.org/v1` objects keep their real v3 metadata.
pub const CALICO_METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// `apiVersion` and `kind`, read first to decide what a document is.
#[derive(Debug, Clone, Deserialize)]
pub struct TypeMeta {
    /// `apiVersion` of the object.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// `kind` of the object.
    #[serde(default)]
    pub kind: String,
}

/// The part of Kubernetes `ObjectMeta` that alp-authz reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace, for namespaced kinds.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (only `projectcalico.org/metadata` is used).
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Resource version, kept for diagnostics.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Set once deletion was requested (a terminating Pod).
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

/// The real v3 metadata that Calico stores in the `projectcalico.org/metadata` annotation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoV3Metadata {
    /// The v3 name.
    #[serde(default)]
    pub name: Option<String>,
    /// The v3 labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A Calico `NetworkSet` (namespaced) or `GlobalNetworkSet`: labelled nets that rule selectors
/// select by address (libcalico-go `api/pkg/apis/projectcalico/v3` NetworkSetSpec,
/// GlobalNetworkSetSpec: `nets`; `allowedEgressDomains` is for egress only and ignored here).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSet {
    /// Metadata (name, namespace, labels).
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: NetworkSetSpec,
}

/// `NetworkSet.spec` / `GlobalNetworkSet.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSetSpec {
    /// CIDRs (or bare addresses) of the set.
    #[serde(default, deserialize_with = "null_as_default")]
    pub nets: Vec<String>,
}

/// A Calico `Tier`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    /// Metadata; the name is the tier name.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: TierSpec,
}

/// `Tier.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Lower orders are evaluated first; absent sorts last.
    #[serde(default)]
    pub order: Option<f64>,
    /// `Deny` (default) or `Pass`.
    #[serde(default)]
    pub default_action: Option<String>,
}

/// The kinds of policy resource alp-authz understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    /// Calico `GlobalNetworkPolicy`.
    GlobalNetworkPolicy,
    /// Calico `NetworkPolicy` (namespaced).
    NetworkPolicy,
    /// Kubernetes `networking.k8s.io/v1` `NetworkPolicy`, converted as Calico converts it.
    KubernetesNetworkPolicy,
    /// Calico `StagedGlobalNetworkPolicy` (never enforced).
    StagedGlobalNetworkPolicy,
    /// Calico `StagedNetworkPolicy` (never enforced).
    StagedNetworkPolicy,
    /// Calico `StagedKubernetesNetworkPolicy` (never enforced).
    StagedKubernetesNetworkPolicy,
    /// Kubernetes `policy.networking.k8s.io/v1alpha2` `ClusterNetworkPolicy`, converted as
    /// Calico converts it (tiers `kube-admin` / `kube-baseline`).
    ClusterNetworkPolicy,
    /// Kubernetes `policy.networking.k8s.io/v1alpha1` `AdminNetworkPolicy` (Calico ≤ 3.31).
    AdminNetworkPolicy,
    /// Kubernetes `policy.networking.k8s.io/v1alpha1` `BaselineAdminNetworkPolicy`.
    BaselineAdminNetworkPolicy,
}

impl PolicyKind {
    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(
            self,
            PolicyKind::GlobalNetworkPolicy
                | PolicyKind::StagedGlobalNetworkPolicy
                | PolicyKind::ClusterNetworkPolicy
                | PolicyKind::AdminNetworkPolicy
                | PolicyKind::BaselineAdminNetworkPolicy
        )
    }

    /// Whether this is one of the cluster-scoped `policy.networking.k8s.io` kinds.
    pub fn is_cluster_network_policy(self) -> bool {
        matches!(
            self,
            PolicyKind::ClusterNetworkPolicy
                | PolicyKind::AdminNetworkPolicy
                | PolicyKind::BaselineAdminNetworkPolicy
        )
    }

    /// Whether this is a staged (shadow, never enforced) kind.
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedGlobalNetworkPolicy
                | PolicyKind::StagedNetworkPolicy
                | PolicyKind::StagedKubernetesNetworkPolicy
        )
    }

    /// Whether the spec is Kubernetes-shaped (`podSelector`, `from`) rather than Calico-shaped.
    pub fn is_kubernetes_shaped(self) -> bool {
        matches!(
            self,
            PolicyKind::KubernetesNetworkPolicy | PolicyKind::StagedKubernetesNetworkPolicy
        )
    }

    /// The enforced kind a staged kind stands in for (itself for enforced kinds).
    pub fn enforced(self) -> PolicyKind {
        match self {
            PolicyKind::StagedGlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
            PolicyKind::StagedNetworkPolicy => PolicyKind::NetworkPolicy,
            PolicyKind::StagedKubernetesNetworkPolicy => PolicyKind::KubernetesNetworkPolicy,
            k => k,
        }
    }

    /// The `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::KubernetesNetworkPolicy => "NetworkPolicy.networking.k8s.io",
            PolicyKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
            PolicyKind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy.policy.networking.k8s.io",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy.policy.networking.k8s.io",
            PolicyKind::BaselineAdminNetworkPolicy => {
                "BaselineAdminNetworkPolicy.policy.networking.k8s.io"
            }
        }
    }

    /// The kind as Calico's policy key names it (`model.PolicyKey.Kind`), which breaks ties in
    /// policy order.
    pub fn calico_key_kind(self) -> &'static str {
        match self {
            PolicyKind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
            other => other.as_str(),
        }
    }

    /// Classifies an `apiVersion`/`kind` pair; `None` for anything that is not a policy.
    pub fn classify(api_version: &str, kind: &str) -> Option<PolicyKind> {
        let calico = api_version == CALICO_V3 || api_version == CALICO_CRD_V1;
        match kind {
            "GlobalNetworkPolicy" if calico => Some(PolicyKind::GlobalNetworkPolicy),
            "NetworkPolicy" if calico => Some(PolicyKind::NetworkPolicy),
            "NetworkPolicy" if api_version == NETWORKING_V1 => {
                Some(PolicyKind::KubernetesNetworkPolicy)
            }
            "StagedGlobalNetworkPolicy" if calico => Some(PolicyKind::StagedGlobalNetworkPolicy),
            "StagedNetworkPolicy" if calico => Some(PolicyKind::StagedNetworkPolicy),
            "StagedKubernetesNetworkPolicy" if calico => {
                Some(PolicyKind::StagedKubernetesNetworkPolicy)
            }
            "ClusterNetworkPolicy" if api_version == POLICY_V1ALPHA2 => {
                Some(PolicyKind::ClusterNetworkPolicy)
            }
            "AdminNetworkPolicy" if api_version == POLICY_V1ALPHA1 => {
                Some(PolicyKind::AdminNetworkPolicy)
            }
            "BaselineAdminNetworkPolicy" if api_version == POLICY_V1ALPHA1 => {
                Some(PolicyKind::BaselineAdminNetworkPolicy)
            }
            _ => None,
        }
    }
}

/// A Calico `GlobalNetworkPolicy`/`NetworkPolicy` (or their staged forms) as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PolicySpec,
}

/// The spec shared by GlobalNetworkPolicy, NetworkPolicy and their staged forms.
///
/// `namespaceSelector`, `doNotTrack`, `preDNAT` and `applyOnForward` exist only on the global
/// kinds; the compiler rejects them on namespaced ones, as Calico's schema does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Tier name; absent means `default`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Order in the tier; absent sorts last.
    #[serde(default)]
    pub order: Option<f64>,
    /// Endpoint selector; empty means `all()`.
    #[serde(default)]
    pub selector: Option<String>,
    /// Global kinds only: selector over the endpoint's namespace labels.
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Selector over the endpoint's service account labels.
    #[serde(default)]
    pub service_account_selector: Option<String>,
    /// `Ingress`/`Egress`; absent applies the v3 default.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Ingress rules, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ingress: Vec<Rule>,
    /// Egress rules (parsed and validated; only ingress is enforced).
    #[serde(default, deserialize_with = "null_as_default")]
    pub egress: Vec<Rule>,
    /// Host-endpoint only: never applies to workload traffic at L7.
    #[serde(default)]
    pub do_not_track: Option<bool>,
    /// Host-endpoint only: never applies to workload traffic at L7.
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: Option<bool>,
    /// Host-endpoint only: never applies to workload traffic at L7.
    #[serde(default)]
    pub apply_on_forward: Option<bool>,
    /// Felix hint; never changes semantics.
    #[serde(default)]
    pub performance_hints: Option<Vec<String>>,
    /// Staged kinds only: `Set`, `Delete`, `Learn` or `Ignore`.
    #[serde(default)]
    pub staged_action: Option<String>,
}

/// One Calico rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// `Allow`, `Deny`, `Log` or `Pass`.
    #[serde(default)]
    pub action: String,
    /// 4 or 6 (ignored: an HTTP check has no say in it beyond the addresses).
    #[serde(default)]
    pub ip_version: Option<u8>,
    /// Protocol name or number.
    #[serde(default)]
    pub protocol: Option<NumOrString>,
    /// Negated protocol.
    #[serde(default)]
    pub not_protocol: Option<NumOrString>,
    /// ICMP match (never matches a TCP request; see compile).
    #[serde(default, rename = "icmp")]
    pub icmp: Option<IcmpFields>,
    /// Negated ICMP match (ignored for TCP).
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<IcmpFields>,
    /// Source criteria.
    #[serde(default)]
    pub source: EntityRule,
    /// Destination criteria.
    #[serde(default)]
    pub destination: EntityRule,
    /// HTTP criteria.
    #[serde(default)]
    pub http: Option<HttpMatch>,
    /// Free-form rule metadata.
    #[serde(default)]
    pub metadata: Option<RuleMetadata>,
}

/// `Rule.metadata`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    /// Annotations shown in explanations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `icmp` / `notICMP`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    /// ICMP type.
    #[serde(default, rename = "type")]
    pub icmp_type: Option<i64>,
    /// ICMP code.
    #[serde(default)]
    pub code: Option<i64>,
}

/// An integer or a string (protocols and ports).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NumOrString {
    /// A number.
    Num(i64),
    /// A string.
    Str(String),
}

/// `source` / `destination` of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// CIDRs the peer IP must be in (any).
    #[serde(default, deserialize_with = "null_as_default")]
    pub nets: Vec<String>,
    /// CIDRs the peer IP must not be in.
    #[serde(default, deserialize_with = "null_as_default")]
    pub not_nets: Vec<String>,
    /// Ports (numbers, `"a:b"` ranges, named ports).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<NumOrString>,
    /// Negated ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub not_ports: Vec<NumOrString>,
    /// Endpoint selector on the peer.
    #[serde(default)]
    pub selector: Option<String>,
    /// Negated endpoint selector on the peer.
    #[serde(default)]
    pub not_selector: Option<String>,
    /// Selector on the peer's namespace labels.
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Service-account match.
    #[serde(default)]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kubernetes Service match.
    #[serde(default)]
    pub services: Option<ServiceMatch>,
}

/// `serviceAccounts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Names (any); empty means any name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// Selector on the service account's labels.
    #[serde(default)]
    pub selector: Option<String>,
}

/// `services`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Service namespace (defaults to the policy's).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    /// Methods (any of them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub methods: Vec<String>,
    /// Paths (any of them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<HttpPath>,
}

/// One `http.paths` entry: exactly one of `exact` or `prefix`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPath {
    /// Exact path.
    #[serde(default)]
    pub exact: Option<String>,
    /// Segment-aligned prefix.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A Kubernetes `networking.k8s.io/v1` `NetworkPolicy` (or Calico's staged form of it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct K8sNetworkPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: K8sNetworkPolicySpec,
}

/// `NetworkPolicy.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicySpec {
    /// Pods the policy applies to.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Ingress rules.
    #[serde(default)]
    pub ingress: Option<Vec<K8sIngressRule>>,
    /// Egress rules (only their presence matters here).
    #[serde(default)]
    pub egress: Option<Vec<serde_json::Value>>,
    /// `Ingress` / `Egress`.
    #[serde(default)]
    pub policy_types: Option<Vec<String>>,
    /// Staged form only.
    #[serde(default)]
    pub staged_action: Option<String>,
}

/// A Kubernetes ingress rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sIngressRule {
    /// Peers (any); absent or empty means every source.
    #[serde(default)]
    pub from: Option<Vec<K8sPeer>>,
    /// Ports (any); absent or empty means every port.
    #[serde(default)]
    pub ports: Option<Vec<K8sPort>>,
}

/// A Kubernetes `NetworkPolicyPeer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPeer {
    /// Pods (in the policy namespace unless `namespaceSelector` is set).
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// CIDR block.
    #[serde(default)]
    pub ip_block: Option<K8sIpBlock>,
}

/// `ipBlock`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sIpBlock {
    /// CIDR.
    pub cidr: String,
    /// Excluded CIDRs.
    #[serde(default)]
    pub except: Vec<String>,
}

/// `NetworkPolicyPort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPort {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Number or named port.
    #[serde(default)]
    pub port: Option<NumOrString>,
    /// End of a numeric range.
    #[serde(default)]
    pub end_port: Option<i64>,
}

/// A Kubernetes `LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_labels: BTreeMap<String, String>,
    /// Expressions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// A `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

/// A Kubernetes `Namespace`.
#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    /// Metadata (name and labels).
    pub metadata: ObjectMeta,
}

/// A Kubernetes `ServiceAccount`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    /// Metadata (namespace, name and labels).
    pub metadata: ObjectMeta,
}

/// A `discovery.k8s.io/v1` `EndpointSlice`, trimmed to what `services` rule criteria need.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata; the `kubernetes.io/service-name` label names the Service.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: String,
    /// The endpoints.
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<SliceEndpoint>,
    /// The ports every endpoint of the slice serves.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<SlicePort>,
}

/// One endpoint of an [`EndpointSlice`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SliceEndpoint {
    /// Its addresses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
}

/// A port of an [`EndpointSlice`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlicePort {
    /// Port number (absent: all ports).
    #[serde(default)]
    pub port: Option<i64>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A Kubernetes `Pod`, trimmed to what policy needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Pod {
    /// Metadata (namespace, name and labels).
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PodSpec,
    /// Status.
    #[serde(default)]
    pub status: PodStatus,
}

/// `Pod.spec`, trimmed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Service account (defaults to `default`).
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Host-network pods are not workload endpoints.
    #[serde(default)]
    pub host_network: Option<bool>,
    /// The node it was scheduled to.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Containers (for named ports).
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    /// Init containers (sidecar-style init containers can have ports too).
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_containers: Vec<Container>,
}

/// A container, trimmed to its ports.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    /// Ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<ContainerPort>,
}

/// A container port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name (what named ports in rules refer to).
    #[serde(default)]
    pub name: Option<String>,
    /// Port number.
    #[serde(default)]
    pub container_port: i64,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `Pod.status`, trimmed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Primary IP.
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    /// All IPs (dual stack).
    #[serde(default, rename = "podIPs", deserialize_with = "null_as_default")]
    pub pod_ips: Vec<PodIp>,
}

/// Calico CNI's annotation: the pod's IPs (CIDRs or addresses, comma-separated).
pub const ANNOTATION_POD_IPS: &str = "cni.projectcalico.org/podIPs";
/// Calico CNI's annotation: the pod's IP; set to `""` when CNI has released it.
pub const ANNOTATION_POD_IP: &str = "cni.projectcalico.org/podIP";
/// The AWS VPC CNI's annotation: the pod's IPs; set to `""` when CNI has released them.
pub const ANNOTATION_AWS_POD_IPS: &str = "vpc.amazonaws.com/pod-ips";

/// One entry of `podIPs`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodIp {
    /// The address.
    #[serde(default)]
    pub ip: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

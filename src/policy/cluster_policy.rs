//! Kubernetes cluster-scoped network policy (`policy.networking.k8s.io`): `ClusterNetworkPolicy`
//! (`v1alpha2`, what Calico ≥ 3.32 reads) and the `AdminNetworkPolicy` /
//! `BaselineAdminNetworkPolicy` kinds before it (`v1alpha1`, Calico ≤ 3.31), as written, and
//! their conversion into Calico GlobalNetworkPolicies the way libcalico-go converts them
//! (`libcalico-go/lib/backend/k8s/conversion/clusternetworkpolicy.go`
//! `K8sClusterNetworkPolicyToCalico`, and `adminnetworkpolicy.go` before it):
//!
//! - tier `kube-admin` (the `Admin` tier, and every AdminNetworkPolicy) or `kube-baseline`
//!   (`Baseline`, and the BaselineAdminNetworkPolicy); order = `priority` (a
//!   BaselineAdminNetworkPolicy, a singleton without one, has order 1000);
//! - the subject becomes `namespaceSelector` (a Kubernetes label selector; empty = `all()`)
//!   and `selector` (`projectcalico.org/orchestrator == 'k8s'`, ANDed with the pod selector);
//! - each ingress rule becomes one Calico rule per (protocol, peer): `Accept` (`Allow` in
//!   v1alpha1) → `Allow`, `Deny`, `Pass`; a peer's `namespaces` → source `namespaceSelector`, its
//!   `pods` → source `selector` and `namespaceSelector`; protocols/ports → `protocol` and
//!   destination `ports`;
//! - a rule that cannot be converted is dropped, or replaced by a bare `Deny` rule when its
//!   action was `Deny` or `Pass` (`k8sClusterNetPolHandleFailedRules`): never wider.
//!
//! Egress rules are read only for their presence (`types`), as only ingress is enforced.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    compile::{self, ADMIN_TIER, BASELINE_TIER, CompileError, Policy},
    model::{EntityRule, LabelSelector, NumOrString, ObjectMeta, PolicyKind, PolicySpec, Rule},
};

/// Name prefix of a converted AdminNetworkPolicy (`K8sAdminNetworkPolicyNamePrefix`).
pub const ANP_PREFIX: &str = "kanp.adminnetworkpolicy.";
/// Name prefix of a converted BaselineAdminNetworkPolicy
/// (`K8sBaselineAdminNetworkPolicyNamePrefix`).
pub const BANP_PREFIX: &str = "kbanp.baselineadminnetworkpolicy.";

/// A `ClusterNetworkPolicy`, `AdminNetworkPolicy` or `BaselineAdminNetworkPolicy` as written.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterPolicy {
    /// Metadata (cluster-scoped: the name only).
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ClusterPolicySpec,
}

/// The spec of the three kinds (`tier` only on ClusterNetworkPolicy, `priority` not on the
/// Baseline kind; the compiler checks which kind has which).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPolicySpec {
    /// ClusterNetworkPolicy: `Admin` or `Baseline`.
    #[serde(default)]
    pub tier: Option<String>,
    /// 0–1000: the order in the tier.
    #[serde(default)]
    pub priority: Option<i64>,
    /// The pods the policy applies to.
    #[serde(default)]
    pub subject: Subject,
    /// Ingress rules, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ingress: Vec<IngressRule>,
    /// Egress rules (only their presence matters here).
    #[serde(default, deserialize_with = "null_as_default")]
    pub egress: Vec<serde_json::Value>,
}

/// `subject` (exactly one of the two); also an ingress peer (`from` entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Every pod of the namespaces this selects.
    #[serde(default)]
    pub namespaces: Option<LabelSelector>,
    /// The pods `podSelector` selects in the namespaces `namespaceSelector` selects.
    #[serde(default)]
    pub pods: Option<NamespacedPod>,
}

/// `pods` of a subject or peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedPod {
    /// Namespaces (empty: all).
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Pods in them (empty: all).
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// An ingress rule of either version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// Free-form name (kept as rule metadata).
    #[serde(default)]
    pub name: Option<String>,
    /// v1alpha2 `Accept`/`Deny`/`Pass`; v1alpha1 `Allow`/`Deny`/`Pass` (Baseline: no `Pass`).
    #[serde(default)]
    pub action: String,
    /// Peers (any).
    #[serde(default, deserialize_with = "null_as_default")]
    pub from: Vec<Subject>,
    /// v1alpha2: protocols and their destination ports (absent: everything).
    #[serde(default)]
    pub protocols: Option<Vec<Protocol>>,
    /// v1alpha1: destination ports (absent: everything).
    #[serde(default)]
    pub ports: Option<Vec<AdminPort>>,
}

/// A v1alpha2 `protocols` entry: exactly one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Protocol {
    /// TCP, with an optional port.
    #[serde(default, rename = "tcp")]
    pub tcp: Option<ProtocolPort>,
    /// UDP.
    #[serde(default, rename = "udp")]
    pub udp: Option<ProtocolPort>,
    /// SCTP.
    #[serde(default, rename = "sctp")]
    pub sctp: Option<ProtocolPort>,
    /// A named container port of the destination (any protocol).
    #[serde(default)]
    pub destination_named_port: Option<String>,
}

/// The port of a v1alpha2 protocol (absent: every port of it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolPort {
    /// The destination port.
    #[serde(default)]
    pub destination_port: Option<Port>,
}

/// A v1alpha2 port: a number or a range.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// A single port.
    #[serde(default)]
    pub number: Option<i64>,
    /// An inclusive range.
    #[serde(default)]
    pub range: Option<PortRange>,
}

/// An inclusive port range.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port.
    #[serde(default)]
    pub start: i64,
    /// Last port.
    #[serde(default)]
    pub end: i64,
    /// v1alpha1 only: `TCP` (default), `UDP`, `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A v1alpha1 `ports` entry: exactly one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminPort {
    /// A port number (and its protocol).
    #[serde(default)]
    pub port_number: Option<AdminPortNumber>,
    /// A named container port.
    #[serde(default)]
    pub named_port: Option<String>,
    /// A range (and its protocol).
    #[serde(default)]
    pub port_range: Option<PortRange>,
}

/// v1alpha1 `portNumber`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPortNumber {
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The port.
    #[serde(default)]
    pub port: i64,
}

/// The name a converted policy has in Calico (and here).
pub fn calico_name(kind: PolicyKind, name: &str) -> String {
    match kind {
        PolicyKind::AdminNetworkPolicy => format!("{ANP_PREFIX}{name}"),
        PolicyKind::BaselineAdminNetworkPolicy => format!("{BANP_PREFIX}{name}"),
        _ => name.to_owned(),
    }
}

/// Converts and compiles one policy of the three kinds.
pub fn compile(kind: PolicyKind, p: &ClusterPolicy) -> Result<Policy, CompileError> {
    if p.metadata.name.is_empty() {
        return Err(CompileError::new("metadata.name", "a policy needs a name"));
    }
    let spec = convert(kind, &p.spec)?;
    compile::compile_converted(kind, &calico_name(kind, &p.metadata.name), &spec)
}

/// What an invalid policy of these kinds could apply to: its subject, when that converts
/// (`None`: it cannot be read, so every endpoint). A bad rule, tier or priority then fails closed
/// on the pods its subject selects, not on the whole cluster (SEMANTICS.md §3.6).
pub fn scope(p: &ClusterPolicy) -> Option<compile::Applies> {
    let (namespace_selector, selector) = subject(&p.spec.subject).ok()?;
    compile::converted_applies(&PolicySpec {
        selector: Some(selector),
        namespace_selector: Some(namespace_selector),
        ..PolicySpec::default()
    })
    .ok()
}

/// `(namespaceSelector, selector)` of a subject (`K8sClusterNetworkPolicyToCalico`).
fn subject(s: &Subject) -> Result<(String, String), CompileError> {
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Ok((namespace_selector(ns)?, pod_selector(None)?)),
        (None, Some(pods)) => Ok((
            namespace_selector(&pods.namespace_selector)?,
            pod_selector(Some(&pods.pod_selector))?,
        )),
        _ => Err(CompileError::new(
            "spec.subject",
            "needs exactly one of `namespaces` or `pods`",
        )),
    }
}

/// The GlobalNetworkPolicy spec Calico makes of it.
fn convert(kind: PolicyKind, s: &ClusterPolicySpec) -> Result<PolicySpec, CompileError> {
    // clusterNetworkPolicyTier: `Admin` → kube-admin, `Baseline` → kube-baseline, anything else
    // is malformed (Calico drops such a policy with a warning; here it is invalid and fails
    // closed, see README).
    let tier = match (kind, s.tier.as_deref()) {
        (PolicyKind::ClusterNetworkPolicy, Some("Admin")) => ADMIN_TIER,
        (PolicyKind::ClusterNetworkPolicy, Some("Baseline")) => BASELINE_TIER,
        (PolicyKind::ClusterNetworkPolicy, Some(t)) => {
            return Err(CompileError::new(
                "spec.tier",
                format!("`{t}` is not `Admin` or `Baseline`"),
            ));
        }
        (PolicyKind::ClusterNetworkPolicy, None) => {
            return Err(CompileError::new(
                "spec.tier",
                "a ClusterNetworkPolicy needs a tier: `Admin` or `Baseline`",
            ));
        }
        (_, Some(_)) => return Err(CompileError::new("spec.tier", "not a field of this kind")),
        (PolicyKind::AdminNetworkPolicy, None) => ADMIN_TIER,
        (_, None) => BASELINE_TIER,
    };
    let order = match (kind, s.priority) {
        (PolicyKind::BaselineAdminNetworkPolicy, None) => 1000.0,
        (PolicyKind::BaselineAdminNetworkPolicy, Some(_)) => {
            return Err(CompileError::new(
                "spec.priority",
                "not a field of this kind",
            ));
        }
        (_, Some(p)) if (0..=1000).contains(&p) => p as f64,
        (_, Some(p)) => {
            return Err(CompileError::new(
                "spec.priority",
                format!("`{p}` is outside 0–1000"),
            ));
        }
        (_, None) => return Err(CompileError::new("spec.priority", "a priority is required")),
    };
    let (namespace_selector, selector) = subject(&s.subject)?;
    let mut ingress = Vec::new();
    for r in &s.ingress {
        match ingress_rule(kind, r) {
            Ok(rules) => ingress.extend(rules),
            // k8sClusterNetPolHandleFailedRules: a Deny or Pass rule that cannot be converted
            // becomes a bare Deny; any other is dropped.
            Err(_) if matches!(r.action.as_str(), "Deny" | "Pass") => ingress.push(Rule {
                action: "Deny".into(),
                ..Rule::default()
            }),
            Err(e) => tracing::warn!(
                rule = r.name.as_deref().unwrap_or(""),
                error = %e,
                "dropping a cluster network policy rule that cannot be converted"
            ),
        }
    }
    // clusterNetPolicyTypes: a type only when there are rules of it.
    let mut types = Vec::new();
    if !ingress.is_empty() {
        types.push("Ingress".to_owned());
    }
    if !s.egress.is_empty() {
        types.push("Egress".to_owned());
    }
    Ok(PolicySpec {
        tier: Some(tier.into()),
        order: Some(order),
        selector: Some(selector),
        namespace_selector: Some(namespace_selector),
        types: Some(types),
        ingress,
        ..PolicySpec::default()
    })
}

/// `k8sClusterNetPolIngressRuleToCalico` / `combinePortsWithCNPIngressPeers`: one rule per
/// protocol (sorted, `""` first) and peer.
fn ingress_rule(kind: PolicyKind, r: &IngressRule) -> Result<Vec<Rule>, String> {
    let action = match (kind, r.action.as_str()) {
        (PolicyKind::ClusterNetworkPolicy, "Accept") => "Allow",
        (PolicyKind::AdminNetworkPolicy | PolicyKind::BaselineAdminNetworkPolicy, "Allow") => {
            "Allow"
        }
        (_, "Deny") => "Deny",
        (PolicyKind::ClusterNetworkPolicy | PolicyKind::AdminNetworkPolicy, "Pass") => "Pass",
        (_, a) => return Err(format!("unsupported action `{a}`")),
    };
    let protocols = match kind {
        PolicyKind::ClusterNetworkPolicy => {
            if r.ports.is_some() {
                return Err("`ports` is not a field of v1alpha2 (use `protocols`)".into());
            }
            cnp_protocols(r.protocols.as_deref().unwrap_or_default())?
        }
        _ => {
            if r.protocols.is_some() {
                return Err("`protocols` is not a field of v1alpha1 (use `ports`)".into());
            }
            anp_ports(r.ports.as_deref().unwrap_or_default())?
        }
    };
    let metadata = r
        .name
        .as_ref()
        .filter(|n| !n.is_empty())
        .map(|n| super::model::RuleMetadata {
            annotations: BTreeMap::from([(RULE_NAME_ANNOTATION.to_owned(), n.clone())]),
        });
    let mut rules = Vec::new();
    for (protocol, ports) in &protocols {
        for peer in &r.from {
            let source = match (&peer.namespaces, &peer.pods) {
                (Some(ns), None) => EntityRule {
                    namespace_selector: Some(namespace_selector(ns).map_err(|e| e.to_string())?),
                    ..EntityRule::default()
                },
                (None, Some(pods)) => EntityRule {
                    selector: Some(
                        pod_selector(Some(&pods.pod_selector)).map_err(|e| e.to_string())?,
                    ),
                    namespace_selector: Some(
                        namespace_selector(&pods.namespace_selector).map_err(|e| e.to_string())?,
                    ),
                    ..EntityRule::default()
                },
                _ => return Err("a peer needs exactly one of `namespaces` or `pods`".into()),
            };
            rules.push(Rule {
                action: action.into(),
                protocol: protocol.clone().map(NumOrString::Str),
                source,
                destination: EntityRule {
                    ports: ports.clone(),
                    ..EntityRule::default()
                },
                metadata: metadata.clone(),
                ..Rule::default()
            });
        }
    }
    Ok(rules)
}

/// The annotation a converted rule's name is kept under (`K8sCNPRuleNameLabel`).
pub const RULE_NAME_ANNOTATION: &str = "name";

/// Protocol → destination ports, in Calico's order (`unpackCNPProtocols`): `None` is "any
/// protocol"; an empty port list is every port.
type ByProtocol = Vec<(Option<String>, Vec<NumOrString>)>;

/// Adds one (protocol, port) pair the way `unpackCNPProtocols` does: a protocol without a port
/// means all its ports, which later ports never narrow.
fn add(
    by: &mut BTreeMap<String, Option<Vec<NumOrString>>>,
    proto: &str,
    port: Option<NumOrString>,
) {
    match port {
        None => {
            by.insert(proto.to_owned(), None);
        }
        Some(p) => {
            if let Some(ports) = by
                .entry(proto.to_owned())
                .or_insert_with(|| Some(Vec::new()))
            {
                ports.push(p);
            }
        }
    }
}

fn finish(by: BTreeMap<String, Option<Vec<NumOrString>>>) -> ByProtocol {
    // Sorted by protocol string, `""` (no protocol: named ports) first.
    by.into_iter()
        .map(|(proto, ports)| {
            (
                (!proto.is_empty()).then_some(proto),
                ports.unwrap_or_default(),
            )
        })
        .collect()
}

fn port_number(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port `{n}` is outside 1–65535"))
}

fn range(start: i64, end: i64) -> Result<NumOrString, String> {
    let (a, b) = (port_number(start)?, port_number(end)?);
    if a > b {
        return Err(format!(
            "minimum port number ({a}) is greater than maximum port number ({b}) in port range"
        ));
    }
    Ok(NumOrString::Str(format!("{a}:{b}")))
}

/// v1alpha2 `protocols` (`k8sCNPPortToCalicoFields`).
fn cnp_protocols(protocols: &[Protocol]) -> Result<ByProtocol, String> {
    let mut by = BTreeMap::new();
    for p in protocols {
        let (proto, port) = match (&p.tcp, &p.udp, &p.sctp, &p.destination_named_port) {
            (Some(pp), None, None, None) => ("TCP", &pp.destination_port),
            (None, Some(pp), None, None) => ("UDP", &pp.destination_port),
            (None, None, Some(pp), None) => ("SCTP", &pp.destination_port),
            (None, None, None, Some(name)) => {
                add(&mut by, "", Some(NumOrString::Str(name.clone())));
                continue;
            }
            // An empty entry: everything (one rule with no protocol and no ports).
            (None, None, None, None) => return Ok(vec![(None, Vec::new())]),
            _ => return Err("a protocols entry needs exactly one field".into()),
        };
        let port = match port {
            None => None,
            Some(Port {
                number: Some(n),
                range: None,
            }) => Some(NumOrString::Num(i64::from(port_number(*n)?))),
            Some(Port {
                number: None,
                range: Some(r),
            }) => Some(range(r.start, r.end)?),
            Some(Port {
                number: None,
                range: None,
            }) => None,
            Some(_) => return Err("a port is a number or a range, not both".into()),
        };
        add(&mut by, proto, port);
    }
    if by.is_empty() {
        return Ok(vec![(None, Vec::new())]);
    }
    Ok(finish(by))
}

/// v1alpha1 `ports` (`adminnetworkpolicy.go`: a protocol defaults to TCP, named ports with it).
fn anp_ports(ports: &[AdminPort]) -> Result<ByProtocol, String> {
    let mut by = BTreeMap::new();
    let proto = |p: &Option<String>| -> Result<&'static str, String> {
        match p.as_deref().unwrap_or("TCP") {
            "TCP" => Ok("TCP"),
            "UDP" => Ok("UDP"),
            "SCTP" => Ok("SCTP"),
            other => Err(format!("protocol `{other}` is not TCP, UDP or SCTP")),
        }
    };
    for p in ports {
        match (&p.port_number, &p.named_port, &p.port_range) {
            (Some(n), None, None) => add(
                &mut by,
                proto(&n.protocol)?,
                Some(NumOrString::Num(i64::from(port_number(n.port)?))),
            ),
            (None, Some(name), None) => add(&mut by, "TCP", Some(NumOrString::Str(name.clone()))),
            (None, None, Some(r)) => {
                add(&mut by, proto(&r.protocol)?, Some(range(r.start, r.end)?))
            }
            _ => return Err("a ports entry needs exactly one field".into()),
        }
    }
    if by.is_empty() {
        return Ok(vec![(None, Vec::new())]);
    }
    Ok(finish(by))
}

/// `k8sSelectorToCalico(s, SelectorNamespace)`: empty → `all()`.
fn namespace_selector(s: &LabelSelector) -> Result<String, CompileError> {
    if s.match_labels.is_empty() && s.match_expressions.is_empty() {
        return Ok("all()".into());
    }
    compile::label_selector_to_calico(s, false)
}

/// `k8sSelectorToCalico(s, SelectorPod)`: `projectcalico.org/orchestrator == 'k8s'` ANDed.
fn pod_selector(s: Option<&LabelSelector>) -> Result<String, CompileError> {
    compile::label_selector_to_calico(s.unwrap_or(&LabelSelector::default()), true)
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn spec(kind: PolicyKind, yaml: &str) -> Result<PolicySpec, CompileError> {
        let s: ClusterPolicySpec = yaml_serde::from_str(yaml).unwrap();
        convert(kind, &s)
    }

    fn cnp(yaml: &str) -> PolicySpec {
        spec(PolicyKind::ClusterNetworkPolicy, yaml).unwrap()
    }

    /// (action, protocol, source selector, source namespaceSelector, destination ports).
    type Converted = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Vec<String>,
    );

    fn rules(s: &PolicySpec) -> Vec<Converted> {
        s.ingress
            .iter()
            .map(|r| {
                (
                    r.action.clone(),
                    r.protocol.as_ref().map(|p| match p {
                        NumOrString::Str(s) => s.clone(),
                        NumOrString::Num(n) => n.to_string(),
                    }),
                    r.source.selector.clone(),
                    r.source.namespace_selector.clone(),
                    r.destination
                        .ports
                        .iter()
                        .map(|p| match p {
                            NumOrString::Str(s) => s.clone(),
                            NumOrString::Num(n) => n.to_string(),
                        })
                        .collect(),
                )
            })
            .collect()
    }

    #[test_case("Admin", "kube-admin"; "clusternetworkpolicy.go clusterNetworkPolicyTier: Admin")]
    #[test_case("Baseline", "kube-baseline"; "clusternetworkpolicy.go clusterNetworkPolicyTier: Baseline")]
    fn tier_and_order_from_priority(tier: &str, want: &str) {
        let s = cnp(&format!(
            "{{tier: {tier}, priority: 7, subject: {{namespaces: {{matchLabels: {{env: prod}}}}}}}}"
        ));
        assert_eq!(s.tier.as_deref(), Some(want));
        assert_eq!(s.order, Some(7.0));
        // Subject namespaces: the namespace selector, and the orchestrator label so that host
        // endpoints are never selected.
        assert_eq!(s.namespace_selector.as_deref(), Some("env == \"prod\""));
        assert_eq!(
            s.selector.as_deref(),
            Some("projectcalico.org/orchestrator == \"k8s\"")
        );
        // clusterNetPolicyTypes: no rules, no types.
        assert_eq!(s.types, Some(vec![]));
    }

    #[test_case("{tier: Middle, priority: 1, subject: {namespaces: {}}}", "spec.tier"; "clusterNetworkPolicyTier: an unknown tier is malformed")]
    #[test_case("{tier: Admin, priority: 1, subject: {}}", "spec.subject"; "K8sClusterNetworkPolicyToCalico: no subject is malformed")]
    #[test_case("{tier: Admin, priority: 1001, subject: {namespaces: {}}}", "spec.priority"; "network-policy-api: priority is 0-1000")]
    fn malformed_policies_are_invalid(yaml: &str, field: &str) {
        let e = spec(PolicyKind::ClusterNetworkPolicy, yaml).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }

    #[test]
    fn subject_pods_and_actions() {
        // combinePortsWithCNPIngressPeers, K8sClusterNetworkPolicyActionToCalico.
        let s = cnp(r#"
tier: Admin
priority: 10
subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
ingress:
  - {name: a, action: Accept, from: [{namespaces: {matchLabels: {env: dev}}}]}
  - {name: d, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}, {namespaces: {}}]}
  - {name: p, action: Pass, from: [{namespaces: {}}]}
"#);
        assert_eq!(s.namespace_selector.as_deref(), Some("all()"));
        assert_eq!(
            s.selector.as_deref(),
            Some("(projectcalico.org/orchestrator == \"k8s\" && app == \"db\")")
        );
        assert_eq!(s.types, Some(vec!["Ingress".to_owned()]));
        let orch_web = "(projectcalico.org/orchestrator == \"k8s\" && app == \"web\")";
        assert_eq!(
            rules(&s),
            vec![
                (
                    "Allow".into(),
                    None,
                    None,
                    Some("env == \"dev\"".into()),
                    vec![]
                ),
                (
                    "Deny".into(),
                    None,
                    Some(orch_web.into()),
                    Some("all()".into()),
                    vec![]
                ),
                ("Deny".into(), None, None, Some("all()".into()), vec![]),
                ("Pass".into(), None, None, Some("all()".into()), vec![]),
            ]
        );
        assert_eq!(
            s.ingress[0]
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .get("name")
                .map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn protocols_group_ports_by_protocol_in_sorted_order() {
        // unpackCNPProtocols: one rule per protocol, sorted, "" (named ports) first; a protocol
        // without a port means all of its ports and is never narrowed by another entry.
        let s = cnp(r#"
tier: Admin
priority: 1
subject: {namespaces: {}}
ingress:
  - action: Accept
    from: [{namespaces: {}}]
    protocols:
      - {tcp: {destinationPort: {number: 80}}}
      - {udp: {}}
      - {udp: {destinationPort: {number: 53}}}
      - {tcp: {destinationPort: {range: {start: 8000, end: 8080}}}}
      - {destinationNamedPort: http}
"#);
        let all = Some("all()".to_owned());
        assert_eq!(
            rules(&s),
            vec![
                ("Allow".into(), None, None, all.clone(), vec!["http".into()]),
                (
                    "Allow".into(),
                    Some("TCP".into()),
                    None,
                    all.clone(),
                    vec!["80".into(), "8000:8080".into()]
                ),
                (
                    "Allow".into(),
                    Some("UDP".into()),
                    None,
                    all.clone(),
                    vec![]
                ),
            ]
        );
    }

    #[test]
    fn an_empty_protocols_entry_is_everything() {
        // unpackCNPProtocols: an empty port struct "translates to allowing all".
        let s = cnp(
            "{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}, {}]}]}",
        );
        assert_eq!(
            rules(&s),
            vec![("Deny".into(), None, None, Some("all()".into()), vec![])]
        );
    }

    #[test_case("Deny", Some("Deny"); "k8sClusterNetPolHandleFailedRules: a failed Deny becomes a bare Deny")]
    #[test_case("Pass", Some("Deny"); "k8sClusterNetPolHandleFailedRules: a failed Pass becomes a bare Deny")]
    #[test_case("Accept", None; "k8sClusterNetPolHandleFailedRules: a failed Accept is dropped")]
    fn a_rule_that_cannot_be_converted_never_widens(action: &str, want: Option<&str>) {
        // A backwards range fails PortFromRange.
        let s = cnp(&format!(
            "{{tier: Admin, priority: 1, subject: {{namespaces: {{}}}}, ingress: [{{action: {action}, from: [{{namespaces: {{}}}}], protocols: [{{tcp: {{destinationPort: {{range: {{start: 90, end: 80}}}}}}}}]}}]}}"
        ));
        let got: Vec<_> = s.ingress.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        assert!(
            s.ingress
                .iter()
                .all(|r| r.source.namespace_selector.is_none() && r.destination.ports.is_empty()),
            "a bare rule: it matches everything"
        );
        // An unknown action (K8sClusterNetworkPolicyActionToCalico) is dropped.
        let s = cnp(
            "{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Log, from: [{namespaces: {}}]}]}",
        );
        assert!(s.ingress.is_empty());
    }

    #[test]
    fn admin_network_policy_v1alpha1() {
        // adminnetworkpolicy_test.go "should drop rules with invalid ports": TCP by default,
        // a named port with the TCP ports; a Log rule dropped; order = priority.
        let s = spec(PolicyKind::AdminNetworkPolicy, r#"
priority: 300
subject: {namespaces: {matchLabels: {label: value}}}
ingress:
  - {action: Log, from: [{namespaces: {matchLabels: {k: v}}}]}
  - {action: Pass, from: [{namespaces: {matchLabels: {k10: v10}}}], ports: [{portNumber: {port: 80}}, {portRange: {start: 2000, end: 3000}}, {namedPort: foo}]}
  - {action: Allow, from: [{namespaces: {}}]}
"#).unwrap();
        assert_eq!(
            (s.tier.as_deref(), s.order),
            (Some("kube-admin"), Some(300.0))
        );
        assert_eq!(
            rules(&s),
            vec![
                (
                    "Pass".into(),
                    Some("TCP".into()),
                    None,
                    Some("k10 == \"v10\"".into()),
                    vec!["80".into(), "2000:3000".into(), "foo".into()]
                ),
                ("Allow".into(), None, None, Some("all()".into()), vec![]),
            ]
        );
        assert_eq!(
            calico_name(PolicyKind::AdminNetworkPolicy, "x"),
            "kanp.adminnetworkpolicy.x"
        );
    }

    #[test]
    fn baseline_admin_network_policy_v1alpha1() {
        let s = spec(
            PolicyKind::BaselineAdminNetworkPolicy,
            "{subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}, {action: Pass, from: [{namespaces: {}}]}]}",
        )
        .unwrap();
        assert_eq!(
            (s.tier.as_deref(), s.order),
            (Some("kube-baseline"), Some(1000.0))
        );
        // Baseline has no Pass: that rule cannot be converted, and a failed Pass is a Deny.
        let got: Vec<_> = s.ingress.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(got, ["Deny", "Deny"]);
        assert!(
            spec(
                PolicyKind::BaselineAdminNetworkPolicy,
                "{priority: 3, subject: {namespaces: {}}}"
            )
            .is_err()
        );
        assert_eq!(
            calico_name(PolicyKind::BaselineAdminNetworkPolicy, "default"),
            "kbanp.baselineadminnetworkpolicy.default"
        );
    }
}

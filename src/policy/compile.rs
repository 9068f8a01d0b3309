//! Step two: model → compiled policy. All validation lives here.
//!
//! Every selector is parsed once, every CIDR, port, method and path turned into a matcher, and
//! Kubernetes NetworkPolicies are converted the way Calico converts them
//! (`libcalico-go/lib/backend/k8s/conversion/conversion.go`: tier `default`, order 1000, name
//! `knp.default.<name>`). The store compiles every policy as it arrives and keeps what fails as
//! invalid, with the error (`alp-authz lint` and `test` print it): "accepted" implies
//! "indexable".
//!
//! Must not import `snapshot`, `eval`, tonic or Kubernetes-client code.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;

use super::{
    model::{
        CalicoPolicy, EntityRule, HttpMatch, K8sNetworkPolicy, K8sPeer, LabelSelector, NumOrString,
        PolicyKind, PolicySpec, Rule as RuleModel,
    },
    path::{PathError, PathMatch},
    protocol,
    selector::{Expr, ParseError, Selector},
};

/// Label attached by Calico to every workload endpoint: its namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Label attached by Calico to every workload endpoint: its service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Label attached by Calico to every workload endpoint: `k8s`.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// Label Calico adds to Namespace and ServiceAccount profiles: the object's name.
pub const LABEL_NAME: &str = "projectcalico.org/name";
/// The tier a policy without `tier` belongs to.
pub const DEFAULT_TIER: &str = "default";
/// The tier of `Admin` cluster policies (libcalico-go/lib/names `KubeAdminTierName`).
pub const ADMIN_TIER: &str = "kube-admin";
/// The tier of `Baseline` cluster policies (`KubeBaselineTierName`).
pub const BASELINE_TIER: &str = "kube-baseline";

/// A compile error: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct CompileError {
    /// Path to the field, e.g. `spec.ingress[0].source.selector`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A selector that does not parse: the parser's error, with the span it points at.
    #[error("invalid selector `{input}`: {error}")]
    Selector {
        /// The selector as written.
        input: String,
        /// Where and why it does not parse.
        error: ParseError,
    },
    /// Anything else, as a lower-case phrase.
    #[error("{0}")]
    Invalid(String),
}

impl CompileError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        CompileError {
            field: field.into(),
            problem: Problem::Invalid(message.into()),
        }
    }

    /// The offending selector with a caret line under the span at fault, when the error is in
    /// a selector (for the CLI and logs: `alp-authz check`, `test`, `lint`, the load warnings).
    pub fn caret(&self) -> Option<String> {
        match &self.problem {
            Problem::Selector { input, error } => Some(error.render(input)),
            Problem::Invalid(_) => None,
        }
    }
}

/// A rule action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allow the request.
    Allow,
    /// Deny the request.
    Deny,
    /// Record and continue with the next rule.
    Log,
    /// Leave this tier; continue with the next.
    Pass,
}

impl Action {
    /// The Calico spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        // Calico's API takes exactly `Allow|Deny|Log|Pass`
        // (`api/pkg/apis/projectcalico/v3/policy_common.go`, `+kubebuilder:validation:Enum`); what
        // it rejects is invalid here too, although Felix and Dikastes would compare
        // case-insensitively.
        match s {
            "Allow" => Some(Action::Allow),
            "Deny" => Some(Action::Deny),
            "Log" => Some(Action::Log),
            "Pass" => Some(Action::Pass),
            _ => None,
        }
    }
}

/// What a tier does when one of its policies applied but no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierDefault {
    /// End-of-tier deny (Calico's default).
    Deny,
    /// Continue with the next tier.
    Pass,
}

/// A compiled tier.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Name.
    pub name: Arc<str>,
    /// Order; `None` sorts last.
    pub order: Option<f64>,
    /// End-of-tier action.
    pub default_action: TierDefault,
}

impl Tier {
    /// The built-in tiers Calico always has (`api/pkg/apis/projectcalico/v3/tier.go`).
    pub fn builtins() -> [Tier; 3] {
        [
            Tier {
                name: ADMIN_TIER.into(),
                order: Some(1_000.0),
                default_action: TierDefault::Pass,
            },
            Tier {
                name: DEFAULT_TIER.into(),
                order: Some(1_000_000.0),
                default_action: TierDefault::Deny,
            },
            Tier {
                name: BASELINE_TIER.into(),
                order: Some(10_000_000.0),
                default_action: TierDefault::Pass,
            },
        ]
    }
}

impl TryFrom<&super::model::Tier> for Tier {
    type Error = CompileError;

    fn try_from(t: &super::model::Tier) -> Result<Self, CompileError> {
        if t.metadata.name.is_empty() {
            return Err(CompileError::new("metadata.name", "a tier needs a name"));
        }
        let order = check_order("spec.order", t.spec.order)?;
        let default_action = match t.spec.default_action.as_deref() {
            None | Some("Deny") => TierDefault::Deny,
            Some("Pass") => TierDefault::Pass,
            Some(other) => {
                return Err(CompileError::new(
                    "spec.defaultAction",
                    format!("`{other}` is not `Deny` or `Pass`"),
                ));
            }
        };
        Ok(Tier {
            name: t.metadata.name.as_str().into(),
            order,
            default_action,
        })
    }
}

fn check_order(field: &str, order: Option<f64>) -> Result<Option<f64>, CompileError> {
    match order {
        Some(o) if !o.is_finite() => Err(CompileError::new(field, "order must be a finite number")),
        o => Ok(o),
    }
}

/// Identifies a policy object: kind, namespace (for namespaced kinds) and the name users see.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// Kind.
    pub kind: PolicyKind,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<Arc<str>>,
    /// Name (for Kubernetes NetworkPolicies, Calico's `knp.default.<name>`).
    pub name: Arc<str>,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Which endpoints a policy applies to.
#[derive(Debug, Clone)]
pub struct Applies {
    /// Namespaced kinds: only endpoints in this namespace.
    pub namespace: Option<Arc<str>>,
    /// `spec.selector` on the endpoint labels.
    pub selector: Selector,
    /// Global kinds: `spec.namespaceSelector` on the namespace labels (`None` = any namespace).
    pub namespace_selector: Option<Selector>,
    /// `spec.serviceAccountSelector` on the service account labels.
    pub service_account_selector: Option<Selector>,
    /// Global kinds with a `serviceAccountSelector`: that selector as it reads for an endpoint
    /// without the `projectcalico.org/serviceaccount` label (a service account name of 63
    /// characters or more), where Calico's rewrite of `all()` (see `applies`) is false.
    pub service_account_selector_unlabelled: Option<Box<Selector>>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Identity.
    pub id: PolicyId,
    /// Tier name (resolved against the tier list when the snapshot is built).
    pub tier: Arc<str>,
    /// Order in the tier; `None` sorts last.
    pub order: Option<f64>,
    /// Applicability.
    pub applies: Applies,
    /// Ingress rules, when the policy governs ingress; `None` when it does not.
    pub ingress: Option<Vec<Rule>>,
    /// Staged kinds: what the staged policy would do to the enforced set.
    pub staged_action: Option<StagedAction>,
}

/// Calico's `stagedAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagedAction {
    /// The policy would be added, or replace the enforced one of the same name (the default).
    Set,
    /// The enforced policy of the same name would be removed.
    Delete,
    /// Recorded for learning; no effect on the shadow set.
    Learn,
    /// No effect.
    Ignore,
}

/// A compiled rule. All criteria are ANDed; an absent criterion matches.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What a match does.
    pub action: Action,
    /// Required L4 protocol number.
    pub protocol: Option<u8>,
    /// Excluded L4 protocol number.
    pub not_protocol: Option<u8>,
    /// Source criteria.
    pub source: Entity,
    /// Destination criteria.
    pub destination: Entity,
    /// HTTP criteria.
    pub http: Option<Http>,
}

/// Criteria on one side (source or destination) of a rule.
#[derive(Debug, Clone, Default)]
pub struct Entity {
    /// The peer IP must be in one of these.
    pub nets: Vec<IpNet>,
    /// The peer IP must be in none of these.
    pub not_nets: Vec<IpNet>,
    /// The peer port must match one of these.
    pub ports: Vec<PortMatch>,
    /// The peer port must match none of these.
    pub not_ports: Vec<PortMatch>,
    /// Endpoint selector on the peer workload.
    pub selector: Option<Selector>,
    /// Negated endpoint selector on the peer workload.
    pub not_selector: Option<Selector>,
    /// Namespace criterion (explicit selector or implicit scoping).
    pub namespace: NamespaceMatch,
    /// Service-account criterion.
    pub service_accounts: Option<ServiceAccounts>,
    /// The peer must be an endpoint of this Service (on the destination side: that endpoint
    /// address and one of its ports).
    pub services: Option<ServiceRef>,
}

/// A Kubernetes Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

/// The namespace criterion of an entity.
#[derive(Debug, Clone, Default)]
pub enum NamespaceMatch {
    /// No restriction.
    #[default]
    Any,
    /// `namespaceSelector: all()`: any namespaced (identified) peer.
    AnyNamespaced,
    /// `namespaceSelector: global()`: only non-namespaced entities, so never a workload.
    Global,
    /// Implicit scoping of a namespaced policy: the peer must be in this namespace.
    Same(Arc<str>),
    /// Selector on the peer namespace's labels.
    Selector(Selector),
}

/// `serviceAccounts`: names (any; empty = any) AND selector on the account's labels.
#[derive(Debug, Clone)]
pub struct ServiceAccounts {
    /// Accepted names; empty accepts any.
    pub names: Vec<Arc<str>>,
    /// Selector on the account's labels (`all()` when absent).
    pub selector: Selector,
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// Inclusive range (a single port is `first == last`).
    Range(u16, u16),
    /// A named container port of the peer workload.
    Named(Arc<str>),
}

/// HTTP criteria: methods AND paths.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// Accepted methods (exact, case-sensitive); empty accepts any.
    pub methods: Vec<Box<str>>,
    /// `*` was listed: any method.
    pub any_method: bool,
    /// Accepted paths; empty accepts any (unless entries were skipped).
    pub paths: Vec<PathMatch>,
    /// Path entries skipped because they cannot be normalized: when every entry was, the rule
    /// matches no path.
    pub skipped_paths: u32,
}

/// Rule path entries skipped (since start) because they cannot be normalized.
pub static SKIPPED_RULE_PATHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Resolves the name users see for a Calico policy, undoing the `crd.projectcalico.org/v1`
/// storage form: the real name is in the `projectcalico.org/metadata` annotation; without it, a
/// default-tier policy stored as `default.<name>` is `<name>` (Calico's `determinePolicyName`).
pub fn calico_policy_name(p: &CalicoPolicy, api_version: &str) -> String {
    if api_version == super::model::CALICO_CRD_V1 {
        if let Some(meta) = p
            .metadata
            .annotations
            .get(super::model::CALICO_METADATA_ANNOTATION)
            .and_then(|a| serde_json::from_str::<super::model::CalicoV3Metadata>(a).ok())
            && let Some(name) = meta.name.filter(|n| !n.is_empty())
        {
            return name;
        }
        let tier = p.spec.tier.as_deref().unwrap_or(DEFAULT_TIER);
        if tier == DEFAULT_TIER
            && let Some(rest) = p.metadata.name.strip_prefix("default.")
        {
            return rest.to_owned();
        }
    }
    p.metadata.name.clone()
}

/// Compiles a Calico policy object (`name` already resolved by [`calico_policy_name`]).
pub fn compile_calico(kind: PolicyKind, p: &CalicoPolicy) -> Result<Policy, CompileError> {
    compile_named(kind, p.metadata.name.as_str(), p)
}

/// Compiles a Calico policy object under the given user-facing name.
pub fn compile_named(
    kind: PolicyKind,
    name: &str,
    p: &CalicoPolicy,
) -> Result<Policy, CompileError> {
    let namespace = namespace_of(kind, p.metadata.namespace.as_deref())?;
    compile_spec(kind, name, namespace, &p.spec)
}

fn namespace_of(kind: PolicyKind, ns: Option<&str>) -> Result<Option<Arc<str>>, CompileError> {
    match (kind.is_namespaced(), ns.filter(|n| !n.is_empty())) {
        (true, Some(ns)) => Ok(Some(ns.into())),
        (true, None) => Err(CompileError::new(
            "metadata.namespace",
            format!("a {} needs a namespace", kind.as_str()),
        )),
        (false, _) => Ok(None),
    }
}

/// Compiles the GlobalNetworkPolicy spec a cluster-scoped Kubernetes policy was converted to
/// (`cluster_policy`), under its Calico name.
pub(crate) fn compile_converted(
    kind: PolicyKind,
    name: &str,
    spec: &PolicySpec,
) -> Result<Policy, CompileError> {
    compile_spec(kind, name, None, spec)
}

fn compile_spec(
    kind: PolicyKind,
    name: &str,
    namespace: Option<Arc<str>>,
    spec: &PolicySpec,
) -> Result<Policy, CompileError> {
    if name.is_empty() {
        return Err(CompileError::new("metadata.name", "a policy needs a name"));
    }
    if kind.is_namespaced() {
        for (field, set) in [
            ("spec.namespaceSelector", spec.namespace_selector.is_some()),
            ("spec.doNotTrack", spec.do_not_track.is_some()),
            ("spec.preDNAT", spec.pre_dnat.is_some()),
            ("spec.applyOnForward", spec.apply_on_forward.is_some()),
        ] {
            if set {
                return Err(CompileError::new(
                    field,
                    format!("not a field of {}", kind.as_str()),
                ));
            }
        }
    }
    if spec.staged_action.is_some() && !kind.is_staged() {
        return Err(CompileError::new(
            "spec.stagedAction",
            format!("not a field of {}", kind.as_str()),
        ));
    }
    let staged_action = match spec.staged_action.as_deref() {
        _ if !kind.is_staged() => None,
        None | Some("Set") => Some(StagedAction::Set),
        Some("Delete") => Some(StagedAction::Delete),
        Some("Learn") => Some(StagedAction::Learn),
        Some("Ignore") => Some(StagedAction::Ignore),
        Some(a) => {
            return Err(CompileError::new(
                "spec.stagedAction",
                format!("`{a}` is not one of `Set`, `Delete`, `Learn`, `Ignore`"),
            ));
        }
    };
    let order = check_order("spec.order", spec.order)?;
    let tier: Arc<str> = match spec.tier.as_deref() {
        None | Some("") => DEFAULT_TIER.into(),
        Some(t) => t.into(),
    };

    let applies = applies(namespace.clone(), spec)?;
    let governs_ingress = governs_ingress(spec)?;
    let ingress = spec
        .ingress
        .iter()
        .enumerate()
        .map(|(i, r)| {
            compile_rule(
                &format!("spec.ingress[{i}]"),
                r,
                namespace.as_ref(),
                Direction::Ingress,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Egress rules are not enforced (only ingress is, as in Dikastes), but an invalid egress
    // rule still makes the object invalid, exactly as Calico's API would refuse it.
    for (i, r) in spec.egress.iter().enumerate() {
        compile_rule(
            &format!("spec.egress[{i}]"),
            r,
            namespace.as_ref(),
            Direction::Egress,
        )?;
    }

    Ok(Policy {
        id: PolicyId {
            kind,
            namespace: namespace.clone(),
            name: name.into(),
        },
        tier,
        order,
        applies,
        // Host-endpoint-only policies never reach a workload: Felix files `doNotTrack` policies
        // in the untracked tiers and `preDNAT` ones in the pre-DNAT tiers, and a workload
        // endpoint gets only the normal tiers (felix/calc/event_sequencer.go
        // tierInfoToProtoTierInfo, flushEndpointTierUpdates). So such a policy governs no
        // workload ingress, and a tier holding only such policies for an endpoint is not
        // applied to it.
        ingress: (governs_ingress && !host_endpoint_only(spec)).then_some(ingress),
        staged_action,
    })
}

/// `doNotTrack: true` or `preDNAT: true`: the policy applies to host endpoints only.
/// (`applyOnForward` alone changes nothing for a workload.)
fn host_endpoint_only(spec: &PolicySpec) -> bool {
    spec.do_not_track == Some(true) || spec.pre_dnat == Some(true)
}

/// Compiles only what decides which endpoints a Calico policy applies to. When the rest of the
/// policy is invalid, this is the set of endpoints that fail closed.
pub fn compile_applies(kind: PolicyKind, p: &CalicoPolicy) -> Result<Applies, CompileError> {
    applies(
        namespace_of(kind, p.metadata.namespace.as_deref())?,
        &p.spec,
    )
}

/// What a Kubernetes NetworkPolicy applies to: its `podSelector` in its namespace. When the
/// rest of the policy is invalid, this is the set of endpoints that fail closed.
pub fn kubernetes_applies(
    kind: PolicyKind,
    namespace: Option<&str>,
    pod_selector: &LabelSelector,
) -> Result<Applies, CompileError> {
    let spec = PolicySpec {
        selector: Some(label_selector_to_calico(pod_selector, true)?),
        ..PolicySpec::default()
    };
    applies(namespace_of(kind, namespace)?, &spec)
}

/// What a converted cluster-scoped policy (its `selector` and `namespaceSelector`) applies to.
pub(crate) fn converted_applies(spec: &PolicySpec) -> Result<Applies, CompileError> {
    applies(None, spec)
}

fn applies(namespace: Option<Arc<str>>, spec: &PolicySpec) -> Result<Applies, CompileError> {
    let mut selector = endpoint_selector("spec.selector", spec.selector.as_deref())?;
    let namespace_selector = spec
        .namespace_selector
        .as_deref()
        .map(|s| policy_namespace_selector("spec.namespaceSelector", s))
        .transpose()?;
    let service_account_selector = spec
        .service_account_selector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| endpoint_selector("spec.serviceAccountSelector", Some(s)))
        .transpose()?;
    // Calico's GlobalNetworkPolicy conversion (`updateprocessors/globalnetworkpolicyprocessor.go`,
    // ConvertGlobalNetworkPolicyV3ToV1Value) joins `selector`, the prefixed namespaceSelector and
    // the prefixed serviceAccountSelector into one string and, when a serviceAccountSelector is
    // given, replaces every `all()` left in it with `has(projectcalico.org/serviceaccount)`
    // (the namespaceSelector's were already replaced with `has(projectcalico.org/namespace)`,
    // which every workload has). The NetworkPolicy conversion does no such rewrite.
    let mut service_account_selector_unlabelled = None;
    if namespace.is_none()
        && let Some(sa) = &service_account_selector
    {
        if namespace_selector.is_none() && spec.selector.as_deref().is_some_and(|s| !s.is_empty()) {
            let has = Expr::Has(LABEL_SERVICE_ACCOUNT.into());
            selector = Selector::from_expr(replace_all(selector.expr(), &has));
        }
        service_account_selector_unlabelled = Some(Box::new(Selector::from_expr(replace_all(
            sa.expr(),
            &Expr::Not(Box::new(Expr::All)),
        ))));
    }
    Ok(Applies {
        namespace,
        selector,
        namespace_selector,
        service_account_selector,
        service_account_selector_unlabelled,
    })
}

/// `e` with every `all()` replaced by `with`, as Calico's `strings.Replace(selector, "all()", …)`
/// does to the selector text.
fn replace_all(e: &Expr, with: &Expr) -> Expr {
    match e {
        Expr::All => with.clone(),
        Expr::Not(inner) => Expr::Not(Box::new(replace_all(inner, with))),
        Expr::And(v) => Expr::And(v.iter().map(|e| replace_all(e, with)).collect()),
        Expr::Or(v) => Expr::Or(v.iter().map(|e| replace_all(e, with)).collect()),
        other => other.clone(),
    }
}

/// "If `types` is empty on create: Ingress if no egress rules, Egress if only egress rules, both
/// if both" (reference/calico-api.md §1; `api/pkg/defaults/networkpolicy.go`).
fn governs_ingress(spec: &PolicySpec) -> Result<bool, CompileError> {
    match spec.types.as_deref() {
        None | Some([]) => Ok(spec.egress.is_empty() || !spec.ingress.is_empty()),
        Some(types) => {
            let mut ingress = false;
            for (i, t) in types.iter().enumerate() {
                match t.to_ascii_lowercase().as_str() {
                    "ingress" => ingress = true,
                    "egress" => {}
                    _ => {
                        return Err(CompileError::new(
                            format!("spec.types[{i}]"),
                            format!("`{t}` is not `Ingress` or `Egress`"),
                        ));
                    }
                }
            }
            Ok(ingress)
        }
    }
}

/// Parses a selector used to pick endpoints (policy `selector`, rule `selector`, …). There,
/// `global()` evaluates true, as in Calico's plain evaluator (the shared conformance cases pin
/// this down, although Calico's CEL rules would refuse such a policy on write).
fn endpoint_selector(field: &str, s: Option<&str>) -> Result<Selector, CompileError> {
    parse_selector(field, s.unwrap_or(""))
}

/// A policy-level `namespaceSelector` (global kinds). Felix rewrites `global()` to
/// `!has(projectcalico.org/namespace)`, which no workload satisfies, so it selects nothing.
fn policy_namespace_selector(field: &str, s: &str) -> Result<Selector, CompileError> {
    let sel = parse_selector(field, s)?;
    if sel.is_global() {
        return Ok(Selector::from_expr(Expr::Not(Box::new(Expr::All))));
    }
    if contains_global(sel.expr()) {
        return Err(CompileError::new(
            field,
            "`global()` must be the whole namespaceSelector",
        ));
    }
    Ok(sel)
}

fn parse_selector(field: &str, s: &str) -> Result<Selector, CompileError> {
    Selector::parse(s).map_err(|error| CompileError {
        field: field.into(),
        problem: Problem::Selector {
            input: s.into(),
            error,
        },
    })
}

fn contains_global(e: &Expr) -> bool {
    match e {
        Expr::Global => true,
        Expr::Not(inner) => contains_global(inner),
        Expr::And(v) | Expr::Or(v) => v.iter().any(contains_global),
        _ => false,
    }
}

/// Which list a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

fn compile_rule(
    field: &str,
    r: &RuleModel,
    ns: Option<&Arc<str>>,
    direction: Direction,
) -> Result<Rule, CompileError> {
    let action = Action::parse(&r.action).ok_or_else(|| {
        CompileError::new(
            format!("{field}.action"),
            if r.action.is_empty() {
                "a rule needs an action".to_owned()
            } else {
                format!(
                    "`{}` is not one of `Allow`, `Deny`, `Log`, `Pass`",
                    r.action
                )
            },
        )
    })?;
    let protocol = r
        .protocol
        .as_ref()
        .map(|p| protocol_number(&format!("{field}.protocol"), p))
        .transpose()?;
    let not_protocol = r
        .not_protocol
        .as_ref()
        .map(|p| protocol_number(&format!("{field}.notProtocol"), p))
        .transpose()?;
    let http = r
        .http
        .as_ref()
        .map(|h| compile_http(&format!("{field}.http"), h))
        .transpose()?;
    if http.is_some() {
        // CEL on Rule: "http is only allowed on Allow rules" and "protocol must be TCP or unset".
        if action != Action::Allow {
            return Err(CompileError::new(
                format!("{field}.http"),
                "HTTP match is only allowed on `Allow` rules",
            ));
        }
        if protocol.is_some_and(|p| p != 6) {
            return Err(CompileError::new(
                format!("{field}.protocol"),
                "HTTP match needs protocol TCP or no protocol",
            ));
        }
    }
    validate_rule(field, r, protocol, direction)?;
    Ok(Rule {
        action,
        protocol,
        not_protocol,
        source: compile_entity(&format!("{field}.source"), &r.source, ns)?,
        destination: compile_entity(&format!("{field}.destination"), &r.destination, ns)?,
        http,
    })
}

/// What Calico's validator (`libcalico-go/lib/validator/v3/validator.go`) rejects in a rule,
/// beyond the field syntax checked where each field is compiled.
fn validate_rule(
    field: &str,
    r: &RuleModel,
    protocol: Option<u8>,
    direction: Direction,
) -> Result<(), CompileError> {
    // validateRule: "rules with numeric port or port range must set protocol to TCP or UDP or
    // SCTP" (named ports need none), and "rules that specify ports must set protocol to TCP or
    // UDP or SCTP".
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (name, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
            let numeric = ports.iter().any(|p| match p {
                NumOrString::Num(_) => true,
                NumOrString::Str(s) => s.contains(':') || s.parse::<i64>().is_ok(),
            });
            let message = match protocol {
                None if numeric => {
                    "rules with numeric port or port range must set protocol to TCP or UDP or SCTP"
                }
                Some(p) if !ports.is_empty() && !matches!(p, 6 | 17 | 132) => {
                    "rules that specify ports must set protocol to TCP or UDP or SCTP"
                }
                _ => continue,
            };
            return Err(CompileError::new(format!("{field}.{side}.{name}"), message));
        }
    }
    // validateRule scanNets: one IP version per rule, and no catch-all CIDR in a negation.
    let mut versions = (false, false);
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (name, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
            for (i, n) in nets.iter().enumerate() {
                let Ok(net) = parse_net(&format!("{field}.{side}.{name}[{i}]"), n) else {
                    continue; // reported where the nets are compiled
                };
                if name == "notNets" && net.prefix_len() == 0 {
                    return Err(CompileError::new(
                        format!("{field}.{side}.{name}[{i}]"),
                        "catch-all CIDR in negation creates logical contradiction (matches no traffic)",
                    ));
                }
                match net {
                    IpNet::V4(_) => versions.0 = true,
                    IpNet::V6(_) => versions.1 = true,
                }
                if versions.0 && versions.1 {
                    return Err(CompileError::new(
                        format!("{field}.{side}.{name}"),
                        "rule contains both IPv4 and IPv6 CIDRs",
                    ));
                }
            }
        }
    }
    // validateRule (per direction): "Services are only allowed in the source on Ingress
    // rules" and "only allowed as a destination on Egress rules".
    let (misplaced, side) = match direction {
        Direction::Ingress => (r.destination.services.is_some(), "destination"),
        Direction::Egress => (r.source.services.is_some(), "source"),
    };
    if misplaced {
        let allowed = match direction {
            Direction::Ingress => "in the source of an ingress rule",
            Direction::Egress => "in the destination of an egress rule",
        };
        return Err(CompileError::new(
            format!("{field}.{side}.services"),
            format!("services are only allowed {allowed}"),
        ));
    }
    Ok(())
}

/// Protocol names Felix knows (`match.go` matchL4Protocol), case-insensitive, or 1–255.
fn protocol_number(field: &str, p: &NumOrString) -> Result<u8, CompileError> {
    let n = match p {
        NumOrString::Num(n) => *n,
        NumOrString::Str(s) => match protocol::by_name(s) {
            Some(number) => i64::from(number),
            None => s.parse::<i64>().map_err(|_| {
                CompileError::new(
                    field,
                    format!("`{s}` is not a protocol ({})", protocol::NAMES_TEXT),
                )
            })?,
        },
    };
    u8::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| CompileError::new(field, format!("protocol `{n}` is outside 1–255")))
}

fn compile_http(field: &str, h: &HttpMatch) -> Result<Http, CompileError> {
    // Calico's validator: at most 20 methods and 20 paths, no duplicate methods.
    if h.methods.len() > 20 || h.paths.len() > 20 {
        return Err(CompileError::new(field, "at most 20 methods and 20 paths"));
    }
    let mut out = Http::default();
    for (i, m) in h.methods.iter().enumerate() {
        if m.is_empty() {
            return Err(CompileError::new(
                format!("{field}.methods[{i}]"),
                "empty method",
            ));
        }
        if h.methods[..i].contains(m) {
            return Err(CompileError::new(
                format!("{field}.methods[{i}]"),
                format!("duplicate method `{m}`"),
            ));
        }
        if m == "*" {
            out.any_method = true;
        }
        out.methods.push(m.as_str().into());
    }
    for (i, p) in h.paths.iter().enumerate() {
        let f = format!("{field}.paths[{i}]");
        let m = match (&p.exact, &p.prefix) {
            (Some(e), None) => PathMatch::exact(e),
            (None, Some(pre)) => PathMatch::prefix(pre),
            _ => {
                return Err(CompileError::new(
                    f,
                    "needs exactly one of `exact` or `prefix`",
                ));
            }
        };
        match m {
            Ok(m) => out.paths.push(m),
            // "HTTP Path exact rule could not be normalized; skipping." (Dikastes
            // `checker/match.go` matchHTTPPaths): the entry is skipped, the rest of the rule and
            // policy stand. A rule whose every path entry is skipped matches no path.
            Err(PathError::Unnormalizable(path)) => {
                tracing::warn!(field = %f, %path, "rule path cannot be normalized: entry skipped");
                SKIPPED_RULE_PATHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                out.skipped_paths += 1;
            }
            Err(e) => return Err(CompileError::new(f, e.to_string())),
        }
    }
    Ok(out)
}

fn compile_entity(
    field: &str,
    e: &EntityRule,
    ns: Option<&Arc<str>>,
) -> Result<Entity, CompileError> {
    let services = e
        .services
        .as_ref()
        .map(|s| compile_services(field, e, s, ns))
        .transpose()?;
    let nets = |f: &str, v: &[String]| -> Result<Vec<IpNet>, CompileError> {
        v.iter()
            .enumerate()
            .map(|(i, n)| parse_net(&format!("{field}.{f}[{i}]"), n))
            .collect()
    };
    let ports = |f: &str, v: &[NumOrString]| -> Result<Vec<PortMatch>, CompileError> {
        v.iter()
            .enumerate()
            .map(|(i, p)| parse_port(&format!("{field}.{f}[{i}]"), p))
            .collect()
    };
    // A selector of only white space is present, as Calico tests `!= ""`
    // (`updateprocessors/rules.go` getEndpointSelector); it parses to `all()`.
    let selector = e
        .selector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| endpoint_selector(&format!("{field}.selector"), Some(s)))
        .transpose()?;
    let not_selector = e
        .not_selector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| endpoint_selector(&format!("{field}.notSelector"), Some(s)))
        .transpose()?;
    let service_accounts = match &e.service_accounts {
        Some(sa)
            if !sa.names.is_empty() || sa.selector.as_deref().is_some_and(|s| !s.is_empty()) =>
        {
            Some(ServiceAccounts {
                names: sa.names.iter().map(|n| Arc::from(n.as_str())).collect(),
                selector: endpoint_selector(
                    &format!("{field}.serviceAccounts.selector"),
                    sa.selector.as_deref(),
                )?,
            })
        }
        _ => None,
    };
    // Namespace scoping (reference/dikastes-semantics.md §5.2 computeNamespaceMatch): an explicit
    // namespaceSelector wins; otherwise a rule of a namespaced policy that names peers by
    // selector, notSelector or service account only matches peers in the policy's namespace.
    let namespace = match e.namespace_selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            let sel = parse_selector(&format!("{field}.namespaceSelector"), s)?;
            if sel.is_global() {
                NamespaceMatch::Global
            } else if contains_global(sel.expr()) {
                return Err(CompileError::new(
                    format!("{field}.namespaceSelector"),
                    "`global()` must be the whole namespaceSelector",
                ));
            } else if sel.is_all() {
                NamespaceMatch::AnyNamespaced
            } else {
                NamespaceMatch::Selector(sel)
            }
        }
        None => match ns {
            Some(ns)
                if selector.is_some() || not_selector.is_some() || service_accounts.is_some() =>
            {
                NamespaceMatch::Same(ns.clone())
            }
            _ => NamespaceMatch::Any,
        },
    };
    Ok(Entity {
        nets: nets("nets", &e.nets)?,
        not_nets: nets("notNets", &e.not_nets)?,
        ports: ports("ports", &e.ports)?,
        not_ports: ports("notPorts", &e.not_ports)?,
        selector,
        not_selector,
        namespace,
        service_accounts,
        services,
    })
}

/// `services {name, namespace}`: "Services cannot be specified on the same rule as Selector,
/// NotSelector, NamespaceSelector, Nets, NotNets or ServiceAccounts", and an empty namespace
/// means the policy's own (reference/calico-api.md §2; Calico's `EntityRule` validation).
fn compile_services(
    field: &str,
    e: &EntityRule,
    s: &super::model::ServiceMatch,
    ns: Option<&Arc<str>>,
) -> Result<ServiceRef, CompileError> {
    let f = format!("{field}.services");
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    for (other, present) in [
        ("selector", set(&e.selector)),
        ("notSelector", set(&e.not_selector)),
        ("namespaceSelector", set(&e.namespace_selector)),
        ("nets", !e.nets.is_empty()),
        ("notNets", !e.not_nets.is_empty()),
        ("serviceAccounts", e.service_accounts.is_some()),
    ] {
        if present {
            return Err(CompileError::new(
                f,
                format!("cannot be combined with `{other}`"),
            ));
        }
    }
    if s.name.is_empty() {
        return Err(CompileError::new(
            format!("{f}.name"),
            "a Service name is required",
        ));
    }
    let namespace = match s.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => Arc::from(n),
        None => ns.cloned().ok_or_else(|| {
            CompileError::new(
                format!("{f}.namespace"),
                "a global policy must name the Service's namespace",
            )
        })?,
    };
    Ok(ServiceRef {
        namespace,
        name: s.name.as_str().into(),
    })
}

/// Parses a CIDR, or a bare address as a host route, masked: how Calico reads a network set's
/// `nets` (a `cidr`, not a strict `net`, in `validator.go`).
pub(crate) fn parse_cidr(field: &str, s: &str) -> Result<IpNet, CompileError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| CompileError::new(field, format!("`{s}` is not a CIDR")))
}

/// Parses a rule's CIDR, or a bare address as a host route. A CIDR with host bits set is
/// invalid, as Calico's `net` validator (`validator.go` validateIPNetwork: "strictly masked")
/// refuses it.
fn parse_net(field: &str, s: &str) -> Result<IpNet, CompileError> {
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| CompileError::new(field, format!("`{s}` is not a CIDR")))?;
    if net.trunc() != net {
        return Err(CompileError::new(
            field,
            format!("`{s}` has host bits set (did you mean `{}`?)", net.trunc()),
        ));
    }
    Ok(net)
}

fn parse_port(field: &str, p: &NumOrString) -> Result<PortMatch, CompileError> {
    let num = |n: i64| -> Result<u16, CompileError> {
        u16::try_from(n)
            .map_err(|_| CompileError::new(field, format!("port `{n}` is outside 0–65535")))
    };
    match p {
        NumOrString::Num(n) => num(*n).map(|n| PortMatch::Range(n, n)),
        NumOrString::Str(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let parse = |x: &str| {
                    x.parse::<i64>()
                        .map_err(|_| CompileError::new(field, format!("`{s}` is not a port range")))
                        .and_then(num)
                };
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err(CompileError::new(
                        field,
                        format!("port range `{s}` is backwards"),
                    ));
                }
                Ok(PortMatch::Range(a, b))
            } else if let Ok(n) = s.parse::<i64>() {
                num(n).map(|n| PortMatch::Range(n, n))
            } else if valid_port_name(s) {
                Ok(PortMatch::Named(s.as_str().into()))
            } else {
                Err(CompileError::new(
                    field,
                    format!("`{s}` is not a port, a range `a:b` or a port name"),
                ))
            }
        }
    }
}

/// An IANA service name as Kubernetes validates container port names: 1–15 characters of
/// `[a-z0-9-]`, at least one letter, no leading, trailing or doubled hyphen.
fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Calico's conversion of a Kubernetes NetworkPolicy: tier `default`, order 1000, name
/// `knp.default.<name>`, pod selectors ANDed with `projectcalico.org/orchestrator == "k8s"`.
pub fn compile_kubernetes(kind: PolicyKind, p: &K8sNetworkPolicy) -> Result<Policy, CompileError> {
    let namespace = namespace_of(kind, p.metadata.namespace.as_deref())?;
    if p.metadata.name.is_empty() {
        return Err(CompileError::new("metadata.name", "a policy needs a name"));
    }
    let spec = PolicySpec::try_from(p)?;
    let name = format!("{KNP_PREFIX}{}", p.metadata.name);
    compile_spec(kind, &name, namespace, &spec)
}

/// The name prefix of a Kubernetes NetworkPolicy converted to a Calico policy
/// (libcalico-go `names.K8sNetworkPolicyNamePrefix`): `knp.default.<name>`.
pub const KNP_PREFIX: &str = "knp.default.";

impl TryFrom<&K8sNetworkPolicy> for PolicySpec {
    type Error = CompileError;

    fn try_from(p: &K8sNetworkPolicy) -> Result<PolicySpec, CompileError> {
        let s = &p.spec;
        if let Some(a) = &s.staged_action
            && !matches!(a.as_str(), "Set" | "Delete" | "Learn" | "Ignore")
        {
            return Err(CompileError::new(
                "spec.stagedAction",
                format!("`{a}` is not one of `Set`, `Delete`, `Learn`, `Ignore`"),
            ));
        }
        let has_egress = s.egress.as_ref().is_some_and(|e| !e.is_empty());
        // Kubernetes defaulting: no policyTypes means Ingress, plus Egress if egress rules exist.
        let types = match &s.policy_types {
            Some(t) if !t.is_empty() => t.clone(),
            _ if has_egress => vec!["Ingress".into(), "Egress".into()],
            _ => vec!["Ingress".into()],
        };
        let mut ingress = Vec::new();
        for (i, r) in s.ingress.iter().flatten().enumerate() {
            let field = format!("spec.ingress[{i}]");
            let peers: Vec<Option<&K8sPeer>> = match r.from.as_deref() {
                None | Some([]) => vec![None],
                Some(peers) => peers.iter().map(Some).collect(),
            };
            // One Calico rule per (peer, protocol) pair, ports of a protocol grouped; a port entry
            // with a protocol and no port means every port of it, and other entries of that
            // protocol never narrow it; an entry with neither allows everything
            // (`conversion.go` k8sRuleToCalico, protocolPorts).
            let mut by_proto: Vec<(String, Option<Vec<NumOrString>>)> = Vec::new();
            let mut any = false;
            for (j, port) in r.ports.iter().flatten().enumerate() {
                if port.port.is_none() && port.protocol.is_none() {
                    any = true;
                    break;
                }
                let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                let entry = match port.port.clone() {
                    None => None,
                    Some(NumOrString::Num(n)) => Some(match port.end_port {
                        Some(end) => NumOrString::Str(format!("{n}:{end}")),
                        None => NumOrString::Num(n),
                    }),
                    Some(NumOrString::Str(name)) => {
                        if port.end_port.is_some() {
                            return Err(CompileError::new(
                                format!("{field}.ports[{j}].endPort"),
                                "endPort needs a numeric port",
                            ));
                        }
                        Some(NumOrString::Str(name))
                    }
                };
                match (by_proto.iter_mut().find(|(p, _)| *p == proto), entry) {
                    (Some((_, ports)), None) => *ports = None,
                    (Some((_, Some(ports))), Some(e)) => ports.push(e),
                    (Some((_, None)), Some(_)) => {}
                    (None, e) => by_proto.push((proto, e.map(|e| vec![e]))),
                }
            }
            let protos: Vec<(Option<String>, Vec<NumOrString>)> = if by_proto.is_empty() || any {
                vec![(None, Vec::new())]
            } else {
                by_proto
                    .into_iter()
                    .map(|(p, v)| (Some(p), v.unwrap_or_default()))
                    .collect()
            };
            for peer in &peers {
                let source = peer_to_entity(&field, *peer)?;
                for (proto, ports) in &protos {
                    ingress.push(RuleModel {
                        action: "Allow".into(),
                        protocol: proto.clone().map(NumOrString::Str),
                        source: source.clone(),
                        destination: EntityRule {
                            ports: ports.clone(),
                            ..EntityRule::default()
                        },
                        ..RuleModel::default()
                    });
                }
            }
        }
        Ok(PolicySpec {
            tier: Some(DEFAULT_TIER.into()),
            order: Some(1000.0),
            selector: Some(label_selector_to_calico(&s.pod_selector, true)?),
            types: Some(types),
            ingress,
            staged_action: s.staged_action.clone(),
            ..PolicySpec::default()
        })
    }
}

fn peer_to_entity(field: &str, peer: Option<&K8sPeer>) -> Result<EntityRule, CompileError> {
    let Some(peer) = peer else {
        return Ok(EntityRule::default());
    };
    let mut e = EntityRule::default();
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err(CompileError::new(
                format!("{field}.from"),
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            ));
        }
        // `conversion.go` k8sPeerToCalicoFields: `cnet.ParseCIDR` keeps the network, so host
        // bits are cleared rather than refused (a bad CIDR fails when the rule is compiled).
        let masked = |c: &String| {
            c.parse::<IpNet>()
                .map_or_else(|_| c.clone(), |n| n.trunc().to_string())
        };
        e.nets = vec![masked(&block.cidr)];
        e.not_nets = block.except.iter().map(masked).collect();
        return Ok(e);
    }
    match (&peer.pod_selector, &peer.namespace_selector) {
        (None, None) => {
            return Err(CompileError::new(
                format!("{field}.from"),
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ));
        }
        (pod, ns) => {
            e.selector = Some(label_selector_to_calico(
                pod.as_ref().unwrap_or(&LabelSelector::default()),
                true,
            )?);
            if let Some(ns) = ns {
                e.namespace_selector = Some(label_selector_to_calico(ns, false)?);
            }
        }
    }
    Ok(e)
}

/// Converts a Kubernetes label selector to Calico syntax (`k8sSelectorToCalico`).
pub(crate) fn label_selector_to_calico(
    sel: &LabelSelector,
    pods: bool,
) -> Result<String, CompileError> {
    let mut parts = Vec::new();
    if pods {
        parts.push(Expr::Eq(LABEL_ORCHESTRATOR.into(), "k8s".into()));
    }
    for (k, v) in &sel.match_labels {
        parts.push(Expr::Eq(k.clone(), v.clone()));
    }
    for r in &sel.match_expressions {
        let values = || r.values.iter().cloned().collect();
        parts.push(match r.operator.as_str() {
            "In" => Expr::In(r.key.clone(), values()),
            "NotIn" => Expr::NotIn(r.key.clone(), values()),
            "Exists" => Expr::Has(r.key.clone()),
            "DoesNotExist" => Expr::Not(Box::new(Expr::Has(r.key.clone()))),
            other => {
                return Err(CompileError::new(
                    "matchExpressions",
                    format!("`{other}` is not In, NotIn, Exists or DoesNotExist"),
                ));
            }
        });
    }
    let expr = match parts.len() {
        0 => Expr::All,
        1 => parts.remove(0),
        _ => Expr::And(parts),
    };
    Ok(Selector::from_expr(expr).to_string())
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;

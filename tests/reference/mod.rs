//! The reference evaluator: a deliberately naive model of `shared/SEMANTICS.md` (§1–§4), for
//! differential testing of the compiled index. Used by `tests/differential.rs` (proptest) and by
//! the `check_differential` fuzz target (`#[path]`).
//!
//! It shares no code with the engine: selectors (calico-selectors.md §3), CIDRs, SPIFFE IDs and
//! path normalization (SEMANTICS.md §4) are evaluated here from the text, on plain data, by
//! walking every tier and policy for every request. It also renders a cluster as a state file
//! ([`render`]) and a request as CheckRequest JSON ([`check_request_json`]), which is what the
//! engine side is fed.
#![allow(dead_code)]

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

/// Labels of a pod, namespace or service account.
pub type Labels = BTreeMap<String, String>;

// --- The cluster -------------------------------------------------------------------------

/// A whole cluster: objects and policies.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Namespace objects (name, labels).
    pub namespaces: Vec<(String, Labels)>,
    /// ServiceAccount objects (namespace, name, labels).
    pub service_accounts: Vec<(String, String, Labels)>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// User tiers (the built-ins always exist).
    pub tiers: Vec<Tier>,
    /// Policies, enforced and staged. (kind, namespace, name) is unique.
    pub policies: Vec<Policy>,
    /// NetworkSets and GlobalNetworkSets. (namespace, name) is unique.
    pub net_sets: Vec<NetSet>,
    /// Kubernetes ClusterNetworkPolicies. Names are unique, and none is a Calico policy's.
    pub cluster_policies: Vec<ClusterPolicy>,
}

/// A Kubernetes ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`), with label
/// selectors of `matchLabels` only.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    /// Name.
    pub name: String,
    /// `tier: Admin` (else `Baseline`).
    pub admin: bool,
    /// `priority` (0–1000).
    pub priority: u32,
    /// `subject`.
    pub subject: Peer,
    /// Ingress rules: action and `from` peers (no `protocols`: every port).
    pub ingress: Vec<(CnpAction, Vec<Peer>)>,
}

/// A ClusterNetworkPolicy subject or peer; each selector is `matchLabels`.
#[derive(Debug, Clone)]
pub enum Peer {
    /// `namespaces: {matchLabels}`.
    Namespaces(Labels),
    /// `pods: {namespaceSelector, podSelector}`.
    Pods(Labels, Labels),
}

/// A ClusterNetworkPolicy rule action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CnpAction {
    /// `Accept`.
    Accept,
    /// `Deny`.
    Deny,
    /// `Pass`.
    Pass,
}

/// `matchLabels` as a Calico selector: every label equal; none is `all()`.
fn match_labels(l: &Labels) -> Sel {
    l.iter()
        .map(|(k, v)| Sel::Eq(k.clone(), v.clone()))
        .reduce(|a, b| Sel::And(Box::new(a), Box::new(b)))
        .unwrap_or(Sel::All)
}

/// A `pods` selector: "selector (`projectcalico.org/orchestrator == 'k8s'`, ANDed with the pod
/// selector)".
fn pod_selector(l: &Labels) -> Sel {
    let k8s = Sel::Eq("projectcalico.org/orchestrator".into(), "k8s".into());
    match match_labels(l) {
        Sel::All => k8s,
        s => Sel::And(Box::new(k8s), Box::new(s)),
    }
}

impl ClusterPolicy {
    /// SEMANTICS §2 / README "What each policy field does": converted into the `kube-admin`
    /// (Admin) or `kube-baseline` (Baseline) tier, order = `priority`, its own name;
    /// `subject.namespaces` → `namespaceSelector` and selector `projectcalico.org/orchestrator ==
    /// 'k8s'`, `subject.pods` → both; one rule per peer, `Accept` → `Allow`; a `namespaces` peer
    /// → source `namespaceSelector`, a `pods` peer → source `selector` and `namespaceSelector`.
    pub fn to_calico(&self) -> Policy {
        let (namespace_selector, selector) = match &self.subject {
            Peer::Namespaces(ns) => (match_labels(ns), pod_selector(&Labels::new())),
            Peer::Pods(ns, pods) => (match_labels(ns), pod_selector(pods)),
        };
        let ingress = self
            .ingress
            .iter()
            .flat_map(|(action, from)| {
                from.iter().map(move |peer| {
                    let mut r = Rule::new(match action {
                        CnpAction::Accept => Action::Allow,
                        CnpAction::Deny => Action::Deny,
                        CnpAction::Pass => Action::Pass,
                    });
                    match peer {
                        Peer::Namespaces(ns) => {
                            r.source.namespace_selector = Some(match_labels(ns))
                        }
                        Peer::Pods(ns, pods) => {
                            r.source.namespace_selector = Some(match_labels(ns));
                            r.source.selector = Some(pod_selector(pods));
                        }
                    }
                    r
                })
            })
            .collect();
        Policy {
            namespace: None,
            staged: None,
            name: self.name.clone(),
            tier: Some(
                if self.admin {
                    "kube-admin"
                } else {
                    "kube-baseline"
                }
                .into(),
            ),
            order: Some(self.priority),
            selector,
            namespace_selector: Some(namespace_selector),
            service_account_selector: None,
            types: Types::Ingress,
            ingress,
            egress: false,
            pre_dnat: false,
            do_not_track: false,
        }
    }
}

/// A NetworkSet (`namespace: Some`) or a GlobalNetworkSet (`None`).
#[derive(Debug, Clone)]
pub struct NetSet {
    /// Namespace; `None` for a GlobalNetworkSet.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Its own labels.
    pub labels: Labels,
    /// `spec.nets` (valid CIDRs or addresses).
    pub nets: Vec<String>,
}

/// A pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Name (unique in its namespace).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// `status.podIP`, if any.
    pub ip: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Named container ports (TCP).
    pub named_ports: Vec<(String, u16)>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.phase` is `Succeeded`.
    pub finished: bool,
}

/// A user tier.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Name (never a built-in's).
    pub name: String,
    /// `spec.order`.
    pub order: Option<u32>,
    /// `defaultAction: Pass` (else `Deny`).
    pub pass: bool,
}

/// A staged policy's `stagedAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// Absent (means `Set`).
    Default,
    /// `Set`.
    Set,
    /// `Delete`.
    Delete,
}

/// `spec.types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Types {
    /// Absent: the v3 default.
    Absent,
    /// `[Ingress]`.
    Ingress,
    /// `[Egress]`.
    Egress,
    /// `[Ingress, Egress]`.
    Both,
}

/// A Calico policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `None`: GlobalNetworkPolicy; `Some(ns)`: NetworkPolicy in `ns`.
    pub namespace: Option<String>,
    /// `Some`: the staged kind, with its `stagedAction`.
    pub staged: Option<Staged>,
    /// Name.
    pub name: String,
    /// `spec.tier` (`None`: absent).
    pub tier: Option<String>,
    /// `spec.order`.
    pub order: Option<u32>,
    /// `spec.selector`.
    pub selector: Sel,
    /// `spec.namespaceSelector` (global kinds only).
    pub namespace_selector: Option<Sel>,
    /// `spec.serviceAccountSelector`.
    pub service_account_selector: Option<Sel>,
    /// `spec.types`.
    pub types: Types,
    /// Ingress rules.
    pub ingress: Vec<Rule>,
    /// Whether it has one (plain `Allow`) egress rule.
    pub egress: bool,
    /// `spec.preDNAT: true` (global kinds only; rendered with `applyOnForward: true`).
    pub pre_dnat: bool,
    /// `spec.doNotTrack: true` (global kinds only; rendered with `applyOnForward: true`).
    pub do_not_track: bool,
}

/// A rule action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
    /// Pass.
    Pass,
    /// Log.
    Log,
}

/// A `protocol` value as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `TCP`.
    Tcp,
    /// `tcp`.
    TcpLower,
    /// `6`.
    Six,
    /// `UDP`.
    Udp,
    /// `17`.
    Seventeen,
}

/// A port criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    /// A number.
    Num(u16),
    /// `"lo:hi"`.
    Range(u16, u16),
    /// A named port.
    Named(String),
}

/// An `http.paths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
}

/// A rule's `source`.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `serviceAccounts.names` (`Some(empty)`: `names: []`).
    pub sa_names: Option<Vec<String>>,
    /// `serviceAccounts.selector`.
    pub sa_selector: Option<Sel>,
    /// `namespaceSelector`.
    pub namespace_selector: Option<Sel>,
    /// `selector`.
    pub selector: Option<Sel>,
    /// `notSelector`.
    pub not_selector: Option<Sel>,
    /// `nets`.
    pub nets: Vec<String>,
    /// `notNets`.
    pub not_nets: Vec<String>,
}

/// A rule's `destination`.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// `ports`.
    pub ports: Vec<Port>,
    /// `notPorts`.
    pub not_ports: Vec<Port>,
    /// `selector`.
    pub selector: Option<Sel>,
    /// `serviceAccounts.names`.
    pub sa_names: Option<Vec<String>>,
}

/// A rule's `http`.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// `methods`.
    pub methods: Vec<String>,
    /// `paths`.
    pub paths: Vec<PathMatch>,
}

/// An ingress rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Action.
    pub action: Action,
    /// `protocol`.
    pub protocol: Option<Proto>,
    /// `notProtocol`.
    pub not_protocol: Option<Proto>,
    /// `source`.
    pub source: Source,
    /// `destination`.
    pub destination: Destination,
    /// `http`.
    pub http: Option<Http>,
}

impl Rule {
    /// A rule with only an action.
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            protocol: None,
            not_protocol: None,
            source: Source::default(),
            destination: Destination::default(),
            http: None,
        }
    }
}

/// A Check: TCP, from `source_ip` to `destination_ip:port`.
#[derive(Debug, Clone)]
pub struct Request {
    /// Source address.
    pub source_ip: String,
    /// `source.principal`, if any.
    pub principal: Option<String>,
    /// Destination address.
    pub destination_ip: String,
    /// Destination port.
    pub port: u16,
    /// `(method, path)`; `None`: a TCP-level check.
    pub http: Option<(String, String)>,
    /// `--trust-network-identity`.
    pub trust_network_identity: bool,
    /// `--identity-only-source`.
    pub identity_only_source: bool,
}

// --- Selectors (calico-selectors.md §3) ----------------------------------------------------

/// A selector, as a tree; [`Sel::render`] writes it in Calico's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sel {
    /// `""`: `all()` for an endpoint selector, "not set" for a rule's selector.
    Empty,
    /// `all()`.
    All,
    /// `k == 'v'`.
    Eq(String, String),
    /// `k != 'v'`.
    Ne(String, String),
    /// `has(k)`.
    Has(String),
    /// `k in {…}`.
    In(String, Vec<String>),
    /// `k not in {…}`.
    NotIn(String, Vec<String>),
    /// `!(…)`.
    Not(Box<Sel>),
    /// `(… && …)`.
    And(Box<Sel>, Box<Sel>),
    /// `(… || …)`.
    Or(Box<Sel>, Box<Sel>),
    /// `global()`: only as a whole rule `namespaceSelector` (selects the GlobalNetworkSets).
    Global,
}

impl Sel {
    /// Calico syntax.
    pub fn render(&self) -> String {
        let set = |vs: &[String]| {
            let v: Vec<String> = vs.iter().map(|v| format!("'{v}'")).collect();
            format!("{{{}}}", v.join(", "))
        };
        match self {
            Sel::Empty => String::new(),
            Sel::All => "all()".into(),
            Sel::Global => "global()".into(),
            Sel::Eq(k, v) => format!("{k} == '{v}'"),
            Sel::Ne(k, v) => format!("{k} != '{v}'"),
            Sel::Has(k) => format!("has({k})"),
            Sel::In(k, vs) => format!("{k} in {}", set(vs)),
            Sel::NotIn(k, vs) => format!("{k} not in {}", set(vs)),
            Sel::Not(e) => format!("!({})", e.render_operand()),
            Sel::And(a, b) => format!("({} && {})", a.render_operand(), b.render_operand()),
            Sel::Or(a, b) => format!("({} || {})", a.render_operand(), b.render_operand()),
        }
    }

    fn render_operand(&self) -> String {
        match self {
            Sel::Empty => "all()".into(),
            s => s.render(),
        }
    }

    /// The table in calico-selectors.md §3.
    pub fn matches(&self, l: &Labels) -> bool {
        match self {
            Sel::Empty | Sel::All => true,
            // "`global()` never matches a workload (it selects GlobalNetworkSets)."
            Sel::Global => false,
            Sel::Eq(k, v) => l.get(k) == Some(v),
            Sel::Ne(k, v) => l.get(k) != Some(v),
            Sel::Has(k) => l.contains_key(k),
            Sel::In(k, vs) => l.get(k).is_some_and(|x| vs.contains(x)),
            Sel::NotIn(k, vs) => !l.get(k).is_some_and(|x| vs.contains(x)),
            Sel::Not(e) => !e.matches(l),
            Sel::And(a, b) => a.matches(l) && b.matches(l),
            Sel::Or(a, b) => a.matches(l) || b.matches(l),
        }
    }

    /// Set, for a rule: anything but the empty string.
    fn set(s: &Option<Sel>) -> Option<&Sel> {
        s.as_ref().filter(|s| **s != Sel::Empty)
    }
}

// --- Evaluation (SEMANTICS.md) -------------------------------------------------------------

const BUILTIN_TIERS: &[(&str, u32, bool)] = &[
    ("kube-admin", 1_000, true),
    ("default", 1_000_000, false),
    ("kube-baseline", 10_000_000, true),
];

impl Cluster {
    /// Pods that are workload endpoints: with an IP, not host-network, not finished (§1).
    fn live_pod(&self, ip: &str) -> Option<&Pod> {
        self.live_pod_at(parse_ip(ip)?)
    }

    /// The same, by address.
    fn live_pod_at(&self, ip: IpAddr) -> Option<&Pod> {
        let mut found = self.pods.iter().filter(|p| {
            !p.host_network && !p.finished && p.ip.as_deref().and_then(parse_ip) == Some(ip)
        });
        // "The Pod whose IP is …": only a unique one is that pod.
        match (found.next(), found.next()) {
            (Some(p), None) => Some(p),
            _ => None,
        }
    }

    /// §2: pod labels plus Calico's three, "plus the labels inherited from Calico's profiles:
    /// every Namespace label `k: v` as `pcns.k: v` and `pcns.projectcalico.org/name: <ns>`;
    /// every ServiceAccount label as `pcsa.k: v` and `pcsa.projectcalico.org/name: <sa>` (a
    /// Pod's own label wins over an inherited one)".
    fn endpoint_labels(&self, p: &Pod) -> Labels {
        let mut l = p.labels.clone();
        l.insert("projectcalico.org/namespace".into(), p.namespace.clone());
        l.insert(
            "projectcalico.org/serviceaccount".into(),
            p.service_account.clone(),
        );
        l.insert("projectcalico.org/orchestrator".into(), "k8s".into());
        let inherited = [
            ("pcns.", self.namespace_labels(&p.namespace)),
            (
                "pcsa.",
                self.service_account_labels(&p.namespace, &p.service_account),
            ),
        ];
        for (prefix, labels) in inherited {
            for (k, v) in labels {
                if !p.labels.contains_key(&format!("{prefix}{k}")) {
                    l.insert(format!("{prefix}{k}"), v);
                }
            }
        }
        l
    }

    /// A namespace's labels plus `projectcalico.org/name`; none at all for a namespace with no
    /// Namespace object (Calico takes them from the namespace's profile, which does not exist).
    fn namespace_labels(&self, ns: &str) -> Labels {
        match self.namespaces.iter().find(|(n, _)| n == ns) {
            Some((_, l)) => {
                let mut l = l.clone();
                l.insert("projectcalico.org/name".into(), ns.into());
                l
            }
            None => Labels::new(),
        }
    }

    /// Likewise for a service account.
    fn service_account_labels(&self, ns: &str, sa: &str) -> Labels {
        match self
            .service_accounts
            .iter()
            .find(|(n, s, _)| n == ns && s == sa)
        {
            Some((_, _, l)) => {
                let mut l = l.clone();
                l.insert("projectcalico.org/name".into(), sa.into());
                l
            }
            None => Labels::new(),
        }
    }

    /// §2 "Network sets": a NetworkSet's labels are "its own plus `projectcalico.org/namespace`
    /// and its Namespace's `pcns.` labels"; a GlobalNetworkSet's are its own. (Calico's
    /// namespace label overrides an own one; an own label wins over an inherited one.)
    fn set_labels(&self, s: &NetSet) -> Labels {
        let mut l = s.labels.clone();
        if let Some(ns) = &s.namespace {
            l.insert("projectcalico.org/namespace".into(), ns.clone());
            for (k, v) in self.namespace_labels(ns) {
                l.entry(format!("pcns.{k}")).or_insert(v);
            }
        }
        l
    }

    /// Whether `ip` is inside the nets of a set that `selects` selects.
    fn in_a_set(&self, ip: Option<IpAddr>, selects: impl Fn(&NetSet) -> bool) -> bool {
        ip.is_some_and(|ip| {
            self.net_sets
                .iter()
                .any(|s| selects(s) && s.nets.iter().any(|n| in_net(n, ip)))
        })
    }

    /// The ClusterNetworkPolicies as the Calico policies they convert to.
    fn converted_cluster_policies(&self) -> Vec<Policy> {
        self.cluster_policies
            .iter()
            .map(ClusterPolicy::to_calico)
            .collect()
    }

    fn tier_exists(&self, name: &str) -> bool {
        BUILTIN_TIERS.iter().any(|(n, _, _)| *n == name)
            || self.tiers.iter().any(|t| t.name == name)
    }

    /// Tier names in evaluation order (§3.1): by order (absent last), then name.
    fn tier_order(&self) -> Vec<(String, bool)> {
        let mut all: Vec<(Option<u32>, String, bool)> = BUILTIN_TIERS
            .iter()
            .filter(|(n, _, _)| !self.tiers.iter().any(|t| t.name == *n))
            .map(|(n, o, p)| (Some(*o), n.to_string(), *p))
            .chain(self.tiers.iter().map(|t| (t.order, t.name.clone(), t.pass)))
            .collect();
        all.sort_by(|a, b| {
            let key = |o: Option<u32>| o.map_or(f64::INFINITY, f64::from);
            key(a.0).total_cmp(&key(b.0)).then(a.1.cmp(&b.1))
        });
        all.into_iter().map(|(_, n, p)| (n, p)).collect()
    }

    /// The policies the answer is decided on: the enforced ones.
    fn enforced(&self) -> Vec<&Policy> {
        self.policies
            .iter()
            .filter(|p| p.staged.is_none())
            .collect()
    }

    /// The enforced policies with the staged ones "as enforced": a staged policy (that would be
    /// admitted) replaces the enforced policy of the same namespace and name, or with
    /// `stagedAction: Delete` removes it (Calico's staged policies; issue [F]).
    fn staged_as_enforced(&self) -> Vec<&Policy> {
        let mut set = self.enforced();
        for s in self.policies.iter().filter(|p| p.staged.is_some()) {
            if !compiles(s) {
                continue;
            }
            set.retain(|p| !(p.namespace == s.namespace && p.name == s.name));
            if s.staged != Some(Staged::Delete) {
                set.push(s);
            }
        }
        set
    }
}

/// Whether a policy is one Calico's API would admit (our generators only break these rules):
/// "http is only allowed on Allow rules", "protocol must be TCP or unset" with http; §4
/// "Validation parity": numeric ports need a protocol, no catch-all CIDR in `notNets`, one IP
/// version per rule.
fn compiles(p: &Policy) -> bool {
    p.ingress.iter().all(|r| {
        let http_ok = match &r.http {
            None => true,
            Some(_) => {
                r.action == Action::Allow
                    && r.protocol
                        .is_none_or(|p| matches!(p, Proto::Tcp | Proto::TcpLower | Proto::Six))
            }
        };
        let numeric = |ports: &[Port]| ports.iter().any(|p| !matches!(p, Port::Named(_)));
        let ports_ok = r.protocol.is_some()
            || !(numeric(&r.destination.ports) || numeric(&r.destination.not_ports));
        let catch_all = r
            .source
            .not_nets
            .iter()
            .any(|n| n == "0.0.0.0/0" || n == "::/0");
        let v6 = |n: &String| n.contains(':');
        let nets = || r.source.nets.iter().chain(&r.source.not_nets);
        let mixed = nets().any(v6) && nets().any(|n| !v6(n));
        http_ok && ports_ok && !catch_all && !mixed
    })
}

/// §2: whether the policy selects the destination pod (for any direction).
fn applies(c: &Cluster, p: &Policy, dst: &Pod) -> bool {
    // "A policy with `preDNAT: true` or `doNotTrack: true` applies to host endpoints only,
    // never to a workload."
    !p.pre_dnat && !p.do_not_track && selects(c, p, dst)
}

/// Whether the policy's endpoint selectors select the destination pod: for an invalid policy,
/// §3.6 "'Could apply to' is what its own endpoint selectors select" (a `preDNAT` or
/// `doNotTrack` flag does not narrow that).
fn selects(c: &Cluster, p: &Policy, dst: &Pod) -> bool {
    p.namespace.as_ref().is_none_or(|ns| *ns == dst.namespace)
        && p.selector.matches(&c.endpoint_labels(dst))
        && p.namespace_selector
            .as_ref()
            .is_none_or(|s| s.matches(&c.namespace_labels(&dst.namespace)))
        && p.service_account_selector.as_ref().is_none_or(|s| {
            s.matches(&c.service_account_labels(&dst.namespace, &dst.service_account))
        })
}

/// "A policy governs ingress when `types` contains `Ingress`. When `types` is absent, apply the
/// v3 default: Ingress if it has no egress rules; Egress if only egress rules; both if both."
fn governs_ingress(p: &Policy) -> bool {
    match p.types {
        Types::Absent => !p.egress || !p.ingress.is_empty(),
        Types::Ingress | Types::Both => true,
        Types::Egress => false,
    }
}

/// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, strictly: (namespace, service account).
fn parse_spiffe(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("spiffe://")?;
    let (td, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("ns/")?;
    let (ns, rest) = rest.split_once('/')?;
    let sa = rest.strip_prefix("sa/")?;
    let ok = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    (ok(td) && ok(ns) && ok(sa)).then_some((ns, sa))
}

/// The caller as rules see it.
struct Caller<'a> {
    identity: Option<(&'a str, &'a str)>,
    /// The source workload, when trusted.
    pod: Option<&'a Pod>,
    ip: Option<IpAddr>,
    /// Known by address or principal: an address in no selected set satisfies `notSelector`.
    by_address: bool,
}

/// The decision on the enforced policies: `true` is allow.
pub fn evaluate(c: &Cluster, r: &Request) -> bool {
    let cnps = c.converted_cluster_policies();
    let mut ps = c.enforced();
    ps.extend(&cnps);
    decide(c, &ps, r)
}

/// The decision with the staged policies as enforced (what the shadow evaluation reports).
pub fn evaluate_staged(c: &Cluster, r: &Request) -> bool {
    let cnps = c.converted_cluster_policies();
    let mut ps = c.staged_as_enforced();
    ps.extend(&cnps);
    decide(c, &ps, r)
}

fn decide(c: &Cluster, policies: &[&Policy], r: &Request) -> bool {
    // §1: no destination workload → deny.
    let Some(dst) = c.live_pod(&r.destination_ip) else {
        return false;
    };
    // §3.6: an invalid policy that could apply to the destination denies it.
    if policies
        .iter()
        .any(|p| !(compiles(p) && c.tier_exists(tier_of(p))) && selects(c, p, dst))
    {
        return false;
    }
    // §1: identity from the principal; the source pod's labels only when it agrees.
    let identity = r.principal.as_deref().and_then(parse_spiffe);
    let src = c.live_pod(&r.source_ip);
    if let (Some((ns, sa)), Some(p)) = (identity, src)
        && (p.namespace != ns || p.service_account != sa)
    {
        return false; // identity mismatch
    }
    let ip = parse_ip(&r.source_ip);
    let nobody = Caller {
        identity: None,
        pod: None,
        ip,
        by_address: false,
    };
    // "Network identity and certificate together": identity criteria match only when the source
    // address is a known workload and the identity agrees; the opt-out lets the principal alone
    // stand. With no principal, `--trust-network-identity` resolves the caller by its address.
    let grant = match (identity, src) {
        (Some(id), Some(pod)) => Caller {
            identity: Some(id),
            pod: Some(pod),
            ip,
            by_address: true,
        },
        (Some(id), None) if r.identity_only_source => Caller {
            identity: Some(id),
            pod: None,
            ip,
            by_address: true,
        },
        (None, Some(pod)) if r.trust_network_identity && r.principal.is_none() => Caller {
            identity: Some((&pod.namespace, &pod.service_account)),
            pod: Some(pod),
            ip,
            by_address: true,
        },
        _ => nobody,
    };
    // "A Deny rule is never escaped by lacking an identity": it denies the caller as its
    // principal names it (Dikastes' check), or as its address names it (Calico's IP sets: the
    // pod there, or no pod at all).
    let by_principal = match identity {
        Some(id) => Caller {
            identity: Some(id),
            pod: src,
            ip,
            by_address: true,
        },
        None => Caller {
            identity: None,
            pod: None,
            ip,
            by_address: false,
        },
    };
    let by_address = Caller {
        identity: src.map(|p| (p.namespace.as_str(), p.service_account.as_str())),
        pod: src,
        ip,
        by_address: true,
    };
    // §3.
    for (tier, pass_default) in c.tier_order() {
        let mut ps: Vec<&&Policy> = policies
            .iter()
            .filter(|p| tier_of(p) == tier && governs_ingress(p) && applies(c, p, dst))
            .collect();
        if ps.is_empty() {
            continue;
        }
        // §3.2: by order, ties by `<name>/<namespace>/<kind>` bytewise.
        ps.sort_by(|a, b| {
            let o = |p: &Policy| p.order.map_or(f64::INFINITY, f64::from);
            let tie = |p: &Policy| {
                let kind = if p.namespace.is_some() {
                    "NetworkPolicy"
                } else {
                    "GlobalNetworkPolicy"
                };
                format!("{}/{}/{kind}", p.name, p.namespace.as_deref().unwrap_or(""))
            };
            o(a).total_cmp(&o(b)).then_with(|| tie(a).cmp(&tie(b)))
        });
        let mut passed = false;
        'policies: for p in ps {
            for rule in &p.ingress {
                let matched = match rule.action {
                    // §1: a Deny rule sees the caller as its principal names it and as its
                    // address names it; matching either (or either's path ambiguously) denies.
                    Action::Deny => {
                        let m = rule_matches(c, p, rule, &by_principal, dst, r);
                        if m == RuleMatch::No {
                            rule_matches(c, p, rule, &by_address, dst, r)
                        } else {
                            m
                        }
                    }
                    _ => rule_matches(c, p, rule, &grant, dst, r),
                };
                match matched {
                    RuleMatch::No => continue,
                    // §4: "the request is denied there (reason `ambiguous path`)".
                    RuleMatch::AmbiguousPath => return false,
                    RuleMatch::Yes => {}
                }
                match rule.action {
                    Action::Allow => return true,
                    Action::Deny => return false,
                    Action::Pass => {
                        passed = true;
                        break 'policies;
                    }
                    Action::Log => {}
                }
            }
        }
        // §3.4: the tier's default action.
        if !passed && !pass_default {
            return false;
        }
    }
    // §3.5: no tier applied, or the last one passed: Calico's profile allows.
    true
}

fn tier_of(p: &Policy) -> &str {
    p.tier
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("default")
}

fn proto_is_tcp(p: Proto) -> bool {
    matches!(p, Proto::Tcp | Proto::TcpLower | Proto::Six)
}

/// How a rule fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleMatch {
    Yes,
    No,
    /// Every criterion matched but the path matched only some of its readings (or has none).
    AmbiguousPath,
}

/// §4: every criterion ANDed.
fn rule_matches(
    c: &Cluster,
    p: &Policy,
    rule: &Rule,
    caller: &Caller<'_>,
    dst: &Pod,
    r: &Request,
) -> RuleMatch {
    // "protocol / notProtocol: the request is TCP (6)."
    if rule.protocol.is_some_and(|p| !proto_is_tcp(p)) {
        return RuleMatch::No;
    }
    if rule.not_protocol.is_some_and(proto_is_tcp) {
        return RuleMatch::No;
    }
    let mut ambiguous = false;
    // "A TCP-level check (no request.http) matches every http criterion."
    if let (Some(h), Some((method, path))) = (&rule.http, &r.http) {
        if !h.methods.is_empty() && !h.methods.iter().any(|m| m == "*" || m == method) {
            return RuleMatch::No;
        }
        if !h.paths.is_empty() {
            let matches = |reading: &str| {
                h.paths.iter().any(|m| match m {
                    PathMatch::Exact(e) => normalize(e).is_some_and(|e| e == reading),
                    PathMatch::Prefix(pre) => normalize(pre).is_some_and(|pre| {
                        pre == "/" || reading == pre || reading.starts_with(&format!("{pre}/"))
                    }),
                })
            };
            match readings(path) {
                // "a path that cannot be decoded … is denied there"
                None => ambiguous = true,
                Some(all) => {
                    let hits = all.iter().filter(|x| matches(x)).count();
                    if hits == 0 {
                        return RuleMatch::No; // "Matching under none of them is no match."
                    }
                    ambiguous = hits < all.len();
                }
            }
        }
    }
    if !(source_matches(c, p, &rule.source, caller)
        && destination_matches(c, &rule.destination, dst, r))
    {
        RuleMatch::No
    } else if ambiguous {
        RuleMatch::AmbiguousPath
    } else {
        RuleMatch::Yes
    }
}

/// SEMANTICS.md §4 request path readings, naively: all 32 combinations of the five ways (each
/// on or off), every time. `None`: the path cannot be read (invalid escape, NUL, not UTF-8,
/// a double encoding, not starting with `/`, or longer than 16 KiB and not plain).
pub fn readings(raw: &str) -> Option<Vec<String>> {
    // "the query and fragment always cut"
    let cut = raw.split(['?', '#']).next().unwrap_or_default();
    if !cut.starts_with('/') {
        return None;
    }
    // "percent-escapes of unreserved characters are always decoded" (and every escape but
    // those of the delimiters `/`, `\`, `;`, which are kept as `%2F`, `%5C`, `%3B`).
    let b = cut.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            decoded.push(b[i]);
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let c = u8::from_str_radix(hex, 16).ok()?;
        match c {
            0 => return None,
            b'/' | b'\\' | b';' => decoded.extend(format!("%{}", hex.to_ascii_uppercase()).bytes()),
            b'%' => {
                // A double encoding: `%25` then the escape of `.`, `/`, `\`, `;` or `%`.
                let next =
                    std::str::from_utf8(b.get(i + 3..i + 5).unwrap_or_default()).unwrap_or("");
                if let Ok(n) = u8::from_str_radix(next, 16)
                    && next.len() == 2
                    && next.bytes().all(|c| c.is_ascii_hexdigit())
                    && [b'.', b'/', b'\\', b';', b'%'].contains(&n)
                {
                    return None;
                }
                decoded.push(c);
            }
            c => decoded.push(c),
        }
        i += 3;
    }
    let base = String::from_utf8(decoded).ok()?;
    if base.contains('\0') {
        return None;
    }
    let mut all: Vec<String> = Vec::new();
    for ways in 0..32u8 {
        let (params, escaped, backslash, merge, dots) = (
            ways & 1 != 0,
            ways & 2 != 0,
            ways & 4 != 0,
            ways & 8 != 0,
            ways & 16 != 0,
        );
        let mut s = base.clone();
        if escaped {
            s = s
                .replace("%2F", "/")
                .replace("%5C", "\\")
                .replace("%3B", ";");
        }
        if backslash {
            s = s.replace('\\', "/");
        }
        let mut out: Vec<String> = Vec::new();
        for seg in s.split('/').skip(1) {
            let seg = if params {
                seg.split(';').next().unwrap_or_default()
            } else {
                seg
            };
            if seg.is_empty() && merge {
                continue;
            }
            if dots && seg == "." {
                continue;
            }
            if dots && seg == ".." {
                out.pop();
                continue;
            }
            out.push(seg.to_owned());
        }
        // "a trailing `/` always dropped"
        while out.last().is_some_and(String::is_empty) {
            out.pop();
        }
        let reading = format!("/{}", out.join("/"));
        if !all.contains(&reading) {
            all.push(reading);
        }
    }
    // Too long to read: more than 16 KiB with any of `% ; \\ //` or a dot segment.
    let plain = !cut.contains(['%', ';', '\\'])
        && !cut.contains("//")
        && !cut.split('/').any(|s| s == "." || s == "..");
    if cut.len() > 16 * 1024 && !plain {
        return None;
    }
    Some(all)
}

fn source_matches(c: &Cluster, p: &Policy, s: &Source, caller: &Caller<'_>) -> bool {
    if !s.nets.is_empty()
        && !caller
            .ip
            .is_some_and(|ip| s.nets.iter().any(|n| in_net(n, ip)))
    {
        return false;
    }
    if caller
        .ip
        .is_some_and(|ip| s.not_nets.iter().any(|n| in_net(n, ip)))
    {
        return false;
    }
    let sa_names = s.sa_names.as_ref().filter(|n| !n.is_empty());
    let sa_selector = Sel::set(&s.sa_selector);
    let sa_set = sa_names.is_some() || sa_selector.is_some();
    let selector = Sel::set(&s.selector);
    let not_selector = Sel::set(&s.not_selector);
    // §2 "Network sets": "The rule's `notSelector` excludes an address inside any set it
    // selects (of any namespace)".
    if let Some(sel) = not_selector
        && c.in_a_set(caller.ip, |set| sel.matches(&c.set_labels(set)))
    {
        return false;
    }
    // "A source address inside any selected set's nets matches the rule's namespace,
    // service-account and selector criteria by address, with or without a principal"; then its
    // `notSelector` excludes "the workload at that address if its labels match".
    if c.in_a_set(caller.ip, |set| rule_selects_set(c, p, s, set)) {
        return !not_selector.is_some_and(|sel| {
            caller
                .ip
                .and_then(|ip| c.live_pod_at(ip))
                .is_some_and(|pod| sel.matches(&c.endpoint_labels(pod)))
        });
    }
    // "source.namespaceSelector: matches the caller's Namespace labels." / "Namespace scoping:
    // a rule of a namespaced policy with selector, notSelector or serviceAccounts and no
    // namespaceSelector matches only callers in the policy's namespace." Both need an identity.
    match Sel::set(&s.namespace_selector) {
        Some(sel) => {
            if !caller
                .identity
                .is_some_and(|(ns, _)| sel.matches(&c.namespace_labels(ns)))
            {
                return false;
            }
        }
        None => {
            if let Some(pns) = &p.namespace
                && (selector.is_some() || not_selector.is_some() || sa_set)
                && caller.identity.is_none_or(|(ns, _)| ns != pns)
            {
                return false;
            }
        }
    }
    // "source.serviceAccounts: identity present, names empty or contains the SA name, and
    // selector matches the SA's labels."
    if sa_set {
        let Some((ns, sa)) = caller.identity else {
            return false;
        };
        if sa_names.is_some_and(|n| !n.iter().any(|n| n == sa)) {
            return false;
        }
        if sa_selector.is_some_and(|sel| !sel.matches(&c.service_account_labels(ns, sa))) {
            return false;
        }
    }
    // "source.selector / notSelector: on the source workload's endpoint labels", which Calico
    // turns into the set of matching workloads: a caller that is not a (trusted) workload is in
    // no such set, so `selector` fails and `notSelector` holds — given an identity.
    let in_set = |sel: &Sel| {
        caller
            .pod
            .is_some_and(|pod| sel.matches(&c.endpoint_labels(pod)))
    };
    if let Some(sel) = selector
        && !(caller.identity.is_some() && in_set(sel))
    {
        return false;
    }
    if let Some(sel) = not_selector
        && (!caller.by_address || in_set(sel))
    {
        return false;
    }
    true
}

/// §2 "Network sets": whether a rule's source selects a set, naively from the text. The
/// selector goes "together with its namespace part, which is the `namespaceSelector` (on the
/// set's Namespace; `all()` any NetworkSet, `global()` the GlobalNetworkSets) or, in a
/// namespaced policy without one, the policy's own namespace; a `namespaceSelector` alone
/// selects sets too. A `serviceAccounts` criterion is Calico's `pcsa.` selector there, which a
/// set (it has no `pcsa.` labels) passes only with no `names` and a selector such as
/// `!has(team)`."
fn rule_selects_set(c: &Cluster, p: &Policy, s: &Source, set: &NetSet) -> bool {
    let sa_names = s.sa_names.as_ref().filter(|n| !n.is_empty());
    let sa_selector = Sel::set(&s.sa_selector);
    let selector = Sel::set(&s.selector);
    let namespace_selector = Sel::set(&s.namespace_selector);
    // The policy's own namespace is the namespace part where namespace scoping applies (§4: a
    // rule with `selector`, `notSelector` or `serviceAccounts` and no `namespaceSelector`).
    let scoped = p.namespace.is_some()
        && namespace_selector.is_none()
        && (selector.is_some()
            || Sel::set(&s.not_selector).is_some()
            || sa_names.is_some()
            || sa_selector.is_some());
    // A rule with no selector, namespace or service-account part selects no set.
    if selector.is_none()
        && namespace_selector.is_none()
        && sa_names.is_none()
        && sa_selector.is_none()
        && !scoped
    {
        return false;
    }
    if sa_names.is_some() || sa_selector.is_some_and(|sel| !sel.matches(&Labels::new())) {
        return false;
    }
    let namespace_ok = match (namespace_selector, &set.namespace) {
        (Some(Sel::Global), ns) => ns.is_none(),
        (Some(_), None) => false,
        (Some(sel), Some(ns)) => sel.matches(&c.namespace_labels(ns)),
        (None, ns) => p.namespace.is_none() || *ns == p.namespace,
    };
    namespace_ok && selector.is_none_or(|sel| sel.matches(&c.set_labels(set)))
}

fn destination_matches(c: &Cluster, d: &Destination, dst: &Pod, r: &Request) -> bool {
    let port_ok = |m: &Port| match m {
        Port::Num(n) => *n == r.port,
        Port::Range(lo, hi) => (*lo..=*hi).contains(&r.port),
        // "named ports (resolved from the Pod's container ports)".
        Port::Named(name) => dst
            .named_ports
            .iter()
            .any(|(n, port)| n == name && *port == r.port),
    };
    if !d.ports.is_empty() && !d.ports.iter().any(port_ok) {
        return false;
    }
    if d.not_ports.iter().any(port_ok) {
        return false;
    }
    // The destination is the selected workload (of the policy's namespace, for a namespaced
    // policy), so its identity is known and scoping always holds.
    if let Some(names) = d.sa_names.as_ref().filter(|n| !n.is_empty())
        && !names.contains(&dst.service_account)
    {
        return false;
    }
    if let Some(sel) = Sel::set(&d.selector)
        && !sel.matches(&c.endpoint_labels(dst))
    {
        return false;
    }
    true
}

/// An address; IPv4-mapped IPv6 (`::ffff:10.0.0.1`, from dual-stack listeners) is the IPv4
/// address it maps.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// A CIDR (or a bare address, a host route) contains the address; IPv4 never matches IPv6.
fn in_net(net: &str, ip: IpAddr) -> bool {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (net, None),
    };
    match (addr.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(ip)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(ip) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(ip)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// SEMANTICS.md §4 `http.paths` normalization, step by step; `None`: unnormalizable.
pub fn normalize(raw: &str) -> Option<String> {
    // "cut at ?/#"
    let cut = raw.split(['?', '#']).next().unwrap_or_default();
    // "percent-decode once (invalid escape → unnormalizable)"
    let b = cut.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(decoded).ok()?;
    // "still-encoded %2e %2f %5c or NUL → unnormalizable"
    let lower = s.to_ascii_lowercase();
    if s.contains('\0') || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return None;
    }
    // "`\` → `/`; must start with `/`"
    let s = s.replace('\\', "/");
    if !s.starts_with('/') {
        return None;
    }
    // "drop ;params in each segment; resolve ./.. (clamped at root), collapse //, drop
    // trailing /"
    let mut out: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    Some(format!("/{}", out.join("/")))
}

// --- Rendering ---------------------------------------------------------------------------

fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn labels_json(l: &Labels) -> String {
    let v: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{}: {}", q(k), q(v)))
        .collect();
    format!("{{{}}}", v.join(", "))
}

fn list_json<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    let v: Vec<String> = v.iter().map(f).collect();
    format!("[{}]", v.join(", "))
}

fn proto_json(p: Proto) -> String {
    match p {
        Proto::Tcp => q("TCP"),
        Proto::TcpLower => q("tcp"),
        Proto::Six => "6".into(),
        Proto::Udp => q("UDP"),
        Proto::Seventeen => "17".into(),
    }
}

fn port_json(p: &Port) -> String {
    match p {
        Port::Num(n) => n.to_string(),
        Port::Range(lo, hi) => q(&format!("{lo}:{hi}")),
        Port::Named(n) => q(n),
    }
}

fn sa_json(names: &Option<Vec<String>>, selector: &Option<Sel>) -> Option<String> {
    if names.is_none() && selector.is_none() {
        return None;
    }
    let mut f = Vec::new();
    if let Some(n) = names {
        f.push(format!("\"names\": {}", list_json(n, |s| q(s))));
    }
    if let Some(s) = selector {
        f.push(format!("\"selector\": {}", q(&s.render())));
    }
    Some(format!("{{{}}}", f.join(", ")))
}

fn rule_json(r: &Rule) -> String {
    let action = match r.action {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::Pass => "Pass",
        Action::Log => "Log",
    };
    let mut f = vec![format!("\"action\": {}", q(action))];
    if let Some(p) = r.protocol {
        f.push(format!("\"protocol\": {}", proto_json(p)));
    }
    if let Some(p) = r.not_protocol {
        f.push(format!("\"notProtocol\": {}", proto_json(p)));
    }
    let s = &r.source;
    let mut src = Vec::new();
    if let Some(sa) = sa_json(&s.sa_names, &s.sa_selector) {
        src.push(format!("\"serviceAccounts\": {sa}"));
    }
    for (k, v) in [
        ("namespaceSelector", &s.namespace_selector),
        ("selector", &s.selector),
        ("notSelector", &s.not_selector),
    ] {
        if let Some(v) = v {
            src.push(format!("{}: {}", q(k), q(&v.render())));
        }
    }
    if !s.nets.is_empty() {
        src.push(format!("\"nets\": {}", list_json(&s.nets, |n| q(n))));
    }
    if !s.not_nets.is_empty() {
        src.push(format!("\"notNets\": {}", list_json(&s.not_nets, |n| q(n))));
    }
    if !src.is_empty() {
        f.push(format!("\"source\": {{{}}}", src.join(", ")));
    }
    let d = &r.destination;
    let mut dst = Vec::new();
    if !d.ports.is_empty() {
        dst.push(format!("\"ports\": {}", list_json(&d.ports, port_json)));
    }
    if !d.not_ports.is_empty() {
        dst.push(format!(
            "\"notPorts\": {}",
            list_json(&d.not_ports, port_json)
        ));
    }
    if let Some(s) = &d.selector {
        dst.push(format!("\"selector\": {}", q(&s.render())));
    }
    if let Some(sa) = sa_json(&d.sa_names, &None) {
        dst.push(format!("\"serviceAccounts\": {sa}"));
    }
    if !dst.is_empty() {
        f.push(format!("\"destination\": {{{}}}", dst.join(", ")));
    }
    if let Some(h) = &r.http {
        let mut hf = Vec::new();
        if !h.methods.is_empty() {
            hf.push(format!("\"methods\": {}", list_json(&h.methods, |m| q(m))));
        }
        if !h.paths.is_empty() {
            hf.push(format!(
                "\"paths\": {}",
                list_json(&h.paths, |p| match p {
                    PathMatch::Exact(e) => format!("{{\"exact\": {}}}", q(e)),
                    PathMatch::Prefix(e) => format!("{{\"prefix\": {}}}", q(e)),
                })
            ));
        }
        f.push(format!("\"http\": {{{}}}", hf.join(", ")));
    }
    format!("{{{}}}", f.join(", "))
}

fn policy_json(p: &Policy) -> String {
    let kind = match (&p.namespace, p.staged) {
        (None, None) => "GlobalNetworkPolicy",
        (Some(_), None) => "NetworkPolicy",
        (None, Some(_)) => "StagedGlobalNetworkPolicy",
        (Some(_), Some(_)) => "StagedNetworkPolicy",
    };
    let mut meta = vec![format!("\"name\": {}", q(&p.name))];
    if let Some(ns) = &p.namespace {
        meta.push(format!("\"namespace\": {}", q(ns)));
    }
    let mut spec = Vec::new();
    if let Some(t) = &p.tier {
        spec.push(format!("\"tier\": {}", q(t)));
    }
    if let Some(o) = p.order {
        spec.push(format!("\"order\": {o}"));
    }
    spec.push(format!("\"selector\": {}", q(&p.selector.render())));
    if let Some(s) = &p.namespace_selector {
        spec.push(format!("\"namespaceSelector\": {}", q(&s.render())));
    }
    if let Some(s) = &p.service_account_selector {
        spec.push(format!("\"serviceAccountSelector\": {}", q(&s.render())));
    }
    if p.pre_dnat {
        spec.push("\"preDNAT\": true".into());
    }
    if p.do_not_track {
        spec.push("\"doNotTrack\": true".into());
    }
    if p.pre_dnat || p.do_not_track {
        spec.push("\"applyOnForward\": true".into());
    }
    match p.types {
        Types::Absent => {}
        Types::Ingress => spec.push("\"types\": [\"Ingress\"]".into()),
        Types::Egress => spec.push("\"types\": [\"Egress\"]".into()),
        Types::Both => spec.push("\"types\": [\"Ingress\", \"Egress\"]".into()),
    }
    spec.push(format!("\"ingress\": {}", list_json(&p.ingress, rule_json)));
    if p.egress {
        spec.push("\"egress\": [{\"action\": \"Allow\"}]".into());
    }
    match p.staged {
        Some(Staged::Set) => spec.push("\"stagedAction\": \"Set\"".into()),
        Some(Staged::Delete) => spec.push("\"stagedAction\": \"Delete\"".into()),
        _ => {}
    }
    format!(
        "{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"{kind}\", \"metadata\": {{{}}}, \"spec\": {{{}}}}}",
        meta.join(", "),
        spec.join(", ")
    )
}

fn peer_json(p: &Peer) -> String {
    let ml = |l: &Labels| format!("{{\"matchLabels\": {}}}", labels_json(l));
    match p {
        Peer::Namespaces(ns) => format!("{{\"namespaces\": {}}}", ml(ns)),
        Peer::Pods(ns, pods) => format!(
            "{{\"pods\": {{\"namespaceSelector\": {}, \"podSelector\": {}}}}}",
            ml(ns),
            ml(pods)
        ),
    }
}

fn cluster_policy_json(p: &ClusterPolicy) -> String {
    let ingress = list_json(&p.ingress, |(action, from)| {
        let action = match action {
            CnpAction::Accept => "Accept",
            CnpAction::Deny => "Deny",
            CnpAction::Pass => "Pass",
        };
        format!(
            "{{\"action\": {}, \"from\": {}}}",
            q(action),
            list_json(from, peer_json)
        )
    });
    format!(
        "{{\"apiVersion\": \"policy.networking.k8s.io/v1alpha2\", \"kind\": \"ClusterNetworkPolicy\", \"metadata\": {{\"name\": {}}}, \"spec\": {{\"tier\": {}, \"priority\": {}, \"subject\": {}, \"ingress\": {ingress}}}}}",
        q(&p.name),
        q(if p.admin { "Admin" } else { "Baseline" }),
        p.priority,
        peer_json(&p.subject)
    )
}

/// The cluster as one JSON `List` (also valid YAML), one object per line.
pub fn render(c: &Cluster) -> String {
    let mut items: Vec<String> = Vec::new();
    for (name, labels) in &c.namespaces {
        items.push(format!(
            "{{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {{\"name\": {}, \"labels\": {}}}}}",
            q(name),
            labels_json(labels)
        ));
    }
    for (ns, name, labels) in &c.service_accounts {
        items.push(format!(
            "{{\"apiVersion\": \"v1\", \"kind\": \"ServiceAccount\", \"metadata\": {{\"name\": {}, \"namespace\": {}, \"labels\": {}}}}}",
            q(name),
            q(ns),
            labels_json(labels)
        ));
    }
    for p in &c.pods {
        let ports = list_json(&p.named_ports, |(n, port)| {
            format!("{{\"name\": {}, \"containerPort\": {port}}}", q(n))
        });
        let mut status = vec![format!(
            "\"phase\": {}",
            q(if p.finished { "Succeeded" } else { "Running" })
        )];
        if let Some(ip) = &p.ip {
            status.push(format!("\"podIP\": {}", q(ip)));
        }
        items.push(format!(
            "{{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {{\"name\": {}, \"namespace\": {}, \"labels\": {}}}, \"spec\": {{\"serviceAccountName\": {}, \"hostNetwork\": {}, \"containers\": [{{\"name\": \"c\", \"ports\": {ports}}}]}}, \"status\": {{{}}}}}",
            q(&p.name),
            q(&p.namespace),
            labels_json(&p.labels),
            q(&p.service_account),
            p.host_network,
            status.join(", ")
        ));
    }
    for t in &c.tiers {
        let mut spec = vec![format!(
            "\"defaultAction\": {}",
            q(if t.pass { "Pass" } else { "Deny" })
        )];
        if let Some(o) = t.order {
            spec.push(format!("\"order\": {o}"));
        }
        items.push(format!(
            "{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"Tier\", \"metadata\": {{\"name\": {}}}, \"spec\": {{{}}}}}",
            q(&t.name),
            spec.join(", ")
        ));
    }
    for s in &c.net_sets {
        let (kind, ns) = match &s.namespace {
            Some(ns) => ("NetworkSet", format!(", \"namespace\": {}", q(ns))),
            None => ("GlobalNetworkSet", String::new()),
        };
        items.push(format!(
            "{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"{kind}\", \"metadata\": {{\"name\": {}{ns}, \"labels\": {}}}, \"spec\": {{\"nets\": {}}}}}",
            q(&s.name),
            labels_json(&s.labels),
            list_json(&s.nets, |n| q(n))
        ));
    }
    items.extend(c.policies.iter().map(policy_json));
    items.extend(c.cluster_policies.iter().map(cluster_policy_json));
    format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n{}\n]}}\n",
        items.join(",\n")
    )
}

/// The request as CheckRequest JSON (proto3 JSON mapping).
pub fn check_request_json(r: &Request) -> String {
    let principal = r
        .principal
        .as_ref()
        .map(|p| format!(", \"principal\": {}", q(p)))
        .unwrap_or_default();
    let http = r
        .http
        .as_ref()
        .map(|(m, p)| {
            format!(
                ", \"request\": {{\"http\": {{\"method\": {}, \"path\": {}}}}}",
                q(m),
                q(p)
            )
        })
        .unwrap_or_default();
    format!(
        "{{\"attributes\": {{\"source\": {{\"address\": {{\"socketAddress\": {{\"address\": {}, \"portValue\": 40000}}}}{principal}}}, \"destination\": {{\"address\": {{\"socketAddress\": {{\"address\": {}, \"portValue\": {}}}}}}}{http}}}}}",
        q(&r.source_ip),
        q(&r.destination_ip),
        r.port
    )
}

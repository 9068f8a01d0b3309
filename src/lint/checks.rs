//! The checks of `alp-authz lint`, over the located objects and the snapshot the server would
//! build from them. Each check is one function; what it reports and why is in its comment and
//! in the README's table of codes.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use serde_json::Value;

use super::{Finding, Input, Located, Options, Severity, subsume};
use crate::policy::{
    compile::{
        ADMIN_TIER, Action, BASELINE_TIER, DEFAULT_TIER, NamespaceMatch, Policy, PolicyId,
        PortMatch, Rule, TierDefault,
    },
    endpoints::NO_CLASS,
    index::{PolicyIdx, TierIdx},
    model::PolicyKind,
    path,
    snapshot::Snapshot,
    store::{Object, Store},
};

/// Runs every check; findings sorted by where they are.
pub fn run(sources: &[Located], store: &Store, input: &Input, opts: &Options) -> Vec<Finding> {
    let snap = Snapshot::build(store, 1);
    let mut c = Ctx {
        sources,
        store,
        snap: &snap,
        live: matches!(input, Input::Kubernetes(_)),
        only_namespace: match input {
            Input::Kubernetes(k) => k.namespace.clone(),
            Input::Files(_) => None,
        },
        out: Vec::new(),
        by_policy: HashMap::new(),
        by_tier: HashMap::new(),
        rule_flagged: HashSet::new(),
    };
    for (i, s) in sources.iter().enumerate() {
        match &s.object {
            Object::Policy(p) => {
                c.by_policy.insert(p.id.clone(), i);
            }
            Object::Tier { name, .. } => {
                c.by_tier.insert(name.clone(), i);
            }
            _ => {}
        }
    }
    c.invalid();
    c.rules_in_policies();
    c.rules_across_policies();
    c.tiers_that_only_pass();
    c.selectors();
    c.http_on_tcp_only_ports();
    c.paths();
    c.ignored_fields();
    c.staged(opts);
    let mut out = c.out;
    out.sort_by_key(|(src, seq, f)| (src.unwrap_or(usize::MAX), f.line, *seq));
    out.into_iter().map(|(_, _, f)| f).collect()
}

struct Ctx<'a> {
    sources: &'a [Located],
    store: &'a Store,
    snap: &'a Snapshot,
    live: bool,
    /// `--kubernetes --namespace NS`: pods and service accounts of other namespaces were not
    /// listed, so only what is scoped to NS is checked against them.
    only_namespace: Option<String>,
    /// (source index, emission order, finding).
    out: Vec<(Option<usize>, usize, Finding)>,
    by_policy: HashMap<PolicyId, usize>,
    by_tier: HashMap<String, usize>,
    /// Rules already reported as unreachable or shadowed (policy, rule).
    rule_flagged: HashSet<(PolicyId, usize)>,
}

/// What a finding says.
struct Say {
    severity: Severity,
    code: &'static str,
    field: Option<String>,
    message: String,
    hint: String,
}

fn say(
    severity: Severity,
    code: &'static str,
    field: Option<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Say {
    Say {
        severity,
        code,
        field,
        message: message.into(),
        hint: hint.into(),
    }
}

impl Ctx<'_> {
    fn emit(&mut self, src: usize, s: Say) {
        let Some(l) = self.sources.get(src) else {
            return;
        };
        let meta = |k: &str| {
            l.raw
                .get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let line = l.line_of(s.field.as_deref().unwrap_or(""));
        let f = Finding {
            severity: s.severity,
            code: s.code,
            file: l.file.as_ref().map(|f| f.display().to_string()),
            document: l.file.as_ref().map(|_| l.document),
            line: l.file.as_ref().and(line),
            kind: l.type_meta.kind.clone(),
            namespace: meta("namespace"),
            // A Calico policy's user-facing name (not its `crd.projectcalico.org/v1` storage
            // name); a Kubernetes policy's own name (not Calico's `knp.default.` form).
            name: match &l.object {
                Object::Policy(p) if is_calico_shaped(p.id.kind) => p.id.name.to_string(),
                _ => meta("name").unwrap_or_default(),
            },
            field: s.field,
            message: s.message,
            hint: s.hint,
        };
        let seq = self.out.len();
        self.out.push((Some(src), seq, f));
    }

    /// A finding on an object that has no source (a built-in tier).
    fn emit_unsourced(&mut self, kind: &str, name: &str, s: Say) {
        let seq = self.out.len();
        self.out.push((
            None,
            seq,
            Finding {
                severity: s.severity,
                code: s.code,
                file: None,
                document: None,
                line: None,
                kind: kind.into(),
                namespace: None,
                name: name.into(),
                field: s.field,
                message: s.message,
                hint: s.hint,
            },
        ));
    }

    fn emit_policy(&mut self, id: &PolicyId, s: Say) {
        match self.by_policy.get(id) {
            Some(&i) => self.emit(i, s),
            None => self.emit_unsourced(id.kind.as_str(), &id.to_string(), s),
        }
    }

    /// Compiled Calico-shaped policies (their rule `i` is `spec.ingress[i]` as written), with
    /// their source, in source order.
    fn calico_policies(&self) -> Vec<(usize, Arc<Policy>)> {
        let mut v = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Object::Policy(p) = &s.object
                && is_calico_shaped(p.id.kind)
                && let Some(Ok(compiled)) = self.store.policies.get(&p.id)
                && self.by_policy.get(&p.id) == Some(&i)
            {
                v.push((i, compiled.clone()));
            }
        }
        v
    }

    /// `invalid-policy`, `invalid-tier`, `missing-tier`: what fails closed.
    fn invalid(&mut self) {
        for i in 0..self.sources.len() {
            let (field, message, code) = match &self.sources[i].object {
                Object::Policy(p) => match &p.compiled {
                    Err(e) => (
                        e.error
                            .field()
                            .map(str::to_owned)
                            .or_else(|| field_of(&e.error.to_string())),
                        match e.error.caret() {
                            Some(caret) => format!("invalid, fails closed: {}\n{caret}", e.error),
                            None => format!("invalid, fails closed: {}", e.error),
                        },
                        "invalid-policy",
                    ),
                    Ok(compiled) if !p.id.kind.is_staged() => {
                        let tier = self.store.tiers.get(&*compiled.tier);
                        let builtin =
                            [DEFAULT_TIER, ADMIN_TIER, BASELINE_TIER].contains(&&*compiled.tier);
                        match tier {
                            Some(Err(_)) => (
                                Some("spec.tier".into()),
                                format!(
                                    "its tier `{}` is invalid, so it fails closed",
                                    compiled.tier
                                ),
                                "missing-tier",
                            ),
                            None if !builtin => (
                                Some("spec.tier".into()),
                                format!(
                                    "tier `{}` does not exist, so it fails closed",
                                    compiled.tier
                                ),
                                "missing-tier",
                            ),
                            _ => continue,
                        }
                    }
                    Ok(_) => continue,
                },
                Object::Tier { tier: Err(e), .. } => (
                    Some(e.field.clone()),
                    format!("invalid, its policies fail closed: {e}"),
                    "invalid-tier",
                ),
                _ => continue,
            };
            let hint = match code {
                "missing-tier" => "create the Tier, or fix `spec.tier`",
                _ => "fix the field named; until then every endpoint it could select is denied",
            };
            self.emit(i, say(Severity::Error, code, field, message, hint));
        }
    }

    /// `unreachable-rule` (after a catch-all terminal rule) and `shadowed-rule` (an earlier
    /// terminal rule of the same policy matches everything it matches; see `subsume`).
    fn rules_in_policies(&mut self) {
        for (src, p) in self.calico_policies() {
            let Some(rules) = p.ingress.as_deref() else {
                continue;
            };
            let catch_all = rules.iter().position(subsume::is_catch_all);
            for (j, r) in rules.iter().enumerate() {
                let field = Some(format!("spec.ingress[{j}]"));
                if let Some(k) = catch_all.filter(|&k| k < j) {
                    self.rule_flagged.insert((p.id.clone(), j));
                    self.emit(
                        src,
                        say(
                            Severity::Warning,
                            "unreachable-rule",
                            field,
                            format!(
                                "rule {j} ({}) is never evaluated: rule {k} ({}) matches every request",
                                r.action.as_str(),
                                rules[k].action.as_str()
                            ),
                            format!("delete rule {j}, or move it above rule {k}"),
                        ),
                    );
                    continue;
                }
                if let Some(k) = (0..j).find(|&k| subsume::shadows(&rules[k], r)) {
                    self.rule_flagged.insert((p.id.clone(), j));
                    self.emit(
                        src,
                        say(
                            Severity::Warning,
                            "shadowed-rule",
                            field,
                            format!(
                                "rule {j} ({}) never decides: every request it matches, rule {k} ({}) matches first",
                                r.action.as_str(),
                                rules[k].action.as_str()
                            ),
                            shadow_hint(&rules[k], r, &format!("rule {k}"), j, false),
                        ),
                    );
                }
            }
        }
    }

    /// `shadowed-across-policies`: a rule of a later policy of the same tier that an earlier
    /// policy's terminal rule decides first, on every endpoint. Sound, so narrow: the earlier
    /// policy must apply to every endpoint the later one applies to *by its selectors* (its
    /// namespace, and selectors that imply each other), not merely in today's state.
    fn rules_across_policies(&mut self) {
        let snap = self.snap;
        let mut tiers: BTreeMap<TierIdx, Vec<usize>> = BTreeMap::new();
        for (i, t) in snap.policy_tier.iter().enumerate() {
            tiers.entry(*t).or_default().push(i);
        }
        for (tier, list) in tiers {
            for (jj, &j) in list.iter().enumerate() {
                let later = &snap.policies[j];
                if !is_calico_shaped(later.id.kind) {
                    continue;
                }
                let Some(rules) = later.ingress.as_deref() else {
                    continue;
                };
                for (r_idx, r) in rules.iter().enumerate() {
                    if self.rule_flagged.contains(&(later.id.clone(), r_idx)) {
                        continue;
                    }
                    let hit = list[..jj].iter().find_map(|&i| {
                        let earlier = &snap.policies[i];
                        let earlier_rules = earlier.ingress.as_deref()?;
                        if !subsume::applies_covers(&earlier.applies, &later.applies) {
                            return None;
                        }
                        let k = earlier_rules.iter().position(|a| subsume::shadows(a, r))?;
                        Some((earlier.clone(), k))
                    });
                    let Some((earlier, k)) = hit else { continue };
                    let tier_name = snap.tiers[tier.get()].name.clone();
                    self.rule_flagged.insert((later.id.clone(), r_idx));
                    let by = format!(
                        "rule {k} ({}) of {} {}",
                        earlier
                            .ingress
                            .as_deref()
                            .map_or("", |e| e[k].action.as_str()),
                        earlier.id.kind.as_str(),
                        earlier.id
                    );
                    let message = format!(
                        "rule {r_idx} ({}) never decides: {by}, earlier in tier `{tier_name}` and applying to every endpoint this policy applies to, matches every request it matches",
                        r.action.as_str(),
                    );
                    let hint = shadow_hint(
                        &earlier
                            .ingress
                            .as_deref()
                            .map_or(r.clone(), |e| e[k].clone()),
                        r,
                        &by,
                        r_idx,
                        true,
                    );
                    self.emit_policy(
                        &later.id,
                        say(
                            Severity::Warning,
                            "shadowed-across-policies",
                            Some(format!("spec.ingress[{r_idx}]")),
                            message,
                            hint,
                        ),
                    );
                }
            }
        }
    }

    /// `tier-only-passes`: every rule of every policy in the tier (that governs ingress) is
    /// Pass (or Log). With `defaultAction: Pass` the tier never decides anything (warning);
    /// with the default Deny it denies exactly what its Pass rules do not match, an allow-list
    /// written as Pass rules, which may be meant (info).
    fn tiers_that_only_pass(&mut self) {
        let snap = self.snap;
        for (t, tier) in snap.tiers.iter().enumerate() {
            let policies: Vec<&Arc<Policy>> = snap
                .policies
                .iter()
                .zip(snap.policy_tier.iter())
                .filter(|(p, pt)| pt.get() == t && p.ingress.is_some())
                .map(|(p, _)| p)
                .collect();
            let rules: Vec<&Rule> = policies
                .iter()
                .flat_map(|p| p.ingress.iter().flatten())
                .collect();
            let only_pass = rules
                .iter()
                .all(|r| matches!(r.action, Action::Pass | Action::Log))
                && rules.iter().any(|r| r.action == Action::Pass);
            if policies.is_empty() || !only_pass {
                continue;
            }
            let names: Vec<String> = policies.iter().map(|p| p.id.to_string()).collect();
            let s = if tier.default_action == TierDefault::Pass {
                say(
                    Severity::Warning,
                    "tier-only-passes",
                    None,
                    format!(
                        "its policies ({}) only pass and its defaultAction is Pass: the tier never allows or denies anything",
                        names.join(", ")
                    ),
                    "delete the tier, or give it the Allow or Deny rules it was meant to hold",
                )
            } else {
                say(
                    Severity::Info,
                    "tier-only-passes",
                    None,
                    format!(
                        "its policies ({}) only pass: it denies, at its end, every request to their endpoints that no Pass rule matches",
                        names.join(", ")
                    ),
                    "if that allow-list is meant, nothing to do; else set `defaultAction: Pass` or add Allow/Deny rules",
                )
            };
            match self.by_tier.get(&*tier.name) {
                Some(&i) => self.emit(i, s),
                None => self.emit_unsourced("Tier", &tier.name, s),
            }
        }
    }

    /// `selects-nothing` / `selects-everything`, against the pods and namespaces of the state:
    /// a policy that selects no pod, a rule source selector that matches no pod (nor network
    /// set), a rule namespace selector that matches no Namespace, service-account names no
    /// ServiceAccount has; a global policy with a selector that selects every pod.
    fn selectors(&mut self) {
        let snap = self.snap;
        let endpoints: Vec<_> = snap
            .endpoints
            .iter()
            .filter(|e| e.class != NO_CLASS)
            .collect();
        if endpoints.is_empty() {
            if !self.by_policy.is_empty() {
                self.emit_unsourced_state(say(
                    Severity::Info,
                    "no-pods",
                    None,
                    "the state has no pods: no selector was checked against pods",
                    "give the cluster state too (e.g. `kubectl get pods,namespaces,serviceaccounts -A -o yaml`), or lint with --kubernetes",
                ));
            }
            return;
        }
        for (pi, p) in snap.policies.iter().enumerate() {
            if p.ingress.is_none() || !self.in_listed_scope(p.applies.namespace.as_deref()) {
                continue;
            }
            let selected = endpoints
                .iter()
                .filter(|e| {
                    snap.plans[e.class.get()]
                        .tiers
                        .iter()
                        .any(|t| t.policies.contains(&PolicyIdx::new(pi)))
                })
                .count();
            let field = Some(
                if p.id.kind.is_kubernetes_shaped() {
                    "spec.podSelector"
                } else {
                    "spec.selector"
                }
                .to_owned(),
            );
            if selected == 0 {
                self.emit_policy(
                    &p.id,
                    say(
                        Severity::Warning,
                        "selects-nothing",
                        field,
                        format!("selects none of the {} pods in the state", endpoints.len()),
                        "check the selector's labels against the pods' (and the namespace), or delete the policy",
                    ),
                );
            } else if selected == endpoints.len()
                && endpoints.len() > 1
                && p.applies.namespace.is_none()
                && !(p.applies.selector.is_all()
                    && p.applies
                        .namespace_selector
                        .as_ref()
                        .is_none_or(|s| s.is_all())
                    && p.applies.service_account_selector.is_none())
            {
                self.emit_policy(
                    &p.id,
                    say(
                        Severity::Info,
                        "selects-everything",
                        field,
                        format!(
                            "its selectors select every one of the {} pods in the state",
                            endpoints.len()
                        ),
                        "if every pod is meant, write `selector: all()`; else narrow it",
                    ),
                );
            }
        }
        for (src, p) in self.calico_policies() {
            for (i, r) in p.ingress.iter().flatten().enumerate() {
                self.rule_selectors(src, i, r);
            }
        }
    }

    fn emit_unsourced_state(&mut self, s: Say) {
        let seq = self.out.len();
        self.out.push((
            None,
            seq,
            Finding {
                severity: s.severity,
                code: s.code,
                file: None,
                document: None,
                line: None,
                kind: String::new(),
                namespace: None,
                name: String::new(),
                field: None,
                message: s.message,
                hint: s.hint,
            },
        ));
    }

    /// Whether what the state holds for `namespace` (`None`: every namespace) was listed.
    fn in_listed_scope(&self, namespace: Option<&str>) -> bool {
        self.only_namespace
            .as_deref()
            .is_none_or(|only| namespace == Some(only))
    }

    fn rule_selectors(&mut self, src: usize, i: usize, r: &Rule) {
        let snap = self.snap;
        let store = self.store;
        let e = &r.source;
        let scoped = match &e.namespace {
            NamespaceMatch::Same(n) => Some(&**n),
            _ => None,
        };
        if !self.in_listed_scope(scoped) {
            return;
        }
        let in_scope = |ns: &str| match &e.namespace {
            NamespaceMatch::Same(n) => &**n == ns,
            NamespaceMatch::Selector(s) => s.matches(&**snap.endpoints.namespace_labels(ns)),
            NamespaceMatch::Global => false,
            NamespaceMatch::Any | NamespaceMatch::AnyNamespaced => true,
        };
        if let Some(sel) = &e.selector
            && !matches!(e.namespace, NamespaceMatch::Global)
        {
            let pods = snap
                .endpoints
                .iter()
                .any(|w| in_scope(&w.namespace) && sel.matches(&*w.labels));
            let sets = store.net_sets.values().any(|s| {
                let mut labels = s.labels.clone();
                if !s.namespace.is_empty() {
                    labels.insert(
                        crate::policy::compile::LABEL_NAMESPACE.into(),
                        s.namespace.clone(),
                    );
                }
                sel.matches(&labels)
            });
            if !pods && !sets {
                let scope = match &e.namespace {
                    NamespaceMatch::Same(n) => format!(" in namespace `{n}`"),
                    NamespaceMatch::Selector(_) => " in the namespaces it selects".into(),
                    _ => String::new(),
                };
                self.emit(
                    src,
                    say(
                        Severity::Warning,
                        "selects-nothing",
                        Some(format!("spec.ingress[{i}].source.selector")),
                        format!(
                            "rule {i}'s source selector `{sel}` matches no pod{scope} (nor network set) in the state"
                        ),
                        "check the labels (a namespaced policy's rule selects only its own namespace's pods unless it has a namespaceSelector)",
                    ),
                );
            }
        }
        if let NamespaceMatch::Selector(sel) = &e.namespace
            && !store.namespaces.is_empty()
            && !store
                .namespaces
                .keys()
                .any(|ns| sel.matches(&**snap.endpoints.namespace_labels(ns)))
        {
            self.emit(
                src,
                say(
                    Severity::Warning,
                    "selects-nothing",
                    Some(format!("spec.ingress[{i}].source.namespaceSelector")),
                    format!(
                        "rule {i}'s namespaceSelector `{sel}` matches none of the {} Namespaces in the state",
                        store.namespaces.len()
                    ),
                    "check it against the Namespaces' labels (`projectcalico.org/name` holds the name)",
                ),
            );
        }
        if let Some(sa) = &e.service_accounts
            && !sa.names.is_empty()
            && !store.service_accounts.is_empty()
        {
            let exists = |name: &str| {
                store.service_accounts.keys().any(|(ns, n)| {
                    n == name && in_scope(ns) && !matches!(e.namespace, NamespaceMatch::Global)
                })
            };
            if !sa.names.iter().any(|n| exists(n)) {
                self.emit(
                    src,
                    say(
                        Severity::Warning,
                        "selects-nothing",
                        Some(format!("spec.ingress[{i}].source.serviceAccounts.names")),
                        format!(
                            "rule {i} names service accounts ({}) that no ServiceAccount in its scope has",
                            sa.names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        ),
                        "check the names (and the namespace: a namespaced policy's rule means its own namespace's accounts unless it has a namespaceSelector)",
                    ),
                );
            }
        }
    }

    /// `http-on-tcp-only-port`: an Allow rule with `http` criteria whose destination ports are
    /// all TCP-only. A port is TCP-only when its name declares a protocol that is not HTTP
    /// by Istio's port naming (`tcp`, `tls`, `https`, `mongo`, `mysql`, `redis`, alone or
    /// with a `-suffix`): Envoy's HTTP filter never sees those connections, only the TCP-level
    /// check does, and "a TCP-level check matches every `http` criterion" (SEMANTICS.md §4), so
    /// the rule allows whole connections, whatever its methods and paths say. Decided from the
    /// rule's named ports alone, or, for numeric ports, from the container ports of every pod
    /// the policy selects in the state. (`http` with a protocol other than TCP is refused by
    /// the compiler: `invalid-policy`.) Unnamed ports are never called TCP-only.
    fn http_on_tcp_only_ports(&mut self) {
        let snap = self.snap;
        for (src, p) in self.calico_policies() {
            let pi = snap.policies.iter().position(|q| Arc::ptr_eq(q, &p));
            let selected: Vec<_> = pi
                .map(|pi| {
                    snap.endpoints
                        .iter()
                        .filter(|e| {
                            e.class != NO_CLASS
                                && snap.plans[e.class.get()]
                                    .tiers
                                    .iter()
                                    .any(|t| t.policies.contains(&PolicyIdx::new(pi)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (i, r) in p.ingress.iter().flatten().enumerate() {
                if r.http.is_none() || r.destination.ports.is_empty() {
                    continue;
                }
                let by_name = r
                    .destination
                    .ports
                    .iter()
                    .all(|m| matches!(m, PortMatch::Named(n) if tcp_only_name(n)));
                let by_pods = !selected.is_empty()
                    && self.in_listed_scope(p.applies.namespace.as_deref())
                    && r.destination.ports.iter().all(|m| {
                        selected.iter().all(|e| match m {
                            PortMatch::Named(n) => tcp_only_name(n),
                            PortMatch::Range(lo, hi) => {
                                lo == hi
                                    && e.named_ports.iter().any(|(n, port, proto)| {
                                        port == lo && *proto == 6 && tcp_only_name(n)
                                    })
                            }
                        })
                    });
                if !(by_name || by_pods) {
                    continue;
                }
                let why = if by_name {
                    "its destination ports are named as TCP-only (Istio port naming)".to_owned()
                } else {
                    match selected.len() {
                        1 => "on the one pod it selects, its destination ports are container ports named as TCP-only".to_owned(),
                        n => format!("on every one of the {n} pods it selects, its destination ports are container ports named as TCP-only"),
                    }
                };
                self.emit(
                    src,
                    say(
                        Severity::Warning,
                        "http-on-tcp-only-port",
                        Some(format!("spec.ingress[{i}].http")),
                        format!(
                            "rule {i} has http criteria, but {why}: the proxy checks those connections at TCP level, where every http criterion matches, so the rule allows whole connections"
                        ),
                        "name the port `http`/`http-*`/`grpc-*` if it carries HTTP; else drop the http criteria (they cannot be enforced there) or the rule",
                    ),
                );
            }
        }
    }

    /// Path pitfalls in `spec.ingress[i].http.paths[j]` as written: a query string (`?` makes
    /// the policy invalid; an escaped `%3F` never matches a query), a trailing `/` on an exact
    /// path, other normalization (the path is compared in another form), entries that cannot be
    /// normalized (skipped), and prefixes that Calico's Dikastes before 2026-04 compared as raw
    /// string prefixes (`/admin` matched `/admin2` there; here prefixes are segment-aligned).
    fn paths(&mut self) {
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            let Object::Policy(p) = &s.object else {
                continue;
            };
            if !is_calico_shaped(p.id.kind) {
                continue;
            }
            let rules = s
                .raw
                .pointer("/spec/ingress")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (r, rule) in rules.iter().enumerate() {
                let paths = rule
                    .pointer("/http/paths")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, entry) in paths.iter().enumerate() {
                    for how in ["exact", "prefix"] {
                        if let Some(text) = entry.get(how).and_then(Value::as_str) {
                            let field = format!("spec.ingress[{r}].http.paths[{j}].{how}");
                            for say in path_findings(how, text, field) {
                                self.emit(i, say);
                            }
                        }
                    }
                }
            }
        }
        // The invalid-policy finding of a `?` is said better by `path-query`.
        let query_fields: HashSet<(Option<usize>, String)> = self
            .out
            .iter()
            .filter(|(_, _, f)| f.code == "path-query" && f.severity == Severity::Error)
            .filter_map(|(src, _, f)| Some((*src, f.field.clone()?)))
            .collect();
        self.out.retain(|(src, _, f)| {
            !(f.code == "invalid-policy"
                && f.field.as_ref().is_some_and(|field| {
                    query_fields.iter().any(|(s, q)| {
                        s == src && (q == field || q.starts_with(&format!("{field}.")))
                    })
                }))
        });
    }

    /// Fields accepted and ignored at L7 (SEMANTICS.md §2 and §4, `compile`): rule `icmp`,
    /// `notICMP` (a TCP request matches whatever they say), `ipVersion`; `applyOnForward`,
    /// `performanceHints`; `doNotTrack`/`preDNAT: true` (the policy never applies to a
    /// workload); egress rules (validated, not enforced); a policy whose `types` leave out
    /// Ingress; `stagedAction: Learn`/`Ignore` (no effect on the shadow evaluation).
    fn ignored_fields(&mut self) {
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            let Object::Policy(p) = &s.object else {
                continue;
            };
            let spec = s.raw.get("spec").cloned().unwrap_or(Value::Null);
            let mut says = Vec::new();
            let egress = spec
                .get("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            if egress {
                says.push(say(
                    Severity::Info,
                    "egress-not-enforced",
                    Some("spec.egress".into()),
                    "egress rules are validated but never enforced: alp-authz checks requests arriving at a workload",
                    "enforce egress with Calico's dataplane; keep them here only if the same object feeds it",
                ));
            }
            if is_calico_shaped(p.id.kind) {
                for flag in ["doNotTrack", "preDNAT"] {
                    if spec.get(flag).and_then(Value::as_bool) == Some(true) {
                        says.push(say(
                            Severity::Warning,
                            "host-endpoint-only",
                            Some(format!("spec.{flag}")),
                            format!("`{flag}: true` makes it a host-endpoint policy: it never applies to a workload at L7, nor makes its tier apply"),
                            format!("remove `{flag}` if it was meant for workloads"),
                        ));
                    }
                }
                for field in ["applyOnForward", "performanceHints"] {
                    if spec.get(field).is_some_and(|v| !v.is_null()) {
                        says.push(say(
                            Severity::Info,
                            "ignored-field",
                            Some(format!("spec.{field}")),
                            format!("`{field}` is accepted and ignored: a host-endpoint or dataplane setting"),
                            "nothing to do for alp-authz",
                        ));
                    }
                }
                let host_only = ["doNotTrack", "preDNAT"]
                    .iter()
                    .any(|f| spec.get(f).and_then(Value::as_bool) == Some(true));
                if let Some(Ok(c)) = self.store.policies.get(&p.id)
                    && c.ingress.is_none()
                    && !host_only
                {
                    says.push(say(
                        Severity::Info,
                        "no-ingress",
                        Some("spec.types".into()),
                        "it governs no ingress (`types` leaves out Ingress, or it has only egress rules): alp-authz never evaluates it",
                        "add `Ingress` to `types` if it was meant to apply here",
                    ));
                }
                if let Some(a @ ("Learn" | "Ignore")) =
                    spec.get("stagedAction").and_then(Value::as_str)
                {
                    says.push(say(
                        Severity::Info,
                        "ignored-field",
                        Some("spec.stagedAction".into()),
                        format!(
                            "`stagedAction: {a}` has no effect on the staged (shadow) evaluation"
                        ),
                        "use `Set` (the default) to see what it would change, or `Delete`",
                    ));
                }
                let rules = spec
                    .get("ingress")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (r, rule) in rules.iter().enumerate() {
                    for field in ["icmp", "notICMP"] {
                        if rule.get(field).is_some_and(|v| !v.is_null()) {
                            says.push(say(
                                Severity::Warning,
                                "ignored-field",
                                Some(format!("spec.ingress[{r}].{field}")),
                                format!("`{field}` is ignored at L7: the requests alp-authz decides are TCP, and rule {r} matches them whatever `{field}` says"),
                                "move ICMP rules to a policy Calico's dataplane enforces, or set `protocol: ICMP` so the rule never matches TCP here",
                            ));
                        }
                    }
                    if rule.get("ipVersion").is_some_and(|v| !v.is_null()) {
                        says.push(say(
                            Severity::Info,
                            "ignored-field",
                            Some(format!("spec.ingress[{r}].ipVersion")),
                            format!("`ipVersion` is ignored at L7: rule {r} matches IPv4 and IPv6 callers alike"),
                            "use `nets` to restrict the address family",
                        ));
                    }
                }
            }
            for s in says {
                self.emit(i, s);
            }
        }
    }

    /// `staged-too-long`: a staged policy older than `--staged-max-age` (by
    /// `metadata.creationTimestamp`: always set on live objects; in files only when they were
    /// exported from a cluster). `staged-no-age`: a staged policy in a file without one (info).
    fn staged(&mut self, opts: &Options) {
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            let Object::Policy(p) = &s.object else {
                continue;
            };
            if !p.id.kind.is_staged() {
                continue;
            }
            let created = s
                .raw
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let say = match created.as_deref().map(|t| (t, parse_rfc3339(t))) {
                Some((t, Some(secs))) => {
                    let now = opts
                        .now
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let max = opts.staged_max_age.as_secs() as i64;
                    if now - secs <= max {
                        continue;
                    }
                    say(
                        Severity::Warning,
                        "staged-too-long",
                        Some("metadata.creationTimestamp".into()),
                        format!(
                            "staged since {t}, longer than --staged-max-age ({}): a staged policy is a rollout step, never enforced",
                            age_text(opts.staged_max_age)
                        ),
                        "promote it (apply it as the enforced kind) or delete it",
                    )
                }
                Some((t, None)) => say(
                    Severity::Warning,
                    "staged-too-long",
                    Some("metadata.creationTimestamp".into()),
                    format!("`{t}` is not an RFC 3339 time: its age is unknown"),
                    "fix the timestamp",
                ),
                None if self.live => continue,
                None => say(
                    Severity::Info,
                    "staged-no-age",
                    None,
                    "staged policy in a file without `metadata.creationTimestamp`: how long it has been staged is unknown",
                    "lint the cluster with --kubernetes to check its age, or promote or delete it when the rollout is done",
                ),
            };
            self.emit(i, say);
        }
    }
}

fn is_calico_shaped(k: PolicyKind) -> bool {
    !k.is_kubernetes_shaped() && !k.is_cluster_network_policy()
}

/// The field path at the start of a compile error (`spec.ingress[0].action: …`).
fn field_of(error: &str) -> Option<String> {
    let (field, _) = error.split_once(": ")?;
    (field.starts_with("spec") || field.starts_with("metadata"))
        .then(|| field.split_whitespace().next().unwrap_or(field).to_owned())
}

fn shadow_hint(a: &Rule, b: &Rule, by: &str, j: usize, across: bool) -> String {
    let reorder = if across {
        "give this policy a lower order than that one"
    } else {
        "move it above that rule"
    };
    if a.action == b.action {
        format!("rule {j} is redundant: delete it, or narrow {by} if rule {j} was meant to differ")
    } else {
        format!(
            "{by} takes every request rule {j} would {}: {reorder}, or narrow {by}",
            b.action.as_str().to_ascii_lowercase()
        )
    }
}

/// Port names Istio reads as a protocol that is not HTTP.
fn tcp_only_name(name: &str) -> bool {
    ["tcp", "tls", "https", "mongo", "mysql", "redis"]
        .iter()
        .any(|p| {
            name == *p
                || name
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
}

/// The path findings for one `exact` or `prefix` entry as written.
fn path_findings(how: &str, text: &str, field: String) -> Vec<Say> {
    let mut out = Vec::new();
    if let Some(q) = text.find(['?', '#']) {
        out.push(say(
            Severity::Error,
            "path-query",
            Some(field),
            format!(
                "path `{text}` holds a query string or fragment: Calico refuses it, so the policy is invalid and fails closed (rule paths are matched without the query, which alp-authz never compares)"
            ),
            format!("write `{}`; alp-authz cannot match on query parameters", &text[..q]),
        ));
        return out;
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("%3f") || lower.contains("%23") {
        out.push(say(
            Severity::Warning,
            "path-query",
            Some(field.clone()),
            format!(
                "path `{text}` holds an escaped `?` or `#`: it matches only a request whose path has that escape, never a query string (queries are cut before paths are compared)"
            ),
            "drop the query part; alp-authz cannot match on query parameters",
        ));
    }
    let Some(normal) = path::normalize(text) else {
        out.push(say(
            Severity::Warning,
            "path-unnormalizable",
            Some(field),
            format!(
                "path `{text}` cannot be normalized (bad or double percent-encoding, or NUL): the entry is skipped, and a rule left with no path matches no HTTP request"
            ),
            "fix the escapes",
        ));
        return out;
    };
    let trailing = text.len() > 1 && text.ends_with('/');
    if how == "exact" && trailing && normal == text.trim_end_matches('/') {
        out.push(say(
            Severity::Warning,
            "path-trailing-slash",
            Some(field.clone()),
            format!(
                "exact path `{text}` is compared as `{normal}`: a trailing `/` is dropped from rule and request paths, so it matches `{normal}` as well"
            ),
            format!("write `{normal}`"),
        ));
    } else if normal != text && !(how == "prefix" && normal == text.trim_end_matches('/')) {
        out.push(say(
            Severity::Warning,
            "path-normalized",
            Some(field.clone()),
            format!("path `{text}` is compared as `{normal}` (rule paths are normalized as Dikastes does)"),
            format!("write `{normal}`"),
        ));
    }
    if how == "prefix" && text != "/" && !trailing {
        out.push(say(
            Severity::Info,
            "path-prefix-legacy",
            Some(field),
            format!(
                "prefix `{text}` is segment-aligned here (it does not match `{text}2`), but Calico's Dikastes before 2026-04 compared raw prefixes, where it also matched `{text}2`"
            ),
            format!(
                "for the same meaning under both, write `{text}/` (the same here) and add `exact: {text}` if the bare path must match"
            ),
        ));
    }
    out
}

/// Seconds since the epoch of an RFC 3339 UTC time as Kubernetes writes it
/// (`2026-01-02T15:04:05Z`, optionally with fractional seconds or an offset).
fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

fn age_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::lint::{Input, locate};

    /// Lints one YAML text (as the file `t.yaml`).
    fn lint(text: &str) -> Vec<Finding> {
        let mut loaded = crate::source::file::Loaded::default();
        crate::source::file::load_text(Path::new("t.yaml"), text, &mut loaded).unwrap();
        let mut located = Vec::new();
        locate::read_text(Path::new("t.yaml"), text, &mut located).unwrap();
        let opts = Options {
            staged_max_age: std::time::Duration::from_secs(30 * 86_400),
            now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000),
        };
        let found = run(&located, &loaded.store, &Input::Files(vec![]), &opts);
        for f in &found {
            assert!(
                crate::lint::CODES.iter().any(|(c, _)| *c == f.code),
                "{} is not in lint::CODES",
                f.code
            );
        }
        found
    }

    fn codes(text: &str) -> Vec<(&'static str, Option<String>)> {
        lint(text).into_iter().map(|f| (f.code, f.field)).collect()
    }

    fn has(text: &str, code: &str, field: &str) -> bool {
        codes(text)
            .iter()
            .any(|(c, f)| *c == code && f.as_deref() == Some(field))
    }

    const PODS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {serviceAccountName: web, containers: [{ports: [{name: http, containerPort: 8080}, {name: tcp-db, containerPort: 5432}]}]}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: shop, labels: {app: db}}\nspec: {serviceAccountName: web, containers: [{ports: [{name: tcp-db, containerPort: 5432}]}]}\nstatus: {podIP: 10.0.0.2}\n---\n";

    fn np(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n---\n"
        )
    }

    fn gnp(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
        )
    }

    #[test]
    fn clean_state_has_no_findings() {
        let text = format!(
            "{PODS}{}",
            np(
                "web",
                "{selector: app == 'web', ingress: [{action: Allow, source: {serviceAccounts: {names: [web]}}, http: {methods: [GET], paths: [{exact: /healthz}]}}]}"
            )
        );
        assert_eq!(lint(&text), []);
    }

    #[test]
    fn unreachable_and_shadowed_rules() {
        let text = format!(
            "{PODS}{}",
            np(
                "web",
                "{selector: app == 'web', ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}}, {action: Deny, source: {nets: [10.1.0.0/16]}}, {action: Deny}, {action: Allow}]}"
            )
        );
        let found = lint(&text);
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.code, f.field.as_deref().unwrap_or(""), f.line))
            .collect();
        assert_eq!(
            got,
            [
                ("shadowed-rule", "spec.ingress[1]", Some(24)),
                ("unreachable-rule", "spec.ingress[3]", Some(24)),
            ]
        );
        assert_eq!(
            found[0].message,
            "rule 1 (Deny) never decides: every request it matches, rule 0 (Allow) matches first"
        );
        assert_eq!(found[0].file.as_deref(), Some("t.yaml"));
        assert_eq!(found[0].document, Some(5));
    }

    #[test]
    fn shadowed_across_policies_of_a_tier() {
        let text = format!(
            "{PODS}{}{}",
            np(
                "a",
                "{order: 1, ingress: [{action: Deny, source: {nets: [10.9.0.0/16]}}]}"
            ),
            np(
                "b",
                "{order: 2, selector: app == 'web', ingress: [{action: Allow, source: {nets: [10.9.1.0/24]}}, {action: Allow, source: {nets: [10.8.0.0/16]}}]}"
            )
        );
        let found = lint(&text);
        let got: Vec<_> = found.iter().map(|f| (f.code, f.name.as_str())).collect();
        assert_eq!(got, [("shadowed-across-policies", "b")]);
        assert!(
            found[0]
                .message
                .contains("rule 0 (Deny) of NetworkPolicy shop/a"),
            "{}",
            found[0].message
        );
        // The earlier policy must apply to every endpoint of the later one by its selectors.
        let text = text.replace(
            "{order: 1, ingress",
            "{order: 1, selector: app == 'db', ingress",
        );
        assert!(
            !codes(&text)
                .iter()
                .any(|(c, _)| *c == "shadowed-across-policies")
        );
    }

    #[test]
    fn tiers_that_only_pass() {
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: sec}\nspec: {order: 10, defaultAction: Pass}\n---\n";
        let text = format!(
            "{PODS}{tier}{}",
            gnp(
                "sec.a",
                "{tier: sec, ingress: [{action: Pass, source: {nets: [10.0.0.0/8]}}]}"
            )
        );
        let found = lint(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].code, found[0].severity, found[0].kind.as_str()),
            ("tier-only-passes", Severity::Warning, "Tier")
        );
        let text = text.replace("defaultAction: Pass", "defaultAction: Deny");
        assert_eq!(lint(&text)[0].severity, Severity::Info);
        let text = text.replace("action: Pass", "action: Deny");
        assert!(lint(&text).is_empty());
    }

    #[test]
    fn selectors_against_the_state() {
        let text = format!(
            "{PODS}{}",
            np("p", "{selector: app == 'nope', ingress: [{action: Deny}]}")
        );
        assert!(has(&text, "selects-nothing", "spec.selector"));
        let text = format!(
            "{PODS}{}",
            np(
                "p",
                "{selector: app == 'web', ingress: [{action: Allow, source: {selector: app == 'ghost'}}, {action: Allow, source: {namespaceSelector: team == 'nobody'}}, {action: Allow, source: {serviceAccounts: {names: [ghost]}}}]}"
            )
        );
        let c = codes(&text);
        assert!(
            c.contains(&(
                "selects-nothing",
                Some("spec.ingress[0].source.selector".into())
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "selects-nothing",
                Some("spec.ingress[1].source.namespaceSelector".into())
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "selects-nothing",
                Some("spec.ingress[2].source.serviceAccounts.names".into())
            )),
            "{c:?}"
        );
        let text = format!(
            "{PODS}{}",
            gnp(
                "g",
                "{selector: has(app), ingress: [{action: Deny, source: {nets: [10.0.0.0/8]}}]}"
            )
        );
        assert!(has(&text, "selects-everything", "spec.selector"));
        let text = text.replace("has(app)", "all()");
        assert!(lint(&text).is_empty());
        // Without pods: said once, and nothing checked.
        let c = codes(&np(
            "p",
            "{selector: app == 'nope', ingress: [{action: Deny}]}",
        ));
        assert_eq!(c, [("no-pods", None)]);
    }

    #[test]
    fn http_on_tcp_only_ports() {
        let rule = |ports: &str| {
            format!(
                "{PODS}{}",
                np(
                    "p",
                    &format!(
                        "{{selector: app == 'db' || app == 'web', ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [{ports}]}}, http: {{methods: [GET]}}}}]}}"
                    )
                )
            )
        };
        assert!(has(
            &rule("tcp-db"),
            "http-on-tcp-only-port",
            "spec.ingress[0].http"
        ));
        assert!(has(
            &rule("5432"),
            "http-on-tcp-only-port",
            "spec.ingress[0].http"
        ));
        assert!(!has(
            &rule("http"),
            "http-on-tcp-only-port",
            "spec.ingress[0].http"
        ));
        assert!(!has(
            &rule("8080"),
            "http-on-tcp-only-port",
            "spec.ingress[0].http"
        ));
        assert!(!has(
            &rule("5432, 8080"),
            "http-on-tcp-only-port",
            "spec.ingress[0].http"
        ));
        assert!(
            tcp_only_name("tls-x")
                && tcp_only_name("redis")
                && !tcp_only_name("tcpx")
                && !tcp_only_name("http")
        );
    }

    #[test]
    fn path_pitfalls() {
        let paths = |p: &str| {
            format!(
                "{PODS}{}",
                np(
                    "web",
                    &format!(
                        "{{selector: app == 'web', ingress: [{{action: Allow, http: {{paths: [{p}]}}}}]}}"
                    )
                )
            )
        };
        let f = "spec.ingress[0].http.paths[0].";
        assert!(has(
            &paths("{prefix: /admin}"),
            "path-prefix-legacy",
            &format!("{f}prefix")
        ));
        assert!(!has(
            &paths("{prefix: /admin/}"),
            "path-prefix-legacy",
            &format!("{f}prefix")
        ));
        assert!(lint(&paths("{prefix: /admin/}")).is_empty());
        assert!(has(
            &paths("{exact: /admin/}"),
            "path-trailing-slash",
            &format!("{f}exact")
        ));
        assert!(has(
            &paths("{exact: '/a/../b'}"),
            "path-normalized",
            &format!("{f}exact")
        ));
        assert!(has(
            &paths("{exact: '/a%zz'}"),
            "path-unnormalizable",
            &format!("{f}exact")
        ));
        assert!(has(
            &paths("{exact: '/s%3Fq=1'}"),
            "path-query",
            &format!("{f}exact")
        ));
        // A raw `?` makes the policy invalid: one finding, the specific one.
        let c = codes(&paths("{exact: '/s?q=1'}"));
        assert!(
            c.contains(&("path-query", Some(format!("{f}exact")))),
            "{c:?}"
        );
        assert!(
            !c.iter().any(|(code, _)| *code == "invalid-policy"),
            "{c:?}"
        );
    }

    #[test]
    fn ignored_fields() {
        let text = format!(
            "{PODS}{}",
            gnp(
                "g",
                "{selector: all(), applyOnForward: true, ingress: [{action: Allow, icmp: {type: 8}, ipVersion: 4}], egress: [{action: Allow}]}"
            )
        );
        let c = codes(&text);
        for want in [
            ("ignored-field", "spec.applyOnForward"),
            ("ignored-field", "spec.ingress[0].icmp"),
            ("ignored-field", "spec.ingress[0].ipVersion"),
            ("egress-not-enforced", "spec.egress"),
        ] {
            assert!(
                c.contains(&(want.0, Some(want.1.into()))),
                "{want:?} in {c:?}"
            );
        }
        let text = format!(
            "{PODS}{}",
            gnp("g", "{doNotTrack: true, ingress: [{action: Deny}]}")
        );
        assert!(has(&text, "host-endpoint-only", "spec.doNotTrack"));
        let text = format!(
            "{PODS}{}",
            gnp("g", "{types: [Egress], egress: [{action: Deny}]}")
        );
        assert!(has(&text, "no-ingress", "spec.types"));
    }

    #[test]
    fn staged_policies() {
        let staged = |meta: &str| {
            format!(
                "{PODS}apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {{name: s{meta}}}\nspec: {{selector: app == 'web', ingress: [{{action: Deny}}]}}\n"
            )
        };
        assert!(has(
            &staged(", creationTimestamp: '2020-01-01T00:00:00Z'"),
            "staged-too-long",
            "metadata.creationTimestamp"
        ));
        // 1_790_000_000 is 2026-09-21: ten days earlier is within 30 days.
        assert!(lint(&staged(", creationTimestamp: '2026-09-11T00:00:00Z'")).is_empty());
        assert_eq!(codes(&staged("")), [("staged-no-age", None)]);
    }

    #[test]
    fn invalid_objects_are_errors_with_their_field_line() {
        let text = format!(
            "{PODS}{}",
            np(
                "p",
                "\n  selector: app == 'web'\n  ingress:\n  - action: allow\n"
            )
        );
        let found = lint(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "invalid-policy");
        assert_eq!(found[0].field.as_deref(), Some("spec.ingress[0].action"));
        assert_eq!(found[0].line, Some(27));
        let text = format!(
            "{PODS}{}",
            np(
                "p",
                "{tier: nope, selector: app == 'web', ingress: [{action: Deny}]}"
            )
        );
        assert!(has(&text, "missing-tier", "spec.tier"));
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec:\n  order: 1\n  defaultAction: Allow\n";
        let found = lint(&format!("{PODS}{tier}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].code, found[0].field.as_deref(), found[0].line),
            ("invalid-tier", Some("spec.defaultAction"), Some(26))
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-09-21T00:00:00Z"), Some(1_789_948_800));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00.5+01:00"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

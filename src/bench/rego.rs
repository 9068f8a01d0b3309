//! The data a user would give OPA for Calico-style policy: the cluster's tiers, policies, pods,
//! namespaces and service accounts as one JSON document (`data.alp`), decided by one generic
//! rule set ([`POLICY`]). Written from the same objects alp-authz loads (the YAML files of the
//! worked example, or a synthetic cluster's objects), so both decide the same cluster.
//!
//! Selectors become data in disjunctive normal form (Rego has no recursion to walk a tree).
//! Features the rule set does not model are refused with an error, never dropped: a policy
//! using them would be decided differently by the peer.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::policy::{
    protocol,
    selector::{Expr, Selector},
};

/// The generic rule set (package `alp`, decision `data.alp.allow`).
pub const POLICY: &str = include_str!("calico.rego");

/// The most alternatives one selector may expand to.
const MAX_DNF: usize = 4096;

/// A selector in disjunctive normal form: alternatives of terms.
fn dnf(e: &Expr, neg: bool) -> anyhow::Result<Vec<Vec<Value>>> {
    let term = |op: &str, k: &str, v: Value, neg: bool| {
        let mut t = json!({"op": op, "k": k, "neg": neg});
        if let Value::Array(_) = v {
            t["vs"] = v;
        } else if !v.is_null() {
            t["v"] = v;
        }
        Ok(vec![vec![t]])
    };
    match e {
        Expr::All => Ok(if neg { vec![] } else { vec![vec![]] }),
        Expr::Global => bail!("global() is not supported by the Rego generator"),
        Expr::Has(k) => term("has", k, Value::Null, neg),
        Expr::Eq(k, v) => term("eq", k, json!(v), neg),
        Expr::Ne(k, v) => term("eq", k, json!(v), !neg),
        Expr::In(k, vs) => term("in", k, json!(vs), neg),
        Expr::NotIn(k, vs) => term("in", k, json!(vs), !neg),
        Expr::Contains(k, v) => term("contains", k, json!(v), neg),
        Expr::StartsWith(k, v) => term("starts", k, json!(v), neg),
        Expr::EndsWith(k, v) => term("ends", k, json!(v), neg),
        Expr::Not(x) => dnf(x, !neg),
        Expr::And(xs) | Expr::Or(xs) => {
            // A conjunction (an And, or a negated Or) is the cross product of its children.
            let conjunction = matches!(e, Expr::And(_)) != neg;
            let mut out: Vec<Vec<Value>> = if conjunction { vec![vec![]] } else { vec![] };
            for x in xs {
                let d = dnf(x, neg)?;
                if conjunction {
                    let mut next = Vec::with_capacity(out.len() * d.len());
                    for a in &out {
                        for b in &d {
                            next.push(a.iter().chain(b).cloned().collect());
                        }
                    }
                    out = next;
                } else {
                    out.extend(d);
                }
                anyhow::ensure!(out.len() <= MAX_DNF, "selector too large for the generator");
            }
            Ok(out)
        }
    }
}

fn selector(s: &str) -> anyhow::Result<Value> {
    let sel = Selector::parse(s).map_err(|e| anyhow::anyhow!("selector `{s}`: {e:?}"))?;
    Ok(json!(dnf(sel.expr(), false)?))
}

fn labels(v: &Value) -> Map<String, Value> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

fn protocol(v: &Value) -> anyhow::Result<u64> {
    Ok(match v {
        Value::Number(n) => n.as_u64().context("bad protocol number")?,
        Value::String(s) => match protocol::by_name(s) {
            Some(number) => u64::from(number),
            None => s.parse().with_context(|| format!("protocol `{s}`"))?,
        },
        _ => bail!("bad protocol"),
    })
}

fn ports(v: Option<&Value>) -> anyhow::Result<Option<Value>> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for p in list {
        out.push(match p {
            Value::Number(n) => {
                let n = n.as_u64().context("bad port")?;
                json!({"lo": n, "hi": n})
            }
            Value::String(s) => match s.split_once(':') {
                Some((a, b)) => {
                    json!({"lo": a.trim().parse::<u64>()?, "hi": b.trim().parse::<u64>()?})
                }
                None => match s.parse::<u64>() {
                    Ok(n) => json!({"lo": n, "hi": n}),
                    Err(_) => json!({"name": s}),
                },
            },
            _ => bail!("bad port"),
        });
    }
    Ok((!out.is_empty()).then(|| json!(out)))
}

fn entity(e: Option<&Value>, policy_ns: Option<&str>) -> anyhow::Result<Value> {
    let mut out = Map::new();
    let Some(e) = e.filter(|e| !e.is_null()) else {
        return Ok(Value::Object(out));
    };
    for (k, _) in e.as_object().context("bad entity rule")? {
        anyhow::ensure!(
            matches!(
                k.as_str(),
                "nets"
                    | "notNets"
                    | "ports"
                    | "notPorts"
                    | "selector"
                    | "notSelector"
                    | "namespaceSelector"
                    | "serviceAccounts"
            ),
            "entity field `{k}` is not supported by the Rego generator"
        );
    }
    for (from, to) in [("nets", "nets"), ("notNets", "notNets")] {
        if let Some(n) = e
            .get(from)
            .and_then(Value::as_array)
            .filter(|n| !n.is_empty())
        {
            out.insert(to.into(), json!(n));
        }
    }
    if let Some(p) = ports(e.get("ports"))? {
        out.insert("ports".into(), p);
    }
    if let Some(p) = ports(e.get("notPorts"))? {
        out.insert("notPorts".into(), p);
    }
    let text = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(s) = text("selector") {
        out.insert("sel".into(), selector(s)?);
    }
    if let Some(s) = text("notSelector") {
        out.insert("notsel".into(), selector(s)?);
    }
    let sa = e.get("serviceAccounts").filter(|v| !v.is_null());
    if let Some(sa) = sa {
        let names = sa.get("names").cloned().unwrap_or(json!([]));
        let sel = match sa.get("selector").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => selector(s)?,
            _ => json!([[]]),
        };
        out.insert("sa".into(), json!({"names": names, "sel": sel}));
    }
    match text("namespaceSelector") {
        Some(s) => {
            let sel = Selector::parse(s).map_err(|e| anyhow::anyhow!("selector `{s}`: {e:?}"))?;
            if sel.is_all() {
                out.insert("ns".into(), json!("named"));
            } else {
                out.insert("ns".into(), json!({"sel": dnf(sel.expr(), false)?}));
            }
        }
        None => {
            if let Some(ns) = policy_ns
                && (out.contains_key("sel") || out.contains_key("notsel") || sa.is_some())
            {
                out.insert("ns".into(), json!({"same": ns}));
            }
        }
    }
    Ok(Value::Object(out))
}

fn rule(r: &Value, policy_ns: Option<&str>) -> anyhow::Result<Value> {
    for (k, _) in r.as_object().context("bad rule")? {
        anyhow::ensure!(
            matches!(
                k.as_str(),
                "action" | "protocol" | "source" | "destination" | "http" | "metadata"
            ),
            "rule field `{k}` is not supported by the Rego generator"
        );
    }
    let action = str_at(r, "/action").context("rule without an action")?;
    anyhow::ensure!(
        matches!(action, "Allow" | "Deny" | "Pass" | "Log"),
        "action `{action}`"
    );
    let mut out = json!({
        "action": action,
        "src": entity(r.get("source"), policy_ns)?,
        "dst": entity(r.get("destination"), None)?,
    });
    if let Some(p) = r.get("protocol").filter(|p| !p.is_null()) {
        out["proto"] = json!(protocol(p)?);
    }
    if let Some(h) = r.get("http").filter(|h| !h.is_null()) {
        let methods: Vec<&str> = h
            .get("methods")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !methods.is_empty() && !methods.contains(&"*") {
            out["methods"] = json!(methods);
        }
        let mut paths = Vec::new();
        for p in h
            .get("paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (kind, raw) = match (str_at(p, "/exact"), str_at(p, "/prefix")) {
                (Some(e), None) => ("exact", e),
                (None, Some(p)) => ("prefix", p),
                _ => bail!("an http.paths entry needs exactly one of exact and prefix"),
            };
            let norm = crate::policy::path::normalize(raw)
                .with_context(|| format!("rule path `{raw}` cannot be normalized"))?;
            paths.push(json!({kind: norm}));
        }
        if !paths.is_empty() {
            out["paths"] = json!(paths);
        }
    }
    Ok(out)
}

/// Orders optional orders: present ones ascending, absent last.
fn order_key(o: Option<f64>) -> (bool, f64) {
    (o.is_none(), o.unwrap_or(0.0))
}

struct Pol {
    order: Option<f64>,
    tie: String,
    namespace: Option<String>,
    data: Value,
}

/// `data` for [`POLICY`] from the cluster's objects (Kubernetes and Calico v3 kinds).
pub fn data(objects: &[Value], trust_domains: &[String]) -> anyhow::Result<Value> {
    let mut namespaces = BTreeMap::<String, Map<String, Value>>::new();
    let mut sas = BTreeMap::<String, Map<String, Value>>::new();
    let mut tiers = BTreeMap::<String, (Option<f64>, String)>::new();
    tiers.insert("default".into(), (Some(1_000_000.0), "Deny".into()));
    let mut pods = Vec::new();
    let mut policies: BTreeMap<String, Vec<Pol>> = BTreeMap::new();
    for o in objects {
        let kind = str_at(o, "/kind").unwrap_or_default();
        let api = str_at(o, "/apiVersion").unwrap_or_default();
        let name = str_at(o, "/metadata/name").unwrap_or_default().to_owned();
        let ns = str_at(o, "/metadata/namespace").map(str::to_owned);
        match (api, kind) {
            ("v1", "Namespace") => {
                let mut l = labels(o);
                l.insert("projectcalico.org/name".into(), json!(name));
                namespaces.insert(name, l);
            }
            ("v1", "ServiceAccount") => {
                let mut l = labels(o);
                l.insert("projectcalico.org/name".into(), json!(name));
                sas.insert(format!("{}/{name}", ns.unwrap_or_default()), l);
            }
            ("v1", "Pod") => pods.push(o),
            ("projectcalico.org/v3", "Tier") => {
                let order = o.pointer("/spec/order").and_then(Value::as_f64);
                let default = str_at(o, "/spec/defaultAction")
                    .unwrap_or("Deny")
                    .to_owned();
                tiers.insert(name, (order, default));
            }
            ("projectcalico.org/v3", "NetworkPolicy" | "GlobalNetworkPolicy") => {
                let spec = o.get("spec").cloned().unwrap_or(json!({}));
                for (k, _) in spec.as_object().context("bad policy spec")? {
                    anyhow::ensure!(
                        matches!(
                            k.as_str(),
                            "tier"
                                | "order"
                                | "selector"
                                | "namespaceSelector"
                                | "serviceAccountSelector"
                                | "types"
                                | "ingress"
                                | "egress"
                        ),
                        "policy {name}: field `{k}` is not supported by the Rego generator"
                    );
                }
                let types: Option<Vec<&str>> = spec
                    .get("types")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect());
                if types.is_some_and(|t| !t.contains(&"Ingress")) {
                    continue;
                }
                let namespaced = kind == "NetworkPolicy";
                let policy_ns = if namespaced {
                    Some(ns.clone().unwrap_or_else(|| "default".into()))
                } else {
                    None
                };
                let mut rules = Vec::new();
                for r in spec
                    .get("ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    rules.push(
                        rule(r, policy_ns.as_deref()).with_context(|| format!("policy {name}"))?,
                    );
                }
                let text = |k: &str| {
                    spec.get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                let mut p =
                    json!({"rules": rules, "sel": selector(text("selector").unwrap_or("all()"))?});
                if let Some(s) = text("namespaceSelector").filter(|_| !namespaced) {
                    p["nssel"] = selector(s)?;
                }
                if let Some(s) = text("serviceAccountSelector") {
                    p["sasel"] = selector(s)?;
                }
                let tier = text("tier").unwrap_or("default").to_owned();
                let kind_key = kind.to_owned();
                policies.entry(tier).or_default().push(Pol {
                    order: spec.get("order").and_then(Value::as_f64),
                    tie: format!(
                        "{name}/{}/{kind_key}",
                        policy_ns.as_deref().unwrap_or_default()
                    ),
                    namespace: policy_ns,
                    data: p,
                });
            }
            (a, k) if a.starts_with("projectcalico.org/") && k.starts_with("Staged") => {}
            (_, k)
                if k.contains("NetworkPolicy")
                    || k.contains("NetworkSet")
                    || k == "EndpointSlice" =>
            {
                bail!("{api} {kind} {name}: not supported by the Rego generator")
            }
            _ => {}
        }
    }
    let mut pod_data = Map::new();
    for o in pods {
        if o.pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
            || matches!(str_at(o, "/status/phase"), Some("Succeeded" | "Failed"))
        {
            continue;
        }
        let ns = str_at(o, "/metadata/namespace").unwrap_or("default");
        let sa = str_at(o, "/spec/serviceAccountName").unwrap_or("default");
        let mut l = labels(o);
        l.insert("projectcalico.org/namespace".into(), json!(ns));
        l.insert("projectcalico.org/orchestrator".into(), json!("k8s"));
        if sa.len() <= 63 {
            l.insert("projectcalico.org/serviceaccount".into(), json!(sa));
        }
        for (prefix, inherited) in [
            ("pcns.", namespaces.get(ns)),
            ("pcsa.", sas.get(&format!("{ns}/{sa}"))),
        ] {
            for (k, v) in inherited.into_iter().flatten() {
                l.entry(format!("{prefix}{k}")).or_insert_with(|| v.clone());
            }
        }
        let mut named = Map::new();
        for c in o
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let tcp = str_at(p, "/protocol").is_none_or(|p| p == "TCP");
                if let (Some(n), Some(port), true) =
                    (str_at(p, "/name"), p.get("containerPort"), tcp)
                {
                    named.entry(n.to_owned()).or_insert(port.clone());
                }
            }
        }
        let pod = json!({"ns": ns, "sa": sa, "labels": l, "ports": named});
        let mut ips: Vec<&str> = o
            .pointer("/status/podIPs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|i| str_at(i, "/ip")).collect())
            .unwrap_or_default();
        ips.extend(str_at(o, "/status/podIP"));
        for ip in ips {
            pod_data.insert(ip.to_owned(), pod.clone());
        }
    }
    let mut tier_list: Vec<(String, Option<f64>, String)> =
        tiers.into_iter().map(|(n, (o, d))| (n, o, d)).collect();
    tier_list.sort_by(|a, b| {
        order_key(a.1)
            .partial_cmp(&order_key(b.1))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    for tier in policies.keys() {
        anyhow::ensure!(
            tier_list.iter().any(|t| &t.0 == tier),
            "a policy is in tier `{tier}`, which does not exist"
        );
    }
    let mut out_tiers = Vec::new();
    for (name, _, default) in tier_list {
        let mut ps = policies.remove(&name).unwrap_or_default();
        ps.sort_by(|a, b| {
            order_key(a.order)
                .partial_cmp(&order_key(b.order))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.tie.as_bytes().cmp(b.tie.as_bytes()))
        });
        let global: Vec<&Value> = ps
            .iter()
            .filter(|p| p.namespace.is_none())
            .map(|p| &p.data)
            .collect();
        let mut by_ns: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for ns in ps.iter().filter_map(|p| p.namespace.as_deref()) {
            by_ns.entry(ns).or_insert_with(|| {
                ps.iter()
                    .filter(|p| p.namespace.as_deref().is_none_or(|n| n == ns))
                    .map(|p| &p.data)
                    .collect()
            });
        }
        out_tiers.push(json!({"name": name, "default": default, "global": global, "by_ns": by_ns}));
    }
    Ok(json!({"alp": {
        "trust_domains": trust_domains,
        "tiers": out_tiers,
        "pods": pod_data,
        "namespaces": namespaces,
        "sas": sas,
    }}))
}

/// The objects of the YAML and JSON files at the top of each of `paths` (or the file itself).
pub fn objects_in(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut list: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            list.sort();
            files.extend(list);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let v =
                Value::deserialize(doc).with_context(|| format!("{}: bad YAML", f.display()))?;
            match v {
                Value::Null => {}
                Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                    out.extend(
                        o.get("items")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .cloned(),
                    );
                }
                v => out.push(v),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_become_dnf() {
        let s = selector("a == 'x' && (has(b) || c != 'y')").unwrap();
        assert_eq!(s.as_array().unwrap().len(), 2);
        let s = selector("!(a == 'x' && b in {'1', '2'})").unwrap();
        let alts = s.as_array().unwrap();
        assert_eq!(alts.len(), 2);
        assert_eq!(alts[0][0]["neg"], json!(true));
        assert_eq!(selector("all()").unwrap(), json!([[]]));
        assert!(selector("global()").is_err());
    }

    #[test]
    fn unsupported_fields_are_refused() {
        let p = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "x"}, "spec": {"ingress": [{"action": "Allow", "source": {"services": {"name": "a"}}}]}});
        assert!(data(&[p], &[]).is_err());
    }
}

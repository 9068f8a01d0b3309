//! Synthetic clusters for benchmarks and load tests: namespaces, service accounts and pods with
//! realistic label sets, three tiers, and policies that use every rule field. Deterministic for
//! a given [`Spec`] (a small xorshift generator, no dependency), and loaded through the same
//! decode and compile path as real files.

use std::path::Path;

use serde_json::{Value, json};

use crate::source::file::{LoadError, Loaded, load_text};

/// Size and shape of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Namespaces.
    pub namespaces: usize,
    /// Pods, spread over the namespaces.
    pub pods: usize,
    /// Policies: a few GlobalNetworkPolicies in the security and platform tiers, the rest
    /// NetworkPolicies in the default tier.
    pub policies: usize,
    /// Seed.
    pub seed: u64,
}

impl Spec {
    /// The cluster every benchmark and example measures at a size: 10 pods a namespace, at
    /// most 100 namespaces, seed 42.
    pub fn sized(policies: usize, pods: usize) -> Spec {
        Spec {
            namespaces: 100.min(pods / 10).max(1),
            pods,
            policies,
            seed: 42,
        }
    }
}

/// Apps per namespace.
pub const APPS: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The IP of pod `i` (10.0.0.0/8, one per pod).
pub fn pod_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// The (namespace, app) of pod `i`, and its service account.
pub fn pod_identity(spec: &Spec, i: usize) -> (String, String) {
    let ns = i % spec.namespaces;
    let app = (i / spec.namespaces) % APPS;
    (format!("ns-{ns}"), format!("app-{app}"))
}

/// The objects of a synthetic cluster.
pub fn objects(spec: &Spec) -> Vec<Value> {
    let mut rng = Rng(spec.seed.max(1));
    let mut out = Vec::with_capacity(spec.pods + spec.policies + spec.namespaces * (APPS + 1) + 3);
    for (name, order, default) in [("security", 100, "Pass"), ("platform", 200, "Pass")] {
        out.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order, "defaultAction": default}}));
    }
    for ns in 0..spec.namespaces {
        let env = if ns % 3 == 0 { "prod" } else { "dev" };
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{ns}"), "labels": {"env": env, "team": format!("team-{}", ns % 7)}}}));
        for app in 0..APPS {
            out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("app-{app}"), "namespace": format!("ns-{ns}"), "labels": {"tier": if app % 4 == 0 { "db" } else { "web" }}}}));
        }
    }
    for i in 0..spec.pods {
        let (ns, app) = pod_identity(spec, i);
        let v = rng.below(3);
        let version = format!("v{v}");
        // One ReplicaSet per (namespace, app, version), as a Deployment's rollout makes them.
        let hash = (i % spec.namespaces) * 1_000 + ((i / spec.namespaces) % APPS) * 10 + v;
        out.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{i}"), "namespace": ns, "labels": {
                "app": app, "version": version, "app.kubernetes.io/part-of": "shop",
                "pod-template-hash": format!("{:x}", hash.wrapping_mul(2_654_435_761) & 0xff_ffff),
            }},
            "spec": {"serviceAccountName": app, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i), "podIPs": [{"ip": pod_ip(i)}]},
        }));
    }
    let globals = (spec.policies / 100).clamp(1, 20).min(spec.policies);
    for g in 0..globals {
        let tier = if g % 2 == 0 { "security" } else { "platform" };
        out.push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": format!("{tier}.g-{g}")},
            "spec": {"tier": tier, "order": g, "namespaceSelector": format!("team == 'team-{}'", g % 7), "types": ["Ingress"], "ingress": [
                {"action": "Deny", "source": {"nets": ["192.168.0.0/16"], "notNets": ["192.168.1.0/24"]}},
                {"action": "Log", "source": {"serviceAccounts": {"selector": "tier == 'db'"}}},
                {"action": "Deny", "protocol": "TCP", "source": {"serviceAccounts": {"names": [format!("app-{}", g % APPS)]}, "namespaceSelector": "env == 'dev'"}, "destination": {"ports": ["9000:9100"]}},
                {"action": "Pass"},
            ]},
        }));
    }
    for p in 0..spec.policies - globals {
        let ns = p % spec.namespaces;
        let app = (p / spec.namespaces) % APPS;
        let from = rng.below(APPS);
        out.push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": format!("p-{p}"), "namespace": format!("ns-{ns}")},
            "spec": {"order": 100 + (p / (spec.namespaces * APPS)) , "selector": format!("app == 'app-{app}'"), "types": ["Ingress"], "ingress": [
                {"action": "Allow", "protocol": "TCP",
                 "source": {"serviceAccounts": {"names": [format!("app-{from}")]}},
                 "destination": {"ports": ["http", 8443]},
                 "http": {"methods": ["GET", "HEAD"], "paths": [{"prefix": "/api"}, {"exact": "/healthz"}]}},
                {"action": "Allow", "source": {"selector": format!("app == 'app-{}' && version != 'v2'", (from + 1) % APPS), "namespaceSelector": "env == 'prod'"}, "http": {"methods": ["POST"], "paths": [{"prefix": "/api/orders"}]}},
                {"action": "Allow", "protocol": "TCP", "source": {"nets": ["10.0.0.0/8"], "notSelector": "app == 'app-0'"}, "destination": {"notPorts": [9090]}, "http": {"paths": [{"exact": "/metrics"}]}},
            ]},
        }));
    }
    out
}

/// Loads a synthetic cluster through the file decoder.
pub fn load(spec: &Spec) -> Result<Loaded, LoadError> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects(spec)});
    let mut loaded = Loaded::default();
    load_text(Path::new("synthetic.json"), &list.to_string(), &mut loaded)?;
    Ok(loaded)
}

/// A CheckRequest (proto3 JSON) from pod `from` to pod `to`.
pub fn request_json(
    from: usize,
    to: usize,
    spec: &Spec,
    method: &str,
    path: &str,
    port: u32,
) -> String {
    let (ns, sa) = pod_identity(spec, from);
    json!({"attributes": {
        "source": {"address": {"socketAddress": {"address": pod_ip(from), "portValue": 40000}}, "principal": format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")},
        "destination": {"address": {"socketAddress": {"address": pod_ip(to), "portValue": port}}},
        "request": {"http": {"method": method, "path": path, "protocol": "HTTP/2"}},
    }})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::snapshot::Snapshot;

    #[test]
    fn small_cluster_loads_cleanly_and_compiles() {
        let spec = Spec {
            namespaces: 5,
            pods: 300,
            policies: 120,
            seed: 7,
        };
        let loaded = load(&spec).unwrap();
        assert!(
            loaded.warnings.is_empty(),
            "{:?}",
            &loaded.warnings[..loaded.warnings.len().min(3)]
        );
        let snap = Snapshot::build(&loaded.store, 1);
        assert_eq!(snap.endpoints.len(), 300);
        assert_eq!(snap.policies.len(), 120);
        assert!(snap.invalid.is_empty());
        // Deterministic.
        assert_eq!(objects(&spec), objects(&spec));
    }
}

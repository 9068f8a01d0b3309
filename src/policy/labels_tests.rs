//! Table tests for what Felix computes for a workload before Dikastes sees it: inherited
//! profile labels, host-endpoint-only policies, Kubernetes ClusterNetworkPolicy tiers and
//! network sets (issue #12, SEMANTICS.md §2). Each case names the Calico source it follows.
//!
//! Every caller's source address is its own Pod's IP, and the trust domain is `cluster.local`.

use test_case::test_case;

use super::{
    decision::Verdict,
    eval::{Addr, HttpRequest, Options, Principal, Request, evaluate},
    protocol,
    snapshot::Snapshot,
    store::Store,
};
use crate::identity::spiffe::SpiffeRef;

use Verdict::{Allow, Deny};

/// `db` (the destination, `shop/db`) and two callers: `web` (`shop/web`, 10.1.0.10) and `job`
/// (`batch/job`, 10.1.1.30). Namespaces and ServiceAccounts carry labels for `pcns.`/`pcsa.`.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod, team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: batch, labels: {env: dev}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop, labels: {tier: frontend}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: db, namespace: shop, labels: {tier: data}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: job, namespace: batch, labels: {tier: batch}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {serviceAccountName: db}
status: {phase: Running, podIP: 10.1.0.20}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web, pcns.env: own}}
spec: {serviceAccountName: web}
status: {phase: Running, podIP: 10.1.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: batch, labels: {app: job}}
spec: {serviceAccountName: job}
status: {phase: Running, podIP: 10.1.1.30}
"#;

/// A caller: source address (its Pod's IP, or another) and principal ("" for none).
#[derive(Clone, Copy)]
struct Caller {
    ip: &'static str,
    principal: &'static str,
}

const WEB: Caller = Caller {
    ip: "10.1.0.10",
    principal: "spiffe://cluster.local/ns/shop/sa/web",
};
const JOB: Caller = Caller {
    ip: "10.1.1.30",
    principal: "spiffe://cluster.local/ns/batch/sa/job",
};

fn store(objects: &str) -> Store {
    let mut store = Store::new();
    store.apply_yaml(&format!("{CLUSTER}\n---\n{objects}"));
    store
}

fn decide_on(snap: &Snapshot, c: Caller) -> (Verdict, String) {
    let principal = match c.principal {
        "" => Principal::Absent,
        p => SpiffeRef::parse(p).map_or(Principal::Invalid, Principal::Valid),
    };
    let req = Request {
        source: Addr {
            ip: c.ip.parse().ok(),
            port: 40000,
        },
        destination: Addr {
            ip: "10.1.0.20".parse().ok(),
            port: 8080,
        },
        principal,
        protocol: protocol::TCP,
        http: Some(HttpRequest::new("GET", "/")),
    };
    let d = evaluate(snap, &req, &Options::default());
    (d.verdict, d.reason(snap))
}

fn decide(objects: &str, c: Caller) -> Verdict {
    let snap = Snapshot::build(&store(objects), 1);
    decide_on(&snap, c).0
}

/// A GlobalNetworkPolicy in tier `default` selecting `spec_selector`, with these ingress rules.
fn gnp(name: &str, extra: &str, rules: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  {extra}\n  ingress: {rules}\n---\n"
    )
}

/// A user tier `early` at order 100 (default action Deny).
const EARLY: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: early}\nspec: {order: 100}\n---\n";

// ---- Item 3: host-endpoint-only policies ------------------------------------------------------
// felix/calc/event_sequencer.go tierInfoToProtoTierInfo: a `doNotTrack` policy goes to the
// untracked tiers, a `preDNAT` one to the pre-DNAT tiers, and only the normal tiers are sent
// with a WorkloadEndpointUpdate (flushEndpointTierUpdates → ModelWorkloadEndpointToProto); a
// tier is listed only when it holds a policy for the endpoint.

#[test_case("preDNAT: true", Deny; "event_sequencer.go tierInfoToProtoTierInfo: a preDNAT Allow in an early tier does not allow workload traffic")]
#[test_case("doNotTrack: true", Deny; "event_sequencer.go tierInfoToProtoTierInfo: a doNotTrack Allow in an early tier does not allow workload traffic")]
#[test_case("types: [Ingress]", Allow; "event_sequencer.go tierInfoToProtoTierInfo: applyOnForward alone (no preDNAT, doNotTrack) is a normal policy")]
#[test_case("preDNAT: false", Allow; "event_sequencer.go tierInfoToProtoTierInfo: preDNAT false is a normal policy")]
fn host_endpoint_only_allow_in_an_early_tier(flag: &str, want: Verdict) {
    let objects = format!(
        "{EARLY}{}{}",
        gnp(
            "hep-allow",
            &format!("tier: early\n  selector: all()\n  applyOnForward: true\n  {flag}"),
            "[{action: Allow}]"
        ),
        gnp("deny-web", "selector: app == 'db'", "[{action: Deny}]"),
    );
    assert_eq!(decide(&objects, WEB), want);
}

#[test_case("preDNAT: true"; "event_sequencer.go tierInfoToProtoTierInfo: a tier holding only a preDNAT Deny is not applied")]
#[test_case("doNotTrack: true"; "event_sequencer.go tierInfoToProtoTierInfo: a tier holding only a doNotTrack Deny is not applied")]
fn a_tier_of_only_host_endpoint_policies_is_not_applied(flag: &str) {
    // Were the tier applied, its Deny rule (or its default action) would deny.
    let objects = format!(
        "{EARLY}{}",
        gnp(
            "hep-deny",
            &format!("tier: early\n  selector: all()\n  applyOnForward: true\n  {flag}"),
            "[{action: Deny}]"
        ),
    );
    let snap = Snapshot::build(&store(&objects), 1);
    assert_eq!(
        decide_on(&snap, WEB),
        (Allow, "allowed: no policy selects the destination".into())
    );
    assert!(snap.plans.iter().all(|(_, p)| p.tiers.is_empty()));
}

// ---- Item 2: labels inherited from the Namespace and ServiceAccount profiles ------------------
// libcalico-go/lib/backend/k8s/conversion/conversion.go NamespaceToProfile (every Namespace
// label as `pcns.<k>`, plus `pcns.projectcalico.org/name`) and ServiceAccountToProfile (`pcsa.`);
// felix/labelindex/label_inheritance_index.go: an endpoint's own labels are looked up before its
// profiles' (the Pod's label wins).

/// A policy selecting `db` whose only rule allows sources matching `selector`.
fn allow_from(selector: &str) -> String {
    gnp(
        "allow-from",
        "selector: app == 'db'",
        &format!("[{{action: Allow, source: {{selector: \"{selector}\"}}}}]"),
    )
}

#[test_case("pcns.env == 'dev'", JOB, Allow; "conversion.go NamespaceToProfile: a rule selector on a Namespace label")]
#[test_case("pcns.env == 'dev'", WEB, Deny; "conversion.go NamespaceToProfile: another namespace's label value")]
#[test_case("pcns.projectcalico.org/name == 'batch'", JOB, Allow; "conversion.go NamespaceToProfile: the namespace name label")]
#[test_case("pcsa.tier == 'batch'", JOB, Allow; "conversion.go ServiceAccountToProfile: a rule selector on a ServiceAccount label")]
#[test_case("pcsa.tier == 'batch'", WEB, Deny; "conversion.go ServiceAccountToProfile: another account's label value")]
#[test_case("pcsa.projectcalico.org/name == 'job'", JOB, Allow; "conversion.go ServiceAccountToProfile: the service account name label")]
#[test_case("pcns.env == 'own'", WEB, Allow; "label_inheritance_index.go: the Pod's own pcns.env label wins")]
#[test_case("pcns.env == 'prod'", WEB, Deny; "label_inheritance_index.go: the inherited value is hidden by the Pod's own")]
#[test_case("has(pcns.team)", JOB, Deny; "conversion.go NamespaceToProfile: only its own namespace's labels")]
fn rule_selectors_see_inherited_labels(selector: &str, c: Caller, want: Verdict) {
    assert_eq!(decide(&allow_from(selector), c), want);
}

#[test_case("pcns.env == 'prod'", Deny; "conversion.go NamespaceToProfile: spec.selector on a Namespace label selects the endpoint")]
#[test_case("pcsa.tier == 'data'", Deny; "conversion.go ServiceAccountToProfile: spec.selector on a ServiceAccount label selects the endpoint")]
#[test_case("pcns.projectcalico.org/name == 'shop' && pcsa.projectcalico.org/name == 'db'", Deny; "conversion.go: spec.selector on both name labels")]
#[test_case("pcns.env == 'dev'", Allow; "conversion.go NamespaceToProfile: a value the namespace does not have selects nothing")]
fn spec_selector_sees_inherited_labels(selector: &str, want: Verdict) {
    let objects = gnp(
        "deny-prod",
        &format!("selector: \"{selector}\""),
        "[{action: Deny}]",
    );
    assert_eq!(decide(&objects, WEB), want);
}

#[test]
fn a_namespace_label_change_relabels_only_its_own_classes() {
    // felix/labelindex/label_inheritance_index.go UpdateParentLabels: a profile's new labels
    // re-evaluate the endpoints that inherit from it.
    let mut store = store(&allow_from("pcns.env == 'prod'"));
    let before = Snapshot::build(&store, 1);
    store.take_changes();
    assert_eq!(decide_on(&before, JOB).0, Deny);
    store.apply_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: batch, labels: {env: prod}}\n",
    );
    let changes = store.take_changes();
    let after = Snapshot::update(&before, &store, &changes, 2);
    assert_eq!(decide_on(&after, JOB).0, Allow);
    assert_eq!(
        decide_on(&after, WEB).0,
        Deny,
        "web's namespace is still prod, but its own pcns.env is `own`"
    );
    // The classes of `shop` kept their merged label sets; `batch`'s were merged again.
    let labels = |snap: &Snapshot, ns: &str| {
        snap.endpoints
            .iter()
            .find(|e| &*e.namespace == ns)
            .map(|e| e.labels.clone())
            .unwrap()
    };
    assert!(std::sync::Arc::ptr_eq(
        &labels(&before, "shop"),
        &labels(&after, "shop")
    ));
    assert!(!std::sync::Arc::ptr_eq(
        &labels(&before, "batch"),
        &labels(&after, "batch")
    ));
    assert_eq!(
        labels(&after, "batch").get("pcns.env").map(|v| &**v),
        Some("prod")
    );
}

// ---- Item 4: Kubernetes ClusterNetworkPolicy (and Admin/BaselineAdminNetworkPolicy) ----------
// libcalico-go/lib/backend/k8s/conversion/clusternetworkpolicy.go K8sClusterNetworkPolicyToCalico:
// GlobalNetworkPolicies in tier kube-admin (order 1,000, default Pass) or kube-baseline
// (10,000,000, Pass), order = priority.

fn cnp(name: &str, tier: &str, priority: u32, rules: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {{pods: {{namespaceSelector: {{matchLabels: {{env: prod}}}}, podSelector: {{matchLabels: {{app: db}}}}}}}}\n  ingress: {rules}\n---\n"
    )
}

const FROM_DEV: &str = "from: [{namespaces: {matchLabels: {env: dev}}}]";

#[test_case(WEB, Allow; "clusternetworkpolicy.go: no rule matched, kube-admin passes, no other tier: allowed")]
#[test_case(JOB, Deny; "clusternetworkpolicy.go: an Admin Deny from the dev namespaces denies")]
fn an_admin_deny(c: Caller, want: Verdict) {
    let objects = cnp(
        "deny-dev",
        "Admin",
        10,
        &format!("[{{action: Deny, {FROM_DEV}}}]"),
    );
    assert_eq!(decide(&objects, c), want);
}

#[test]
fn an_admin_deny_comes_before_the_default_tier() {
    // kube-admin (1,000) before default (1,000,000): a Calico Allow cannot undo it.
    let objects = format!(
        "{}{}",
        cnp(
            "deny-dev",
            "Admin",
            10,
            &format!("[{{action: Deny, {FROM_DEV}}}]")
        ),
        gnp("allow-all", "selector: all()", "[{action: Allow}]"),
    );
    let snap = Snapshot::build(&store(&objects), 1);
    let (verdict, reason) = decide_on(&snap, JOB);
    assert_eq!(verdict, Deny);
    assert!(reason.contains("deny-dev"), "{reason}");
}

#[test_case(1, 2, Allow; "order = priority: the Accept at priority 1 decides first")]
#[test_case(3, 2, Deny; "order = priority: the Deny at priority 2 decides first")]
fn priorities_order_the_admin_tier(accept: u32, deny: u32, want: Verdict) {
    let objects = format!(
        "{}{}",
        cnp(
            "accept-dev",
            "Admin",
            accept,
            &format!("[{{action: Accept, {FROM_DEV}}}]")
        ),
        cnp(
            "deny-dev",
            "Admin",
            deny,
            &format!("[{{action: Deny, {FROM_DEV}}}]")
        ),
    );
    assert_eq!(decide(&objects, JOB), want);
}

#[test_case("", Deny; "kube-baseline: reached when no tier decided, its Deny denies")]
#[test_case("allow", Allow; "kube-baseline: a default-tier Allow decides before the baseline is reached")]
fn a_baseline_deny(default_tier: &str, want: Verdict) {
    let mut objects = cnp(
        "base",
        "Baseline",
        10,
        &format!("[{{action: Deny, {FROM_DEV}}}]"),
    );
    if default_tier == "allow" {
        objects.push_str(&gnp("allow-all", "selector: all()", "[{action: Allow}]"));
    }
    assert_eq!(decide(&objects, JOB), want);
}

#[test]
fn an_admin_pass_skips_to_the_next_tier() {
    // K8sClusterNetworkPolicyActionToCalico: Pass stays Pass; the default tier then decides.
    let objects = format!(
        "{}{}",
        cnp(
            "pass-dev",
            "Admin",
            1,
            &format!("[{{action: Pass, {FROM_DEV}}}]")
        ),
        cnp(
            "deny-all",
            "Admin",
            2,
            "[{action: Deny, from: [{namespaces: {}}]}]"
        ),
    );
    assert_eq!(
        decide(&objects, JOB),
        Allow,
        "passed over the Deny, and no default-tier policy"
    );
    assert_eq!(decide(&objects, WEB), Deny);
}

#[test]
fn admin_and_baseline_admin_network_policies_v1alpha1() {
    let objects = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: anp}\nspec:\n  priority: 5\n  subject: {namespaces: {matchLabels: {env: prod}}}\n  ingress: [{action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: job}}}}]}]\n---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {env: prod}}}]}]\n---\n";
    let snap = Snapshot::build(&store(objects), 1);
    let (v, reason) = decide_on(&snap, JOB);
    assert_eq!(v, Deny);
    assert!(reason.contains("kanp.adminnetworkpolicy.anp"), "{reason}");
    let (v, reason) = decide_on(&snap, WEB);
    assert_eq!(v, Deny);
    assert!(
        reason.contains("kbanp.baselineadminnetworkpolicy.default"),
        "{reason}"
    );
}

#[test]
fn a_malformed_cluster_network_policy_fails_closed() {
    // Calico drops a policy whose tier it cannot parse (clusterNetworkPolicyTombstone); a
    // dropped Deny would allow, so here it is invalid and denies what it could apply to.
    let objects = cnp(
        "typo",
        "Admn",
        1,
        &format!("[{{action: Deny, {FROM_DEV}}}]"),
    );
    let snap = Snapshot::build(&store(&objects), 1);
    let (v, reason) = decide_on(&snap, JOB);
    assert_eq!(v, Deny);
    assert!(
        reason.contains("typo") && reason.contains("invalid"),
        "{reason}"
    );
    // SEMANTICS.md §3.6: its subject (db, in the prod namespaces) is readable, so only what
    // that selects fails closed: a Pod outside it is not denied by the typo.
    let class = |ns: &str, name: &str| {
        let i = snap.endpoint_by_name(ns, name).unwrap();
        snap.endpoints[i.get()].class.get()
    };
    assert!(snap.plans[class("batch", "job")].invalid.is_none());
    assert!(snap.plans[class("shop", "db")].invalid.is_some());
    // No readable subject: every endpoint.
    let objects = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: nosubject}\nspec: {tier: Admin, priority: 1}\n";
    let snap = Snapshot::build(&store(objects), 1);
    assert!(snap.plans.iter().all(|(_, p)| p.invalid.is_some()));
}

// ---- Item 6: network sets ---------------------------------------------------------------------
// libcalico-go updateprocessors/networksetprocessor.go convertNetworkSetV2ToV1Value: a
// NetworkSet's labels gain `projectcalico.org/namespace` and inherit its Namespace profile
// (`kns.<ns>`: `pcns.` labels); a GlobalNetworkSet has its own labels only.
// updateprocessors/rules.go getEndpointSelector: a rule's source IP set selects
// `(namespace part) && (selector)`: `namespaceSelector` (`global()` = `!has(projectcalico.org/
// namespace)`), or a namespaced policy's own namespace; `notSelector` is a set of its own.
// Felix's IP set holds the selected sets' nets: a source address in any of them matches.

/// `partners` (global, 198.51.100.0/24 and 203.0.113.0/28), `shop/office` (10.9.0.0/16),
/// `shop/vpn` (10.9.5.0/24, inside office), `batch/office` (10.8.0.0/16), and the pods' range
/// 10.1.0.0/16 as the global set `pods`.
const NET_SETS: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24, 203.0.113.0/28]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: office, namespace: shop, labels: {role: office}}
spec: {nets: [10.9.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: vpn, namespace: shop, labels: {role: office, vpn: "yes"}}
spec: {nets: [10.9.5.0/24]}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkSet
metadata: {name: office, namespace: batch, labels: {role: office}}
spec: {nets: [10.8.0.0/16]}
---
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkSet
metadata: {name: pods, labels: {role: pods}}
spec: {nets: [10.1.0.0/16]}
---
"#;

const fn at(ip: &'static str) -> Caller {
    Caller { ip, principal: "" }
}
const PARTNER: Caller = at("198.51.100.7");
const SHOP_OFFICE: Caller = at("10.9.1.1");
const SHOP_VPN: Caller = at("10.9.5.1");
const BATCH_OFFICE: Caller = at("10.8.1.1");
const NOWHERE: Caller = at("192.0.2.1");

/// A Calico NetworkPolicy in `shop` selecting `db`, with these ingress rules.
fn np(rules: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress: {rules}\n---\n"
    )
}

#[test_case(false, "selector: role == 'partner'", PARTNER, Allow; "rules.go getEndpointSelector: a global policy's selector selects a GlobalNetworkSet by its labels")]
#[test_case(false, "selector: role == 'partner'", at("203.0.113.15"), Allow; "networksetprocessor.go: every net of the set")]
#[test_case(false, "selector: role == 'partner'", at("203.0.113.16"), Deny; "networksetprocessor.go: outside the set's nets")]
#[test_case(false, "selector: role == 'partner'", NOWHERE, Deny; "rules.go getEndpointSelector: an address in no set matches no selector")]
#[test_case(false, "selector: role == 'office'", SHOP_OFFICE, Allow; "rules.go getEndpointSelector: a global policy's selector selects NetworkSets of every namespace (shop)")]
#[test_case(false, "selector: role == 'office'", BATCH_OFFICE, Allow; "rules.go getEndpointSelector: a global policy's selector selects NetworkSets of every namespace (batch, crd form)")]
#[test_case(true, "selector: role == 'office'", SHOP_OFFICE, Allow; "rules.go getEndpointSelector: a namespaced policy's selector selects NetworkSets of its namespace")]
#[test_case(true, "selector: role == 'office'", BATCH_OFFICE, Deny; "rules.go getEndpointSelector: a namespaced policy's selector selects no NetworkSet of another namespace")]
#[test_case(true, "selector: role == 'partner'", PARTNER, Deny; "rules.go getEndpointSelector: a namespaced policy's selector selects no GlobalNetworkSet")]
#[test_case(true, "namespaceSelector: global(), selector: role == 'partner'", PARTNER, Allow; "rules.go getEndpointSelector: namespaceSelector global() selects GlobalNetworkSets")]
#[test_case(true, "namespaceSelector: global(), selector: role == 'office'", SHOP_OFFICE, Deny; "rules.go getEndpointSelector: namespaceSelector global() selects no NetworkSet")]
#[test_case(false, "namespaceSelector: global()", PARTNER, Allow; "rules.go getEndpointSelector: namespaceSelector global() alone selects every GlobalNetworkSet")]
#[test_case(false, "namespaceSelector: global()", SHOP_OFFICE, Deny; "rules.go getEndpointSelector: namespaceSelector global() alone selects no NetworkSet")]
#[test_case(false, "namespaceSelector: all()", SHOP_OFFICE, Allow; "rules.go getEndpointSelector: namespaceSelector all() is has(projectcalico.org/namespace)")]
#[test_case(false, "namespaceSelector: all()", PARTNER, Deny; "rules.go getEndpointSelector: namespaceSelector all() selects no GlobalNetworkSet")]
#[test_case(false, "namespaceSelector: env == 'dev', selector: role == 'office'", BATCH_OFFICE, Allow; "rules.go getEndpointSelector: namespaceSelector on the set's namespace labels")]
#[test_case(false, "namespaceSelector: env == 'dev', selector: role == 'office'", SHOP_OFFICE, Deny; "rules.go getEndpointSelector: namespaceSelector excludes the sets of other namespaces")]
#[test_case(false, "selector: pcns.env == 'prod'", SHOP_OFFICE, Allow; "networksetprocessor.go convertNetworkSetV2ToV1Value: a NetworkSet inherits its namespace's pcns. labels")]
#[test_case(false, "selector: pcns.env == 'prod'", BATCH_OFFICE, Deny; "networksetprocessor.go convertNetworkSetV2ToV1Value: another namespace's labels")]
#[test_case(false, "selector: projectcalico.org/namespace == 'batch'", BATCH_OFFICE, Allow; "networksetprocessor.go convertNetworkSetV2ToV1Value: a NetworkSet carries projectcalico.org/namespace")]
#[test_case(false, "selector: has(role), notSelector: vpn == 'yes'", SHOP_OFFICE, Allow; "rules.go RuleAPIV3ToBackend: notSelector excludes only the sets it selects")]
#[test_case(false, "selector: has(role), notSelector: vpn == 'yes'", SHOP_VPN, Deny; "rules.go RuleAPIV3ToBackend NotSrcSelector: an address in a set notSelector selects is excluded, though another selected set holds it")]
#[test_case(false, "selector: role == 'pods', notSelector: app == 'web'", JOB, Allow; "rules.go NotSrcSelector: a workload's address in a selected set")]
#[test_case(false, "selector: role == 'pods', notSelector: app == 'web'", WEB, Deny; "rules.go NotSrcSelector: the workload at the address is in the notSelector's IP set")]
#[test_case(false, "serviceAccounts: {names: [web]}, selector: role == 'office'", SHOP_OFFICE, Deny; "rules.go getEndpointSelector: a serviceAccounts criterion adds a pcsa. selector no network set has")]
#[test_case(false, "serviceAccounts: {selector: role == 'x'}, selector: role == 'office'", SHOP_OFFICE, Deny; "rules.go parseServiceAccounts: a pcsa. selector on a label no network set has")]
#[test_case(false, "serviceAccounts: {selector: \"!has(team)\"}, selector: role == 'office'", SHOP_OFFICE, Allow; "rules.go parseServiceAccounts: a negated pcsa. selector a network set satisfies")]
#[test_case(false, "nets: [10.9.0.0/24], selector: role == 'office'", SHOP_OFFICE, Deny; "nets still apply beside a network-set selector")]
fn network_sets_as_source_selectors(namespaced: bool, source: &str, c: Caller, want: Verdict) {
    let rules = format!("[{{action: Allow, source: {{{source}}}}}]");
    let policy = if namespaced {
        np(&rules)
    } else {
        gnp("p", "selector: app == 'db'", &rules)
    };
    assert_eq!(decide(&format!("{NET_SETS}{policy}"), c), want, "{source}");
}

/// A network-set match is by address: a Deny rule selecting a set denies every caller there,
/// with or without a principal (felix IP sets match addresses only).
#[test]
fn a_deny_rule_selecting_a_network_set_denies_by_address() {
    let policy = gnp(
        "p",
        "selector: app == 'db'",
        "[{action: Deny, source: {selector: role == 'partner'}}, {action: Allow}]",
    );
    let objects = format!("{NET_SETS}{policy}");
    let valid_elsewhere = Caller {
        ip: PARTNER.ip,
        principal: "spiffe://cluster.local/ns/shop/sa/web",
    };
    for c in [PARTNER, valid_elsewhere] {
        assert_eq!(decide(&objects, c), Deny, "{}", c.principal);
    }
    assert_eq!(decide(&objects, NOWHERE), Allow);
    assert_eq!(decide(&objects, WEB), Allow);
}

/// Network sets change the answer incrementally: added, relabelled and removed between two
/// snapshots of one store (Snapshot::update rebuilds the set index when a set changes).
#[test]
fn network_set_changes_update_the_snapshot() {
    let policy = gnp(
        "p",
        "selector: app == 'db'",
        "[{action: Allow, source: {selector: role == 'partner'}}]",
    );
    let mut st = store(&policy);
    let snap = Snapshot::build(&st, 1);
    st.take_changes();
    assert_eq!(decide_on(&snap, PARTNER).0, Deny);
    let set = |st: &mut Store, labels: &str| {
        st.apply_yaml(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: partners, labels: {labels}}}\nspec: {{nets: [198.51.100.0/24]}}"
        ));
    };
    set(&mut st, "{role: partner}");
    let ch = st.take_changes();
    let snap = Snapshot::update(&snap, &st, &ch, 2);
    assert_eq!(decide_on(&snap, PARTNER).0, Allow);
    set(&mut st, "{role: other}");
    let ch = st.take_changes();
    let snap = Snapshot::update(&snap, &st, &ch, 3);
    assert_eq!(decide_on(&snap, PARTNER).0, Deny);
    set(&mut st, "{role: partner}");
    let ch = st.take_changes();
    let snap = Snapshot::update(&snap, &st, &ch, 4);
    assert_eq!(decide_on(&snap, PARTNER).0, Allow);
    let key = super::store::Key::NetworkSet(String::new(), "partners".into());
    assert!(st.delete(&key));
    let ch = st.take_changes();
    let snap = Snapshot::update(&snap, &st, &ch, 5);
    assert_eq!(decide_on(&snap, PARTNER).0, Deny);
}

/// networksetprocessor.go convertNetworkSetV2ToV1Value skips a CIDR it cannot parse (with a
/// warning) and keeps the rest of the set.
#[test]
fn a_bad_net_is_skipped_and_the_rest_of_the_set_kept() {
    let objects = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: partners, labels: {{role: partner}}}}\nspec: {{nets: [not-a-cidr, 198.51.100.0/24]}}\n---\n{}",
        gnp(
            "p",
            "selector: app == 'db'",
            "[{action: Deny, source: {selector: role == 'partner'}}, {action: Allow}]"
        )
    );
    assert_eq!(decide(&objects, PARTNER), Deny);
}

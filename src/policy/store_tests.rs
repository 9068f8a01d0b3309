//! Unit tests of `store` (issue #15 item 8): the exact message of every `DecodeError` and of
//! every other error decoding returns, and what apply, replace and delete report.

use test_case::test_case;

use super::{Changes, DecodeError, Key, Object, Store, decode_document};
use crate::policy::{compile::PolicyId, model::PolicyKind};

fn decode(doc: &str) -> Result<Option<Object>, DecodeError> {
    let v: yaml_serde::Value = yaml_serde::from_str(doc).unwrap();
    decode_document(v).map(|o| o.map(|(_, obj)| obj))
}

fn decode_error(doc: &str) -> String {
    match decode(doc) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("decoded: {o:?}"),
    }
}

/// The error an invalid policy is stored with.
fn policy_error(doc: &str) -> (String, String) {
    match decode(doc) {
        Ok(Some(Object::Policy(p))) => {
            (p.id.to_string(), p.compiled.unwrap_err().error.to_string())
        }
        other => panic!("not a policy: {other:?}"),
    }
}

fn object(doc: &str) -> Object {
    decode(doc).unwrap().unwrap()
}

#[test_case("metadata: {name: x}", "document has no `apiVersion` and `kind`" ; "no type meta")]
#[test_case("apiVersion: v1\nmetadata: {name: x}", "document has no `apiVersion` and `kind`" ; "no kind")]
#[test_case("kind: Pod\nmetadata: {name: x}", "document has no `apiVersion` and `kind`" ; "no apiVersion")]
#[test_case("just a string", "document has no `apiVersion` and `kind`" ; "not a mapping")]
#[test_case("apiVersion: v1\nkind: [Pod]", "document has no `apiVersion` and `kind`" ; "kind of wrong type")]
#[test_case("apiVersion: v1\nkind: List\nitems: []", "invalid List ``: a List must be expanded by its caller" ; "list")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {}", "Tier has no `metadata.name`" ; "tier no name")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: high}", "invalid Tier `t`: spec.order: invalid type: string \"high\", expected f64" ; "tier wrong type")]
#[test_case("apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}", "Namespace has no `metadata.name`" ; "namespace no name")]
#[test_case("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {a: [1]}}", "invalid Namespace `n`: metadata.labels.a: invalid type: sequence, expected a string" ; "namespace label not a string")]
#[test_case("apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: n}", "ServiceAccount has no `metadata.name`" ; "service account no name")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {namespace: n}", "Pod has no `metadata.name`" ; "pod no name")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: nope}", "invalid Pod `p`: `nope` is not an IP address" ; "pod bad ip")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {cni.projectcalico.org/podIPs: '10.0.0.1,x'}}", "invalid Pod `p`: `x` is not an IP address" ; "pod bad annotation ip")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{name: http, containerPort: 70000}]}]}", "invalid Pod `p`: container port `70000` is outside 0–65535" ; "pod port too big")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{name: ping, containerPort: 1, protocol: ICMP}]}]}", "invalid Pod `p`: container port protocol `ICMP` is not TCP, UDP or SCTP" ; "pod port protocol")]
#[test_case("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}", "invalid Pod `p`: spec.containers: invalid type: integer `3`, expected a sequence" ; "pod wrong type")]
#[test_case("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {namespace: n}\naddressType: IPv4", "EndpointSlice has no `metadata.name`" ; "slice no name")]
#[test_case("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.x]}]", "invalid EndpointSlice `s`: `10.0.0.x` is not an IP address" ; "slice bad address")]
#[test_case("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nports: [{port: 65536}]", "invalid EndpointSlice `s`: port `65536` is outside 0–65535" ; "slice port too big")]
#[test_case("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nports: [{port: 53, protocol: ICMP}]", "invalid EndpointSlice `s`: port protocol `ICMP` is not TCP, UDP or SCTP" ; "slice port protocol")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {namespace: n}", "NetworkSet has no `metadata.name`" ; "network set no name")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: g}\nspec: {nets: 5}", "invalid GlobalNetworkSet `g`: spec.nets: invalid type: integer `5`, expected a sequence" ; "global network set wrong type")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {}\nspec: {}", "GlobalNetworkPolicy has no `metadata.name`" ; "policy no name")]
#[test_case("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: n}\nspec: {podSelector: {}}", "NetworkPolicy.networking.k8s.io has no `metadata.name`" ; "knp no name")]
#[test_case("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {}\nspec: {}", "AdminNetworkPolicy.policy.networking.k8s.io has no `metadata.name`" ; "anp no name")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}", "invalid NetworkPolicy `p`: a namespaced policy needs `metadata.namespace`" ; "policy no namespace")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: 5}", "invalid NetworkPolicy `p`: a namespaced policy needs `metadata.namespace`" ; "misshapen policy no namespace")]
fn decode_error_message(doc: &str, expected: &str) {
    assert_eq!(decode_error(doc), expected);
}

#[test_case("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}" ; "config map")]
#[test_case("apiVersion: v1\nkind: Tier\nmetadata: {name: t}" ; "tier of the wrong group")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}" ; "host endpoint")]
#[test_case("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}" ; "cnp of the wrong version")]
fn unknown_kinds_are_skipped(doc: &str) {
    assert!(decode(doc).unwrap().is_none());
}

// A policy that decodes but does not compile, or does not even have the policy shape, is kept
// with its error (it fails closed).
#[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: [{action: Maybe}]}", "g", "spec.ingress[0].action: `Maybe` is not one of `Allow`, `Deny`, `Log`, `Pass`" ; "compile error")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: 5}", "g", "spec.ingress: invalid type: integer `5`, expected a sequence" ; "shape error")]
#[test_case("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n}\nspec: {ingres: []}", "n/p", "spec.ingres: unknown field `ingres`, expected one of `tier`, `order`, `selector`, `namespaceSelector`, `serviceAccountSelector`, `types`, `ingress`, `egress`, `doNotTrack`, `preDNAT`, `applyOnForward`, `performanceHints`, `stagedAction`" ; "unknown field")]
#[test_case("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: n}\nspec: {podSelector: {}, ingress: [{from: [{}]}]}", "n/knp.default.k", "spec.ingress[0].from: a peer needs podSelector, namespaceSelector or ipBlock" ; "knp compile error")]
#[test_case("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {subject: {namespaces: {}}}", "kanp.adminnetworkpolicy.a", "spec.priority: a priority is required" ; "anp compile error")]
#[test_case("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: default.g}\nspec: {order: .inf}", "g", "spec.order: order must be a finite number" ; "crd name resolved")]
fn invalid_policy_is_stored_with_error(doc: &str, id: &str, expected: &str) {
    assert_eq!(policy_error(doc), (id.to_owned(), expected.to_owned()));
}

#[test]
fn invalid_tier_is_stored_with_error() {
    let obj = object(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Log}",
    );
    let Object::Tier { name, tier } = obj else {
        panic!("not a tier")
    };
    assert_eq!(name, "t");
    assert_eq!(
        tier.unwrap_err().to_string(),
        "spec.defaultAction: `Log` is not `Deny` or `Pass`"
    );
}

const GNP: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: [{action: Allow}]}";
const NP: &str = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {}";
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}";

fn gnp_id() -> PolicyId {
    PolicyId {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: None,
        name: "g".into(),
    }
}

#[test]
fn object_keys() {
    let keys: Vec<Key> = [
        GNP,
        NP,
        POD,
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: shop}\naddressType: IPv4",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: g}",
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: n, namespace: shop}",
    ]
    .iter()
    .map(|d| object(d).key())
    .collect();
    insta::assert_debug_snapshot!(keys);
}

#[test]
fn a_new_store_reports_everything_once() {
    let mut store = Store::new();
    assert_eq!(store.take_changes(), Changes::everything());
    assert!(store.take_changes().is_empty());
}

#[test]
fn apply_replace_delete_policy() {
    let mut store = Store::new();
    let _ = store.take_changes();
    // A new object: no key replaced; the change names the policy.
    assert_eq!(store.apply(object(GNP)), None);
    let changes = store.take_changes();
    assert_eq!(changes.policies.iter().collect::<Vec<_>>(), [&gnp_id()]);
    assert!(!changes.all && !changes.endpoints && !changes.tiers);
    assert!(!changes.is_empty());
    assert_eq!(store.counts(), (0, 1, 0, 0));
    // The same key again replaces it, and is reported again.
    let invalid = GNP.replace("Allow", "Maybe");
    assert_eq!(store.apply(object(&invalid)), Some(Key::Policy(gnp_id())));
    assert_eq!(store.take_changes().policies.len(), 1);
    assert_eq!(store.counts(), (0, 1, 1, 0));
    // Deleting it reports it; deleting what is not there reports nothing.
    assert!(store.delete(&Key::Policy(gnp_id())));
    assert_eq!(store.take_changes().policies.len(), 1);
    assert!(!store.delete(&Key::Policy(gnp_id())));
    assert!(store.take_changes().is_empty());
    assert_eq!(store.counts(), (0, 0, 0, 0));
}

#[test]
fn what_each_kind_reports() {
    let mut store = Store::new();
    let _ = store.take_changes();
    store.apply(object(POD));
    store.apply(object(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}",
    ));
    store.apply(object(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 1}",
    ));
    store.apply(object("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: shop}\naddressType: IPv4"));
    store.apply(object("apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: n, namespace: shop}\nspec: {nets: [10.0.0.0/8]}"));
    insta::assert_debug_snapshot!(store.take_changes());
    assert_eq!(store.counts(), (1, 0, 0, 1));
    // No Namespace object yet for the pod's namespace.
    assert_eq!(
        store
            .namespaces_without_object()
            .into_iter()
            .collect::<Vec<_>>(),
        ["shop"]
    );
    store.apply(object(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}",
    ));
    assert!(store.namespaces_without_object().is_empty());
    let changes = store.take_changes();
    assert!(changes.endpoints);
    assert_eq!(changes.namespaces.into_iter().collect::<Vec<_>>(), ["shop"]);
    // Deleting the pod reports it.
    assert!(store.delete(&Key::Pod("shop".into(), "web".into())));
    let changes = store.take_changes();
    assert!(changes.endpoints);
    assert_eq!(
        changes.pods.into_iter().collect::<Vec<_>>(),
        [("shop".to_owned(), "web".to_owned())]
    );
    assert_eq!(store.counts(), (1, 0, 0, 0));
}

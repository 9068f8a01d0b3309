//! The resources alp-authz watches, and how an object of each becomes a store [`Object`].

use std::collections::BTreeMap;

use kube::{api::DynamicObject, core::ApiResource};

use crate::policy::{
    model,
    store::{self, DecodeError, Object},
};

/// A watched resource (a collection of the Kubernetes API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Calico `Tier`.
    Tiers,
    /// Calico `GlobalNetworkPolicy`.
    GlobalNetworkPolicies,
    /// Calico `NetworkPolicy`.
    NetworkPolicies,
    /// Calico `StagedGlobalNetworkPolicy`.
    StagedGlobalNetworkPolicies,
    /// Calico `StagedNetworkPolicy`.
    StagedNetworkPolicies,
    /// Calico `StagedKubernetesNetworkPolicy`.
    StagedKubernetesNetworkPolicies,
    /// Calico `NetworkSet`.
    NetworkSets,
    /// Calico `GlobalNetworkSet`.
    GlobalNetworkSets,
    /// `networking.k8s.io/v1` `NetworkPolicy`.
    KubernetesNetworkPolicies,
    /// Core `Namespace` (metadata only).
    Namespaces,
    /// Core `ServiceAccount` (metadata only).
    ServiceAccounts,
    /// Core `Pod`.
    Pods,
    /// `discovery.k8s.io/v1` `EndpointSlice`.
    EndpointSlices,
    /// `policy.networking.k8s.io/v1alpha2` `ClusterNetworkPolicy`.
    ClusterNetworkPolicies,
    /// `policy.networking.k8s.io/v1alpha1` `AdminNetworkPolicy`.
    AdminNetworkPolicies,
    /// `policy.networking.k8s.io/v1alpha1` `BaselineAdminNetworkPolicy`.
    BaselineAdminNetworkPolicies,
}

impl Resource {
    /// The Calico resources, in the order they are watched.
    pub const CALICO: [Resource; 8] = [
        Resource::Tiers,
        Resource::GlobalNetworkPolicies,
        Resource::NetworkPolicies,
        Resource::StagedGlobalNetworkPolicies,
        Resource::StagedNetworkPolicies,
        Resource::StagedKubernetesNetworkPolicies,
        Resource::NetworkSets,
        Resource::GlobalNetworkSets,
    ];

    /// The `policy.networking.k8s.io` resources, watched when the API server serves them.
    pub const NETWORK_POLICY_API: [Resource; 3] = [
        Resource::ClusterNetworkPolicies,
        Resource::AdminNetworkPolicies,
        Resource::BaselineAdminNetworkPolicies,
    ];

    /// The plural name, as in the API path.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Tiers => "tiers",
            Resource::GlobalNetworkPolicies => "globalnetworkpolicies",
            Resource::NetworkPolicies | Resource::KubernetesNetworkPolicies => "networkpolicies",
            Resource::StagedGlobalNetworkPolicies => "stagedglobalnetworkpolicies",
            Resource::StagedNetworkPolicies => "stagednetworkpolicies",
            Resource::StagedKubernetesNetworkPolicies => "stagedkubernetesnetworkpolicies",
            Resource::NetworkSets => "networksets",
            Resource::GlobalNetworkSets => "globalnetworksets",
            Resource::Namespaces => "namespaces",
            Resource::ServiceAccounts => "serviceaccounts",
            Resource::Pods => "pods",
            Resource::EndpointSlices => "endpointslices",
            Resource::ClusterNetworkPolicies => "clusternetworkpolicies",
            Resource::AdminNetworkPolicies => "adminnetworkpolicies",
            Resource::BaselineAdminNetworkPolicies => "baselineadminnetworkpolicies",
        }
    }

    /// The kind of its objects.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Tiers => "Tier",
            Resource::GlobalNetworkPolicies => "GlobalNetworkPolicy",
            Resource::NetworkPolicies | Resource::KubernetesNetworkPolicies => "NetworkPolicy",
            Resource::StagedGlobalNetworkPolicies => "StagedGlobalNetworkPolicy",
            Resource::StagedNetworkPolicies => "StagedNetworkPolicy",
            Resource::StagedKubernetesNetworkPolicies => "StagedKubernetesNetworkPolicy",
            Resource::NetworkSets => "NetworkSet",
            Resource::GlobalNetworkSets => "GlobalNetworkSet",
            Resource::Namespaces => "Namespace",
            Resource::ServiceAccounts => "ServiceAccount",
            Resource::Pods => "Pod",
            Resource::EndpointSlices => "EndpointSlice",
            Resource::ClusterNetworkPolicies => "ClusterNetworkPolicy",
            Resource::AdminNetworkPolicies => "AdminNetworkPolicy",
            Resource::BaselineAdminNetworkPolicies => "BaselineAdminNetworkPolicy",
        }
    }

    /// Whether its objects live in namespaces.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Resource::Tiers
                | Resource::GlobalNetworkPolicies
                | Resource::StagedGlobalNetworkPolicies
                | Resource::GlobalNetworkSets
                | Resource::Namespaces
                | Resource::ClusterNetworkPolicies
                | Resource::AdminNetworkPolicies
                | Resource::BaselineAdminNetworkPolicies
        )
    }

    /// Its API resource, with the Calico API version chosen by discovery for Calico kinds.
    pub fn api_resource(self, calico_api_version: &str) -> ApiResource {
        let api_version = match self {
            Resource::KubernetesNetworkPolicies => model::NETWORKING_V1,
            Resource::EndpointSlices => model::DISCOVERY_V1,
            Resource::Namespaces | Resource::ServiceAccounts | Resource::Pods => model::CORE_V1,
            Resource::ClusterNetworkPolicies => model::POLICY_V1ALPHA2,
            Resource::AdminNetworkPolicies | Resource::BaselineAdminNetworkPolicies => {
                model::POLICY_V1ALPHA1
            }
            _ => calico_api_version,
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: self.kind().to_owned(),
            plural: self.plural().to_owned(),
        }
    }
}

/// A watched object's identity in the API: namespace (empty for cluster-scoped) and name.
pub type ObjKey = (String, String);

/// What points at one version of an object in the API, beside its [`ObjKey`]: what an Event
/// about it needs (`regarding.uid`) and what tells one version from the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `metadata.uid` (empty when the API did not send one).
    pub uid: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.generation`, where the API keeps one (it changes with the spec only).
    pub generation: Option<i64>,
}

impl Origin {
    /// From an object's metadata.
    pub fn of(meta: &kube::core::ObjectMeta) -> Self {
        Origin {
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            generation: meta.generation,
        }
    }

    /// The version an Event is about: the generation where there is one (a relabelled object
    /// is the same policy), else the resource version.
    pub fn version(&self) -> String {
        match self.generation {
            Some(g) => format!("g{g}"),
            None => format!("rv{}", self.resource_version),
        }
    }
}

/// One object from a watch, decoded (or why it could not be).
#[derive(Debug, Clone)]
pub struct Item {
    /// Its identity in the API.
    pub key: ObjKey,
    /// Its uid and version.
    pub origin: Origin,
    /// What it became.
    pub decoded: Result<Object, DecodeError>,
}

/// The API identity of an object from its metadata.
pub fn obj_key(meta: &kube::core::ObjectMeta) -> ObjKey {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Decodes a full object (policies, tiers, pods) through the same path as files.
///
/// List items come without `apiVersion` and `kind` for built-in kinds; they are set from
/// `api` so the document is complete.
pub fn decode_dynamic(api: &ApiResource, obj: DynamicObject) -> Item {
    let key = obj_key(&obj.metadata);
    let origin = Origin::of(&obj.metadata);
    let mut value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            return Item {
                decoded: Err(invalid(api, &key, e.to_string())),
                key,
                origin,
            };
        }
    };
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api.api_version.clone().into());
        map.insert("kind".into(), api.kind.clone().into());
    }
    let decoded = match store::decode_document(value) {
        Ok(Some((_, obj))) => Ok(obj),
        Ok(None) => Err(invalid(api, &key, "not a kind alp-authz reads".into())),
        Err(e) => Err(e),
    };
    Item {
        key,
        origin,
        decoded,
    }
}

/// A Namespace or ServiceAccount from its metadata alone.
pub fn decode_meta(resource: Resource, meta: &kube::core::ObjectMeta) -> Item {
    let key = obj_key(meta);
    let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    let decoded = if key.1.is_empty() {
        Err(DecodeError::NoName {
            kind: resource.kind().to_owned(),
        })
    } else {
        match resource {
            Resource::Namespaces => Ok(Object::Namespace {
                name: key.1.clone(),
                labels,
            }),
            _ => Ok(Object::ServiceAccount {
                namespace: if key.0.is_empty() {
                    "default".into()
                } else {
                    key.0.clone()
                },
                name: key.1.clone(),
                labels,
            }),
        }
    };
    Item {
        key,
        origin: Origin::of(meta),
        decoded,
    }
}

fn invalid(api: &ApiResource, key: &ObjKey, message: String) -> DecodeError {
    DecodeError::Invalid {
        kind: api.kind.clone(),
        name: key.1.clone(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_crd_v1_policy_takes_its_name_from_the_metadata_annotation() {
        let api = Resource::GlobalNetworkPolicies.api_resource(model::CALICO_CRD_V1);
        let obj = dynamic(json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "GlobalNetworkPolicy",
            "metadata": {
                "name": "default.deny-legacy",
                "resourceVersion": "7",
                "annotations": {"projectcalico.org/metadata": "{\"name\":\"deny-legacy\",\"creationTimestamp\":null}"}
            },
            "spec": {"tier": "default", "selector": "all()", "types": ["Ingress"], "ingress": [{"action": "Deny"}]}
        }));
        let item = decode_dynamic(&api, obj);
        assert_eq!(item.key, (String::new(), "default.deny-legacy".into()));
        let Ok(Object::Policy(p)) = item.decoded else {
            panic!("{:?}", item.decoded)
        };
        assert_eq!(&*p.id.name, "deny-legacy");
        assert!(p.compiled.is_ok());
    }

    #[test]
    fn list_items_without_type_fields_are_completed_from_the_resource() {
        let api = Resource::Pods.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}]}
        }));
        let item = decode_dynamic(&api, obj);
        let Ok(Object::Pod(p)) = item.decoded else {
            panic!("{:?}", item.decoded)
        };
        assert_eq!(p.service_account, "web");
        assert_eq!(p.ips.len(), 1);
        assert_eq!(p.named_ports, vec![("http".into(), 8080, 6)]);
    }

    #[test]
    fn a_malformed_policy_still_decodes_as_an_invalid_policy() {
        let api = Resource::NetworkPolicies.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "broken", "namespace": "shop"},
            "spec": {"ingress": "not a list"}
        }));
        let Ok(Object::Policy(p)) = decode_dynamic(&api, obj).decoded else {
            panic!("a malformed policy must still be stored, to fail closed")
        };
        assert!(p.compiled.is_err());
        assert_eq!(p.id.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn a_policy_with_a_typo_fails_closed_on_its_readable_selector() {
        // SEMANTICS.md §3.6: "could apply to" is what its own endpoint selectors select, even
        // when a rule has a misspelt field.
        let api = Resource::GlobalNetworkPolicies.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "typo"},
            "spec": {"selector": "app == 'web'", "serviceAccountSelector": "role == 'x'",
                     "ingress": [{"action": "Deny", "sourc": {}}]}
        }));
        let Ok(Object::Policy(p)) = decode_dynamic(&api, obj).decoded else {
            panic!("stored as invalid")
        };
        let scope = p
            .compiled
            .unwrap_err()
            .scope
            .expect("its selectors are readable");
        assert_eq!(scope.selector.to_string(), "app == \"web\"");
        assert!(scope.service_account_selector.is_some());
        // A Kubernetes NetworkPolicy: its podSelector, in its namespace.
        let api = Resource::KubernetesNetworkPolicies.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "typo", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"fromm": []}]}
        }));
        let Ok(Object::Policy(p)) = decode_dynamic(&api, obj).decoded else {
            panic!("stored as invalid")
        };
        let scope = p
            .compiled
            .unwrap_err()
            .scope
            .expect("its podSelector is readable");
        assert_eq!(scope.namespace.as_deref(), Some("shop"));
        assert!(scope.selector.to_string().contains("app == \"web\""));
    }

    #[test]
    fn a_pod_with_a_bad_ip_is_an_error_not_a_pod() {
        let api = Resource::Pods.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "status": {"phase": "Running", "podIP": "not-an-ip"}
        }));
        assert!(matches!(
            decode_dynamic(&api, obj).decoded,
            Err(DecodeError::Invalid { .. })
        ));
    }

    /// Both storage forms of a network set decode to the same set; the CRD form keeps its v3
    /// labels in `projectcalico.org/metadata` (libcalico-go resources/customresource.go).
    #[test]
    fn network_sets_decode_from_either_api() {
        let api = Resource::GlobalNetworkSets.api_resource(model::CALICO_CRD_V1);
        let obj = dynamic(json!({
            "metadata": {"name": "partners", "labels": {"stale": "x"},
                "annotations": {"projectcalico.org/metadata": "{\"name\":\"partners\",\"labels\":{\"role\":\"partner\"}}"}},
            "spec": {"nets": ["198.51.100.0/24", "203.0.113.9"]}
        }));
        let Ok(Object::NetworkSet(n)) = decode_dynamic(&api, obj).decoded else {
            panic!("a GlobalNetworkSet")
        };
        assert_eq!((n.namespace.as_str(), n.name.as_str()), ("", "partners"));
        assert_eq!(n.labels.get("role").map(String::as_str), Some("partner"));
        assert_eq!(n.nets.len(), 2);
        let api = Resource::NetworkSets.api_resource(model::CALICO_V3);
        let obj = dynamic(json!({
            "metadata": {"name": "office", "namespace": "shop", "labels": {"role": "office"}},
            "spec": {"nets": ["10.9.0.0/16"]}
        }));
        let Ok(Object::NetworkSet(n)) = decode_dynamic(&api, obj).decoded else {
            panic!("a NetworkSet")
        };
        assert_eq!((n.namespace.as_str(), n.name.as_str()), ("shop", "office"));
        assert!(Resource::NetworkSets.namespaced() && !Resource::GlobalNetworkSets.namespaced());
    }

    #[test]
    fn api_resources() {
        let r = Resource::NetworkPolicies.api_resource(model::CALICO_V3);
        assert_eq!(
            (r.group.as_str(), r.version.as_str()),
            ("projectcalico.org", "v3")
        );
        let r = Resource::Pods.api_resource(model::CALICO_V3);
        assert_eq!((r.group.as_str(), r.api_version.as_str()), ("", "v1"));
        let r = Resource::KubernetesNetworkPolicies.api_resource(model::CALICO_CRD_V1);
        assert_eq!(r.api_version, "networking.k8s.io/v1");
        assert!(!Resource::Namespaces.namespaced() && !Resource::Tiers.namespaced());
        assert!(Resource::Pods.namespaced() && Resource::NetworkPolicies.namespaced());
    }
}

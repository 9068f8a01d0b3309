//! `alp-authz lint --kubernetes`: the live state, listed once. The same discovery as
//! `serve --kubernetes` (`k8s::discover`: which Calico API, which kinds) and the same decoding
//! (`k8s::resource::decode_dynamic`, so `store::decode_document`); one paginated list per
//! resource instead of a watch. Findings name the object (kind, namespace, name), not a file.

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, ListParams};

use super::{Finding, Located, Severity, locate::LineMap};
use crate::{
    k8s::{self, resource::decode_dynamic},
    policy::store::Store,
};

/// Lists every resource once into a store, keeping each object's JSON for the checks.
pub fn list(opts: &k8s::Options) -> Result<(Vec<Located>, Store), Box<Finding>> {
    let failed = |e: anyhow::Error| {
        Box::new(Finding {
            severity: Severity::Error,
            code: "load-error",
            file: None,
            document: None,
            line: None,
            kind: String::new(),
            namespace: None,
            name: String::new(),
            field: None,
            message: crate::k8s::error_text(&e),
            hint: "check --kubeconfig (or KUBECONFIG) and that the account may list the policy kinds, pods, namespaces and service accounts: nothing was linted".into(),
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")
        .map_err(failed)?;
    rt.block_on(list_all(opts)).map_err(failed)
}

async fn list_all(opts: &k8s::Options) -> anyhow::Result<(Vec<Located>, Store)> {
    let client = k8s::client(opts).await?;
    let discovered = k8s::discover(&client, opts.calico_api).await?;
    let mut store = Store::default();
    let mut located = Vec::new();
    let lines = std::sync::Arc::new(LineMap::default());
    for (resource, api) in discovered.resources {
        let dynamic = match opts.namespace.as_deref().filter(|_| resource.namespaced()) {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &api),
            None => Api::all_with(client.clone(), &api),
        };
        let mut params = ListParams::default().limit(500);
        loop {
            let page = dynamic
                .list(&params)
                .await
                .with_context(|| format!("cannot list {}", k8s::label(&api)))?;
            for obj in page.items {
                let mut raw = serde_json::to_value(&obj)?;
                if let Some(map) = raw.as_object_mut() {
                    map.insert("apiVersion".into(), api.api_version.clone().into());
                    map.insert("kind".into(), api.kind.clone().into());
                }
                let item = decode_dynamic(&api, obj);
                let object = item
                    .decoded
                    .with_context(|| format!("{} {}/{}", api.kind, item.key.0, item.key.1))?;
                store.apply(object.clone());
                located.push(Located {
                    file: None,
                    document: 0,
                    item: None,
                    lines: lines.clone(),
                    type_meta: crate::policy::model::TypeMeta {
                        api_version: api.api_version.clone(),
                        kind: api.kind.clone(),
                    },
                    raw,
                    object,
                });
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok((located, store))
}

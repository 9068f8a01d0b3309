//! State from a live cluster: the Kubernetes API, watched, into the same store and snapshot as
//! files.
//!
//! ```text
//!  discovery ── which Calico API (projectcalico.org/v3 or crd.projectcalico.org/v1), which kinds
//!  watchers  ── one kube-runtime watcher per resource (metadata only for Namespaces and
//!               ServiceAccounts); objects decoded where they arrive, then dropped
//!      │  Update { resource, Init | InitApply | InitDone | Apply | Delete }
//!      ▼
//!  sync      ── one thread owns the Store; relists replace a resource whole; publishes a
//!               snapshot (state::Shared) once every resource is listed, then per batch
//!  probe     ── GET /version every few seconds: API server reachability and last contact
//!  events    ── a Kubernetes Event on each policy that fails closed (fed by sync after each
//!               publish through a bounded channel; deduplicated, rate-limited)
//! ```
//!
//! Nothing is published until every watch has listed once: until then the health service says
//! NOT_SERVING and Check answers UNAVAILABLE. After that, losing the API server never stops
//! service: the last good state keeps serving and the watchers retry with backoff, relisting
//! when their resource version has expired.
//!
//! `policy` must not import this module.

pub mod events;
pub mod resource;
pub mod status;
pub mod sync;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client,
    api::DynamicObject,
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, PartialObjectMeta},
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::mpsc;

use crate::{policy::model, state::Shared};
use resource::{Item, Resource, decode_dynamic, decode_meta, obj_key};
use status::Status;
use sync::{Change, Update, WatchedStore};

/// Which Calico API to watch (`--calico-api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalicoApi {
    /// `projectcalico.org/v3` when discovery finds it, else `crd.projectcalico.org/v1`.
    Auto,
    /// `projectcalico.org/v3`.
    V3,
    /// `crd.projectcalico.org/v1`.
    Crd,
}

/// How `serve --kubernetes` reaches the cluster and what it watches.
#[derive(Debug, Clone)]
pub struct Options {
    /// A kubeconfig file; default: in-cluster, then `KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Which Calico API to read.
    pub calico_api: CalicoApi,
    /// Per-node mode: only Pods on this node are destinations (every Pod is watched, as a
    /// possible source).
    pub node: Option<String>,
    /// Only namespaced objects of this namespace.
    pub namespace: Option<String>,
    /// How often the API server's reachability is probed.
    pub probe_interval: Duration,
    /// Kubernetes Events on invalid policies (`k8s::events`).
    pub policy_events: bool,
}

/// A client from `--kubeconfig`, or inferred (in-cluster, `KUBECONFIG`, `~/.kube/config`).
pub async fn client(opts: &Options) -> anyhow::Result<Client> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("unusable kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration: not in a cluster, and no kubeconfig found")?,
    };
    Client::try_from(config).context("cannot build a Kubernetes client")
}

/// What discovery found: the Calico API version in use (if any) and the resources to watch.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// `projectcalico.org/v3`, `crd.projectcalico.org/v1`, or `None` when neither is served.
    pub calico_api: Option<&'static str>,
    /// Every resource to watch, with its API resource.
    pub resources: Vec<(Resource, ApiResource)>,
}

/// Asks the API server which Calico API it serves and which Calico kinds it has.
pub async fn discover(client: &Client, want: CalicoApi) -> anyhow::Result<Discovered> {
    let groups = client
        .list_api_groups()
        .await
        .context("API discovery (GET /apis) failed")?;
    let serves = |group: &str, version: &str| {
        groups
            .groups
            .iter()
            .any(|g| g.name == group && g.versions.iter().any(|v| v.version == version))
    };
    let v3 = serves("projectcalico.org", "v3");
    let crd = serves("crd.projectcalico.org", "v1");
    let calico_api = match want {
        CalicoApi::V3 if v3 => Some(model::CALICO_V3),
        CalicoApi::V3 => anyhow::bail!(
            "--calico-api v3: the API server does not serve projectcalico.org/v3 (is the Calico API server installed?)"
        ),
        CalicoApi::Crd if crd => Some(model::CALICO_CRD_V1),
        CalicoApi::Crd => {
            anyhow::bail!(
                "--calico-api crd: the API server does not serve crd.projectcalico.org/v1"
            )
        }
        CalicoApi::Auto if v3 => Some(model::CALICO_V3),
        CalicoApi::Auto if crd => Some(model::CALICO_CRD_V1),
        CalicoApi::Auto => None,
    };
    let mut resources = Vec::new();
    match calico_api {
        Some(api) => {
            let served = client
                .list_api_group_resources(api)
                .await
                .with_context(|| format!("API discovery (GET /apis/{api}) failed"))?;
            for r in Resource::CALICO {
                if served.resources.iter().any(|s| s.name == r.plural()) {
                    resources.push((r, r.api_resource(api)));
                } else {
                    tracing::warn!(
                        "{api} has no {}: not watched (an older Calico?)",
                        r.plural()
                    );
                }
            }
        }
        None => tracing::warn!(
            "the API server serves neither projectcalico.org/v3 nor crd.projectcalico.org/v1: \
             only Kubernetes NetworkPolicies apply"
        ),
    }
    // Kubernetes' cluster-scoped network policy (SIG Network's network-policy-api CRDs),
    // converted as Calico converts it: watched only where it is installed.
    for version in [model::POLICY_V1ALPHA2, model::POLICY_V1ALPHA1] {
        let (group, v) = version.split_once('/').unwrap_or_default();
        if !serves(group, v) {
            continue;
        }
        let served = client
            .list_api_group_resources(version)
            .await
            .with_context(|| format!("API discovery (GET /apis/{version}) failed"))?;
        for r in Resource::NETWORK_POLICY_API {
            let api = r.api_resource(version);
            if api.api_version == version && served.resources.iter().any(|s| s.name == r.plural()) {
                resources.push((r, api));
            }
        }
    }
    for r in [
        Resource::KubernetesNetworkPolicies,
        Resource::Namespaces,
        Resource::ServiceAccounts,
        Resource::Pods,
        Resource::EndpointSlices,
    ] {
        resources.push((r, r.api_resource(model::CALICO_V3)));
    }
    Ok(Discovered {
        calico_api,
        resources,
    })
}

/// The label a resource carries in logs and metrics: `plural.group`, or `plural` for core.
pub fn label(api: &ApiResource) -> String {
    if api.group.is_empty() {
        api.plural.clone()
    } else {
        format!("{}.{}", api.plural, api.group)
    }
}

/// Watches the cluster and publishes into `state` until the process ends. Discovery is
/// retried until it succeeds; nothing is published before every resource has been listed.
pub async fn run(
    client: Client,
    opts: Options,
    state: Arc<Shared>,
    status: Arc<Status>,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(500);
    let discovered = loop {
        match discover(&client, opts.calico_api).await {
            Ok(d) => {
                status.contact();
                break d;
            }
            Err(e) => {
                status.unreachable();
                tracing::warn!(error = %format!("{e:#}"), "Kubernetes API discovery failed; retrying in {:?}", backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    tracing::info!(
        calico_api = discovered.calico_api.unwrap_or("none"),
        resources = %discovered.resources.iter().map(|(_, a)| label(a)).collect::<Vec<_>>().join(","),
        node = opts.node.as_deref().unwrap_or("(all)"),
        namespace = opts.namespace.as_deref().unwrap_or("(all)"),
        "watching the Kubernetes API"
    );
    status.set_resources(
        discovered.calico_api,
        discovered
            .resources
            .iter()
            .map(|(r, a)| (*r, label(a)))
            .collect(),
    );

    let (tx, rx) = mpsc::channel(4096);
    let sync = WatchedStore::new(discovered.resources.iter().map(|(r, _)| *r))
        .with_node(opts.node.as_deref())
        .with_notices(opts.policy_events);
    let events_tx = opts.policy_events.then(|| {
        let (tx, rx) = mpsc::channel(events::QUEUE);
        let apis = discovered.resources.iter().cloned().collect();
        tokio::spawn(events::run(client.clone(), apis, rx, status.clone()));
        tx
    });
    {
        let (state, status) = (state.clone(), status.clone());
        std::thread::Builder::new()
            .name("alp-authz-sync".into())
            .spawn(move || {
                let run =
                    std::panic::AssertUnwindSafe(|| sync::run(sync, rx, state, status, events_tx));
                if std::panic::catch_unwind(run).is_err() {
                    // Serving a state that can no longer change, with nothing saying so, would
                    // be worse than restarting: exit, and let the orchestrator restart us.
                    tracing::error!("the sync thread failed: exiting");
                    std::process::exit(70);
                }
            })
            .context("cannot start the sync thread")?;
    }
    for (resource, api) in discovered.resources {
        let ns = opts.namespace.clone().filter(|_| resource.namespaced());
        // Every Pod, also in per-node mode (`--node`): a caller on another node must be known by
        // its address, namespace, service account and labels, as Felix's IP sets know it
        // (SEMANTICS.md §1). The sync keeps only what the index needs of each, and pods of
        // other nodes get no plan.
        let config = watcher::Config::default();
        tokio::spawn(watch(
            client.clone(),
            resource,
            api,
            ns,
            config,
            tx.clone(),
            status.clone(),
        ));
    }
    tokio::spawn(probe(client, opts.probe_interval, state, status));
    Ok(())
}

/// One resource's watcher, until the sync thread goes away.
async fn watch(
    client: Client,
    resource: Resource,
    api: ApiResource,
    namespace: Option<String>,
    config: watcher::Config,
    tx: mpsc::Sender<Update>,
    status: Arc<Status>,
) {
    let ns = namespace.as_deref();
    let tag = label(&api);
    let w = Watch {
        resource,
        tag: &tag,
        tx: &tx,
        status: &status,
    };
    match resource {
        Resource::Namespaces => {
            let api = Api::<PartialObjectMeta<Namespace>>::all(client);
            w.drive(api, config, |o| decode_meta(resource, &o.metadata))
                .await
        }
        Resource::ServiceAccounts => {
            let api = match ns {
                Some(ns) => Api::<PartialObjectMeta<ServiceAccount>>::namespaced(client, ns),
                None => Api::all(client),
            };
            w.drive(api, config, |o| decode_meta(resource, &o.metadata))
                .await
        }
        _ => {
            let dynamic = match ns {
                Some(ns) => Api::<DynamicObject>::namespaced_with(client, ns, &api),
                None => Api::all_with(client, &api),
            };
            w.drive(dynamic, config, |o| decode_dynamic(&api, o)).await
        }
    }
}

/// What a watcher needs besides its API.
struct Watch<'a> {
    resource: Resource,
    tag: &'a str,
    tx: &'a mpsc::Sender<Update>,
    status: &'a Status,
}

impl Watch<'_> {
    /// Runs a kube-runtime watcher (with its default backoff) and forwards what it sees,
    /// decoded, to the sync thread.
    async fn drive<K>(&self, api: Api<K>, config: watcher::Config, decode: impl Fn(K) -> Item)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let counters = self.status.of(self.resource);
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    if let watcher::Error::WatchError(status) = &error
                        && status.code == 410
                    {
                        // Said whether or not the watch was already failing (after an outage
                        // it usually is): the relist that follows is what an operator sees.
                        tracing::info!(resource = %self.tag, message = %status.message, "watch expired (410 Gone): relisting");
                    }
                    if let Some(s) = counters {
                        s.errors.fetch_add(1, Ordering::Relaxed);
                        if !s.failing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(resource = %self.tag, %error, "watch failed; retrying with backoff (the last good state keeps serving)");
                        } else {
                            tracing::debug!(resource = %self.tag, %error, "watch failed again");
                        }
                    }
                    continue;
                }
            };
            if let Some(s) = counters {
                s.event();
                if s.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(resource = %self.tag, "watch resumed");
                }
            }
            let change = match event {
                watcher::Event::Init => Change::Init,
                watcher::Event::InitApply(o) => Change::InitApply(decode(o)),
                watcher::Event::InitDone => Change::InitDone,
                watcher::Event::Apply(o) => Change::Apply(decode(o)),
                watcher::Event::Delete(o) => Change::Delete(obj_key(o.meta())),
            };
            let update = Update {
                resource: self.resource,
                change,
            };
            if self.tx.send(update).await.is_err() {
                return;
            }
        }
    }
}

/// Probes the API server (`GET /version`) so that its reachability, and the age of the state
/// being served, are known even when no watch event arrives.
async fn probe(client: Client, every: Duration, state: Arc<Shared>, status: Arc<Status>) {
    let mut last_warning = None::<std::time::Instant>;
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(
            every.max(Duration::from_secs(1)),
            client.apiserver_version(),
        )
        .await
        {
            Ok(Ok(_)) => {
                if let Some(outage) = status.contact() {
                    tracing::info!(
                        "Kubernetes API server reachable again after {:.1} s",
                        outage.as_secs_f64()
                    );
                }
                last_warning = None;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                let started = status.unreachable();
                let due = last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(30));
                if started || due {
                    last_warning = Some(std::time::Instant::now());
                    let age = status
                        .last_contact_age()
                        .map_or("never".into(), |a| format!("{:.1} s ago", a.as_secs_f64()));
                    tracing::warn!(
                        %error,
                        generation = state.load().generation,
                        "Kubernetes API server unreachable: still serving the last good state (last contact {age})"
                    );
                }
            }
        }
    }
}

/// An error and its causes, `: `-separated like `{:#}`, leaving out a cause whose text the
/// message before it already holds (the Kubernetes client's errors repeat their sources in
/// their own text, so `{:#}` said the same kubeconfig error two or three times).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

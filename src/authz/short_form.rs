//! A request described by pods (`from`/`to`/`port`/…), as `alp-authz test` cases, `check
//! --from/--to` and the Explain RPC take it, turned into a CheckRequest against a snapshot.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use anyhow::{Context as _, bail};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

use super::descriptor;
use crate::policy::{endpoints::Endpoint, snapshot::Snapshot};

/// A request described by pods, as `test` cases and the Explain RPC take it.
#[derive(Debug, Clone, Copy)]
pub struct ShortForm<'a> {
    /// `namespace/pod`, a SPIFFE ID, `unauthenticated` or `None`.
    pub from: Option<&'a str>,
    /// `namespace/pod` or an IP address.
    pub to: Option<&'a str>,
    /// Destination port (default: the pod's first named container port, else 80).
    pub port: Option<u32>,
    /// HTTP method (default GET).
    pub method: Option<&'a str>,
    /// HTTP path (default /).
    pub path: Option<&'a str>,
    /// Request headers.
    pub headers: &'a BTreeMap<String, String>,
}

/// Builds a CheckRequest from the short form, resolving pods against `snap`.
pub fn short_request(
    snap: &Snapshot,
    case: &ShortForm<'_>,
    td: &str,
) -> anyhow::Result<CheckRequest> {
    let pod = |s: &str| -> anyhow::Result<Option<&Endpoint>> {
        if s.starts_with("spiffe://") {
            return Ok(None);
        }
        let Some((ns, name)) = s.split_once('/') else {
            return Ok(None);
        };
        let idx = snap
            .endpoint_by_name(ns, name)
            .with_context(|| format!("no pod `{s}` with an IP in the state"))?;
        Ok(snap.endpoints.get(idx.get()))
    };
    let (principal, src_ip) = match case.from {
        None | Some("" | "unauthenticated") => (String::new(), None),
        Some(s) if s.starts_with("spiffe://") => (s.to_owned(), None),
        Some(s) => match pod(s)? {
            Some(ep) => (
                format!(
                    "spiffe://{td}/ns/{}/sa/{}",
                    ep.namespace, ep.service_account
                ),
                ep.ip,
            ),
            None => bail!("`from: {s}` is not namespace/pod, a SPIFFE ID or `unauthenticated`"),
        },
    };
    let (dst_ip, dst_port) = match case.to {
        None => bail!("a short-form case needs `to`"),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => (ip, None),
            Err(_) => match pod(s)? {
                Some(ep) => (
                    ep.ip.with_context(|| format!("pod `{s}` has no IP"))?,
                    ep.named_ports.first().map(|p| p.1),
                ),
                None => bail!("`to: {s}` is not namespace/pod or an IP address"),
            },
        },
    };
    let method = case.method.unwrap_or("GET");
    let path = case.path.unwrap_or("/");
    let mut headers: HashMap<String, String> = case
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.insert(":method".into(), method.into());
    headers.insert(":path".into(), path.into());
    let mut source = serde_json::json!({"principal": principal});
    if let Some(ip) = src_ip {
        source["address"] =
            serde_json::json!({"socketAddress": {"address": ip.to_string(), "portValue": 41000}});
    }
    let req = serde_json::json!({"attributes": {
        "source": source,
        "destination": {"address": {"socketAddress": {"address": dst_ip.to_string(), "portValue": case.port.or(dst_port.map(u32::from)).unwrap_or(80)}}},
        "request": {"http": {"method": method, "path": path, "headers": headers, "protocol": "HTTP/1.1"}},
    }});
    Ok(descriptor::check_request_from_json(&req.to_string())?)
}

//! CheckRequest → [`Request`]: borrow what the evaluator needs from the wire message, without
//! copying headers or strings.

use std::{borrow::Cow, net::IpAddr};

use envoy_types::pb::envoy::{
    config::core::v3::{Address, address, socket_address},
    service::auth::v3::{CheckRequest, attribute_context::Peer},
};

use crate::{
    identity::resolve::{Caller, IdentityConfig, Resolved, Source, XFCC_HEADER, Xfcc},
    policy::{
        eval::{Addr, HttpRequest, Principal, Request},
        protocol,
    },
};

/// Resolves the caller of `req` (the identity layer reads plain fields: [`caller`]).
pub fn resolve<'a>(cfg: &IdentityConfig, req: &'a CheckRequest) -> Resolved<'a> {
    cfg.resolve(&caller(cfg, req))
}

/// [`resolve`], and the source that decided it (for the decision log).
pub fn resolve_from<'a>(
    cfg: &IdentityConfig,
    req: &'a CheckRequest,
) -> (Resolved<'a>, Option<Source>) {
    cfg.resolve_from(&caller(cfg, req))
}

/// What `req` says about its caller. The XFCC header is read only when XFCC is an enabled
/// source.
pub fn caller<'a>(cfg: &IdentityConfig, req: &'a CheckRequest) -> Caller<'a> {
    let attrs = req.attributes.as_ref();
    let source = attrs.and_then(|a| a.source.as_ref());
    Caller {
        principal: source.map_or("", |p| p.principal.as_str()),
        certificate: source.map_or("", |p| p.certificate.as_str()),
        proxy_principal: attrs
            .and_then(|a| a.destination.as_ref())
            .map_or("", |d| d.principal.as_str()),
        xfcc: if cfg.sources.contains(&Source::Xfcc) {
            xfcc(req)
        } else {
            Xfcc::Absent
        },
    }
}

/// The XFCC header of `req`, from `headers` or, when Envoy sent raw headers, `header_map`.
fn xfcc(req: &CheckRequest) -> Xfcc<'_> {
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Xfcc::Absent;
    };
    if let Some(h) = http.headers.get(XFCC_HEADER) {
        return Xfcc::Value(Cow::Borrowed(h.as_str()));
    }
    let Some(map) = http.header_map.as_ref() else {
        return Xfcc::Absent;
    };
    // `header_map` (Envoy's `encode_raw_headers`) keeps each occurrence of a repeated header
    // as its own entry, in order: together they are one list, as Envoy joins them into
    // `headers` with commas, so the last element is the last entry's (the one our proxy
    // appended), never the first's, which a caller may have sent.
    let mut all = String::new();
    for h in map
        .headers
        .iter()
        .filter(|h| h.key.eq_ignore_ascii_case(XFCC_HEADER))
    {
        let entry = if h.raw_value.is_empty() {
            h.value.as_str()
        } else {
            match std::str::from_utf8(&h.raw_value) {
                Ok(v) => v,
                Err(_) => return Xfcc::NotUtf8,
            }
        };
        if !all.is_empty() {
            all.push(',');
        }
        all.push_str(entry);
    }
    if all.is_empty() {
        Xfcc::Absent
    } else {
        Xfcc::Value(Cow::Owned(all))
    }
}

/// The evaluator's view of a resolved identity, after the trust-domain allow-list.
pub fn principal<'r>(cfg: &IdentityConfig, r: &'r Resolved<'_>) -> Principal<'r> {
    let id = match r {
        Resolved::Absent => return Principal::Absent,
        Resolved::Invalid => return Principal::Invalid,
        Resolved::Rejected(why) => return Principal::Rejected(*why),
        Resolved::Borrowed(id) => *id,
        Resolved::Owned(id) => id.as_ref(),
    };
    if !cfg.trust_domains.is_empty() && !cfg.trust_domains.iter().any(|td| td == id.trust_domain())
    {
        Principal::Untrusted(id)
    } else {
        Principal::Valid(id)
    }
}

/// Builds the evaluator's view of a CheckRequest, with the caller identity already resolved.
pub fn to_request<'a>(req: &'a CheckRequest, principal: Principal<'a>) -> Request<'a> {
    let attrs = req.attributes.as_ref();
    let source = attrs.and_then(|a| a.source.as_ref());
    let destination = attrs.and_then(|a| a.destination.as_ref());
    let http = attrs
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map(|h| HttpRequest::new(&h.method, &h.path));
    Request {
        source: addr(source),
        destination: addr(destination),
        principal,
        protocol: protocol(destination),
        http,
    }
}

fn socket(peer: Option<&Peer>) -> Option<&envoy_types::pb::envoy::config::core::v3::SocketAddress> {
    match peer?.address.as_ref()? {
        Address {
            address: Some(address::Address::SocketAddress(s)),
        } => Some(s),
        _ => None,
    }
}

fn addr(peer: Option<&Peer>) -> Addr {
    let Some(s) = socket(peer) else {
        return Addr::default();
    };
    Addr {
        // IPv4-mapped IPv6 (`::ffff:10.0.0.1`, from dual-stack listeners) is the IPv4 address.
        ip: s.address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()),
        port: match s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => p,
            _ => 0,
        },
    }
}

/// "Defaults to 6 (TCP) if there is no socket address or the value is unknown"
/// (reference/dikastes-semantics.md §3).
fn protocol(destination: Option<&Peer>) -> u8 {
    match socket(destination).map(|s| s.protocol) {
        Some(p) if p == socket_address::Protocol::Udp as i32 => protocol::UDP,
        _ => protocol::TCP,
    }
}

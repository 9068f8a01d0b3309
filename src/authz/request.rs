//! CheckRequest → [`Request`]: borrow what the evaluator needs from the wire message, without
//! copying headers or strings.

use std::net::IpAddr;

use envoy_types::pb::envoy::{
    config::core::v3::{Address, address, socket_address},
    service::auth::v3::{CheckRequest, attribute_context::Peer},
};

use crate::{
    identity::spiffe::SpiffeRef,
    policy::eval::{Addr, HttpRequest, PROTO_TCP, Principal, Request},
};

/// Which callers count as authenticated.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Accepted trust domains; empty accepts any (as Dikastes does).
    pub trust_domains: Vec<String>,
}

impl IdentityConfig {
    /// Classifies a principal string.
    pub fn principal<'a>(&self, s: &'a str) -> Principal<'a> {
        if s.is_empty() {
            return Principal::Absent;
        }
        match SpiffeRef::parse(s) {
            Err(_) => Principal::Invalid,
            Ok(id)
                if !self.trust_domains.is_empty()
                    && !self.trust_domains.iter().any(|td| td == id.trust_domain()) =>
            {
                Principal::Untrusted(id)
            }
            Ok(id) => Principal::Valid(id),
        }
    }
}

/// Builds the evaluator's view of a CheckRequest.
pub fn to_request<'a>(req: &'a CheckRequest, identity: &IdentityConfig) -> Request<'a> {
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
        principal: identity.principal(source.map_or("", |p| p.principal.as_str())),
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
        Some(p) if p == socket_address::Protocol::Udp as i32 => 17,
        _ => PROTO_TCP,
    }
}

//! TLS and mutual TLS for the authz listener, with certificates reloaded on change.
//!
//! The current `rustls::ServerConfig` sits in an `ArcSwap`; every new connection handshakes with
//! whatever is current, so a rotated certificate (Istio, cert-manager) applies to new connections
//! while existing ones keep theirs and are never dropped. Handshakes run in their own tasks with a
//! timeout, within the connection limits, so a slow or silent client cannot stall accepting.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

use super::limits::{Guarded, Limits};

/// The files that make up the listener's TLS configuration.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle for client certificates (PEM); when set, clients must present one (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file, for change detection.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        v.extend(self.client_ca.clone());
        v
    }

    /// Reads the files and builds a server configuration (ring, TLS 1.2 and 1.3, ALPN h2).
    pub fn load(&self) -> anyhow::Result<ServerConfig> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let certs = CertificateDer::pem_slice_iter(&read(&self.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: not PEM certificates", self.cert.display()))?;
        if certs.is_empty() {
            anyhow::bail!("{}: no certificate", self.cert.display());
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .with_context(|| format!("{}: no PEM private key", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("no usable TLS versions")?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                    let c = c.with_context(|| format!("{}: not PEM certificates", ca.display()))?;
                    roots
                        .add(c)
                        .with_context(|| format!("{}: unusable CA certificate", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .with_context(|| format!("{}: no usable CA certificate", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .context("the certificate and key do not match, or the key is unusable")?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Accepts TCP connections within the connection limits and completes TLS handshakes with the
/// current configuration, each in its own task bounded by the handshake timeout, yielding
/// established streams until `stop` turns true. Accepting never waits on a handshake: a
/// connection over the limits (all peers, or its own peer's share) is closed at once, so silent
/// peers cannot lock out the others (#13 item 6).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ArcSwap<ServerConfig>>,
    limits: &Limits,
    stop: watch::Receiver<bool>,
) -> ReceiverStream<std::io::Result<Guarded<TlsStream<tokio::net::TcpStream>>>> {
    super::limits::incoming_with(listener, limits, stop, move |tcp, peer, within| {
        let acceptor = TlsAcceptor::from(config.load_full());
        async move {
            match tokio::time::timeout(within, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }
    })
}

/// Whether the client's certificate (verified in the handshake) carries one of the `allowed`
/// SPIFFE IDs; refused connections are logged.
pub fn client_allowed(tls: &TlsStream<tokio::net::TcpStream>, allowed: &[String]) -> bool {
    let (tcp, session) = tls.get_ref();
    let id = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::identity::cert::PeerCert::from_der(c.clone().into_owned()).ok())
        .map(|c| c.spiffe.to_string());
    let ok = id
        .as_ref()
        .is_some_and(|id| allowed.iter().any(|a| a == id));
    if !ok {
        tracing::warn!(
            peer = ?tcp.peer_addr().ok(),
            client = id.as_deref().unwrap_or("(no SPIFFE ID)"),
            "Explain refused: the client is not in --explain-allow"
        );
    }
    ok
}

//! Peer certificates as Envoy forwards them (`attributes.source.certificate`, with
//! `include_peer_certificate`: the URL-encoded PEM of the peer's leaf certificate), their
//! SPIFFE ID (X.509-SVID: exactly one URI SAN, a SPIFFE ID), and optional verification against a
//! trust bundle.

use std::sync::Arc;

use rustls::{
    RootCertStore,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject as _};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::spiffe::{SpiffeId, SpiffeRef};

/// Why a forwarded certificate gives no identity. Each is a reason to deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not URL-encoded PEM of a certificate.
    #[error("the forwarded certificate is not a PEM certificate")]
    Pem,
    /// PEM, but the DER inside is not an X.509 certificate.
    #[error("the forwarded certificate is not valid X.509")]
    Der,
    /// No URI SAN.
    #[error("the forwarded certificate has no URI SAN (not an X.509-SVID)")]
    NoUri,
    /// More than one URI SAN ("An X.509 SVID MUST contain exactly one URI SAN").
    #[error("the forwarded certificate has more than one URI SAN")]
    ManyUris,
    /// The URI SAN is not a valid SPIFFE ID of the Istio form.
    #[error("the forwarded certificate's URI SAN is not a valid SPIFFE ID")]
    NotSpiffe,
    /// Past `notAfter`.
    #[error("the forwarded certificate has expired")]
    Expired,
    /// Before `notBefore`.
    #[error("the forwarded certificate is not valid yet")]
    NotYetValid,
    /// Does not chain to the trust bundle (or breaks an X.509-SVID rule the verifier checks).
    #[error("the forwarded certificate does not chain to the trust bundle")]
    Untrusted,
}

/// A parsed peer certificate.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Its SPIFFE ID.
    pub spiffe: SpiffeId,
    /// `notBefore`, seconds since the Unix epoch.
    pub not_before: i64,
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
}

impl PeerCert {
    /// Decodes Envoy's URL-encoded PEM (plain PEM works too) and parses the first certificate.
    pub fn from_forwarded(s: &str) -> Result<PeerCert, CertError> {
        let pem = percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
        let der = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(Result::ok)
            .ok_or(CertError::Pem)?;
        PeerCert::from_der(der)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: CertificateDer<'static>) -> Result<PeerCert, CertError> {
        let (rest, cert) = X509Certificate::from_der(&der).map_err(|_| CertError::Der)?;
        if !rest.is_empty() {
            return Err(CertError::Der);
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|_| CertError::Der)?;
        let mut uris = san
            .iter()
            .flat_map(|s| s.value.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            });
        let uri = uris.next().ok_or(CertError::NoUri)?;
        if uris.next().is_some() {
            return Err(CertError::ManyUris);
        }
        let spiffe = SpiffeRef::parse(uri)
            .map_err(|_| CertError::NotSpiffe)?
            .to_owned();
        let validity = cert.validity();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        drop(cert);
        Ok(PeerCert {
            der,
            spiffe,
            not_before,
            not_after,
        })
    }

    /// Checks the validity period at `now` (seconds since the Unix epoch).
    pub fn check_validity(&self, now: i64) -> Result<(), CertError> {
        if now < self.not_before {
            Err(CertError::NotYetValid)
        } else if now > self.not_after {
            Err(CertError::Expired)
        } else {
            Ok(())
        }
    }
}

/// Roots that forwarded certificates must chain to (e.g. Istio's root certificate).
#[derive(Debug, Clone)]
pub struct TrustBundle {
    verifier: Arc<dyn ClientCertVerifier>,
    /// Number of certificates in the bundle.
    pub len: usize,
}

/// Why a trust bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(String);

impl TrustBundle {
    /// Reads PEM certificates; every one becomes a trust anchor.
    pub fn from_pem(pem: &[u8]) -> Result<TrustBundle, BundleError> {
        let mut roots = RootCertStore::empty();
        let mut len = 0;
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| BundleError(format!("not PEM certificates: {e}")))?;
            roots
                .add(der)
                .map_err(|e| BundleError(format!("unusable certificate in the bundle: {e}")))?;
            len += 1;
        }
        if len == 0 {
            return Err(BundleError("no certificates in the bundle".into()));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| BundleError(e.to_string()))?;
        Ok(TrustBundle { verifier, len })
    }

    /// Verifies a leaf certificate: chain to a bundle root, validity at `now`, client-auth use,
    /// not a CA (the X.509-SVID rules webpki enforces for an end entity).
    pub fn verify(&self, cert: &PeerCert, now: UnixTime) -> Result<(), CertError> {
        self.verifier
            .verify_client_cert(&cert.der, &[], now)
            .map(|_| ())
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
                | rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
                    ..
                }) => CertError::Expired,
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidYetContext { .. },
                ) => CertError::NotYetValid,
                _ => CertError::Untrusted,
            })
    }
}

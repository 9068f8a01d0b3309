//! The forwarded-certificate path never panics: raw DER, PEM, and Envoy's URL-encoded PEM.
#![no_main]

use alp_authz::identity::cert::PeerCert;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = PeerCert::from_der(CertificateDer::from(data.to_vec())) {
        // An accepted certificate always carries a valid SPIFFE ID.
        let id = cert.spiffe.to_string();
        assert!(alp_authz::identity::spiffe::SpiffeRef::parse(&id).is_ok());
        let _ = cert.check_validity(0);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = PeerCert::from_forwarded(s);
    }
});

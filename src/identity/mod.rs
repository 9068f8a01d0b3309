//! Who the caller is: SPIFFE IDs, forwarded peer certificates, XFCC, and the precedence among
//! them. A leaf module: it imports nothing else of the crate.

pub mod cert;
pub mod resolve;
pub mod spiffe;
pub mod trust_domain;
pub mod xfcc;

/// Identity material that was present but must not be trusted: the request is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The forwarded certificate is unreadable, not an X.509-SVID, out of date or unverified.
    #[error(transparent)]
    Certificate(#[from] cert::CertError),
    /// The principal and the forwarded certificate name different identities.
    #[error("the principal and the forwarded certificate name different identities")]
    PrincipalCertificateMismatch,
    /// The XFCC header cannot be parsed.
    #[error("malformed x-forwarded-client-cert header")]
    XfccMalformed,
    /// The trusted XFCC element names more than one SPIFFE ID.
    #[error("the x-forwarded-client-cert element names more than one SPIFFE ID")]
    XfccAmbiguous,
}

impl Rejection {
    /// Every rejection, for [`Rejection::from_code`] and its tests.
    const ALL: [Rejection; 11] = [
        Rejection::Certificate(cert::CertError::Pem),
        Rejection::Certificate(cert::CertError::Der),
        Rejection::Certificate(cert::CertError::NoUri),
        Rejection::Certificate(cert::CertError::ManyUris),
        Rejection::Certificate(cert::CertError::NotSpiffe),
        Rejection::Certificate(cert::CertError::Expired),
        Rejection::Certificate(cert::CertError::NotYetValid),
        Rejection::Certificate(cert::CertError::Untrusted),
        Rejection::PrincipalCertificateMismatch,
        Rejection::XfccMalformed,
        Rejection::XfccAmbiguous,
    ];

    /// A stable name for the decision log (`certificate-expired`, `xfcc-malformed`, …), read
    /// back by [`Rejection::from_code`].
    pub fn code(self) -> &'static str {
        use cert::CertError as C;
        match self {
            Rejection::Certificate(C::Pem) => "certificate-not-pem",
            Rejection::Certificate(C::Der) => "certificate-not-x509",
            Rejection::Certificate(C::NoUri) => "certificate-no-uri-san",
            Rejection::Certificate(C::ManyUris) => "certificate-many-uri-sans",
            Rejection::Certificate(C::NotSpiffe) => "certificate-not-spiffe",
            Rejection::Certificate(C::Expired) => "certificate-expired",
            Rejection::Certificate(C::NotYetValid) => "certificate-not-yet-valid",
            Rejection::Certificate(C::Untrusted) => "certificate-untrusted",
            Rejection::PrincipalCertificateMismatch => "principal-certificate-mismatch",
            Rejection::XfccMalformed => "xfcc-malformed",
            Rejection::XfccAmbiguous => "xfcc-ambiguous",
        }
    }

    /// The rejection [`Rejection::code`] names.
    pub fn from_code(code: &str) -> Option<Rejection> {
        Rejection::ALL.into_iter().find(|r| r.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::Rejection;

    #[test]
    fn rejection_codes_round_trip_and_are_distinct() {
        for r in Rejection::ALL {
            assert_eq!(Rejection::from_code(r.code()), Some(r), "{}", r.code());
        }
        let mut codes: Vec<_> = Rejection::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Rejection::ALL.len());
        assert_eq!(Rejection::from_code("expired"), None);
    }
}

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

//! Accepted trust domains: `--trust-domain` values and `trustDomain` in test files.

/// One `--trust-domain` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustDomain {
    /// `*`: any trust domain.
    Any,
    /// This trust domain only.
    Named(String),
}

/// The accepted trust domains as the identity configuration takes them: empty accepts any.
pub fn trust_domains(values: &[TrustDomain]) -> Vec<String> {
    if values.contains(&TrustDomain::Any) {
        return Vec::new();
    }
    values
        .iter()
        .filter_map(|t| match t {
            TrustDomain::Named(n) => Some(n.clone()),
            TrustDomain::Any => None,
        })
        .collect()
}

/// A trust domain as `--trust-domain` and test files give it: a bare name, or `*`.
pub fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    if s == "*" {
        return Ok(TrustDomain::Any);
    }
    if let Some(rest) = s.strip_prefix("spiffe://") {
        return Err(format!(
            "`{s}` is a SPIFFE ID, not a trust domain: give the bare name, e.g. `{}`",
            rest.split('/').next().unwrap_or("cluster.local")
        ));
    }
    super::spiffe::check_trust_domain(s)
        .map(|()| TrustDomain::Named(s.to_owned()))
        .map_err(|e| format!("`{s}` is not a trust domain ({e}); `*` accepts any"))
}

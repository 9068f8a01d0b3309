//! SPIFFE ID parsing never panics, and accepted IDs print back to themselves.
#![no_main]

use alp_authz::identity::spiffe::SpiffeRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeRef::parse(s) {
        assert_eq!(id.to_string(), s);
    }
});

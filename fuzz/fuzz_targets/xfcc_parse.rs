//! XFCC header parsing never panics, and what it accepts is self-consistent.
#![no_main]

use alp_authz::identity::xfcc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(elements) = xfcc::parse(s) {
        // Every element came from at least one `key=value` pair, so there are at most as many
        // elements as commas + 1, and the header is never empty.
        assert!(!elements.is_empty());
        assert!(elements.len() <= s.matches(',').count() + 1);
    }
});

//! The selector parser never panics, and whatever it accepts prints to a canonical form that
//! parses back to the same selector and evaluates without panicking.
#![no_main]

use alp_authz::policy::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sel) = Selector::parse(s) {
        let printed = sel.to_string();
        let again = Selector::parse(&printed).expect("canonical form parses");
        assert_eq!(again, sel, "{printed}");
        let labels: &[(&str, &str)] = &[("a", "b"), ("app", "web")];
        let _ = sel.matches(labels);
    }
});

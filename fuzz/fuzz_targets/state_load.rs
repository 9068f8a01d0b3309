//! State files never panic the loader, whatever the bytes; what loads always compiles.
#![no_main]

use alp_authz::{
    policy::snapshot::Snapshot,
    source::file::{Loaded, load_text},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["f.yaml", "f.json"] {
        let mut loaded = Loaded::default();
        if load_text(std::path::Path::new(name), text, &mut loaded).is_ok() {
            let _ = Snapshot::build(&loaded.store, 1);
        }
    }
});

//! Request path readings (SEMANTICS.md §4) never panic, and what they promise holds: every
//! reading is absolute with no trailing `/`; Dikastes' normalization is one of them; a path
//! whose literal reading sits under `/admin` never matches `/products` outright; one reading
//! is borrowed exactly when the path takes the fast path.
#![no_main]

use alp_authz::policy::path::{self, PathMatch, PathOutcome, RequestPath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let r = path::readings(s);
    for reading in r.iter() {
        assert!(reading.starts_with('/'), "{s:?} → {reading:?}");
        assert!(reading == "/" || !reading.ends_with('/'), "{s:?} → {reading:?}");
    }
    if let RequestPath::Many(all) = &r {
        assert!(all.len() >= 2 && all.len() <= 32);
    }
    if r != RequestPath::Undecodable
        && let Some(n) = path::normalize(s)
    {
        assert!(r.iter().any(|x| x == n), "{s:?}: Dikastes reads {n:?}, not among {r:?}");
    }
    let products = [PathMatch::prefix("/products").unwrap_or(PathMatch::Prefix("/products".into()))];
    let admin = format!("/admin/{s}");
    assert_ne!(path::readings(&admin).outcome(&products), PathOutcome::Match, "{admin:?}");
});

//! The default state compiled into the binary: a copy of `policies/`, served when
//! `alp-authz serve` is run with no `--state` and no `./policies` directory.

use std::path::Path;

use super::file::{LoadError, Loaded, load_text};

/// The embedded files: (name, contents).
pub const FILES: &[(&str, &str)] = &[
    (
        "policies/cluster.yaml",
        include_str!("../../policies/cluster.yaml"),
    ),
    (
        "policies/tiers.yaml",
        include_str!("../../policies/tiers.yaml"),
    ),
    (
        "policies/shop.yaml",
        include_str!("../../policies/shop.yaml"),
    ),
];

/// Loads the embedded default state.
pub fn load() -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for (name, text) in FILES {
        load_text(Path::new(name), text, &mut loaded)?;
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_default_loads_cleanly() {
        let loaded = super::load().expect("embedded policies load");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let (tiers, policies, invalid, pods) = loaded.store.counts();
        assert_eq!((tiers, policies, invalid, pods), (1, 3, 0, 5));
    }

    #[test]
    fn embedded_copy_matches_the_policies_directory() {
        for (name, text) in super::FILES {
            let on_disk = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name),
            )
            .expect("policies file");
            assert_eq!(&on_disk, text, "{name}");
        }
    }
}

//! Compiles the descriptor set that gRPC reflection and the proto3-JSON codec need:
//! `envoy/service/auth/v3/external_auth.proto` and its imports, from the `.proto` files that the
//! envoy-types crate ships (but does not export), with protox (a pure-Rust protobuf compiler).
//! The project's own API (`proto/alp_authz.proto`: the Explainer service) is compiled into the
//! same set.

use std::{
    env,
    error::Error,
    path::{Path, PathBuf},
    process::Command,
};

use prost::Message as _;

const ENVOY_TYPES: &str = "envoy-types";
const ROOTS: &[&str] = &["envoy/service/auth/v3/external_auth.proto"];
const INCLUDE_DIRS: &[&str] = &[
    "proto/data-plane-api",
    "proto/xds",
    "proto/googleapis",
    "proto/protoc-gen-validate",
    "proto/cel-spec/proto",
    "proto/opentelemetry-proto",
    "proto/client_model",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    // The package directory of this run, read at run time: `env!` would bake in the directory
    // the build script was compiled in, and cargo reuses a compiled build script when the same
    // sources are built from another directory into the same target directory (as `.ci/run`
    // does), so a stale path would silently drop `proto/` from the descriptor set.
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or("cargo did not set CARGO_MANIFEST_DIR")?,
    );
    let envoy = envoy_types_dir(&manifest_dir)?;
    let mut includes: Vec<PathBuf> = INCLUDE_DIRS
        .iter()
        .map(|d| envoy.join(d))
        .filter(|d| d.is_dir())
        .collect();
    let mut files: Vec<PathBuf> = ROOTS.iter().map(PathBuf::from).collect();

    // The project's own API (`proto/*.proto`): the crate includes its generated code, so it
    // must be there.
    let own = manifest_dir.join("proto");
    let mut own_files: Vec<PathBuf> = std::fs::read_dir(&own)
        .map_err(|e| format!("cannot read {}: {e}", own.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .filter_map(|p| p.file_name().map(PathBuf::from))
        .collect();
    if own_files.is_empty() {
        return Err(format!("no .proto files in {}", own.display()).into());
    }
    own_files.sort();
    includes.insert(0, own);
    files.extend(own_files);

    let fds = protox::compile(&files, &includes).map_err(|e| {
        format!(
            "cannot compile the Envoy protos from {}: {e}",
            envoy.display()
        )
    })?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("envoy_authz_descriptor.bin");
    std::fs::write(&out, fds.encode_to_vec())?;

    // Rust code for the project's own services. Envoy and well-known types come from
    // envoy-types, so a CheckRequest here is the same type the Authorization service uses.
    let own_fds = protox::compile(&files[ROOTS.len()..], &includes)
        .map_err(|e| format!("cannot compile proto/: {e}"))?;
    let mut builder = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    for pkg in ["envoy", "google", "udpa", "validate", "xds"] {
        builder = builder.extern_path(format!(".{pkg}"), format!("::envoy_types::pb::{pkg}"));
    }
    builder.compile_fds(own_fds)?;
    Ok(())
}

/// The envoy-types package directory: from `cargo metadata`, or, failing that (e.g. when the
/// metadata command is not usable), from the registry source directories in `CARGO_HOME`.
fn envoy_types_dir(manifest_dir: &Path) -> Result<PathBuf, Box<dyn Error>> {
    if let Some(dir) = from_cargo_metadata(manifest_dir) {
        return Ok(dir);
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("cannot find CARGO_HOME")?;
    let src = cargo_home.join("registry/src");
    for registry in std::fs::read_dir(&src)?.filter_map(Result::ok) {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(registry.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("envoy-types-0.7."))
            })
            .collect();
        candidates.sort();
        if let Some(dir) = candidates.pop() {
            return Ok(dir);
        }
    }
    Err(format!(
        "cannot find the {ENVOY_TYPES} sources under {}",
        src.display()
    )
    .into())
}

fn from_cargo_metadata(manifest_dir: &Path) -> Option<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = manifest_dir.join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    meta["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == ENVOY_TYPES)
        .and_then(|p| p["manifest_path"].as_str())
        .and_then(|m| Path::new(m).parent().map(Path::to_path_buf))
}

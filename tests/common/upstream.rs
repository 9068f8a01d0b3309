//! Upstream files the tests check against (CRD and OpenAPI schemas), downloaded pinned at test
//! time and never copied into the repository: each comes from a Go module zip, by exact
//! version, verified by its SHA-256, and cached outside the checkout
//! (`$ALP_AUTHZ_CACHE`, else `$XDG_CACHE_HOME/alp-authz`, else `~/.cache/alp-authz`).
//!
//! Downloads use `curl` (no Go needed) from `$GOPROXY` (its first entry, default
//! `https://proxy.golang.org`). Offline, a test that needs them says it skipped, on the
//! terminal (not only in its captured output), unless `ALP_AUTHZ_REQUIRE_UPSTREAM=1` (set by
//! `.ci/run`) makes them mandatory.

use std::{io::Read as _, path::PathBuf, process::Command};

/// One pinned Go module zip.
pub struct Module {
    /// Module path.
    pub path: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// SHA-256 of the zip, hex.
    pub sha256: &'static str,
}

/// Istio's API: `kubernetes/customresourcedefinitions.gen.yaml` (AuthorizationPolicy, …).
pub const ISTIO_API: Module = Module {
    path: "istio.io/api",
    version: "v1.31.4",
    sha256: "c438b1b5f156415528cc44d68c07aa0f2e5a9f38a7add74aba7b0235aac6ccd5",
};

/// kubectl-validate's copy of the kube-apiserver 1.35 OpenAPI v3 documents (NetworkPolicy).
pub const KUBECTL_VALIDATE: Module = Module {
    path: "sigs.k8s.io/kubectl-validate",
    version: "v0.0.5-0.20260105161640-a97ccfaca20b",
    sha256: "d8697ead0298729fac1f0d7e9b6c5c79e58428295e790c8eae885cf3e2940fdd",
};

/// Calico (commit a0db560f0520, 2025-08-13, the one version of the module the proxy serves):
/// `libcalico-go/config/crd/` (the `crd.projectcalico.org/v1` CRDs).
pub const CALICO: Module = Module {
    path: "github.com/projectcalico/calico",
    version: "v1.11.0-cni-plugin.0.20250813170300-a0db560f0520",
    sha256: "29e0964f20a066e9ca12bbe9e4cf34f2732224afb0470d862916b912bb496363",
};

/// Whether `.ci/run` (or the user) made the upstream files mandatory.
pub fn required() -> bool {
    std::env::var_os("ALP_AUTHZ_REQUIRE_UPSTREAM").is_some_and(|v| v == "1")
}

/// Says on the terminal that `test` skipped and why (see [`super::say_skipped`]).
pub fn say_skipped(test: &str, why: &str) {
    super::say_skipped(
        test,
        &format!("{why} (set ALP_AUTHZ_REQUIRE_UPSTREAM=1 to make this an error)"),
    );
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ALP_AUTHZ_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("alp-authz"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/alp-authz"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn proxy() -> String {
    std::env::var("GOPROXY")
        .ok()
        .and_then(|p| {
            p.split([',', '|'])
                .map(str::trim)
                .find(|e| e.starts_with("https://") || e.starts_with("http://"))
                .map(|e| e.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| "https://proxy.golang.org".into())
}

impl Module {
    /// The module zip, from the cache or downloaded, verified; `Err` says why not.
    pub fn zip(&self) -> Result<Vec<u8>, String> {
        let dir = cache_dir().ok_or("no cache directory (HOME is not set)")?;
        let file = dir.join(format!(
            "{}@{}.zip",
            self.path.replace('/', "!"),
            self.version
        ));
        if let Ok(bytes) = std::fs::read(&file)
            && sha256_hex(&bytes) == self.sha256
        {
            return Ok(bytes);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let url = format!("{}/{}/@v/{}.zip", proxy(), self.path, self.version);
        // A unique partial file: tests (and test binaries) run in parallel and may download
        // at once.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let part = dir.join(format!(
            ".{}.{}.{}.part",
            file.file_name().unwrap().to_string_lossy(),
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out = Command::new("curl")
            .args(["-fsSL", "--retry", "2", "--connect-timeout", "10"])
            .args(["--max-time", "300", "-o"])
            .arg(&part)
            .arg(&url)
            .output()
            .map_err(|e| format!("cannot run curl to download {url}: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&part);
            return Err(format!(
                "cannot download {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let bytes = std::fs::read(&part).map_err(|e| format!("{}: {e}", part.display()))?;
        let got = sha256_hex(&bytes);
        if got != self.sha256 {
            let _ = std::fs::remove_file(&part);
            // Never skipped: the pinned bytes changed upstream.
            panic!("{url}: SHA-256 {got}, expected {}", self.sha256);
        }
        std::fs::rename(&part, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(bytes)
    }

    /// The files of the module under `dir` (relative to the module root) whose names end in
    /// `suffix`, as (path relative to the module root, text), sorted by path.
    pub fn files(&self, dir: &str, suffix: &str) -> Result<Vec<(String, String)>, String> {
        let bytes = self.zip()?;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| format!("{}@{}: {e}", self.path, self.version))?;
        let prefix = format!("{}@{}/{dir}", self.path, self.version);
        let mut out = Vec::new();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
            let name = entry.name().map_err(|e| e.to_string())?.into_owned();
            if let Some(rel) = name.strip_prefix(&prefix)
                && name.ends_with(suffix)
                && !rel.contains('/')
            {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| format!("{name}: {e}"))?;
                out.push((format!("{dir}{rel}"), text));
            }
        }
        out.sort();
        Ok(out)
    }

    /// `module@version/path`, for messages.
    pub fn source(&self, path: &str) -> String {
        format!("{}@{}/{path}", self.path, self.version)
    }
}

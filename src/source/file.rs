//! File mode: state from local YAML/JSON files and directories, through the same decode and
//! compile path as the Kubernetes source.
//!
//! A path is a file or a directory (its `*.yaml`, `*.yml` and `*.json` files, not recursive,
//! hidden files skipped, sorted by name). Files hold one or more YAML documents, or one JSON
//! document; a document may be a `kind: List` as `kubectl get -o yaml` prints it.
//!
//! A file that cannot be read or parsed, or a document that is not a Kubernetes object, makes
//! the whole load fail with file, document and line, so a reloading server keeps its last good
//! state. An object that parses but is invalid (a bad selector, an unknown action) is loaded as
//! invalid and fails closed; it is reported as a warning.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Deserialize;

use crate::policy::{
    model::TypeMeta,
    store::{DecodeError, DecodeFn, FromValue, Kind, Object, Store, decode_document},
};

/// What a successful load produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every object found.
    pub store: Store,
    /// Problems that did not stop the load (invalid policies, skipped objects).
    pub warnings: Vec<String>,
    /// The files that were read.
    pub files: Vec<PathBuf>,
}

/// A load that failed: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file (or the path given on the command line).
    pub file: PathBuf,
    /// 1-based document number in the file, when the problem is inside one.
    pub document: Option<usize>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Loads every file under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for file in expand(paths)? {
        let text = std::fs::read(&file).map_err(|e| LoadError {
            file: file.clone(),
            document: None,
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|e| LoadError {
            file: file.clone(),
            document: None,
            line: None,
            message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        load_text(&file, &text, &mut loaded)?;
        loaded.files.push(file);
    }
    for ns in loaded.store.namespaces_without_object() {
        loaded.warnings.push(format!(
            "pods in namespace `{ns}` but no Namespace object: namespace selectors see no labels for it"
        ));
    }
    Ok(loaded)
}

/// Loads the documents of one file's text (also used for embedded defaults and tests).
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded) -> Result<(), LoadError> {
    let is_json = file.extension().is_some_and(|e| e == "json");
    if is_json {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError {
            file: file.to_owned(),
            document: None,
            line: Some(e.line()),
            message: e.to_string(),
        })?;
        let at = Place {
            file,
            document: 1,
            line: None,
        };
        return load_value(value, &at, loaded);
    }
    let starts = document_start_lines(text);
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = yaml_serde::Value::deserialize(doc).map_err(|e| LoadError {
            file: file.to_owned(),
            document: Some(i + 1),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        let at = Place {
            file,
            document: i + 1,
            line: starts.get(i).copied(),
        };
        load_value(value, &at, loaded)?;
    }
    Ok(())
}

/// The 1-based line where each YAML document starts (after a `---` line, or its first line).
fn document_start_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let separator = line == "---" || line.starts_with("--- ");
        if separator {
            starts.push(n + 2);
            first = false;
        } else if first && !line.trim().is_empty() && !line.starts_with(['#', '%']) {
            starts.push(n + 1);
            first = false;
        }
    }
    starts
}

struct Place<'a> {
    file: &'a Path,
    document: usize,
    line: Option<usize>,
}

impl Place<'_> {
    fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            document: Some(self.document),
            line: self.line,
            message: message.into(),
        }
    }

    fn describe(&self) -> String {
        match self.line {
            Some(l) => format!("{}:{l}: document {}", self.file.display(), self.document),
            None => format!("{}: document {}", self.file.display(), self.document),
        }
    }
}

#[derive(Deserialize)]
struct ListItems<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

/// A parsed document (YAML or JSON value).
trait Doc: Clone + for<'de> serde::Deserializer<'de> + for<'de> Deserialize<'de> {
    fn is_null(&self) -> bool;
}

impl Doc for yaml_serde::Value {
    fn is_null(&self) -> bool {
        yaml_serde::Value::is_null(self)
    }
}

impl Doc for serde_json::Value {
    fn is_null(&self) -> bool {
        serde_json::Value::is_null(self)
    }
}

fn load_value<D>(doc: D, at: &Place<'_>, loaded: &mut Loaded) -> Result<(), LoadError>
where
    D: Doc,
    for<'de> <D as serde::Deserializer<'de>>::Error: fmt::Display,
{
    if doc.is_null() {
        return Ok(()); // an empty document (e.g. a trailing `---`)
    }
    let tm: TypeMeta = FromValue(doc.clone())
        .decode()
        .map_err(|e| at.error(format!("not a Kubernetes object: {e}")))?;
    if Kind::of(&tm).map_err(|e| at.error(e.to_string()))? == Kind::List {
        let items = FromValue(doc)
            .decode::<ListItems<D>>()
            .map_err(|e| at.error(e))?;
        for (i, item) in items.items.into_iter().enumerate() {
            load_object(item, at, Some(i), loaded)?;
        }
        return Ok(());
    }
    load_object(doc, at, None, loaded)
}

fn load_object<D>(
    doc: D,
    at: &Place<'_>,
    item: Option<usize>,
    loaded: &mut Loaded,
) -> Result<(), LoadError>
where
    D: Doc,
    for<'de> <D as serde::Deserializer<'de>>::Error: fmt::Display,
{
    let where_ = || match item {
        Some(i) => format!("{}, items[{i}]", at.describe()),
        None => at.describe(),
    };
    let in_item = |e: String| match item {
        Some(i) => at.error(format!("items[{i}]: {e}")),
        None => at.error(e),
    };
    if doc.is_null() {
        return Err(in_item("empty list item".into()));
    }
    let tm: Option<TypeMeta> = FromValue(doc.clone()).decode().ok();
    match decode_document(doc) {
        Ok(None) => {
            let (api, kind) = tm.map(|t| (t.api_version, t.kind)).unwrap_or_default();
            loaded.warnings.push(format!(
                "{}: skipping {api} {kind} (not a kind alp-authz reads)",
                where_()
            ));
            Ok(())
        }
        Ok(Some((_, obj))) => {
            if let Object::Policy(p) = &obj
                && let Err(e) = &p.compiled
            {
                loaded.warnings.push(format!(
                    "{}: {} {} is invalid and fails closed: {}",
                    where_(),
                    p.id.kind.as_str(),
                    p.id,
                    e.error
                ));
            }
            if let Object::Tier { name, tier: Err(e) } = &obj {
                loaded.warnings.push(format!(
                    "{}: tier {name} is invalid and its policies fail closed: {e}",
                    where_()
                ));
            }
            if let Some(replaced) = loaded.store.apply(obj) {
                loaded.warnings.push(format!(
                    "{}: {replaced} was already defined; this definition replaces it",
                    where_()
                ));
            }
            Ok(())
        }
        Err(e @ DecodeError::Invalid { .. }) => {
            loaded.warnings.push(format!("{}: skipped: {e}", where_()));
            Ok(())
        }
        Err(e) => Err(in_item(e.to_string())),
    }
}

/// Expands directories into their policy files, in a stable order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| LoadError {
            file: p.clone(),
            document: None,
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| LoadError {
            file: p.clone(),
            document: None,
            line: None,
            message: format!("cannot list directory: {e}"),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                    && f.is_file()
            })
            .collect();
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// A cheap summary of the files under `paths`: names, sizes and modification times. A change
/// in it triggers a reload. Symlinks are followed, so a Kubernetes ConfigMap's atomic `..data`
/// swap is seen.
pub fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let files = expand(paths).unwrap_or_default();
    let mut out: Vec<_> = files
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok();
            let len = m.as_ref().map_or(0, |m| m.len());
            let modified = m.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect();
    // A path that disappears (or reappears) changes the fingerprint too.
    for p in paths {
        if !p.exists() {
            out.push((p.clone(), u64::MAX, None));
        }
    }
    out
}

/// Polls `paths` every `interval` and calls `on_change` with a fresh load whenever the files
/// change. Polling (rather than inotify) survives ConfigMap symlink swaps, editors that replace
/// files, and network filesystems, at the cost of up to one interval of delay.
pub async fn watch<F>(paths: Vec<PathBuf>, interval: Duration, mut on_change: F)
where
    F: FnMut(Result<Loaded, LoadError>) + Send,
{
    let mut last = fingerprint(&paths);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = paths.clone();
        let now = match tokio::task::spawn_blocking(move || fingerprint(&p)).await {
            Ok(f) => f,
            Err(_) => continue,
        };
        if now == last {
            continue;
        }
        last = now;
        let p = paths.clone();
        if let Ok(result) = tokio::task::spawn_blocking(move || load(&p)).await {
            on_change(result);
        }
    }
}

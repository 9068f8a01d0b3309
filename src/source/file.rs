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
    store::{DecodeError, Kind, Object, Store, decode_document},
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
        let mut de = serde_json::Deserializer::from_str(text);
        let doc = Streamed::<serde_json::Value>::deserialize(&mut de)
            .and_then(|d| de.end().map(|()| d))
            .map_err(|e| LoadError {
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
        return load_streamed(doc, &at, loaded);
    }
    let starts = document_start_lines(text);
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let doc = Streamed::<yaml_serde::Value>::deserialize(doc).map_err(|e| LoadError {
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
        load_streamed(doc, &at, loaded)?;
    }
    Ok(())
}

/// A document as it is read: a top-level `items` sequence is decoded item by item while the
/// text is parsed, so a 100,000-object List never exists as one value tree. The other
/// top-level fields are kept as they are.
enum Streamed<D> {
    /// Not a mapping (or empty).
    Other(D),
    /// A mapping: its fields other than `items`, and each item already decoded.
    Mapping {
        fields: Vec<(D, D)>,
        items: Option<Result<Vec<Item>, &'static str>>,
    },
}

/// One List item, decoded on its own.
enum Item {
    Null,
    NotMapping,
    Skipped { api_version: String, kind: String },
    Decoded(Box<Object>),
    Failed(DecodeError),
}

impl Item {
    fn decode<D>(doc: D) -> Item
    where
        D: Doc,
        for<'de> <D as serde::Deserializer<'de>>::Error: fmt::Display,
    {
        if doc.is_null() {
            return Item::Null;
        }
        let Some(tm) = doc.type_meta() else {
            return Item::NotMapping;
        };
        match decode_document(doc) {
            Ok(None) => Item::Skipped {
                api_version: tm.api_version,
                kind: tm.kind,
            },
            Ok(Some((_, obj))) => Item::Decoded(Box::new(obj)),
            Err(e) => Item::Failed(e),
        }
    }
}

impl<'de, D> Deserialize<'de> for Streamed<D>
where
    D: Doc,
    for<'a> <D as serde::Deserializer<'a>>::Error: fmt::Display,
{
    fn deserialize<De: serde::Deserializer<'de>>(de: De) -> Result<Self, De::Error> {
        de.deserialize_any(StreamVisitor(std::marker::PhantomData))
    }
}

struct StreamVisitor<D>(std::marker::PhantomData<D>);

impl<'de, D> serde::de::Visitor<'de> for StreamVisitor<D>
where
    D: Doc,
    for<'a> <D as serde::Deserializer<'a>>::Error: fmt::Display,
{
    type Value = Streamed<D>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        let mut items = None;
        while let Some(key) = map.next_key::<D>()? {
            let seen = fields.iter().any(|(k, _)| *k == key)
                || (items.is_some() && key.as_str() == Some("items"));
            if seen {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key `{}`",
                    key.as_str().unwrap_or("?")
                )));
            }
            if key.as_str() == Some("items") {
                items = Some(map.next_value_seed(ItemsSeed::<D>(std::marker::PhantomData))?);
            } else {
                fields.push((key, map.next_value::<D>()?));
            }
        }
        Ok(Streamed::Mapping { fields, items })
    }

    // Anything else is kept whole, to be reported as not a Kubernetes object.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        D::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Streamed::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::UnitDeserializer::new()).map(Streamed::Other)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::BoolDeserializer::new(v)).map(Streamed::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::I64Deserializer::new(v)).map(Streamed::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::U64Deserializer::new(v)).map(Streamed::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::F64Deserializer::new(v)).map(Streamed::Other)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        D::deserialize(serde::de::value::StrDeserializer::new(v)).map(Streamed::Other)
    }
}

struct ItemsSeed<D>(std::marker::PhantomData<D>);

impl<'de, D> serde::de::DeserializeSeed<'de> for ItemsSeed<D>
where
    D: Doc,
    for<'a> <D as serde::Deserializer<'a>>::Error: fmt::Display,
{
    type Value = Result<Vec<Item>, &'static str>;

    fn deserialize<De: serde::Deserializer<'de>>(self, de: De) -> Result<Self::Value, De::Error> {
        de.deserialize_any(ItemsVisitor::<D>(std::marker::PhantomData))
    }
}

struct ItemsVisitor<D>(std::marker::PhantomData<D>);

impl<'de, D> serde::de::Visitor<'de> for ItemsVisitor<D>
where
    D: Doc,
    for<'a> <D as serde::Deserializer<'a>>::Error: fmt::Display,
{
    type Value = Result<Vec<Item>, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(doc) = seq.next_element::<D>()? {
            items.push(Item::decode(doc));
        }
        Ok(Ok(items))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Vec::new()))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Vec::new()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Err("items: not a sequence"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("items: not a sequence"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("items: not a sequence"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("items: not a sequence"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("items: not a sequence"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("items: not a sequence"))
    }
}

/// Loads a streamed document: a List's items as decoded, anything else whole.
fn load_streamed<D>(doc: Streamed<D>, at: &Place<'_>, loaded: &mut Loaded) -> Result<(), LoadError>
where
    D: Doc,
    for<'de> <D as serde::Deserializer<'de>>::Error: fmt::Display,
{
    let (fields, items) = match doc {
        Streamed::Other(d) => return load_value(d, at, loaded),
        Streamed::Mapping { fields, items } => (fields, items),
    };
    let doc = D::from_fields(fields);
    if doc
        .type_meta()
        .is_some_and(|tm| Kind::of(&tm) == Ok(Kind::List))
    {
        let items = items.unwrap_or(Ok(Vec::new())).map_err(|e| at.error(e))?;
        for (i, item) in items.into_iter().enumerate() {
            record(item, at, Some(i), loaded)?;
        }
        return Ok(());
    }
    // Not a List: its top-level `items`, if any, is not a field of any kind alp-authz reads.
    load_value(doc, at, loaded)
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

/// A parsed document (YAML or JSON value). A List's items never reach one: [`Streamed`] decodes
/// them while the text is parsed.
trait Doc: Clone + PartialEq + for<'de> serde::Deserializer<'de> + for<'de> Deserialize<'de> {
    fn is_null(&self) -> bool;
    /// `apiVersion` and `kind`, or `None` when the document is not a mapping.
    fn type_meta(&self) -> Option<TypeMeta>;
    /// The string, for a string value.
    fn as_str(&self) -> Option<&str>;
    /// A mapping of these fields.
    fn from_fields(fields: Vec<(Self, Self)>) -> Self;
}

impl Doc for yaml_serde::Value {
    fn is_null(&self) -> bool {
        yaml_serde::Value::is_null(self)
    }

    fn type_meta(&self) -> Option<TypeMeta> {
        let field = |k: &str| {
            self.get(k)
                .and_then(yaml_serde::Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        self.is_mapping().then(|| TypeMeta {
            api_version: field("apiVersion"),
            kind: field("kind"),
        })
    }

    fn as_str(&self) -> Option<&str> {
        yaml_serde::Value::as_str(self)
    }

    fn from_fields(fields: Vec<(Self, Self)>) -> Self {
        yaml_serde::Value::Mapping(fields.into_iter().collect())
    }
}

impl Doc for serde_json::Value {
    fn is_null(&self) -> bool {
        serde_json::Value::is_null(self)
    }

    fn type_meta(&self) -> Option<TypeMeta> {
        let field = |k: &str| {
            self.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        self.is_object().then(|| TypeMeta {
            api_version: field("apiVersion"),
            kind: field("kind"),
        })
    }

    fn as_str(&self) -> Option<&str> {
        serde_json::Value::as_str(self)
    }

    fn from_fields(fields: Vec<(Self, Self)>) -> Self {
        serde_json::Value::Object(
            fields
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
                .collect(),
        )
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
    let tm = doc
        .type_meta()
        .ok_or_else(|| at.error("not a Kubernetes object: the document is not a mapping"))?;
    // Never a List: `load_streamed` has taken those apart.
    Kind::of(&tm).map_err(|e| at.error(e.to_string()))?;
    record(Item::decode(doc), at, None, loaded)
}

/// Adds a decoded object to the store, or reports why it could not be.
fn record(
    decoded: Item,
    at: &Place<'_>,
    item: Option<usize>,
    loaded: &mut Loaded,
) -> Result<(), LoadError> {
    let where_ = || match item {
        Some(i) => format!("{}, items[{i}]", at.describe()),
        None => at.describe(),
    };
    let in_item = |e: String| match item {
        Some(i) => at.error(format!("items[{i}]: {e}")),
        None => at.error(e),
    };
    match decoded {
        Item::Null => Err(in_item("empty list item".into())),
        Item::NotMapping => Err(in_item("not a Kubernetes object: not a mapping".into())),
        Item::Skipped { api_version, kind } => {
            loaded.warnings.push(format!(
                "{}: skipping {api_version} {kind} (not a kind alp-authz reads)",
                where_()
            ));
            Ok(())
        }
        Item::Decoded(obj) => {
            if let Object::Policy(p) = &*obj
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
            if let Object::Tier { name, tier: Err(e) } = &*obj {
                loaded.warnings.push(format!(
                    "{}: tier {name} is invalid and its policies fail closed: {e}",
                    where_()
                ));
            }
            if let Some(replaced) = loaded.store.apply(*obj) {
                loaded.warnings.push(format!(
                    "{}: {replaced} was already defined; this definition replaces it",
                    where_()
                ));
            }
            Ok(())
        }
        Item::Failed(e @ DecodeError::Invalid { .. }) => {
            loaded.warnings.push(format!("{}: skipped: {e}", where_()));
            Ok(())
        }
        Item::Failed(e) => Err(in_item(e.to_string())),
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
/// files, and network filesystems, at the cost of up to two intervals of delay (see
/// [`Settle`]).
pub async fn watch<F>(paths: Vec<PathBuf>, interval: Duration, mut on_change: F)
where
    F: FnMut(Result<Loaded, LoadError>) + Send + 'static,
{
    let p = paths.clone();
    watch_paths(paths, interval, move || on_change(load(&p))).await;
}

/// Polls `paths` every `interval` and calls `on_change` (on a blocking thread) whenever their
/// [`fingerprint`] changes and then holds still for one interval.
pub async fn watch_paths<F>(paths: Vec<PathBuf>, interval: Duration, on_change: F)
where
    F: FnMut() + Send + 'static,
{
    let on_change = std::sync::Arc::new(std::sync::Mutex::new(on_change));
    let mut settle = Settle::new(fingerprint(&paths));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = paths.clone();
        let now = match tokio::task::spawn_blocking(move || fingerprint(&p)).await {
            Ok(f) => f,
            Err(_) => continue,
        };
        if !settle.observe(now) {
            continue;
        }
        let f = on_change.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f();
        })
        .await;
    }
}

/// When to reload: the files changed, and have stayed as they are since the previous poll.
///
/// A file written in place (truncated, then written, as `cp`, a shell redirection or some
/// editors do) can be polled between the two, when it is empty or half written. Read then, an
/// empty file is a valid, empty state: every request allowed until the next poll. Waiting one
/// interval for the fingerprint to hold still closes that window for any write shorter than
/// the interval; a rename into place (what a ConfigMap update does) is atomic anyway.
#[derive(Debug)]
pub struct Settle<F> {
    /// What was last loaded.
    loaded: F,
    /// A change seen at the previous poll, not loaded yet.
    pending: Option<F>,
}

impl<F: PartialEq> Settle<F> {
    /// Starts from what is loaded now.
    pub fn new(loaded: F) -> Self {
        Settle {
            loaded,
            pending: None,
        }
    }

    /// Takes one poll's fingerprint; returns whether to reload now.
    pub fn observe(&mut self, now: F) -> bool {
        if now == self.loaded {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return false;
        }
        self.pending = None;
        self.loaded = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{compile::PolicyId, model::PolicyKind, snapshot::Snapshot};

    fn load_str(name: &str, text: &str) -> Result<Loaded, LoadError> {
        let mut loaded = Loaded::default();
        load_text(Path::new(name), text, &mut loaded).map(|()| loaded)
    }

    fn policy_names(loaded: &Loaded) -> Vec<String> {
        loaded
            .store
            .policies
            .keys()
            .map(PolicyId::to_string)
            .collect()
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nstatus: {podIP: 10.0.0.1}\n";

    #[test]
    fn multi_document_yaml_with_comments_and_empty_documents() {
        let text = format!(
            "# leading comment\n---\n{POD}---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: default}}\n---\n"
        );
        let loaded = load_str("a.yaml", &text).unwrap();
        assert_eq!(loaded.store.pods.len(), 1);
        assert_eq!(loaded.store.namespaces.len(), 1);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn kind_list_as_kubectl_prints_it() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n";
        let loaded = load_str("list.yaml", text).unwrap();
        assert_eq!(loaded.store.namespaces.len(), 2);
    }

    #[test]
    fn json_files() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "g"}, "spec": {"ingress": [{"action": "Allow"}]}}]}"#;
        let loaded = load_str("s.json", text).unwrap();
        assert_eq!(policy_names(&loaded), ["g"]);
        let e = load_str("s.json", "{\n  \"kind\": ").unwrap_err();
        assert_eq!((e.line, e.document), (Some(2), None));
        assert!(e.to_string().starts_with("s.json:2: "), "{e}");
    }

    #[test]
    fn calico_storage_form_names() {
        let text = r#"
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkPolicy
metadata: {name: default.allow-web}
spec: {ingress: [{action: Allow}]}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata:
  name: security.block
  namespace: shop
  annotations:
    projectcalico.org/metadata: '{"name":"block","labels":{"a":"b"}}'
spec: {tier: security, ingress: [{action: Deny}]}
---
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkPolicy
metadata: {name: security.deny-x}
spec: {tier: security, ingress: [{action: Deny}]}
"#;
        let loaded = load_str("crd.yaml", text).unwrap();
        assert_eq!(
            policy_names(&loaded),
            ["allow-web", "security.deny-x", "shop/block"]
        );
    }

    #[test]
    fn yaml_syntax_error_names_file_document_and_line() {
        let text = format!("{POD}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: [x\n");
        let e = load_str("bad.yaml", &text).unwrap_err();
        assert_eq!(e.document, Some(2));
        assert!(e.line.is_some_and(|l| l >= 6), "{e}");
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }

    #[test]
    fn documents_that_are_not_objects() {
        let e = load_str("x.yaml", "just a string\n").unwrap_err();
        assert_eq!(e.document, Some(1));
        assert!(e.message.starts_with("not a Kubernetes object"), "{e}");
        let e = load_str("x.yaml", "metadata: {name: x}\n").unwrap_err();
        assert_eq!(e.message, "document has no `apiVersion` and `kind`");
        let e = load_str("x.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n").unwrap_err();
        assert_eq!(e.message, "Pod has no `metadata.name`");
        let e = load_str("x.yaml", "apiVersion: v1\nkind: List\nitems: [1]\n").unwrap_err();
        assert_eq!(
            e.message,
            "items[0]: not a Kubernetes object: not a mapping"
        );
        let e = load_str("x.yaml", "apiVersion: v1\nkind: List\nitems: 3\n").unwrap_err();
        assert_eq!(e.message, "items: not a sequence");
    }

    #[test]
    fn list_items_are_read_in_any_key_order_and_duplicates_are_errors() {
        // serde_json and kubectl both print `items` before `kind`.
        let text = r#"{"apiVersion": "v1", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}, null], "kind": "List"}"#;
        let e = load_str("s.json", text).unwrap_err();
        assert_eq!(e.message, "items[1]: empty list item");
        let text = r#"{"apiVersion": "v1", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}], "kind": "List"}"#;
        assert_eq!(load_str("s.json", text).unwrap().store.namespaces.len(), 1);
        // A document that is not a List keeps its top-level `items` out of the way.
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nitems: [1, 2]\n";
        assert_eq!(load_str("n.yaml", text).unwrap().store.namespaces.len(), 1);
        // Two `spec`s would leave one silently unread: refused.
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: [{action: Deny}]}\nspec: {ingress: [{action: Allow}]}\n";
        let e = load_str("d.yaml", text).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [], "items": []}"#;
        let e = load_str("d.json", text).unwrap_err();
        assert!(e.message.contains("duplicate key `items`"), "{e}");
        // Trailing garbage after a JSON document.
        assert!(load_str("t.json", r#"{"apiVersion": "v1", "kind": "List"} x"#).is_err());
    }

    #[test]
    fn invalid_policies_load_and_fail_closed() {
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress:\n  - action: Allow\n    source: {serviceAcounts: {names: [x]}}\n";
        let loaded = load_str("p.yaml", text).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        let w = &loaded.warnings[0];
        assert!(w.starts_with("p.yaml:1: document 1: GlobalNetworkPolicy g is invalid and fails closed: spec.ingress[0].source.serviceAcounts: unknown field `serviceAcounts`, expected one of"), "{w}");
        let snap = Snapshot::build(&loaded.store, 1);
        assert_eq!(snap.invalid.len(), 1);
        assert!(snap.policies.is_empty());
    }

    #[test]
    fn wrong_types_make_a_policy_invalid() {
        let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n, namespace: ns}\nspec: {order: high}\n";
        let loaded = load_str("p.yaml", text).unwrap();
        let entry = &loaded.store.policies[&PolicyId {
            kind: PolicyKind::NetworkPolicy,
            namespace: Some("ns".into()),
            name: "n".into(),
        }];
        let err = entry.as_ref().unwrap_err();
        assert!(
            err.error.starts_with("spec.order: invalid type"),
            "{}",
            err.error
        );
        // Its (absent) selector is still readable: it fails closed over its namespace.
        let scope = err.scope.as_ref().expect("a readable scope");
        assert_eq!(scope.namespace.as_deref(), Some("ns"));
        assert!(scope.selector.is_all());
    }

    #[test]
    fn unknown_kinds_and_bad_pods_are_skipped_with_warnings() {
        let text = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: bad, namespace: default}}\nstatus: {{podIP: 10.0.0.300}}\n---\n{POD}"
        );
        let loaded = load_str("m.yaml", &text).unwrap();
        assert_eq!(loaded.store.pods.len(), 1);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("skipping apps/v1 Deployment"));
        assert!(
            loaded.warnings[1]
                .contains("skipped: invalid Pod `bad`: `10.0.0.300` is not an IP address"),
            "{}",
            loaded.warnings[1]
        );
    }

    #[test]
    fn endpoint_slices() {
        let text = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
endpoints: [{addresses: ["fd00::1", "::ffff:10.0.0.1"]}]
ports: [{port: 80}, {port: 53, protocol: UDP}, {protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext, namespace: shop, labels: {kubernetes.io/service-name: ext}}
addressType: FQDN
endpoints: [{addresses: [example.com]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: bad, namespace: shop}
addressType: IPv4
endpoints: [{addresses: [10.0.0.300]}]
"#;
        let loaded = load_str("s.yaml", text).unwrap();
        let web = &loaded.store.endpoint_slices[&("shop".to_owned(), "web-1".to_owned())];
        assert_eq!(web.service.as_deref(), Some("web"));
        assert_eq!(
            web.ips,
            [
                "fd00::1".parse::<std::net::IpAddr>().unwrap(),
                "10.0.0.1".parse().unwrap()
            ]
        );
        assert_eq!(web.ports, [(Some(80), 6), (Some(53), 17), (None, 6)]);
        assert!(
            loaded.store.endpoint_slices[&("shop".to_owned(), "ext".to_owned())]
                .ips
                .is_empty()
        );
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("invalid EndpointSlice `bad`"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn duplicates_are_reported() {
        let loaded = load_str("d.yaml", &format!("{POD}---\n{POD}")).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].contains("Pod default/p was already defined"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn directories_files_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), POD).unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.yaml"), "not: [valid").unwrap();
        let loaded = load(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = loaded
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        std::fs::write(dir.path().join("c.yaml"), b"kind: \xff\n").unwrap();
        let e = load(&[dir.path().to_owned()]).unwrap_err();
        assert_eq!(e.message, "not UTF-8 (byte 6)");
        let e = load(&[dir.path().join("missing.yaml")]).unwrap_err();
        assert!(e.message.starts_with("cannot read:"), "{e}");
    }

    #[test]
    fn pods_in_namespaces_without_objects_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), POD).unwrap();
        let loaded = load(&[dir.path().to_owned()]).unwrap();
        assert_eq!(
            loaded.warnings,
            [
                "pods in namespace `default` but no Namespace object: namespace selectors see no labels for it"
            ]
        );
    }

    #[test]
    fn a_change_is_loaded_once_it_holds_still() {
        let mut s = Settle::new("v1");
        assert!(!s.observe("v1"), "nothing changed");
        // Written in place: truncated at one poll, complete at the next, then still.
        assert!(!s.observe("empty"));
        assert!(!s.observe("v2"));
        assert!(s.observe("v2"), "v2 held still for a poll");
        assert!(!s.observe("v2"), "loaded once");
        // Changed and changed back before it held still: nothing to load.
        assert!(!s.observe("v3"));
        assert!(!s.observe("v2"));
        assert!(!s.observe("v2"));
        assert!(!s.observe("v3"));
        assert!(s.observe("v3"));
    }

    #[test]
    fn fingerprint_changes_with_content_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, POD).unwrap();
        let paths = vec![dir.path().to_owned()];
        let a = fingerprint(&paths);
        std::fs::write(&f, format!("{POD}\n")).unwrap();
        assert_ne!(fingerprint(&paths), a);
        let b = fingerprint(std::slice::from_ref(&f));
        std::fs::remove_file(&f).unwrap();
        assert_ne!(fingerprint(&[f]), b);
    }
}

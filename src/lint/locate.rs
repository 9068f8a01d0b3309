//! The location pass of `alp-authz lint`: where each object of the state files came from (file,
//! document, `items[i]` of a List) and the line of each of its fields.
//!
//! The server's loader (`source::file`) is not changed and keeps no locations (it costs nothing
//! there); lint reads the files a second time. Values come from the same YAML and JSON parsers
//! as the loader, and objects are decoded with the same `store::decode_document`, so a policy
//! here is the policy the server compiled. Lines come from a separate event parse
//! (`granit-parser`, which keeps a position for every node): each field path
//! (`spec.ingress[1].http.paths[0]`, as compile errors name fields) maps to the line of its key
//! or sequence entry. When the two parsers disagree on the documents of a file, only the
//! documents' first lines are kept.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use granit_parser::{Event, Parser};

use crate::{
    policy::{
        model::TypeMeta,
        store::{Kind, Object, decode_document},
    },
    source::file::LoadError,
};

/// The line of each field path of one document (`""` is the document itself).
#[derive(Debug, Clone, Default)]
pub struct LineMap(HashMap<String, usize>);

impl LineMap {
    /// The line of `field` (under `prefix`, e.g. `items[3]`), or of the closest enclosing field
    /// that has one.
    pub fn line_of(&self, prefix: &str, field: &str) -> Option<usize> {
        let mut path = join(prefix, field);
        loop {
            if let Some(l) = self.0.get(&path) {
                return Some(*l);
            }
            if path.is_empty() {
                return None;
            }
            let cut = path.rfind(['.', '[']).unwrap_or(0);
            path.truncate(cut);
        }
    }
}

fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (_, true) => prefix.to_owned(),
        _ if field.starts_with('[') => format!("{prefix}{field}"),
        _ => format!("{prefix}.{field}"),
    }
}

/// One object read from a state file.
#[derive(Debug, Clone)]
pub struct Located {
    /// The file (`None`: read from the Kubernetes API).
    pub file: Option<PathBuf>,
    /// 1-based document number (0 for an object from the API).
    pub document: usize,
    /// The List item, for an object inside a `kind: List`.
    pub item: Option<usize>,
    /// Field lines of its document.
    pub lines: std::sync::Arc<LineMap>,
    /// Its text as a JSON value.
    pub raw: serde_json::Value,
    /// `apiVersion` and `kind`.
    pub type_meta: TypeMeta,
    /// What the server decodes it to.
    pub object: Object,
}

impl Located {
    /// The path prefix of this object in its document (`items[3]`, or nothing).
    pub fn prefix(&self) -> String {
        self.item.map(|i| format!("items[{i}]")).unwrap_or_default()
    }

    /// The line of one of its fields (`""`: the object itself).
    pub fn line_of(&self, field: &str) -> Option<usize> {
        self.lines.line_of(&self.prefix(), field)
    }
}

/// Reads every file again and returns its objects of the kinds alp-authz reads, in order.
/// The files are those the loader read, so they parse; an error here means a file changed
/// between the two reads.
pub fn read(files: &[PathBuf]) -> Result<Vec<Located>, LoadError> {
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| LoadError {
            file: file.clone(),
            document: None,
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        read_text(file, &text, &mut out)?;
    }
    Ok(out)
}

/// The objects of one file's text.
pub fn read_text(file: &Path, text: &str, out: &mut Vec<Located>) -> Result<(), LoadError> {
    let error = |document: Option<usize>, message: String| LoadError {
        file: file.to_owned(),
        document,
        line: None,
        message,
    };
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let values: Vec<serde_json::Value> = if is_json {
        vec![serde_json::from_str(text).map_err(|e| error(None, e.to_string()))?]
    } else {
        let mut values = Vec::new();
        for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
            use serde::Deserialize as _;
            let v = yaml_serde::Value::deserialize(doc)
                .map_err(|e| error(Some(i + 1), e.to_string()))?;
            values.push(serde_json::to_value(v).map_err(|e| error(Some(i + 1), e.to_string()))?);
        }
        values
    };
    let mut maps = line_maps(text).filter(|m| m.len() == values.len());
    for (i, value) in values.into_iter().enumerate() {
        let lines = std::sync::Arc::new(
            maps.as_mut()
                .and_then(|m| m.get_mut(i))
                .map(std::mem::take)
                .unwrap_or_default(),
        );
        let at = |item: Option<usize>, raw: serde_json::Value| -> Option<Located> {
            let (type_meta, object) = decode_document(raw.clone()).ok()??;
            Some(Located {
                file: Some(file.to_owned()),
                document: i + 1,
                item,
                lines: lines.clone(),
                raw,
                type_meta,
                object,
            })
        };
        let is_list = serde_json::from_value::<TypeMeta>(value.clone())
            .ok()
            .is_some_and(|tm| Kind::of(&tm) == Ok(Kind::List));
        if is_list {
            let items = value
                .get("items")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (n, item) in items.into_iter().enumerate() {
                out.extend(at(Some(n), item));
            }
        } else if !value.is_null() {
            out.extend(at(None, value));
        }
    }
    Ok(())
}

/// Where a node being read sits.
enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

/// The line map of each document of `text`; `None` when the event parser fails.
fn line_maps(text: &str) -> Option<Vec<LineMap>> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut current = LineMap::default();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.ok()?;
        let line = span.start.line();
        match event {
            Event::DocumentStart(..) => {
                current = LineMap::default();
                stack.clear();
            }
            Event::DocumentEnd => docs.push(std::mem::take(&mut current)),
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = stack.last_mut()
                {
                    *key = Some(value.into_owned());
                    if let Some(path) = child_path(&stack) {
                        current.0.entry(path).or_insert(line);
                    }
                } else {
                    if let Some(path) = child_path(&stack) {
                        current.0.entry(path).or_insert(line);
                    }
                    done(&mut stack);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = child_path(&stack) {
                    current.0.entry(path).or_insert(line);
                }
                done(&mut stack);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                // A collection as a mapping key: give it a key nothing looks up.
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = stack.last_mut()
                {
                    *key = Some("?".into());
                }
                let path = child_path(&stack).unwrap_or_default();
                current.0.entry(path.clone()).or_insert(line);
                stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                done(&mut stack);
            }
            _ => {}
        }
    }
    Some(docs)
}

/// The path of the node about to be read (the value under the current key, or the next
/// sequence entry); `""` for a document's root.
fn child_path(stack: &[Frame]) -> Option<String> {
    match stack.last() {
        None => Some(String::new()),
        Some(Frame::Map { path, key }) => Some(join(path, key.as_deref()?)),
        Some(Frame::Seq { path, next }) => Some(format!("{path}[{next}]")),
    }
}

/// A value node ended: its mapping waits for the next key, its sequence for the next entry.
fn done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) => *key = None,
        Some(Frame::Seq { next, .. }) => *next += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a comment\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: g\nspec:\n  ingress:\n    - action: Deny\n      source: {nets: [10.0.0.0/8]}\n    - action: Allow\n      http:\n        paths:\n          - prefix: /admin\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n";

    #[test]
    fn fields_have_lines() {
        let maps = line_maps(TEXT).unwrap();
        assert_eq!(maps.len(), 2);
        let m = &maps[0];
        assert_eq!(m.line_of("", ""), Some(2));
        assert_eq!(m.line_of("", "spec.ingress[0]"), Some(8));
        assert_eq!(m.line_of("", "spec.ingress[0].source.nets[0]"), Some(9));
        assert_eq!(m.line_of("", "spec.ingress[1].http.paths[0]"), Some(13));
        // A field that is not there: its closest enclosing one.
        assert_eq!(m.line_of("", "spec.ingress[1].destination.ports"), Some(10));
        assert_eq!(maps[1].line_of("items[1]", ""), Some(21));
        assert_eq!(maps[1].line_of("items[1]", "metadata"), Some(23));
    }

    #[test]
    fn objects_are_located() {
        let mut out = Vec::new();
        read_text(Path::new("s.yaml"), TEXT, &mut out).unwrap();
        let at: Vec<_> = out
            .iter()
            .map(|l| (l.document, l.item, l.line_of("")))
            .collect();
        assert_eq!(
            at,
            [
                (1, None, Some(2)),
                (2, Some(0), Some(18)),
                (2, Some(1), Some(21))
            ]
        );
        let mut json = Vec::new();
        read_text(
            Path::new("n.json"),
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {\"name\": \"a\"}\n}\n",
            &mut json,
        )
        .unwrap();
        assert_eq!(json[0].line_of("metadata.name"), Some(4));
    }
}

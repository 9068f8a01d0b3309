//! The crate's layers, enforced: every `crate::…` and `super::…` path in `src/**.rs` (outside
//! `#[cfg(test)]` code) is read, and the test fails when a module imports a layer above its
//! own, or when modules import each other in a cycle (between top-level modules, or between
//! the files of one).
//!
//! A test rather than a workspace split (linkerd's policy-controller is several crates): one
//! crate keeps one `cargo test`, one target directory and one build on this 2-core machine,
//! and the rule is read here, in one table, instead of being spread over `Cargo.toml`s. Unit
//! tests may reach up (a unit test of `identity` drives a `Checker`): they are not part of the
//! product's dependency graph.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// The layers, bottom first. A module may import its own layer and those below it.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: SPIFFE IDs, certificates, XFCC, identity resolution on plain fields; polling
    // files for changes.
    ("leaves", &["identity", "poll"]),
    // The pure core: model, selectors, compile, store, snapshot, evaluation.
    ("policy core", &["policy"]),
    // The published snapshot and readiness.
    ("state", &["state"]),
    // Counting and logging what the server decides.
    ("observability", &["telemetry", "decision_log"]),
    // Where state comes from.
    ("sources", &["source", "k8s"]),
    // Envoy's API: CheckRequest -> Decision -> CheckResponse, the gRPC server.
    ("authz", &["authz"]),
    // Tools beside the server: synthetic clusters, the load test, `alp-authz test`,
    // `alp-authz replay`, `alp-authz lint`.
    (
        "tools",
        &["synth", "bench", "policy_tests", "replay", "lint"],
    ),
    // The command line and the program.
    ("cli", &["cli"]),
    ("app", &["app"]),
];

/// Files of one top-level module that import each other (each entry: one strongly connected
/// set), known and being removed. None are left (issue #15 removed `check` ↔ `explain` and
/// `decision` ↔ `netsets` ↔ `snapshot`); an entry that no longer matches exactly fails the test.
const KNOWN_FILE_CYCLES: &[&[&str]] = &[];

#[test]
fn no_module_imports_a_layer_above_it_and_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src);
    let mut failures = String::new();

    let layer = layer_table();
    for (from, tos) in &graph.top_edges() {
        let Some(&(from_layer, from_name)) = layer.get(from.as_str()) else {
            if from != "lib" && from != "main" {
                let _ = writeln!(failures, "module `{from}` is in no layer: add it to LAYERS");
            }
            continue;
        };
        for (to, at) in tos {
            let Some(&(to_layer, to_name)) = layer.get(to.as_str()) else {
                let _ = writeln!(failures, "module `{to}` is in no layer: add it to LAYERS");
                continue;
            };
            if to_layer > from_layer {
                let _ = writeln!(
                    failures,
                    "upward import: `{from}` ({from_name}) imports `{to}` ({to_name}) at {at}"
                );
            }
        }
    }

    for cycle in cycles(&graph.top_edges()) {
        let _ = writeln!(failures, "cycle between modules: {}", cycle.join(" -> "));
    }
    let file_cycles = cycles(&graph.file_edges());
    for cycle in &file_cycles {
        if !KNOWN_FILE_CYCLES.iter().any(|k| same_cycle(k, cycle)) {
            let _ = writeln!(failures, "cycle between files: {}", cycle.join(" -> "));
        }
    }
    for known in KNOWN_FILE_CYCLES {
        if !file_cycles.iter().any(|c| same_cycle(known, c)) {
            let _ = writeln!(
                failures,
                "KNOWN_FILE_CYCLES lists {known:?}, which is no longer a cycle: delete the entry"
            );
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

/// The reader itself: paths in groups, `super::`, test code skipped, strings and comments not
/// read as code.
#[test]
fn the_reader_sees_what_rustc_sees() {
    let text = r##"
        use crate::{policy::{eval::Request, snapshot}, state::Shared};
        use super::sibling;
        // use crate::commented::Out;
        const S: &str = "crate::in_a_string";
        const R: &str = r#"crate::in_a_raw_string { "#;
        fn f() -> crate::identity::Rejection { todo!() }
        #[cfg(test)]
        mod tests {
            use crate::app::Up;
            fn g() { let _ = "}"; }
        }
        fn h() { let _ = crate::poll::watch_paths; let _c = '{'; }
    "##;
    let code = code_only(text);
    let mut paths = Vec::new();
    for p in import_paths(&code) {
        paths.push(p.join("::"));
    }
    assert_eq!(
        paths,
        [
            "crate::policy::eval::Request",
            "crate::policy::snapshot",
            "crate::state::Shared",
            "super::sibling",
            "crate::identity::Rejection",
            "crate::poll::watch_paths",
        ]
    );
    assert_eq!(
        test_only_children("#[cfg(test)]\nmod labels_tests;\nmod other;"),
        ["labels_tests"]
    );
}

fn layer_table() -> BTreeMap<&'static str, (usize, &'static str)> {
    let mut out = BTreeMap::new();
    for (i, (name, modules)) in LAYERS.iter().enumerate() {
        for m in *modules {
            out.insert(*m, (i, *name));
        }
    }
    out
}

fn same_cycle(known: &[&str], cycle: &[String]) -> bool {
    let a: BTreeSet<&str> = known.iter().copied().collect();
    let b: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
    a == b
}

/// The modules of `src/`, by path (`authz::check`), and the paths each imports.
struct Graph {
    /// Module → (imported module, `file:line`).
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut files = Vec::new();
        rs_files(src, &mut files);
        let module_of = |f: &Path| -> Vec<String> {
            let rel = f.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod")) {
                parts.pop();
            }
            parts
        };
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
        // Files that are declared `#[cfg(test)] mod x;` by their parent.
        let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let m = module_of(f);
            let parent = if f.ends_with("mod.rs") || f.ends_with("lib.rs") {
                m.iter()
                    .filter(|s| s.as_str() != "lib")
                    .cloned()
                    .collect::<Vec<_>>()
            } else {
                m.clone()
            };
            for child in test_only_children(&text) {
                let mut c = parent.clone();
                c.push(child);
                test_only.insert(c);
            }
        }

        let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for f in &files {
            let me = module_of(f);
            if test_only.iter().any(|t| me.starts_with(t)) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            let code = code_only(&text);
            for path in import_paths(&code) {
                let absolute: Vec<String> = match path[0].as_str() {
                    "crate" => path[1..].to_vec(),
                    "super" => {
                        let ups = path.iter().take_while(|s| *s == "super").count();
                        let mut base = me.clone();
                        for _ in 0..ups {
                            base.pop();
                        }
                        base.extend(path[ups..].iter().cloned());
                        base
                    }
                    _ => continue,
                };
                // The longest prefix that is a module of the crate (a file).
                let Some(target) = (1..=absolute.len())
                    .rev()
                    .map(|n| absolute[..n].to_vec())
                    .find(|p| modules.contains(p))
                else {
                    continue;
                };
                if target == me || me.starts_with(&target) {
                    continue; // itself, or a parent module's item
                }
                let rel = f.strip_prefix(src.parent().unwrap()).unwrap();
                edges
                    .entry(me.join("::"))
                    .or_default()
                    .entry(target.join("::"))
                    .or_insert_with(|| rel.display().to_string());
            }
        }
        Graph { edges }
    }

    /// Edges between top-level modules.
    fn top_edges(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            for (to, at) in tos {
                let (a, b) = (top(from), top(to));
                if a != b {
                    out.entry(a)
                        .or_default()
                        .entry(b)
                        .or_insert_with(|| at.clone());
                }
            }
        }
        out
    }

    /// Edges between files of the same top-level module.
    fn file_edges(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            for (to, at) in tos {
                if top(from) == top(to) && !to.is_empty() {
                    out.entry(from.clone())
                        .or_default()
                        .insert(to.clone(), at.clone());
                }
            }
        }
        out
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The strongly connected components with more than one module (Tarjan's algorithm), each
/// sorted.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            if let Some(tos) = self.edges.get(v) {
                for w in tos.keys() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let lw = self.low[w];
                        let lv = self.low.get_mut(v).unwrap();
                        *lv = (*lv).min(lw);
                    } else if self.on_stack.contains(w) {
                        let iw = self.index[w];
                        let lv = self.low.get_mut(v).unwrap();
                        *lv = (*lv).min(iw);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(a, tos)| std::iter::once(a.as_str()).chain(tos.keys().map(String::as_str)))
        .collect();
    for n in nodes {
        if !t.index.contains_key(n) {
            t.visit(n);
        }
    }
    t.out
}

/// `text` with comments, string and char literals blanked, and `#[cfg(test)]` items removed.
fn code_only(text: &str) -> String {
    let stripped = strip_literals(text);
    let mut out = String::with_capacity(stripped.len());
    let mut rest = stripped.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at the `;` or the `}` that closes its first `{`.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Comments and literals replaced by spaces (lifetimes kept).
fn strip_literals(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Every `crate::…` and `super::…` path in `code`, groups expanded.
fn import_paths(code: &str) -> Vec<Vec<String>> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if ident_char(b.get(i.wrapping_sub(1))) || !(b[i] == 'c' || b[i] == 's') {
            i += 1;
            continue;
        }
        let rest: String = b[i..b.len().min(i + 8)].iter().collect();
        if !rest.starts_with("crate::") && !rest.starts_with("super::") {
            i += 1;
            continue;
        }
        let (paths, end) = tree(&b, i, vec![]);
        out.extend(paths);
        i = end.max(i + 1);
    }
    out
}

/// Reads a path tree at `b[i..]` (`a::b::{c, d::e}`), prefixed by `prefix`. Returns the
/// paths and where the tree ends.
fn tree(b: &[char], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        while b.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if b.get(i) == Some(&'{') {
            i += 1;
            let mut out = Vec::new();
            loop {
                while b.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                match b.get(i) {
                    None => return (out, i),
                    Some('}') => return (out, i + 1),
                    _ => {}
                }
                let (sub, end) = tree(b, i, path.clone());
                out.extend(sub);
                if end == i {
                    i += 1; // not a path (e.g. `self as x`): skip a character
                } else {
                    i = end;
                }
            }
        }
        let start = i;
        while ident_char(b.get(i)) {
            i += 1;
        }
        if i == start {
            return (if path.is_empty() { vec![] } else { vec![path] }, i);
        }
        let seg: String = b[start..i].iter().collect();
        if seg != "self" {
            path.push(seg);
        }
        if b.get(i) == Some(&':') && b.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![path], i);
        }
    }
}

/// The modules that `text` declares as `#[cfg(test)] mod name;` (files that are test code).
fn test_only_children(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let item = rest.trim_start();
        if let Some(decl) = item.strip_prefix("mod ") {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.push(name);
            }
        }
    }
    out
}

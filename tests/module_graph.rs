//! Keeps the modules of `src/` free of import cycles: reads every `use crate::…` and
//! `use super::…` line and every inline `crate::…` path, and fails on any cycle between
//! files. A module's own declaration and re-export of its children (`mod x; pub use
//! x::Y;`) is not an edge: a folder and its files are one unit to the outside.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/a/b.rs` → `a/b`, `src/a/mod.rs` → `a`, `src/lib.rs` → ``.
fn module_of(relative: &str) -> String {
    let path = relative.trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    match path {
        "lib" | "main" => String::new(),
        other => other.to_string(),
    }
}

/// Every path of a use tree, `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    for part in split_top(tree) {
        match part.find('{') {
            None => out.push(format!("{prefix}{part}")),
            Some(open) => {
                let inner = &part[open + 1..part.len() - 1];
                expand_into(&format!("{prefix}{}", &part[..open]), inner, out);
            }
        }
    }
}

fn split_top(tree: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The deepest module of `modules` that `path` (`a::b::Item`) names.
fn resolve<'m>(modules: &'m BTreeSet<String>, path: &str) -> Option<&'m String> {
    let parts: Vec<&str> = path.split(" as ").next()?.split("::").collect();
    (1..=parts.len())
        .rev()
        .find_map(|n| modules.get(&parts[..n].join("/")))
}

/// `path` (after `crate::`, or after `super::` of `module`) as a path from the crate root.
fn qualify(module: &str, path: &str, from_super: bool) -> String {
    if !from_super {
        return path.to_string();
    }
    // `super` of the file `a/b` is `a`; each further `super::` goes one level up.
    let mut base: Vec<&str> = module.split('/').filter(|p| !p.is_empty()).collect();
    base.pop();
    let mut rest = path;
    while let Some(after) = rest.strip_prefix("super::") {
        base.pop();
        rest = after;
    }
    base.push(rest);
    base.join("::")
}

/// The modules each module's source names.
fn edges(sources: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, source) in sources {
        let mut targets = BTreeSet::new();
        let mut add = |path: &str| {
            if let Some(target) = resolve(&modules, path) {
                if target != module && !target.is_empty() {
                    targets.insert(target.clone());
                }
            }
        };
        for statement in source.split(';') {
            let statement = statement.trim_start();
            let statement = statement.rsplit("\n").next().unwrap_or(statement).trim();
            for (keyword, from_super) in [("use crate::", false), ("use super::", true)] {
                let Some(tree) = statement
                    .strip_prefix(keyword)
                    .or_else(|| statement.strip_prefix(&format!("pub {keyword}")))
                    .or_else(|| statement.strip_prefix(&format!("pub(crate) {keyword}")))
                else {
                    continue;
                };
                for path in expand(tree) {
                    add(&qualify(module, &path, from_super));
                }
            }
        }
        // Inline paths: `crate::a::b(...)`, `super::c::d`.
        for (marker, from_super) in [("crate::", false), ("super::", true)] {
            for (at, _) in source.match_indices(marker) {
                let before = source[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest = &source[at + marker.len()..];
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let path = rest[..end].trim_end_matches(':');
                add(&qualify(module, path, from_super));
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for target in graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[target].min(state.low[node]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.index[target].min(state.low[node]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

fn read_sources(root: &Path, dir: &Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_sources(root, &path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            into.insert(
                module_of(&relative),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let sources: BTreeMap<String, String> = [
        ("a", "use crate::b::{Thing, other::Deep};"),
        ("b", "pub struct Thing;\nfn f() { crate::c::g() }"),
        ("b/other", "use super::super::a::X;"),
        ("c", "use crate::lib_free;"),
        ("d", "pub mod e;\npub use e::Y;"),
        ("d/e", "use super::Z;"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_string(), s.to_string()))
    .collect();
    let graph = edges(&sources);
    assert_eq!(graph["a"], BTreeSet::from(["b".into(), "b/other".into()]));
    assert_eq!(graph["b"], BTreeSet::from(["c".into()]));
    assert_eq!(graph["b/other"], BTreeSet::from(["a".into()]));
    assert_eq!(graph["d/e"], BTreeSet::from(["d".into()]));
    assert_eq!(
        cycles(&graph),
        vec![vec!["a".to_string(), "b/other".to_string()]]
    );
}

#[test]
fn no_module_of_src_is_in_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    read_sources(&root, &root, &mut sources);
    assert!(sources.len() > 50, "read {} files", sources.len());
    let graph = edges(&sources);
    let found = cycles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|cycle| {
            let members: BTreeSet<&String> = cycle.iter().collect();
            let arrows: Vec<String> = cycle
                .iter()
                .map(|m| {
                    let inside: Vec<&String> =
                        graph[m].iter().filter(|t| members.contains(t)).collect();
                    format!("{m} -> {inside:?}")
                })
                .collect();
            arrows.join("; ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between modules:\n{}",
        described.join("\n")
    );
}

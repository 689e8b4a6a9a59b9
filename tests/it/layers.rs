//! The modules stand in floors and only look down: every `crate::` path in
//! `src/` names a module on the same floor or a lower one, no two modules
//! import each other through any chain, and no two files of one folder do.
//! `docs/architecture.md` draws the same floors. A new module must be given a
//! floor here and there; an import that climbs or closes a circle fails.
//! Unit tests (`tests.rs`, `tests/`, `#[cfg(test)]` modules) are not built
//! into the binary and may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its floor, lowest first.
const FLOORS: &[(&str, u8)] = &[
    ("base", 0),
    ("clock", 1),
    ("json", 1),
    ("log_limit", 1),
    ("mac", 1),
    ("response", 1),
    ("tls", 1),
    ("watch", 1),
    ("destinations", 2),
    ("scheme", 2),
    ("verify", 3),
    ("handshake", 4),
    ("headers", 4),
    ("policy", 4),
    ("reject", 4),
    ("observe", 5),
    ("body", 6),
    ("forward", 6),
    ("keys", 6),
    ("state", 6),
    ("routes", 7),
    ("runtime", 8),
    ("config", 9),
    ("admin", 10),
    ("reload", 10),
    ("spool", 10),
    ("commands", 11),
    ("demo", 11),
    ("proxy", 11),
    ("serve", 11),
    ("server", 11),
    ("shutdown", 11),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` but unit tests (`tests.rs`, `tests/`), with
/// its path relative to `src/`.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap_or_default();
            if name == "tests" || name == "tests.rs" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `text` without the items marked `#[cfg(test)]` (unit tests) and without
/// `//` comments (doc links name modules without importing them).
fn code(text: &str) -> String {
    let mut text = text.to_owned();
    while let Some(at) = text.find("#[cfg(test)]") {
        text.replace_range(at..item_end(&text, at), "");
    }
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the item starting at `at` ends: after its first `;` at depth 0, or
/// after the `}` that closes its first `{`.
fn item_end(text: &str, at: usize) -> usize {
    let mut depth = 0;
    for (i, c) in text[at..].char_indices() {
        match c {
            ';' if depth == 0 => return at + i + 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at + i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The first path segment after each `prefix` in `code`, including those of
/// a braced group (`prefix{a, b::c}` names `a` and `b`).
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            names.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Module → module → the files whose `crate::` paths make that edge.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn import_graph() -> Graph {
    let mut graph = Graph::new();
    for (rel, text) in rust_files(&src()) {
        let from = module_of(&rel);
        if from == "lib" || from == "main" {
            continue;
        }
        let entry = graph.entry(from.to_owned()).or_default();
        for to in named_after(&code(&text), "crate::") {
            if to != from {
                entry.entry(to).or_default().insert(rel.clone());
            }
        }
    }
    graph
}

/// A cycle through `graph`'s nodes, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<&str>> {
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<&'g str>,
        path: &mut Vec<&'g str>,
    ) -> Option<Vec<&'g str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn every_module_has_a_floor_and_imports_only_downward() {
    let floors: BTreeMap<&str, u8> = FLOORS.iter().copied().collect();
    let modules: BTreeSet<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let placed: BTreeSet<String> = floors.keys().map(|m| (*m).to_owned()).collect();
    assert_eq!(
        modules, placed,
        "every module of src/ needs a floor in FLOORS (and docs/architecture.md)"
    );

    let mut climbing = Vec::new();
    for (from, edges) in import_graph() {
        for (to, files) in edges {
            let (Some(a), Some(b)) = (floors.get(from.as_str()), floors.get(to.as_str())) else {
                continue;
            };
            if b > a {
                climbing.push(format!(
                    "{from} (floor {a}) imports {to} (floor {b}) in {files:?}"
                ));
            }
        }
    }
    assert!(
        climbing.is_empty(),
        "imports that climb:\n{}",
        climbing.join("\n")
    );
}

#[test]
fn no_import_circle_between_modules() {
    let graph: BTreeMap<String, BTreeSet<String>> = import_graph()
        .into_iter()
        .map(|(from, edges)| (from, edges.into_keys().collect()))
        .collect();
    assert_eq!(find_cycle(&graph), None, "an import circle between modules");
}

#[test]
fn no_import_circle_between_files_of_a_folder() {
    for entry in std::fs::read_dir(src()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        // The folder's files and subfolders but `mod.rs`, its facade, and tests.
        let files: BTreeMap<String, String> = rust_files(&dir)
            .into_iter()
            .filter_map(|(rel, text)| {
                let inner = rel.strip_prefix(&format!("{folder}/"))?;
                let name = inner.split('/').next()?.trim_end_matches(".rs").to_owned();
                let whole = inner == format!("{name}.rs") || inner == format!("{name}/mod.rs");
                (whole && name != "mod" && name != "tests").then_some((name, text))
            })
            .collect();
        let mut graph = BTreeMap::new();
        for (name, text) in &files {
            let code = code(text);
            let used: BTreeSet<String> = named_after(&code, "super::")
                .into_iter()
                .chain(named_after(&code, &format!("crate::{folder}::")))
                .filter(|n| n != name && files.contains_key(n))
                .collect();
            graph.insert(name.clone(), used);
        }
        assert_eq!(
            find_cycle(&graph),
            None,
            "an import circle between files of src/{folder}/"
        );
    }
}

#[test]
fn the_architecture_page_draws_the_same_floors() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md");
    let text = std::fs::read_to_string(page).unwrap();
    // Rows of its module table: `| floor | `module` | job | may import |`.
    let drawn: BTreeMap<String, u8> = text
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let floor = cells.get(1)?.parse().ok()?;
            let module = cells.get(2)?.trim_matches('`').trim_end_matches('/');
            Some((module.to_owned(), floor))
        })
        .collect();
    let floors: BTreeMap<String, u8> = FLOORS.iter().map(|(m, f)| ((*m).to_owned(), *f)).collect();
    assert_eq!(
        drawn, floors,
        "docs/architecture.md's module table and FLOORS differ"
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_imports() {
    let names = named_after(
        "use crate::{a, b::{c, d}, e::f}; x::crate::g; crate::h::i",
        "crate::",
    );
    let expected: BTreeSet<String> = ["a", "b", "e", "h"].map(String::from).into();
    assert_eq!(names, expected);
}

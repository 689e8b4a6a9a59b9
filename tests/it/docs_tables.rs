//! The Markdown tables of the README and `docs/` render as tables: a run of
//! `|` lines is one table with a header and a delimiter row, and every row has
//! the header's cells. A row cut off from its table by a paragraph (once the
//! admin table's `POST /reload`) renders as loose text and fails here.
//!
//! Their links resolve: every relative link names a file of the tree, and
//! every `#anchor` a heading of the page it points into, so moving a section
//! between pages cannot leave a link behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The README and every Markdown file under `docs/`.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found
}

/// The cells of a row: its `|` separators but escaped ones (`\|`), less one.
fn cells(row: &str) -> usize {
    let bytes = row.trim_end().as_bytes();
    let pipes = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'|' && (i == 0 || bytes[i - 1] != b'\\'))
        .count();
    pipes.saturating_sub(1)
}

fn is_delimiter(row: &str) -> bool {
    let inner = row.trim().trim_matches('|');
    !inner.is_empty()
        && inner.split('|').all(|cell| {
            cell.trim().trim_matches(':').chars().all(|c| c == '-') && cell.contains('-')
        })
}

/// Every problem with the tables of `text`, as `LINE: what`.
fn table_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fenced = false;
    let mut table: Vec<(usize, &str)> = Vec::new();
    let mut check = |table: &mut Vec<(usize, &str)>| {
        if let Some(&(first, header)) = table.first() {
            match table.get(1) {
                Some((_, delimiter)) if is_delimiter(delimiter) => {
                    for &(line, row) in table.iter() {
                        if cells(row) != cells(header) {
                            problems.push(format!(
                                "{line}: {} cells where the header at line {first} has {}",
                                cells(row),
                                cells(header)
                            ));
                        }
                    }
                }
                _ => problems.push(format!(
                    "{first}: a table row outside a table (no header and delimiter row above it)"
                )),
            }
        }
        table.clear();
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('|') {
            table.push((index + 1, line));
        } else {
            check(&mut table);
        }
    }
    check(&mut table);
    problems
}

#[test]
fn every_table_of_the_docs_is_whole() {
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let problems = table_problems(&text);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            path.display(),
            problems.join("\n")
        );
    }
}

#[test]
fn a_row_cut_off_by_a_paragraph_is_found() {
    let split = "| request | answer |\n|---|---|\n| `GET /config` | the config |\n\n\
                 A paragraph.\n\n| `POST /reload` | reload now |\n";
    assert_eq!(
        table_problems(split),
        ["7: a table row outside a table (no header and delimiter row above it)"]
    );
    let ragged = "| a | b |\n|---|---|\n| `x\\|y` | z |\n| one cell |\n";
    assert_eq!(
        table_problems(ragged),
        ["4: 1 cells where the header at line 1 has 2"]
    );
    let code = "```\n| not a table\n```\n";
    assert!(table_problems(code).is_empty());
}

/// Lines outside fenced code blocks, numbered from 1.
fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter_map(move |(index, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return None;
        }
        (!fenced).then_some((index + 1, line))
    })
}

/// The anchor GitHub gives a heading: its text as rendered (no backticks, a
/// link as its text), lower-cased, without punctuation but `-` and `_`,
/// spaces made `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated one gets `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    for (_, line) in prose(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        let Some(heading) = line[hashes..]
            .strip_prefix(' ')
            .filter(|_| (1..=6).contains(&hashes))
        else {
            continue;
        };
        let base = slug(heading.trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        found.insert(anchor);
    }
    found
}

/// The targets of a line's inline links and images (`](target)`), outside code spans.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    for (i, outside_code) in line.split('`').enumerate() {
        if i % 2 == 1 {
            continue;
        }
        let mut rest = outside_code;
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            targets.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    targets
}

/// Every relative link of `text` that does not resolve, as `LINE: target: what`.
/// `headings` gives the anchors of a file a link names (relative to the page;
/// `""` is the page itself), or `None` when there is no such file.
fn link_problems(text: &str, headings: impl Fn(&str) -> Option<HashSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (line_number, line) in prose(text) {
        for target in link_targets(line) {
            let external = target
                .split_once(':')
                .is_some_and(|(scheme, _)| scheme.chars().all(|c| c.is_ascii_alphabetic()));
            if external {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            match headings(file) {
                None => problems.push(format!("{line_number}: {target}: no such file")),
                Some(found) if !anchor.is_empty() && !found.contains(anchor) => {
                    problems.push(format!("{line_number}: {target}: no such heading"))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

#[test]
fn every_link_of_the_docs_resolves() {
    let mut broken = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = path.parent().unwrap();
        let problems = link_problems(&text, |file| {
            if file.is_empty() {
                return Some(anchors(&text));
            }
            let target = dir.join(file);
            if !target.exists() {
                return None;
            }
            let markdown = target.extension().is_some_and(|e| e == "md");
            Some(match std::fs::read_to_string(&target) {
                Ok(linked) if markdown => anchors(&linked),
                _ => HashSet::new(),
            })
        });
        broken.extend(problems.iter().map(|p| format!("{}:{p}", path.display())));
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn a_link_to_a_moved_section_is_found() {
    let page = "# Async delivery\n\n## The fleet spool (`backend = \"redis\"`)\n\n## Notes\n\n\
                ## Notes\n\nSee [the fleet](#the-fleet-spool-backend--redis), [notes](#notes-1),\n\
                [reload](#reload), [ops](operations.md#reload), [gone](gone.md),\n\
                [site](https://example.com/#x), `[code](#not-a-link)`.\n\n\
                ```\n[fenced](#nor-this)\n```\n";
    let operations: HashSet<String> = anchors("# Operations\n\n## Reload\n");
    let problems = link_problems(page, |file| match file {
        "" => Some(anchors(page)),
        "operations.md" => Some(operations.clone()),
        _ => None,
    });
    assert_eq!(
        problems,
        ["10: #reload: no such heading", "10: gone.md: no such file"]
    );
    assert_eq!(
        slug("Status codes made by the gateway"),
        "status-codes-made-by-the-gateway"
    );
    assert_eq!(slug("The [Debian](x.md) package"), "the-debian-package");
}

//! The Markdown tables of the README and `docs/` render as tables: a run of
//! `|` lines is one table with a header and a delimiter row, and every row has
//! the header's cells. A row cut off from its table by a paragraph (once the
//! admin table's `POST /reload`) renders as loose text and fails here.

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

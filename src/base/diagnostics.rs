//! Config problems and their rendering as `PATH:LINE:COL: message`, the form
//! editors and CI logs link to.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted, but a setting does not do what it seems to.
    Warning,
}

/// One problem at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Byte range in the file; `None` points at the start.
    pub span: Option<Range<usize>>,
    /// What is wrong, and where it helps, how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            span,
            message: message.into(),
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            span,
            message: message.into(),
        }
    }
}

/// Every problem found in one file, ready to print.
#[derive(Debug, Clone)]
pub struct Report {
    path: PathBuf,
    lines: Vec<String>,
    errors: usize,
}

impl Report {
    /// Renders `diagnostics` against the file's `text` (for line and column numbers).
    pub fn new(path: &Path, text: &str, diagnostics: &[Diagnostic]) -> Self {
        let index = LineIndex::new(text);
        let lines = diagnostics
            .iter()
            .map(|d| {
                let (line, col) = index.line_col(d.span.as_ref().map_or(0, |s| s.start));
                let label = match d.severity {
                    Severity::Error => "",
                    Severity::Warning => "warning: ",
                };
                format!("{}:{line}:{col}: {label}{}", path.display(), d.message)
            })
            .collect();
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        Self {
            path: path.to_owned(),
            lines,
            errors,
        }
    }

    /// The file the problems are in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether any problem is an error (the file is refused).
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// One line per problem, in file order of discovery.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// Where each line of a text starts, so that the positions of many problems
/// are found without reading the text again for each.
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of each line's first byte.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the lines of `text`.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// 1-based line and column (in characters) of byte `offset`; an offset
    /// past the end, or inside a character, counts as the end.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = if self.text.is_char_boundary(offset) {
            offset
        } else {
            self.text.len()
        };
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_in_chars() {
        let text = "a = 1\nbé = 2\n";
        let index = LineIndex::new(text);
        assert_eq!(index.line_col(0), (1, 1));
        assert_eq!(index.line_col(6), (2, 1));
        assert_eq!(index.line_col(text.find('=').unwrap()), (1, 3));
        let second_eq = text.rfind('=').unwrap();
        assert_eq!(index.line_col(second_eq), (2, 4));
        assert_eq!(index.line_col(10_000), (3, 1));
        assert_eq!(index.line_col(8), (3, 1), "inside `é`: the end");
    }

    #[test]
    fn report_renders_path_line_col_and_warnings() {
        let text = "x\ny\n";
        let d = [
            Diagnostic::error(Some(2..3), "bad y"),
            Diagnostic::warning(None, "hmm"),
        ];
        let r = Report::new(Path::new("c.toml"), text, &d);
        assert_eq!(r.lines(), ["c.toml:2:1: bad y", "c.toml:1:1: warning: hmm"]);
        assert!(r.has_errors());
        assert!(!Report::new(Path::new("c"), text, &d[1..]).has_errors());
    }
}

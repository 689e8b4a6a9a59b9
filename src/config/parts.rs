//! Parsing a large config in parts. The `toml` crate holds a document's tokens,
//! events and tables all at once, some 40 bytes for each byte of text: half a
//! gigabyte for 100,000 routes. A file laid out as its settings followed by
//! nothing but `[[routes]]` tables (with their subtables) is parsed as the
//! settings, then runs of routes of about [`PART_BYTES`] each, each run as a
//! document of its own (its spans count from its start). Any other file is
//! parsed whole.

/// About how much text one part holds.
pub const PART_BYTES: usize = 1 << 16;

/// Where `text` is cut into parts: at the first `[[routes]]` line, then at the
/// first `[[routes]]` line at least `part_bytes` after the last cut. Empty when
/// the file is no larger than `part_bytes`, or when cutting could change what
/// it means: a multi-line string (which may hold a line `[[routes]]`), a line
/// before the first route that mentions `routes` (a `routes` key or table
/// there would merge with the routes), or a line after it starting with `[`
/// that is not a header of the routes' own tables.
///
/// A cut the parser would not see as a table header (inside a multi-line
/// array, say) leaves a part that does not parse, and the caller then parses
/// the whole file.
pub fn cuts(text: &str, part_bytes: usize) -> Vec<usize> {
    if text.len() <= part_bytes || text.contains("\"\"\"") || text.contains("'''") {
        return Vec::new();
    }
    let mut cuts: Vec<usize> = Vec::new();
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let start = end;
        end += line.len();
        let code = line.trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        let is_route = code.split('#').next().map(str::trim_end) == Some("[[routes]]");
        match cuts.last() {
            None if is_route => cuts.push(start),
            None if code.contains("routes") => return Vec::new(),
            Some(&last) if is_route && start - last >= part_bytes => cuts.push(start),
            Some(_)
                if code.starts_with('[')
                    && !is_route
                    && !code.starts_with("[routes.")
                    && !code.starts_with("[[routes.") =>
            {
                return Vec::new();
            }
            _ => {}
        }
    }
    cuts
}

#[cfg(test)]
mod tests;

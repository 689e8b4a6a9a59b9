//! A file that is TOML but not a config (a value of the wrong type, a key
//! misspelled or missing) is reported whole: serde stops at the first such
//! problem, so each route and the rest of the file are read on their own, and
//! the entry a problem points at is set aside before the table is read again.
//! One bad value then hides neither the next one nor the problems the build
//! finds in the rest. Only used once the whole file failed to deserialize.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::file::{ConfigFile, RouteSection};
use crate::base::diagnostics::Diagnostic;

/// Problems one table reports before the rest of it is given up.
const MAX_PER_TABLE: usize = 32;

/// What could be read of a file that does not deserialize as a whole.
#[derive(Debug)]
pub(super) struct Recovered {
    /// The file without its routes, and without every entry set aside.
    pub(super) file: ConfigFile,
    /// The routes read whole.
    pub(super) routes: Vec<RouteSection>,
    /// Every problem found reading them, each once.
    pub(super) diagnostics: Vec<Diagnostic>,
}

/// Reads `text` table by table; `None` when it is not TOML (its syntax error
/// stands alone) or the file's own table cannot be read.
pub(super) fn recover(text: &str) -> Option<Recovered> {
    let root = DeTable::parse(text).ok()?;
    let span = root.span();
    let mut root = root.into_inner();
    let mut diagnostics = Vec::new();
    // Each route on its own: a problem in one leaves the others whole.
    let routes_key = root
        .iter()
        .find(|(k, v)| k.get_ref() == "routes" && matches!(v.get_ref(), DeValue::Array(_)))
        .map(|(k, _)| k.clone());
    let route_tables = match routes_key
        .and_then(|key| root.remove(&key))
        .map(Spanned::into_inner)
    {
        Some(DeValue::Array(items)) => items.into_iter().collect(),
        _ => Vec::new(),
    };
    let (file, _) = read::<ConfigFile>(Spanned::new(span, DeValue::Table(root)), &mut diagnostics)?;
    // A route read without an entry is not built: what the build would say of
    // it follows from that entry's problem (`needs path` for a `path = 5`).
    let routes = route_tables
        .into_iter()
        .filter_map(|route| read::<RouteSection>(route, &mut diagnostics))
        .filter_map(|(route, whole)| whole.then_some(route))
        .collect();
    Some(Recovered {
        file,
        routes,
        diagnostics,
    })
}

/// Reads `value` as a `T`, setting aside the entry each problem points at
/// and reading again, each problem reported once; with whether it was read
/// whole. `None` when a problem points at no entry (a required key that is
/// missing) or there are too many.
fn read<T: DeserializeOwned>(
    mut value: Spanned<DeValue<'_>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(T, bool)> {
    // The tables an entry was set aside from.
    let mut edited: Vec<Range<usize>> = Vec::new();
    for _ in 0..MAX_PER_TABLE {
        let error = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(read) => return Some((read, edited.is_empty())),
            Err(error) => error,
        };
        // A key missing from a table an entry was set aside from follows
        // from that entry's problem (a required key of the wrong type, or
        // misspelled): not said again.
        let follows = error.message().starts_with("missing field")
            && edited
                .iter()
                .any(|table| error.span().as_ref() == Some(table));
        if !follows {
            let message = error.message().trim_end().replace('\n', " ");
            diagnostics.push(Diagnostic::error(error.span(), message));
        }
        match error.span().map(|at| set_aside_at(&mut value, at.start)) {
            Some(Found::Removed(table)) => edited.push(table),
            _ => return None,
        }
    }
    None
}

/// Where a problem's byte is, as [`set_aside_at`] looks for it.
enum Found {
    /// The entry holding it was removed from the table of this span.
    Removed(Range<usize>),
    /// In a value that is no table entry (a value of an array, a table's
    /// header): the entry holding that value goes.
    Inside,
    /// Not in this value.
    Nowhere,
}

/// Removes the innermost table entry whose key or value holds byte `at`
/// (the entry holding an array, for a problem with one of its values).
fn set_aside_at(value: &mut Spanned<DeValue<'_>>, at: usize) -> Found {
    let span = value.span();
    match value.get_mut() {
        DeValue::Table(table) => {
            let mut hit = None;
            for (key, entry) in table.iter_mut() {
                if key.span().contains(&at) {
                    hit = Some(key.clone());
                    break;
                }
                match set_aside_at(entry, at) {
                    Found::Nowhere => {}
                    Found::Inside => {
                        hit = Some(key.clone());
                        break;
                    }
                    removed @ Found::Removed(_) => return removed,
                }
            }
            match hit {
                Some(key) => {
                    table.remove(&key);
                    Found::Removed(span)
                }
                None if span.contains(&at) => Found::Inside,
                None => Found::Nowhere,
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                match set_aside_at(item, at) {
                    Found::Nowhere => {}
                    found => return found,
                }
            }
            if span.contains(&at) {
                Found::Inside
            } else {
                Found::Nowhere
            }
        }
        _ if span.contains(&at) => Found::Inside,
        _ => Found::Nowhere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        let recovered = recover(text).unwrap();
        recovered
            .diagnostics
            .iter()
            .map(|d| {
                let at = d.span.as_ref().map_or(0, |s| s.start);
                format!(
                    "{}: {}",
                    &text[at..].lines().next().unwrap_or(""),
                    d.message
                )
            })
            .collect()
    }

    #[test]
    fn every_type_error_is_found_once() {
        let text = "[server]\nmax_body_bytes = \"1MB\"\nthreads = \"two\"\nlisten = \"127.0.0.1:1\"\n\
                    [[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = 5\nverify = { scheme = \"rye\", secrets = [\"k\"] }\n\
                    [[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:9\"\nmethods = [\"POST\", 7]\nverify = { scheme = \"rye\", secrets = [\"k\"] }\n";
        let found = messages(text);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with("\"1MB\""), "{found:#?}");
        assert!(found[1].starts_with("\"two\""), "{found:#?}");
        assert!(found[2].starts_with("5"), "{found:#?}");
        assert!(found[3].starts_with("7]"), "{found:#?}");
        let recovered = recover(text).unwrap();
        // `a` lacks its upstream now (unsaid), `b` its methods: neither is built.
        assert!(recovered.routes.is_empty());
        assert!(recovered.file.server.listen.is_some());
    }

    #[test]
    fn a_key_missing_from_the_start_is_said() {
        let found = messages("[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"http://h\"\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("missing field `verify`"), "{found:#?}");
    }

    #[test]
    fn a_misspelled_required_key_is_said_once() {
        let text = "[[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = \"http://h\"\n\
                    verify = { scheme = \"rye\", secrets = [\"k\"] }\n[routes.dedup]\nttl = 5\n";
        let found = messages(text);
        assert_eq!(found, ["ttl = 5: unknown field `ttl`, expected `ttl_secs`"]);
    }

    #[test]
    fn unknown_keys_anywhere_are_said() {
        let found = messages("bogus = 1\n[server]\nlisen = \"x\"\n[spool]\nbackend = 3\n");
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn text_that_is_not_toml_is_not_recovered() {
        assert!(recover("[server\n").is_none());
    }
}

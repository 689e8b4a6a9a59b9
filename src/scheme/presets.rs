//! Built-in schemes: the descriptors in `presets.toml`, compiled into the binary
//! and built once by the same code that builds a config's `[schemes.NAME]`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::Scheme;
use super::build::SchemeBuilder;
use super::file::SchemeFile;
use crate::config::diagnostics::{Diagnostic, Report, Severity};

/// The descriptors, as shipped.
pub const TEXT: &str = include_str!("presets.toml");

/// `presets.toml`: scheme tables, and aliases naming a scheme again for a
/// provider that uses it (e.g. `clerk = "svix"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetsFile {
    schemes: BTreeMap<String, SchemeFile>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

static PRESETS: OnceLock<BTreeMap<String, Arc<Scheme>>> = OnceLock::new();

/// Every built-in scheme by name.
pub fn all() -> &'static BTreeMap<String, Arc<Scheme>> {
    PRESETS.get_or_init(|| match load(TEXT) {
        Ok(presets) => presets,
        // The presets are part of the binary; a unit test keeps them valid.
        Err(report) => unreachable!("the built-in presets are invalid:\n{report}"),
    })
}

/// The built-in schemes `hookgate sign` can sign for: all but those signed
/// with a provider's private key (remote keys).
pub fn signable() -> impl Iterator<Item = (&'static String, &'static Arc<Scheme>)> {
    all().iter().filter(|(_, scheme)| scheme.remote.is_none())
}

/// The built-in scheme called `name`.
pub fn get(name: &str) -> Option<Arc<Scheme>> {
    all().get(name).cloned()
}

/// Builds presets from descriptor text.
pub fn load(text: &str) -> Result<BTreeMap<String, Arc<Scheme>>, Report> {
    let path = Path::new("presets.toml");
    let file: PresetsFile = toml::from_str(text).map_err(|e| {
        Report::new(
            path,
            text,
            &[Diagnostic::error(e.span(), e.message().to_owned())],
        )
    })?;
    let mut diagnostics = Vec::new();
    let mut presets = BTreeMap::new();
    {
        let mut builder = SchemeBuilder::new(&mut diagnostics);
        builder.warn_weak = false;
        for (name, scheme) in &file.schemes {
            if let Some(built) = builder.scheme(name, scheme) {
                presets.insert(name.clone(), Arc::new(built));
            }
        }
    }
    for (alias, target) in &file.aliases {
        match presets.get(target) {
            Some(scheme) => {
                let renamed = Scheme {
                    name: alias.clone(),
                    ..Scheme::clone(scheme)
                };
                presets.insert(alias.clone(), Arc::new(renamed));
            }
            None => diagnostics.push(Diagnostic::error(
                None,
                format!("alias `{alias}` names no scheme `{target}`"),
            )),
        }
    }
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(Report::new(path, text, &diagnostics));
    }
    Ok(presets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_build_without_problems() {
        let presets = load(TEXT).unwrap_or_else(|r| panic!("{r}"));
        assert!(presets.len() >= 30, "{} presets", presets.len());
        for (name, scheme) in &presets {
            assert_eq!(&scheme.name, name);
            assert!(scheme.docs.is_some(), "{name} has no docs link");
        }
    }
}

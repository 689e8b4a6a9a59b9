//! Built-in schemes: the descriptors in `presets.toml`, compiled into the binary
//! and built once by the same code that builds a config's `[schemes.NAME]`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::Scheme;
use super::build::SchemeBuilder;
use super::file::SchemeFile;
use crate::base::diagnostics::{Diagnostic, Report, Severity};

/// Name of the scheme described by a verify table's own keys (the generic
/// HMAC scheme); a config's `[schemes.NAME]` cannot take it.
pub const GENERIC: &str = "hmac";

/// The descriptors, as shipped.
pub const TEXT: &str = include_str!("presets.toml");

/// `presets.toml`: scheme tables, and aliases naming a scheme again for a
/// provider that uses it (e.g. `clerk = { scheme = "svix", provider = "Clerk" }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetsFile {
    schemes: BTreeMap<String, SchemeFile>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasFile>,
}

/// An alias: the scheme's name (the same provider, e.g. `instagram = "meta"`),
/// or a table naming another provider that uses the scheme and its docs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AliasFile {
    /// Another name for a scheme of the same provider.
    Name(String),
    /// A provider of its own that signs with the scheme.
    Provider(AliasTable),
}

/// `alias = { scheme = "…", provider = "…", docs = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasTable {
    scheme: String,
    provider: Option<String>,
    docs: Option<String>,
}

impl AliasFile {
    fn target(&self) -> &str {
        match self {
            Self::Name(target) => target,
            Self::Provider(table) => &table.scheme,
        }
    }
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
    for (alias, file) in &file.aliases {
        match presets.get(file.target()) {
            Some(scheme) => {
                let mut renamed = Scheme {
                    name: alias.clone(),
                    provider: scheme
                        .provider
                        .clone()
                        .or_else(|| Some(scheme.name.clone())),
                    ..Scheme::clone(scheme)
                };
                if let AliasFile::Provider(table) = file {
                    renamed.provider = table.provider.clone().or(renamed.provider);
                    renamed.docs = table.docs.clone().or(renamed.docs);
                }
                presets.insert(alias.clone(), Arc::new(renamed));
            }
            None => diagnostics.push(Diagnostic::error(
                None,
                format!("alias `{alias}` names no scheme `{}`", file.target()),
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
        assert!(presets.len() >= 120, "{} presets", presets.len());
        for (name, scheme) in &presets {
            assert_eq!(&scheme.name, name);
            assert!(scheme.docs.is_some(), "{name} has no docs link");
            assert!(scheme.provider.is_some(), "{name} names no provider");
        }
    }

    #[test]
    fn aliases_name_the_scheme_again_with_their_own_provider_and_docs() {
        let text = r#"
[schemes.base]
signature = { header = "x-sig" }
algorithm = "hmac-sha256"
provider = "Base"
docs = "https://base.example/docs"

[aliases]
same = "base"
other = { scheme = "base", provider = "Other", docs = "https://other.example/docs" }
"#;
        let presets = load(text).unwrap_or_else(|r| panic!("{r}"));
        let (same, other) = (&presets["same"], &presets["other"]);
        assert_eq!((same.name.as_str(), same.provider_name()), ("same", "Base"));
        assert_eq!(same.docs.as_deref(), Some("https://base.example/docs"));
        assert_eq!(
            (other.name.as_str(), other.provider_name()),
            ("other", "Other")
        );
        assert_eq!(other.docs.as_deref(), Some("https://other.example/docs"));
        assert_eq!(other.signature, presets["base"].signature);
        let dangling = load(&text.replace(r#"scheme = "base""#, r#"scheme = "nope""#));
        assert!(
            dangling
                .unwrap_err()
                .to_string()
                .contains("alias `other` names no scheme `nope`")
        );
    }
}

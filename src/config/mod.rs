//! Configuration pipeline: `hookgate.toml` → [`file::ConfigFile`] (serde, spans;
//! a large file in [`parts`]) → [`build`] (validation, secrets, DNS) →
//! [`RuntimeConfig`] (immutable, shared through `ArcSwap`). Every problem is
//! reported as `PATH:LINE:COL: message`.

pub mod admin;
pub mod build;
pub mod delivery;
mod destinations;
pub mod file;
mod fingerprint;
pub mod parts;
mod paths;
pub mod policy;
mod recover;
pub mod remote;
pub mod server;
pub mod tls;
mod upstream;
pub mod verifiers;

use std::path::{Path, PathBuf};

use crate::base::diagnostics::{Diagnostic, Report};

use crate::runtime::RuntimeConfig;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "HOOKGATE_CONFIG";
/// Config file used when neither `--config` nor `$HOOKGATE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "conf/hookgate.toml";

/// A successfully loaded config, with any warnings about it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated snapshot.
    pub config: RuntimeConfig,
    /// Warnings (never errors), rendered `PATH:LINE:COL: warning: message`.
    pub warnings: Report,
}

/// Picks the config path: the flag, else `$HOOKGATE_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, Report> {
    load_str(path, &read(path)?)
}

/// Reads the file at `path`, reporting failure as a config problem.
pub fn read(path: &Path) -> Result<String, Report> {
    std::fs::read_to_string(path).map_err(|e| {
        let d = Diagnostic::error(None, format!("cannot read config: {e}"));
        Report::new(path, "", &[d])
    })
}

/// Parses and validates `text` as if read from `path` (which anchors relative
/// `file:` secrets and names the file in diagnostics).
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Report> {
    load_str_reading(path, text).0
}

/// Like [`load_str`], with every file the config reads besides itself
/// (`file:` secrets, CA files, certificates and keys), whether it loaded or
/// not (none when it does not parse): what the reloader watches.
pub fn load_str_reading(path: &Path, text: &str) -> (Result<Loaded, Report>, Vec<PathBuf>) {
    let cuts = parts::cuts(text, parts::PART_BYTES);
    if let Some(loaded) = load_in_parts(path, text, &cuts) {
        return loaded;
    }
    let file: file::ConfigFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            if let Some(recovered) = recover::recover(text).filter(|r| !r.diagnostics.is_empty()) {
                return load_recovered(path, text, recovered);
            }
            let message = e.message().trim_end().replace('\n', " ");
            let d = Diagnostic::error(e.span(), message);
            return (Err(Report::new(path, text, &[d])), Vec::new());
        }
    };
    let mut builder = build::Builder::new(&file, path);
    builder.reserve(file.routes.len());
    builder.add_routes(&file.routes, 0);
    finish(path, text, builder)
}

/// Loads `text` cut at `cuts` (see [`parts`]), building each part's routes
/// before parsing the next. `None` without cuts, or when a part does not
/// parse: the whole file is then parsed, so that the problem is reported as
/// it would be anyway.
fn load_in_parts(
    path: &Path,
    text: &str,
    cuts: &[usize],
) -> Option<(Result<Loaded, Report>, Vec<PathBuf>)> {
    let file: file::ConfigFile = toml::from_str(&text[..*cuts.first()?]).ok()?;
    let mut builder = build::Builder::new(&file, path);
    // Each part starts with one, so this is about how many routes there are.
    builder.reserve(text.matches("\n[[routes]]").count());
    builder.add_routes(&file.routes, 0);
    let ends = cuts.iter().skip(1).copied().chain([text.len()]);
    for (start, end) in cuts.iter().copied().zip(ends) {
        let part: file::RoutesPart = toml::from_str(&text[start..end]).ok()?;
        builder.add_routes(&part.routes, start);
    }
    Some(finish(path, text, builder))
}

/// Builds what could be read of a file that does not deserialize as a whole,
/// for the problems the rest has: refused, with every problem found.
fn load_recovered(
    path: &Path,
    text: &str,
    recovered: recover::Recovered,
) -> (Result<Loaded, Report>, Vec<PathBuf>) {
    let mut builder = build::Builder::new(&recovered.file, path);
    builder.add_routes(&recovered.routes, 0);
    let (_, mut diagnostics, files) = builder.finish();
    diagnostics.extend(recovered.diagnostics);
    diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    (Err(Report::new(path, text, &diagnostics)), files)
}

fn finish(
    path: &Path,
    text: &str,
    builder: build::Builder<'_>,
) -> (Result<Loaded, Report>, Vec<PathBuf>) {
    let (config, mut diagnostics, files) = builder.finish();
    if config.as_ref().is_some_and(|c| c.routes.is_empty()) {
        let hint = "no [[routes]]: nothing will be served (every request gets 404 `no_route`); \
                    add a [[routes]] table (conf/hookgate.toml has examples)";
        diagnostics.insert(0, Diagnostic::warning(None, hint));
    }
    let report = Report::new(path, text, &diagnostics);
    let loaded = match config {
        Some(config) => Ok(Loaded {
            config,
            warnings: report,
        }),
        None => Err(report),
    };
    (loaded, files)
}

#[cfg(test)]
pub(crate) mod tests;

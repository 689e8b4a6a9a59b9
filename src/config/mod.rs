//! Configuration pipeline: `hookgate.toml` → [`file::ConfigFile`] (serde, spans) →
//! [`build::build`] (validation, secrets, DNS) → [`RuntimeConfig`] (immutable,
//! shared through `ArcSwap`). Every problem is reported as `PATH:LINE:COL: message`.

pub mod build;
pub mod diagnostics;
pub mod file;
pub mod secret;
pub mod verifiers;

use std::path::{Path, PathBuf};

use diagnostics::{Diagnostic, Report};

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
    let file: file::ConfigFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let message = e.message().trim_end().replace('\n', " ");
            let d = Diagnostic::error(e.span(), message);
            return Err(Report::new(path, text, &[d]));
        }
    };
    let (config, diagnostics) = build::build(&file, path);
    let report = Report::new(path, text, &diagnostics);
    match config {
        Some(config) => Ok(Loaded {
            config,
            warnings: report,
        }),
        None => Err(report),
    }
}

#[cfg(test)]
mod tests;

//! The config loader: TOML text through parsing, validation and building
//! (routes, schemes, handshakes, verifiers, secrets, upstreams), reporting
//! every problem. Inputs that would leave the process are skipped: an upstream
//! whose host is a name (the loader resolves it through DNS) and a file
//! reference other than a bare name in the target's own directory (so that
//! `file:/dev/zero` is not read). The directory holds `secret` and `ca.pem`.

#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::LazyLock;

use hookgate::config;
use hookgate::config::parts;
use libfuzzer_sys::fuzz_target;

/// The config's path; its directory holds the files a config may name.
static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("hookgate-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the config");
    std::fs::write(dir.join("secret"), "file-secret\n").expect("a secret file");
    std::fs::write(dir.join("ca.pem"), "not a certificate\n").expect("a CA file");
    dir.join("hookgate.toml")
});

/// Whether loading `value` (found under `key`) stays inside this process.
fn offline(key: &str, value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => {
            let file = s
                .strip_prefix("file:")
                .or((key == "upstream_ca_file").then_some(s.as_str()));
            if let Some(name) = file {
                return !name.is_empty()
                    && name != ".."
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
            }
            if key != "upstream" {
                return true;
            }
            match s
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.authority().cloned())
            {
                Some(authority) => {
                    let host = authority
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    host.parse::<IpAddr>().is_ok()
                }
                None => true,
            }
        }
        toml::Value::Array(items) => items.iter().all(|v| offline(key, v)),
        toml::Value::Table(table) => table.iter().all(|(k, v)| offline(k, v)),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The loader parses the whole text, or its parts (see `config::parts`).
    let cuts = parts::cuts(text, parts::PART_BYTES);
    let ends = cuts.iter().copied().chain([text.len()]);
    let pieces = [(0, text.len())]
        .into_iter()
        .chain([0].into_iter().chain(cuts.iter().copied()).zip(ends));
    for (start, end) in pieces {
        if let Ok(table) = toml::from_str::<toml::Table>(&text[start..end]) {
            if !offline("", &toml::Value::Table(table)) {
                return;
            }
        }
    }
    let _ = config::load_str(&PATH, text);
});

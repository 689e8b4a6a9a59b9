//! Secrets: the redacted `Secret` type and resolution of `env:NAME`, `file:PATH`
//! and literal references. Nothing here ever formats a secret's bytes.

use std::fmt;
use std::path::Path;

/// Key material. `Debug` and `Display` print `[redacted]`, so a secret cannot leak
/// through logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps raw key bytes.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The key bytes, for MAC computation only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef<'a> {
    /// `env:NAME`: the environment variable `NAME`.
    Env(&'a str),
    /// `file:PATH`: the file's contents with trailing newlines trimmed; a relative
    /// path is relative to the config file's directory.
    File(&'a str),
    /// Any other string, taken literally.
    Literal(&'a str),
}

impl<'a> SecretRef<'a> {
    /// Classifies a reference string.
    pub fn parse(reference: &'a str) -> Self {
        if let Some(name) = reference.strip_prefix("env:") {
            Self::Env(name)
        } else if let Some(path) = reference.strip_prefix("file:") {
            Self::File(path)
        } else {
            Self::Literal(reference)
        }
    }

    /// How the reference may be shown: `env:NAME` and `file:PATH` as written, a
    /// literal as `[redacted]`.
    pub fn describe(&self) -> String {
        match self {
            Self::Env(name) => format!("env:{name}"),
            Self::File(path) => format!("file:{path}"),
            Self::Literal(_) => "[redacted]".to_owned(),
        }
    }

    /// Reads the secret. `base_dir` anchors relative `file:` paths. The error
    /// names the reference but never contains secret material.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        let bytes = match self {
            Self::Env(name) => match std::env::var_os(name) {
                Some(value) => value.into_encoded_bytes(),
                None => return Err(format!("environment variable `{name}` is not set")),
            },
            Self::File(path) => {
                let full = base_dir.join(path);
                let mut bytes = std::fs::read(&full)
                    .map_err(|e| format!("cannot read secret file `{}`: {e}", full.display()))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            Self::Literal(text) => text.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(match self {
                Self::Env(name) => format!("environment variable `{name}` is empty"),
                Self::File(path) => format!("secret file `{path}` is empty"),
                Self::Literal(_) => "secret is empty".to_owned(),
            });
        }
        Ok(Secret::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s)), "Some([redacted])");
    }

    #[test]
    fn parses_reference_kinds() {
        assert_eq!(SecretRef::parse("env:A"), SecretRef::Env("A"));
        assert_eq!(SecretRef::parse("file:/x"), SecretRef::File("/x"));
        assert_eq!(SecretRef::parse("plain"), SecretRef::Literal("plain"));
    }

    #[test]
    fn file_secret_is_trimmed_and_relative_to_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "abc\r\n\n").unwrap();
        let s = SecretRef::parse("file:s").resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), b"abc");
    }

    #[test]
    fn missing_and_empty_secrets_are_errors_without_material() {
        let dir = tempfile::tempdir().unwrap();
        let e = SecretRef::parse("env:HOOKGATE_TEST_SURELY_UNSET").resolve(dir.path());
        assert_eq!(
            e.unwrap_err(),
            "environment variable `HOOKGATE_TEST_SURELY_UNSET` is not set"
        );
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let e = SecretRef::parse("file:empty")
            .resolve(dir.path())
            .unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        assert!(SecretRef::parse("file:nope").resolve(dir.path()).is_err());
    }
}

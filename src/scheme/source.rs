//! Sources: where a scheme reads a value from, written `header:NAME`,
//! `json:/pointer`, `query:NAME`, `form:NAME` or `signature:KEY`.

use std::fmt;

use http::HeaderName;

use crate::json::JsonPointer;

/// A place in a request that holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The first value of a request header.
    Header(HeaderName),
    /// A field of the JSON body.
    Json(JsonPointer),
    /// A query parameter, percent-decoded.
    Query(String),
    /// A field of an `application/x-www-form-urlencoded` body, decoded.
    Form(String),
    /// A `key=value` field of the signature header (e.g. Stripe's `t`).
    Signature(String),
}

impl Source {
    /// Parses `kind:detail`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((kind, detail)) = text.split_once(':') else {
            return Err(format!(
                "`{text}` is not a source; write header:NAME, json:/pointer, query:NAME, \
                 form:NAME or signature:KEY"
            ));
        };
        if detail.is_empty() {
            return Err(format!("source `{text}` names nothing after `{kind}:`"));
        }
        match kind {
            "header" => HeaderName::from_bytes(detail.as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("invalid header name `{detail}` in `{text}`")),
            "json" => JsonPointer::parse(detail).map(Self::Json),
            "query" => Ok(Self::Query(detail.to_owned())),
            "form" => Ok(Self::Form(detail.to_owned())),
            "signature" => Ok(Self::Signature(detail.to_owned())),
            other => Err(format!(
                "unknown source kind `{other}` in `{text}`; use header, json, query, form or signature"
            )),
        }
    }
}

impl Source {
    /// The top-level JSON member this source reads, if it reads the JSON body.
    pub fn json_member(&self) -> Option<&str> {
        match self {
            Self::Json(pointer) => pointer.first_segment(),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Json(pointer) => write!(f, "json:{}", pointer.as_str()),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::Form(name) => write!(f, "form:{name}"),
            Self::Signature(key) => write!(f, "signature:{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_round_trips() {
        for text in [
            "header:x-rye-topic",
            "json:/data/id",
            "query:hub.mode",
            "form:Digits",
            "signature:t",
        ] {
            assert_eq!(Source::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Source::parse("header:X-Rye-Topic").unwrap(),
            Source::Header(HeaderName::from_static("x-rye-topic"))
        );
    }

    #[test]
    fn malformed_sources_are_errors_not_panics() {
        for bad in [
            "",
            "header",
            "header:",
            "json:id",
            "cookie:a",
            "header:bad name",
            ":x",
            "json:",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad:?}");
        }
    }
}

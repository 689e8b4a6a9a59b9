//! The scheme descriptor: a signing scheme described as data (algorithm,
//! signature header grammar, signed content, where the timestamp, event id and
//! event type come from, and an optional handshake). Built-in schemes and the
//! generic `hmac` scheme are all values of this one type.

use http::HeaderName;

use crate::handshake::Handshake;
use crate::json::JsonPointer;
use crate::verify::mac::{Algorithm, Encoding};
use crate::verify::template::{Part, Template};

/// Where a piece of request metadata is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSource {
    /// A request header's value.
    Header(HeaderName),
    /// A field of the JSON body.
    Json(JsonPointer),
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integer seconds since the unix epoch.
    UnixSeconds,
    /// RFC 3339, e.g. `2024-07-22T14:30:04.367Z`.
    Rfc3339,
}

impl TimeFormat {
    /// Parses `text` to unix seconds; `None` when it is not in this format.
    pub fn parse(self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            Self::UnixSeconds => text.parse().ok(),
            Self::Rfc3339 => {
                let format = time::format_description::well_known::Rfc3339;
                time::OffsetDateTime::parse(text, &format)
                    .ok()
                    .map(|t| t.unix_timestamp())
            }
        }
    }
}

/// The event time of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampSpec {
    /// Where it is read from.
    pub source: FieldSource,
    /// How it is written.
    pub format: TimeFormat,
}

/// Where the signature is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSpec {
    /// The header carrying it.
    pub header: HeaderName,
    /// Text that must precede the encoded MAC, e.g. `v0=`; empty for none.
    pub prefix: String,
    /// How the MAC is encoded.
    pub encoding: Encoding,
}

/// A complete signing scheme.
#[derive(Debug, Clone)]
pub struct Scheme {
    /// The name routes use in `scheme = "…"`.
    pub name: String,
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// The signature header grammar.
    pub signature: SignatureSpec,
    /// What is signed.
    pub signed_content: Template,
    /// The event time, when the scheme has one.
    pub timestamp: Option<TimestampSpec>,
    /// Sources of the event id, tried in order.
    pub id: Vec<FieldSource>,
    /// Sources of the event type, tried in order.
    pub event_type: Vec<FieldSource>,
    /// Replay window applied when a route does not set `tolerance_secs`.
    pub default_tolerance_secs: Option<u64>,
    /// The provider's endpoint-verification handshake, answered by the gateway.
    pub handshake: Option<Handshake>,
}

impl Scheme {
    /// Whether the MAC covers the timestamp, so it can be trusted for replay defense:
    /// a header timestamp must appear in the signed content, a body timestamp is
    /// covered when the body is.
    pub fn timestamp_is_signed(&self) -> bool {
        match &self.timestamp {
            None => false,
            Some(TimestampSpec {
                source: FieldSource::Header(_),
                ..
            }) => self.signed_content.uses(&Part::Timestamp),
            Some(TimestampSpec {
                source: FieldSource::Json(_),
                ..
            }) => self.signed_content.uses(&Part::Body),
        }
    }

    /// Headers that carry signature material (the signature, and a header
    /// timestamp); `strip_signature_headers` removes these before forwarding.
    pub fn signature_headers(&self) -> Vec<HeaderName> {
        let mut names = vec![self.signature.header.clone()];
        if let Some(TimestampSpec {
            source: FieldSource::Header(h),
            ..
        }) = &self.timestamp
        {
            names.push(h.clone());
        }
        names
    }

    /// Whether verification needs the full URL the provider called.
    pub fn signs_url(&self) -> bool {
        self.signed_content.uses(&Part::Url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        assert_eq!(
            TimeFormat::UnixSeconds.parse(" 1700000000 "),
            Some(1_700_000_000)
        );
        assert_eq!(TimeFormat::UnixSeconds.parse("17e8"), None);
        assert_eq!(
            TimeFormat::Rfc3339.parse("2024-07-22T14:30:04.367Z"),
            Some(1_721_658_604)
        );
        assert_eq!(
            TimeFormat::Rfc3339.parse("2024-07-22T16:30:04+02:00"),
            Some(1_721_658_604)
        );
        assert_eq!(TimeFormat::Rfc3339.parse("yesterday"), None);
    }
}

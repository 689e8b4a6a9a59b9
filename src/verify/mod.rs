//! Signature verification: runs a route's verifiers over a [`SignedRequest`] and
//! yields either a [`Verified`] proof or a [`Rejection`]. Pure and synchronous:
//! never performs I/O, never reads the clock itself, never logs secrets or
//! signatures.

pub mod mac;
pub mod presets;
pub mod request;
pub mod scheme;
pub mod template;

use std::sync::Arc;

use crate::config::secret::Secret;
use mac::{KeyedMac, constant_time_eq};
use request::SignedRequest;
use scheme::Scheme;
use template::Part;

/// Longest event id or type forwarded upstream as a header; longer values are dropped.
const MAX_METADATA_LEN: usize = 1024;

/// Why a delivery was refused. Each variant maps to one error code of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature header is absent.
    #[error("signature header missing")]
    SignatureMissing,
    /// A header the signed content needs (timestamp or id) is absent.
    #[error("signed header missing")]
    SignedHeaderMissing,
    /// The signature header is present but not in the scheme's format.
    #[error("signature malformed")]
    SignatureMalformed,
    /// No configured secret produces the received signature.
    #[error("signature mismatch")]
    SignatureMismatch,
    /// The scheme's timestamp is absent or unreadable while a tolerance applies.
    #[error("timestamp unreadable")]
    TimestampUnreadable,
    /// The timestamp is older than the tolerance allows.
    #[error("timestamp too old")]
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp too new")]
    TimestampTooNew,
}

impl Rejection {
    /// A stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::SignatureMissing => "signature_missing",
            Self::SignedHeaderMissing => "signed_header_missing",
            Self::SignatureMalformed => "signature_malformed",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TimestampUnreadable => "timestamp_unreadable",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampTooNew => "timestamp_too_new",
        }
    }

    /// How far verification got before failing; with several verifiers on a route,
    /// the one that got furthest explains the refusal.
    fn progress(self) -> u8 {
        match self {
            Self::SignatureMissing => 0,
            Self::SignedHeaderMissing => 1,
            Self::SignatureMalformed | Self::SignatureMismatch => 2,
            Self::TimestampUnreadable | Self::TimestampTooOld | Self::TimestampTooNew => 3,
        }
    }
}

/// Proof that a delivery passed verification, with the metadata it carried.
/// Only this module can make one.
#[derive(Debug, Clone)]
pub struct Verified {
    scheme: Arc<Scheme>,
    secret_index: usize,
    id: Option<String>,
    timestamp: Option<i64>,
    event_type: Option<String>,
}

impl Verified {
    /// The scheme that verified the delivery.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Which of the verifier's secrets matched (0-based), for rotation bookkeeping.
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// The event id, when the scheme has one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event time in unix seconds, when known.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The event type, when known.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }
}

/// One scheme with its secrets, ready to check deliveries.
#[derive(Debug)]
pub struct Verifier {
    scheme: Arc<Scheme>,
    keys: Vec<KeyedMac>,
    tolerance_secs: Option<u64>,
}

impl Verifier {
    /// Prepares a verifier. `tolerance_secs` overrides the scheme's default; it only
    /// takes effect when the scheme's signature covers its timestamp.
    pub fn new(scheme: Arc<Scheme>, secrets: &[Secret], tolerance_secs: Option<u64>) -> Self {
        let keys = secrets
            .iter()
            .map(|s| KeyedMac::new(scheme.algorithm, s.expose()))
            .collect();
        let tolerance_secs = tolerance_secs
            .or(scheme.default_tolerance_secs)
            .filter(|_| scheme.timestamp_is_signed());
        Self {
            scheme,
            keys,
            tolerance_secs,
        }
    }

    /// The scheme this verifier checks.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The replay window in force, if any.
    pub fn tolerance_secs(&self) -> Option<u64> {
        self.tolerance_secs
    }

    /// Checks one delivery at time `now` (unix seconds).
    pub fn verify(&self, req: &SignedRequest<'_>, now: i64) -> Result<Verified, Rejection> {
        let scheme = &*self.scheme;
        let candidates = self.received_signatures(req)?;
        let content = SignedContent::gather(scheme, req)?;
        let secret_index = self
            .keys
            .iter()
            .position(|key| {
                let computed = content.mac(key.clone(), req);
                candidates
                    .iter()
                    .any(|received| constant_time_eq(&computed, received))
            })
            .ok_or(Rejection::SignatureMismatch)?;

        let timestamp = scheme.timestamp.as_ref().and_then(|spec| {
            req.field(std::slice::from_ref(&spec.source))
                .and_then(|t| spec.format.parse(&t))
        });
        if let Some(tolerance) = self.tolerance_secs {
            check_window(timestamp, now, tolerance)?;
        }
        Ok(Verified {
            scheme: Arc::clone(&self.scheme),
            secret_index,
            id: bounded(req.field(&scheme.id)),
            timestamp,
            event_type: bounded(req.field(&scheme.event_type)),
        })
    }

    /// Every well-formed signature in the signature header(s).
    fn received_signatures(&self, req: &SignedRequest<'_>) -> Result<Vec<Vec<u8>>, Rejection> {
        let spec = &self.scheme.signature;
        let mut values = req.headers.get_all(&spec.header).iter().peekable();
        if values.peek().is_none() {
            return Err(Rejection::SignatureMissing);
        }
        let decoded: Vec<Vec<u8>> = values
            .filter_map(|v| v.to_str().ok())
            .filter_map(|text| text.trim().strip_prefix(spec.prefix.as_str()))
            .filter_map(|text| spec.encoding.decode(text.trim()))
            .collect();
        if decoded.is_empty() {
            return Err(Rejection::SignatureMalformed);
        }
        Ok(decoded)
    }
}

/// The header-sourced pieces of the signed content, read once per delivery.
struct SignedContent<'s> {
    scheme: &'s Scheme,
    timestamp: Option<String>,
    id: Option<String>,
}

impl<'s> SignedContent<'s> {
    fn gather(scheme: &'s Scheme, req: &SignedRequest<'_>) -> Result<Self, Rejection> {
        let template = &scheme.signed_content;
        let timestamp = if template.uses(&Part::Timestamp) {
            let source = scheme
                .timestamp
                .as_ref()
                .map(|t| std::slice::from_ref(&t.source));
            Some(
                req.field(source.unwrap_or_default())
                    .ok_or(Rejection::SignedHeaderMissing)?,
            )
        } else {
            None
        };
        let id = if template.uses(&Part::Id) {
            Some(
                req.field(&scheme.id)
                    .ok_or(Rejection::SignedHeaderMissing)?,
            )
        } else {
            None
        };
        Ok(Self {
            scheme,
            timestamp,
            id,
        })
    }

    fn mac(&self, mut mac: KeyedMac, req: &SignedRequest<'_>) -> Vec<u8> {
        for part in self.scheme.signed_content.parts() {
            let bytes: &[u8] = match part {
                Part::Literal(text) => text,
                Part::Body => req.body,
                Part::Timestamp => self.timestamp.as_deref().unwrap_or_default().as_bytes(),
                Part::Id => self.id.as_deref().unwrap_or_default().as_bytes(),
                Part::Method => req.method.as_bytes(),
                Part::Url => req.url().as_bytes(),
            };
            mac.update(bytes);
        }
        mac.finalize()
    }
}

fn check_window(timestamp: Option<i64>, now: i64, tolerance: u64) -> Result<(), Rejection> {
    let ts = timestamp.ok_or(Rejection::TimestampUnreadable)?;
    let age = i128::from(now) - i128::from(ts);
    if age > i128::from(tolerance) {
        Err(Rejection::TimestampTooOld)
    } else if -age > i128::from(tolerance) {
        Err(Rejection::TimestampTooNew)
    } else {
        Ok(())
    }
}

fn bounded(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_METADATA_LEN)
}

/// Runs every verifier; the first that passes wins. When all fail, the refusal of
/// the one that got furthest is returned (a bad signature explains more than a
/// missing header of another scheme).
pub fn verify_any(
    verifiers: &[Verifier],
    req: &SignedRequest<'_>,
    now: i64,
) -> Result<Verified, Rejection> {
    let mut worst: Option<Rejection> = None;
    for verifier in verifiers {
        match verifier.verify(req, now) {
            Ok(verified) => return Ok(verified),
            Err(r) => {
                if worst.is_none_or(|w| r.progress() > w.progress()) {
                    worst = Some(r);
                }
            }
        }
    }
    Err(worst.unwrap_or(Rejection::SignatureMissing))
}

#[cfg(test)]
mod tests;

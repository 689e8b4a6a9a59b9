//! `LocalResponse`: a response the gateway writes itself (errors, handshake
//! answers) instead of relaying the upstream's.

use http::HeaderName;

/// The `X-Content-Type-Options` value on every response the gateway makes
/// itself, so that no browser reads an echoed challenge as anything but its
/// declared type. Relayed upstream answers are the app's and keep theirs.
pub const NOSNIFF: &str = "nosniff";

/// A complete response made by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<String>,
    /// Extra headers, e.g. `Allow` on a 405.
    pub headers: Vec<(HeaderName, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

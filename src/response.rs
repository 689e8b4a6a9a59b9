//! `LocalResponse`: a response the gateway writes itself (errors, handshake
//! answers) instead of relaying the upstream's.

use http::HeaderName;

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

//! Handshake rules as data: which requests a provider's endpoint-verification
//! challenge is, and the answer's shape. Answering them is [`crate::handshake`].

use http::{HeaderName, Method};

use super::source::Source;
use super::template::Template;

/// The body of a handshake answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerBody {
    /// No body.
    Empty,
    /// Text from a template.
    Text(Template),
    /// JSON whose strings are templates.
    Json(JsonAnswer),
}

/// A JSON answer value.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonAnswer {
    /// An object, members in order.
    Object(Vec<(String, Self)>),
    /// An array.
    Array(Vec<Self>),
    /// A string rendered from a template.
    Text(Template),
    /// A number, boolean or null, as written.
    Literal(serde_json::Value),
}

/// A handshake rule: which requests it answers, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// Whether the request must pass verification first.
    pub verify_first: bool,
    /// The method it uses; any when `None`.
    pub method: Option<Method>,
    /// The source that marks a request as this handshake; `None` for a rule
    /// that answers every request of its `method` (Trello's HEAD).
    pub when: Option<Source>,
    /// The value `when` must have; any when `None`.
    pub equals: Option<String>,
    /// A source that must equal the route's `verify_token`.
    pub verify_token: Option<Source>,
    /// Answer status.
    pub status: u16,
    /// Answer `Content-Type`, when there is a body.
    pub content_type: Option<String>,
    /// Answer body.
    pub body: AnswerBody,
    /// Answer headers.
    pub headers: Vec<(HeaderName, Template)>,
}

/// Longest value, in bytes, an answer to an unverified request MACs.
pub const MAX_CHALLENGE_LEN: usize = 256;

/// The bytes a value an answer to an unverified request MACs may hold, as
/// written in messages: those of base64, base64url and URL tokens.
pub const CHALLENGE_CHARACTERS: &str = "A-Z a-z 0-9 - . _ ~ + / =";

/// Whether an answer to an unverified request may MAC `value`: 1 to
/// [`MAX_CHALLENGE_LEN`] bytes of [`CHALLENGE_CHARACTERS`]. Such a value holds
/// no `{`, `[`, `"` or whitespace, so it is never a JSON body: a scheme that
/// accepts only JSON bodies ([`super::BodyFormat::Json`]) never takes
/// its MAC for a signature (X's CRC tokens are base64).
pub fn is_challenge_token(value: &str) -> bool {
    (1..=MAX_CHALLENGE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

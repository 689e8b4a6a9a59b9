//! Endpoint-verification handshakes: recognising a provider's challenge request
//! and building the answer the gateway sends itself, without the upstream.

use crate::json::JsonPointer;
use crate::response::LocalResponse;
use crate::verify::request::SignedRequest;

/// When a request is a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The JSON body's field at `pointer` is the string `value`.
    JsonEquals {
        /// The field.
        pointer: JsonPointer,
        /// Its expected value.
        value: String,
    },
}

/// The body of a handshake answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerBody {
    /// A JSON object whose members echo fields of the request body.
    JsonObject(Vec<(String, JsonPointer)>),
}

/// A handshake rule: a matcher and the answer to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Which requests are handshakes.
    pub matcher: Matcher,
    /// The status of the answer.
    pub status: u16,
    /// The `Content-Type` of the answer.
    pub content_type: &'static str,
    /// The body of the answer.
    pub body: AnswerBody,
}

/// A handshake request that lacks a field its answer must echo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handshake request has no `{0}`")]
pub struct MissingField(pub String);

impl Handshake {
    /// Whether `req` is this handshake.
    pub fn matches(&self, req: &SignedRequest<'_>) -> bool {
        match &self.matcher {
            Matcher::JsonEquals { pointer, value } => {
                req.json().text_at(pointer).is_some_and(|v| v == *value)
            }
        }
    }

    /// The answer to `req`, which must match.
    pub fn answer(&self, req: &SignedRequest<'_>) -> Result<LocalResponse, MissingField> {
        let body = match &self.body {
            AnswerBody::JsonObject(members) => {
                let mut object = serde_json::Map::new();
                for (key, pointer) in members {
                    let value = req
                        .json()
                        .value_at(pointer)
                        .ok_or_else(|| MissingField(pointer.as_str().to_owned()))?;
                    object.insert(key.clone(), value);
                }
                serde_json::Value::Object(object).to_string().into_bytes()
            }
        };
        Ok(LocalResponse {
            status: self.status,
            content_type: self.content_type,
            headers: Vec::new(),
            body,
        })
    }
}

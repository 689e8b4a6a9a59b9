//! Endpoint-verification handshakes: recognising a provider's challenge request
//! and building the answer the gateway sends itself, without the upstream.

use http::{HeaderName, Method};

use crate::config::secret::Secret;
use crate::response::LocalResponse;
use crate::scheme::source::Source;
use crate::scheme::template::{Part, Template};
use crate::verify::mac::{KeyedMac, constant_time_eq};
use crate::verify::request::SignedRequest;

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

/// Why a handshake could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request lacks a field the answer echoes.
    #[error("handshake request has no `{0}`")]
    MissingField(String),
    /// The request's verify token is not the route's.
    #[error("handshake verify token does not match")]
    VerifyTokenMismatch,
}

/// What an answer may use besides the request: the route's verify token and the
/// key for `{hmac:…}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerKeys<'a> {
    /// The route's `verify_token`.
    pub verify_token: Option<&'a Secret>,
    /// The HMAC key for `{hmac:…}`.
    pub mac: Option<&'a KeyedMac>,
}

impl Handshake {
    /// Every source the handshake reads (to match it and to answer it).
    pub fn sources(&self) -> Vec<&Source> {
        let mut sources: Vec<&Source> = self.when.iter().collect();
        sources.extend(&self.verify_token);
        let mut templates: Vec<&Template> = self.headers.iter().map(|(_, t)| t).collect();
        let mut stack: Vec<&JsonAnswer> = Vec::new();
        match &self.body {
            AnswerBody::Empty => {}
            AnswerBody::Text(t) => templates.push(t),
            AnswerBody::Json(json) => stack.push(json),
        }
        while let Some(json) = stack.pop() {
            match json {
                JsonAnswer::Object(members) => stack.extend(members.iter().map(|(_, v)| v)),
                JsonAnswer::Array(items) => stack.extend(items),
                JsonAnswer::Text(t) => templates.push(t),
                JsonAnswer::Literal(_) => {}
            }
        }
        sources.extend(templates.into_iter().flat_map(Template::fields));
        sources
    }

    /// Whether `req` is this handshake.
    pub fn matches(&self, req: &SignedRequest<'_>) -> bool {
        if self
            .method
            .as_ref()
            .is_some_and(|m| m.as_str() != req.method)
        {
            return false;
        }
        let Some(when) = &self.when else {
            return true;
        };
        match (req.field(when, None), &self.equals) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(value), Some(expected)) => *value == **expected,
        }
    }

    /// The answer to `req`, which must match.
    pub fn answer(
        &self,
        req: &SignedRequest<'_>,
        keys: AnswerKeys<'_>,
    ) -> Result<LocalResponse, HandshakeError> {
        if let Some(source) = &self.verify_token {
            let sent = req.field(source, None);
            let ok = match (sent, keys.verify_token) {
                (Some(sent), Some(token)) => constant_time_eq(token.expose(), sent.as_bytes()),
                _ => false,
            };
            if !ok {
                return Err(HandshakeError::VerifyTokenMismatch);
            }
        }
        let body = match &self.body {
            AnswerBody::Empty => Vec::new(),
            AnswerBody::Text(template) => render(template, req, keys)?.into_bytes(),
            AnswerBody::Json(json) => render_json(json, req, keys)?.to_string().into_bytes(),
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, template)| Ok((name.clone(), render(template, req, keys)?)))
            .collect::<Result<_, HandshakeError>>()?;
        let content_type = self
            .content_type
            .clone()
            .filter(|_| !matches!(self.body, AnswerBody::Empty));
        Ok(LocalResponse {
            status: self.status,
            content_type,
            headers,
            body,
        })
    }
}

/// Renders an answer template: literal text, request fields, and `{hmac:…}`.
fn render(
    template: &Template,
    req: &SignedRequest<'_>,
    keys: AnswerKeys<'_>,
) -> Result<String, HandshakeError> {
    let mut out = String::new();
    for part in template.parts() {
        match part {
            Part::Literal(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
            Part::Field(source) => out.push_str(&field(req, source)?),
            Part::Optional(source) => out.push_str(&req.field(source, None).unwrap_or_default()),
            Part::Hmac(source, encoding) => {
                let value = field(req, source)?;
                let mut mac = keys
                    .mac
                    .cloned()
                    .ok_or_else(|| HandshakeError::MissingField(source.to_string()))?;
                mac.update(value.as_bytes());
                out.push_str(&encoding.encode(&mac.finalize()));
            }
            // Refused by the scheme builder: answers only use literals, fields and {hmac:…}.
            _ => return Err(HandshakeError::MissingField(format!("{part:?}"))),
        }
    }
    Ok(out)
}

fn field(req: &SignedRequest<'_>, source: &Source) -> Result<String, HandshakeError> {
    req.field(source, None)
        .map(|v| v.into_owned())
        .ok_or_else(|| HandshakeError::MissingField(source.to_string()))
}

fn render_json(
    json: &JsonAnswer,
    req: &SignedRequest<'_>,
    keys: AnswerKeys<'_>,
) -> Result<serde_json::Value, HandshakeError> {
    Ok(match json {
        JsonAnswer::Object(members) => {
            let mut object = serde_json::Map::new();
            for (key, value) in members {
                object.insert(key.clone(), render_json(value, req, keys)?);
            }
            serde_json::Value::Object(object)
        }
        JsonAnswer::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_json(i, req, keys))
                .collect::<Result<_, _>>()?,
        ),
        JsonAnswer::Text(template) => serde_json::Value::String(render(template, req, keys)?),
        JsonAnswer::Literal(value) => value.clone(),
    })
}

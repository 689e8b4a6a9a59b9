//! Endpoint-verification handshakes answered: recognising a provider's challenge
//! request and building the answer the gateway sends itself, without the
//! upstream. The rules themselves are data in [`crate::scheme::handshake`].

use http::HeaderValue;

use crate::base::secret::Secret;
use crate::mac::{KeyedMac, constant_time_eq};
use crate::response::LocalResponse;
use crate::scheme::handshake::{
    AnswerBody, CHALLENGE_CHARACTERS, Handshake, JsonAnswer, MAX_CHALLENGE_LEN, is_challenge_token,
};
use crate::scheme::source::Source;
use crate::scheme::template::{Part, Template};
use crate::verify::request::SignedRequest;

/// Why a handshake could not be answered. Each is answered 400 `bad_request`
/// but a verify token mismatch (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request lacks a field the answer echoes.
    #[error("handshake request has no `{0}`")]
    MissingField(String),
    /// The request's verify token is not the route's.
    #[error("handshake verify token does not match")]
    VerifyTokenMismatch,
    /// An unverified request asks for the MAC of a value that is not a
    /// challenge token ([`is_challenge_token`]): it could be a body.
    #[error(
        "handshake `{0}` is not a challenge token (1 to {MAX_CHALLENGE_LEN} bytes of {CHALLENGE_CHARACTERS}); no MAC given"
    )]
    NotAToken(String),
    /// A value the answer echoes into a header or a text body holds a
    /// control character (CR, LF, NUL, …) or another byte a header value may not.
    #[error("handshake `{0}` holds a character the answer cannot echo")]
    Unsendable(String),
    /// The request's JSON body holds a member the handshake read twice.
    #[error("handshake request body holds a JSON member it reads twice")]
    DuplicateKey,
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
        sources.extend(self.templates().into_iter().flat_map(Template::fields));
        sources
    }

    /// Whether the answer holds a MAC of request data under the verifying
    /// key (`{hmac:…}`): then it signs what the caller sent.
    pub fn macs_request_data(&self) -> bool {
        self.templates()
            .iter()
            .any(|t| t.parts().iter().any(|p| matches!(p, Part::Hmac(..))))
    }

    /// The templates of the answer: its headers', then its body's.
    fn templates(&self) -> Vec<&Template> {
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
        templates
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
        let text = Render {
            req,
            keys,
            verified: self.verify_first,
            echo: Echo::Text,
        };
        let json = Render {
            echo: Echo::Json,
            ..text
        };
        let body = match &self.body {
            AnswerBody::Empty => Vec::new(),
            AnswerBody::Text(template) => text.template(template)?.into_bytes(),
            AnswerBody::Json(answer) => json.json(answer)?.to_string().into_bytes(),
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, template)| Ok((name.clone(), text.template(template)?)))
            .collect::<Result<_, HandshakeError>>()?;
        if req.json().met_duplicate() {
            return Err(HandshakeError::DuplicateKey);
        }
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

/// Where an echoed request value goes.
#[derive(Debug, Clone, Copy)]
enum Echo {
    /// A header or a text body: the value must be valid header text.
    Text,
    /// A JSON string, which escapes whatever it holds.
    Json,
}

/// What an answer is rendered from.
#[derive(Debug, Clone, Copy)]
struct Render<'r, 'a> {
    req: &'r SignedRequest<'a>,
    keys: AnswerKeys<'r>,
    /// Whether the request was verified (else `{hmac:…}` takes tokens only).
    verified: bool,
    echo: Echo,
}

impl Render<'_, '_> {
    /// Renders an answer template: literal text, request fields, and `{hmac:…}`.
    fn template(&self, template: &Template) -> Result<String, HandshakeError> {
        let mut out = String::new();
        for part in template.parts() {
            match part {
                Part::Literal(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
                Part::Field(source) => out.push_str(&self.echo(source, self.field(source)?)?),
                Part::Optional(source) => {
                    let value = self.req.field(source, None).unwrap_or_default();
                    out.push_str(&self.echo(source, value.into_owned())?);
                }
                Part::Hmac(source, encoding) => {
                    let value = self.field(source)?;
                    if !self.verified && !is_challenge_token(&value) {
                        return Err(HandshakeError::NotAToken(source.to_string()));
                    }
                    let mut mac = self
                        .keys
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

    fn field(&self, source: &Source) -> Result<String, HandshakeError> {
        self.req
            .field(source, None)
            .map(|v| v.into_owned())
            .ok_or_else(|| HandshakeError::MissingField(source.to_string()))
    }

    /// `value` read from `source`, if it may be echoed where it goes.
    fn echo(&self, source: &Source, value: String) -> Result<String, HandshakeError> {
        match self.echo {
            Echo::Text if HeaderValue::from_str(&value).is_err() => {
                Err(HandshakeError::Unsendable(source.to_string()))
            }
            Echo::Text | Echo::Json => Ok(value),
        }
    }

    fn json(&self, answer: &JsonAnswer) -> Result<serde_json::Value, HandshakeError> {
        Ok(match answer {
            JsonAnswer::Object(members) => {
                let mut object = serde_json::Map::new();
                for (key, value) in members {
                    object.insert(key.clone(), self.json(value)?);
                }
                serde_json::Value::Object(object)
            }
            JsonAnswer::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.json(i))
                    .collect::<Result<_, _>>()?,
            ),
            JsonAnswer::Text(template) => serde_json::Value::String(self.template(template)?),
            JsonAnswer::Literal(value) => value.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::base::secret::Secret;
    use crate::scheme::presets;
    use crate::verify::Verifier;
    use crate::verify::request::UrlParts;
    use crate::verify::tests::headers;

    const URL: UrlParts<'static> = UrlParts {
        public_url: None,
        remainder: "",
        host: "gw",
    };

    /// `scheme`'s first handshake's answer to a request with `query` and `body`.
    fn answer(
        scheme: &str,
        method: &str,
        query: &str,
        body: &[u8],
    ) -> Result<LocalResponse, HandshakeError> {
        let scheme = presets::get(scheme).unwrap();
        let secret = Secret::new(b"consumer-secret".to_vec());
        let verifier = Verifier::new(Arc::clone(&scheme), &[secret], None).unwrap();
        let token = Secret::new(b"tok".to_vec());
        let keys = AnswerKeys {
            verify_token: Some(&token),
            mac: verifier.mac_key(0),
        };
        let h = headers(&[]);
        let req = SignedRequest::new(method, ("/h", Some(query)), &h, body, URL);
        let handshake = &scheme.handshakes[0];
        assert!(handshake.matches(&req));
        handshake.answer(&req, keys)
    }

    #[test]
    fn challenge_tokens_are_short_and_never_json() {
        assert!(is_challenge_token(
            "ZTcyNDcyYjYtN2RkZC00OGE2LWI0MDEtNmNmYjhmODk4YTIy"
        ));
        assert!(is_challenge_token("a-b_c.d~e+f/g=="));
        assert!(is_challenge_token(&"x".repeat(MAX_CHALLENGE_LEN)));
        for not in [
            String::new(),
            "x".repeat(MAX_CHALLENGE_LEN + 1),
            "{}".into(),
            "[1]".into(),
            "\"s\"".into(),
            "a b".into(),
            "a\nb".into(),
            "a:b".into(),
            "é".into(),
        ] {
            assert!(!is_challenge_token(&not), "{not:?}");
        }
    }

    /// X's CRC: a token is answered with its HMAC; a value that could be a
    /// body (JSON, whitespace, too long) gets no MAC.
    #[test]
    fn an_unverified_mac_answers_only_tokens() {
        let ok = answer("twitter", "GET", "crc_token=ZTcyNDcy", b"").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
        assert!(
            json["response_token"]
                .as_str()
                .unwrap()
                .starts_with("sha256=")
        );
        let long = format!("crc_token={}", "x".repeat(MAX_CHALLENGE_LEN + 1));
        for query in [
            "crc_token=%7B%22a%22%3A1%7D",
            "crc_token=a+b",
            long.as_str(),
        ] {
            assert_eq!(
                answer("twitter", "GET", query, b"").unwrap_err(),
                HandshakeError::NotAToken("query:crc_token".into()),
                "{query}"
            );
        }
    }

    /// An echo into a text body or a header must be header text; a JSON
    /// answer escapes what it echoes.
    #[test]
    fn control_characters_are_not_echoed_as_text() {
        let meta = |challenge: &str| {
            let query =
                format!("hub.mode=subscribe&hub.verify_token=tok&hub.challenge={challenge}");
            answer("meta", "GET", &query, b"")
        };
        assert_eq!(meta("1158201444").unwrap().body, b"1158201444");
        for bad in ["a%0D%0Ab", "a%00", "%0A", "a%7F"] {
            assert_eq!(
                meta(bad).unwrap_err(),
                HandshakeError::Unsendable("query:hub.challenge".into()),
                "{bad}"
            );
        }
        let monday = answer("monday", "POST", "", br#"{"challenge":"a\r\nb"}"#).unwrap();
        assert_eq!(monday.body, br#"{"challenge":"a\r\nb"}"#);
    }

    #[test]
    fn a_challenge_read_from_a_repeated_member_is_not_answered() {
        assert_eq!(
            answer(
                "monday",
                "POST",
                "",
                br#"{"challenge":"a","challenge":"b"}"#
            )
            .unwrap_err(),
            HandshakeError::DuplicateKey
        );
    }
}

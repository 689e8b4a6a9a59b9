//! Signed content: a scheme's template filled in from one request, looked up
//! once and then fed to every key (and URL variant) without copying the body.
//! Signing (`hookgate sign`) uses the same code as verifying.

use std::borrow::Cow;

use crate::scheme::Scheme;
use crate::scheme::signature::Received;
use crate::scheme::template::Part;
use crate::verify::Rejection;
use crate::verify::remote::aws_sns_string;
use crate::verify::request::SignedRequest;

/// One resolved piece of the content.
#[derive(Debug)]
enum Piece<'r> {
    Bytes(Cow<'r, [u8]>),
    Url,
    Secret,
}

/// The content a scheme signs, for one request.
#[derive(Debug)]
pub struct Content<'r> {
    pieces: Vec<Piece<'r>>,
}

fn text(value: Cow<'_, str>) -> Cow<'_, [u8]> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

impl<'r> Content<'r> {
    /// Looks up every piece `scheme` signs. A field the template needs but the
    /// request lacks is a missing part of the signature.
    pub fn gather<'a: 'r>(
        scheme: &'r Scheme,
        req: &'r SignedRequest<'a>,
        received: Option<&Received>,
    ) -> Result<Self, Rejection> {
        let missing = Rejection::SignedHeaderMissing;
        let mut pieces = Vec::with_capacity(scheme.signed.parts().len());
        for part in scheme.signed.parts() {
            let piece = match part {
                Part::Literal(bytes) => Piece::Bytes(Cow::Borrowed(bytes)),
                Part::Body => Piece::Bytes(Cow::Borrowed(req.body)),
                Part::Timestamp => {
                    let source = scheme.timestamp.as_ref().ok_or(missing)?;
                    Piece::Bytes(text(req.field(&source.source, received).ok_or(missing)?))
                }
                Part::Id => {
                    Piece::Bytes(text(req.first_field(&scheme.id, received).ok_or(missing)?))
                }
                Part::Method => Piece::Bytes(Cow::Borrowed(req.method.as_bytes())),
                Part::Url => Piece::Url,
                Part::Path => Piece::Bytes(Cow::Borrowed(req.path.as_bytes())),
                Part::Query => {
                    Piece::Bytes(Cow::Borrowed(req.query.unwrap_or_default().as_bytes()))
                }
                Part::Secret => Piece::Secret,
                Part::FormParams => Piece::Bytes(Cow::Owned(req.form_params())),
                Part::AwsSns => {
                    Piece::Bytes(Cow::Owned(aws_sns_string(req.json()).ok_or(missing)?))
                }
                Part::Crc32 => Piece::Bytes(Cow::Owned(
                    crc32fast::hash(req.body).to_string().into_bytes(),
                )),
                // The builder allows it only in remote-key schemes, whose
                // verifier feeds the route's `webhook_id` in the secret's place.
                Part::WebhookId => Piece::Secret,
                Part::Field(source) => {
                    Piece::Bytes(text(req.field(source, received).ok_or(missing)?))
                }
                Part::Optional(source) => {
                    Piece::Bytes(text(req.field(source, received).unwrap_or_default()))
                }
                // Refused by the scheme builder: signed content cannot contain a MAC.
                Part::Hmac(..) => return Err(missing),
            };
            pieces.push(piece);
        }
        Ok(Self { pieces })
    }

    /// Feeds the content to `sink`, with `url` for `{url}` and `secret` for `{secret}`.
    pub fn feed(&self, url: &str, secret: &[u8], sink: &mut dyn FnMut(&[u8])) {
        for piece in &self.pieces {
            match piece {
                Piece::Bytes(bytes) => sink(bytes),
                Piece::Url => sink(url.as_bytes()),
                Piece::Secret => sink(secret),
            }
        }
    }

    /// The content as one buffer (for signature algorithms that need it whole).
    pub fn to_vec(&self, url: &str, secret: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.feed(url, secret, &mut |b| out.extend_from_slice(b));
        out
    }
}

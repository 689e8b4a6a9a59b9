//! Templates: which bytes, in which order, make up signed content
//! (`{timestamp}.{body}`, `v0:{timestamp}:{body}`, `{url}{form_params}`) or a
//! handshake answer (`{json:/challenge}`, `{hmac:json:/payload/plainToken}`).

use crate::scheme::signature::Encoding;
use crate::scheme::source::Source;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Fixed text between placeholders.
    Literal(Vec<u8>),
    /// `{body}`: the raw request body, byte for byte.
    Body,
    /// `{timestamp}`: the scheme's timestamp, as written in its source.
    Timestamp,
    /// `{id}`: the scheme's event id, as written in its source.
    Id,
    /// `{method}`: the request method, e.g. `POST`.
    Method,
    /// `{url}`: the full URL the provider called (`public_url`, or rebuilt from `Host`).
    Url,
    /// `{path}`: the request path.
    Path,
    /// `{query}`: the raw query string, without `?`.
    Query,
    /// `{secret}`: the secret itself (for schemes that hash it with the content).
    Secret,
    /// `{form_params}`: every form field, sorted by name (then value), each as
    /// name followed by value (Twilio's rule); empty for a body that is not a form.
    FormParams,
    /// `{header:NAME}`, `{json:/p}`, `{query:NAME}`, `{form:NAME}`, `{signature:KEY}`.
    Field(Source),
    /// `{optional:SOURCE}`: the source's value, or nothing when the request
    /// lacks it (Adyen signs an absent field as an empty one).
    Optional(Source),
    /// `{hmac:SOURCE}` (lowercase hex) or `{hmac-base64:SOURCE}`: the HMAC of
    /// the source's value under the route's secret (handshake answers only).
    Hmac(Source, Encoding),
    /// `{aws_sns}`: the string AWS SNS signs, built from the JSON message's
    /// fields by its `Type` (AWS's rule; code, as a template cannot skip an
    /// absent `Subject`).
    AwsSns,
    /// `{crc32}`: the CRC-32 of the raw body as an unsigned decimal (PayPal).
    Crc32,
    /// `{webhook_id}`: the route's `webhook_id` (PayPal).
    WebhookId,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// The template `{body}`: the raw body alone.
    pub fn body() -> Self {
        Self {
            parts: vec![Part::Body],
        }
    }

    /// Parses literal text and `{placeholder}`s.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed `{{` in template `{text}`"));
            };
            let part = placeholder(&after[..close])?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The pieces in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template is empty.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the template includes `part`.
    pub fn uses(&self, part: &Part) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    /// Every field source the template reads (`{header:…}` and the like).
    pub fn fields(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(source) | Part::Optional(source) | Part::Hmac(source, _) => Some(source),
            _ => None,
        })
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => f.write_str(&String::from_utf8_lossy(bytes))?,
                Part::Body => f.write_str("{body}")?,
                Part::Timestamp => f.write_str("{timestamp}")?,
                Part::Id => f.write_str("{id}")?,
                Part::Method => f.write_str("{method}")?,
                Part::Url => f.write_str("{url}")?,
                Part::Path => f.write_str("{path}")?,
                Part::Query => f.write_str("{query}")?,
                Part::Secret => f.write_str("{secret}")?,
                Part::FormParams => f.write_str("{form_params}")?,
                Part::AwsSns => f.write_str("{aws_sns}")?,
                Part::Crc32 => f.write_str("{crc32}")?,
                Part::WebhookId => f.write_str("{webhook_id}")?,
                Part::Field(source) => write!(f, "{{{source}}}")?,
                Part::Optional(source) => write!(f, "{{optional:{source}}}")?,
                Part::Hmac(source, Encoding::Base64) => write!(f, "{{hmac-base64:{source}}}")?,
                Part::Hmac(source, _) => write!(f, "{{hmac:{source}}}")?,
            }
        }
        Ok(())
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    Ok(match name {
        "body" => Part::Body,
        "timestamp" => Part::Timestamp,
        "id" => Part::Id,
        "method" => Part::Method,
        "url" => Part::Url,
        "path" => Part::Path,
        "query" => Part::Query,
        "secret" => Part::Secret,
        "form_params" => Part::FormParams,
        "aws_sns" => Part::AwsSns,
        "crc32" => Part::Crc32,
        "webhook_id" => Part::WebhookId,
        _ => match name.split_once(':') {
            Some(("hmac", source)) => Part::Hmac(Source::parse(source)?, Encoding::Hex),
            Some(("hmac-base64", source)) => Part::Hmac(Source::parse(source)?, Encoding::Base64),
            Some(("optional", source)) => Part::Optional(Source::parse(source)?),
            Some(_) => Part::Field(Source::parse(name)?),
            None => {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; use {{body}}, {{timestamp}}, {{id}}, \
                     {{method}}, {{url}}, {{path}}, {{query}}, {{secret}}, {{form_params}}, \
                     {{aws_sns}}, {{crc32}}, {{webhook_id}}, a source such as {{header:NAME}} or \
                     {{json:/pointer}}, or {{optional:SOURCE}}"
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_fields_and_literals() {
        let t = Template::parse("v0:{timestamp}:{body}").unwrap();
        assert_eq!(
            t.parts(),
            [
                Part::Literal(b"v0:".to_vec()),
                Part::Timestamp,
                Part::Literal(b":".to_vec()),
                Part::Body
            ]
        );
        assert!(t.uses(&Part::Timestamp));
        assert!(!t.uses(&Part::Id));
        assert_eq!(Template::parse("{body}").unwrap(), Template::body());
        let all = Template::parse(
            "{method}{url}{path}{query}{id}.{timestamp}.{body}{secret}{form_params}{header:X-A}{json:/a/b}",
        )
        .unwrap();
        assert_eq!(all.parts().len(), 13);
        let text = "v0:{timestamp}:{body}{header:x-a}{hmac:json:/p}{hmac-base64:query:c}{optional:json:/o}{form_params}";
        assert_eq!(Template::parse(text).unwrap().to_string(), text);
        assert_eq!(
            Template::parse("{hmac-base64:query:crc_token}")
                .unwrap()
                .parts(),
            [Part::Hmac(
                Source::Query("crc_token".into()),
                Encoding::Base64
            )]
        );
        assert_eq!(all.fields().count(), 2);
        let hmac = Template::parse("{hmac:json:/payload/plainToken}").unwrap();
        assert_eq!(
            hmac.fields().next().unwrap().to_string(),
            "json:/payload/plainToken"
        );
        assert!(Template::parse("").unwrap().is_empty());
        assert_eq!(
            Template::parse("plain").unwrap().parts(),
            [Part::Literal(b"plain".to_vec())]
        );
    }

    #[test]
    fn malformed_templates_are_errors_not_panics() {
        assert!(
            Template::parse("{bogus}")
                .unwrap_err()
                .contains("unknown placeholder `{bogus}`")
        );
        assert!(Template::parse("{body").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{header:}").is_err());
        assert!(Template::parse("{hmac:nope}").is_err());
        assert!(Template::parse("{hmac-base64:nope}").is_err());
        assert!(Template::parse("{optional:}").is_err());
        assert!(Template::parse("{optional:body}").is_err());
        assert!(Template::parse("{cookie:x}").is_err());
        for weird in ["{}", "}{", "{{body}}", "{body}}", "é{body}ü", "{json:/é}"] {
            let _ = Template::parse(weird);
        }
    }
}

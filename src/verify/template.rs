//! Signed-content templates: which bytes, in which order, go into the MAC
//! (`{timestamp}.{body}`, `v0:{timestamp}:{body}`, …).

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Fixed text between placeholders.
    Literal(Vec<u8>),
    /// The raw request body, byte for byte.
    Body,
    /// The timestamp exactly as it appears in its header.
    Timestamp,
    /// The event id exactly as it appears in its header.
    Id,
    /// The request method, e.g. `POST`.
    Method,
    /// The full URL the provider called (the route's `public_url`, or rebuilt from `Host`).
    Url,
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

    /// Parses `{body}`, `{timestamp}`, `{id}`, `{method}` and `{url}` placeholders
    /// between literal text. Any other `{name}` is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed `{{` in payload template `{text}`"));
            };
            let part = match &after[..close] {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                "id" => Part::Id,
                "method" => Part::Method,
                "url" => Part::Url,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` in payload template; \
                         use {{body}}, {{timestamp}}, {{id}}, {{method}} or {{url}}"
                    ));
                }
            };
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
        if parts.is_empty() {
            return Err("payload template is empty".to_owned());
        }
        Ok(Self { parts })
    }

    /// The pieces in signing order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template includes `part` (compared by kind, not literal text).
    pub fn uses(&self, part: &Part) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_literals() {
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
        let all = Template::parse("{method}{url}{id}.{timestamp}.{body}").unwrap();
        assert_eq!(all.parts().len(), 7);
    }

    #[test]
    fn rejects_unknown_unclosed_and_empty() {
        assert!(
            Template::parse("{bogus}")
                .unwrap_err()
                .contains("unknown placeholder `{bogus}`")
        );
        assert!(Template::parse("{body").unwrap_err().contains("unclosed"));
        assert!(Template::parse("").is_err());
    }
}

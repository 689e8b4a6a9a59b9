//! A lazy, read-only view of a JSON request body: fields are looked up by JSON
//! pointer without building a tree of the whole document, and the body is only
//! parsed when a scheme or handshake asks for a field.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

/// A parsed RFC 6901 JSON pointer such as `/data/challenge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    segments: Vec<String>,
}

impl JsonPointer {
    /// Parses a pointer. It must be empty (the whole document) or start with `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("JSON pointer `{text}` must start with `/`"));
        };
        let segments = rest
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

type TopLevel<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

/// A request body seen as JSON. Lookups never fail loudly: a body that is not JSON,
/// or lacks the field, simply has no value there.
#[derive(Debug)]
pub struct JsonBody<'a> {
    bytes: &'a [u8],
    top: OnceCell<Option<TopLevel<'a>>>,
}

impl<'a> JsonBody<'a> {
    /// Wraps raw body bytes; nothing is parsed yet.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            top: OnceCell::new(),
        }
    }

    fn top(&self) -> Option<&TopLevel<'a>> {
        self.top
            .get_or_init(|| serde_json::from_slice(self.bytes).ok())
            .as_ref()
    }

    fn raw_at(&self, pointer: &JsonPointer) -> Option<&'a RawValue> {
        let (first, rest) = pointer.segments.split_first()?;
        let mut current: &'a RawValue = self.top()?.get(first.as_str())?;
        for segment in rest {
            current = child(current, segment)?;
        }
        Some(current)
    }

    /// The value at `pointer`, or `None` when the body is not JSON or has no such field.
    pub fn value_at(&self, pointer: &JsonPointer) -> Option<Value> {
        if pointer.segments.is_empty() {
            return serde_json::from_slice(self.bytes).ok();
        }
        serde_json::from_str(self.raw_at(pointer)?.get()).ok()
    }

    /// The field at `pointer` as text: a JSON string's contents, or a number's digits.
    pub fn text_at(&self, pointer: &JsonPointer) -> Option<String> {
        match self.value_at(pointer)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

fn child<'a>(raw: &'a RawValue, segment: &str) -> Option<&'a RawValue> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'{' => {
            let map: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(text).ok()?;
            map.get(segment).copied()
        }
        b'[' => {
            let index: usize = segment.parse().ok()?;
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(index).copied()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(p: &str) -> JsonPointer {
        JsonPointer::parse(p).unwrap()
    }

    #[test]
    fn finds_nested_fields_and_numbers() {
        let body = br#"{"id":"e1","n":7,"data":{"challenge":"c\"x","list":[1,{"k":"v"}]},"a/b":1}"#;
        let j = JsonBody::new(body);
        assert_eq!(j.text_at(&ptr("/id")).as_deref(), Some("e1"));
        assert_eq!(j.text_at(&ptr("/n")).as_deref(), Some("7"));
        assert_eq!(j.text_at(&ptr("/data/challenge")).as_deref(), Some("c\"x"));
        assert_eq!(j.text_at(&ptr("/data/list/1/k")).as_deref(), Some("v"));
        assert_eq!(j.text_at(&ptr("/a~1b")).as_deref(), Some("1"));
        assert_eq!(j.text_at(&ptr("/data")), None, "objects have no text form");
        assert_eq!(j.text_at(&ptr("/missing")), None);
        assert_eq!(j.value_at(&ptr("")).unwrap()["n"], 7);
    }

    #[test]
    fn non_json_and_hostile_bodies_have_no_fields() {
        for body in [
            &b"not json"[..],
            b"",
            b"[1,2]",
            b"{\"id\":",
            b"\xff\xfe",
            b"{\"id\":{\"id\":1}}",
        ] {
            assert_eq!(JsonBody::new(body).text_at(&ptr("/id")), None, "{body:?}");
        }
        let deep = "[".repeat(10_000);
        assert_eq!(JsonBody::new(deep.as_bytes()).text_at(&ptr("/0")), None);
    }

    #[test]
    fn pointer_must_start_with_slash() {
        assert!(JsonPointer::parse("id").is_err());
        assert_eq!(ptr("/x").as_str(), "/x");
    }
}

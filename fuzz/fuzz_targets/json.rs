//! JSON pointers and the lazy JSON body view: the first line is a pointer, the
//! rest a body. Whatever serde_json makes of the same body is the reference:
//! a string field reads as its contents, a number as written, anything else
//! (or a body serde_json refuses) as nothing; asking for a member among the
//! "wanted" ones or outside them gives the same answer. serde_json keeps the
//! last copy of a repeated member, as the view reads; the view must also say
//! whether an object on the pointer's way held its member more than once,
//! which a reading that keeps every member ([`Doc`]) tells. Whether the body
//! is one JSON object or array (`is_document`) is checked against serde_json
//! too.

#![no_main]

use hookgate::json::{JsonBody, JsonPointer, is_document};
use hookgate_fuzz::split_line;
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON document with every member of every object, repeated ones too.
enum Doc {
    Object(Vec<(String, Doc)>),
    Array(Vec<Doc>),
    Scalar,
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Reading;
        impl<'de> Visitor<'de> for Reading {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Doc>()? {
                    members.push(member);
                }
                Ok(Doc::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Doc::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
        }
        deserializer.deserialize_any(Reading)
    }
}

/// Whether an object on the way to `segments` holds the member it names
/// more than once (following the last copy, as serde_json keeps).
fn repeated_on_the_way(doc: &Doc, segments: &[String]) -> bool {
    let Some((segment, rest)) = segments.split_first() else {
        return false;
    };
    match doc {
        Doc::Object(members) => {
            let mut copies = members.iter().rev().filter(|(k, _)| k == segment);
            let Some((_, last)) = copies.next() else {
                return false;
            };
            copies.next().is_some() || repeated_on_the_way(last, rest)
        }
        Doc::Array(items) => {
            let canonical = segment == "0"
                || (!segment.starts_with('0')
                    && !segment.is_empty()
                    && segment.bytes().all(|b| b.is_ascii_digit()));
            let item = canonical
                .then(|| segment.parse::<usize>().ok())
                .flatten()
                .and_then(|i| items.get(i));
            item.is_some_and(|item| repeated_on_the_way(item, rest))
        }
        Doc::Scalar => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (pointer, body) = split_line(data);
    let Ok(pointer) = std::str::from_utf8(pointer) else {
        return;
    };
    let Ok(pointer) = JsonPointer::parse(pointer) else {
        return;
    };
    let all = JsonBody::new(body);
    let text = all.text_at(&pointer);
    let value = all.value_at(&pointer);
    let repeated = all.met_duplicate();

    let wanted: Vec<String> = pointer
        .first_segment()
        .map(str::to_owned)
        .into_iter()
        .collect();
    let others = vec!["some-other-member".to_owned()];
    for members in [&wanted, &others] {
        let view = JsonBody::with_wanted(body, members);
        assert_eq!(view.text_at(&pointer), text);
        assert_eq!(view.met_duplicate(), repeated, "wanting {members:?}");
    }

    let document = serde_json::from_slice::<IgnoredAny>(body).is_ok()
        && std::str::from_utf8(body).is_ok()
        && body
            .iter()
            .find(|b| !b" \t\n\r".contains(b))
            .is_some_and(|b| b"{[".contains(b));
    assert_eq!(is_document(body), document, "is_document");

    let Ok(document) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let doc: Doc = serde_json::from_slice(body).expect("read like a Value");
    let segments: Vec<String> = pointer
        .as_str()
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    assert_eq!(
        repeated,
        repeated_on_the_way(&doc, &segments),
        "met_duplicate {:?}",
        pointer.as_str()
    );
    let expected = document.pointer(pointer.as_str());
    assert_eq!(value.as_ref(), expected, "value_at {:?}", pointer.as_str());
    match expected {
        Some(Value::String(s)) => assert_eq!(text.as_deref(), Some(s.as_str())),
        Some(Value::Number(n)) => {
            let written = text.expect("a number reads as written");
            assert_eq!(
                serde_json::from_str::<Value>(&written).ok(),
                Some(Value::Number(n.clone()))
            );
        }
        _ => assert_eq!(text, None, "{:?} has no text form", pointer.as_str()),
    }
});

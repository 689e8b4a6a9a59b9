//! A lazy, read-only view of a JSON request body: fields are looked up by JSON
//! pointer without building a tree of the whole document, and the body is only
//! parsed when a scheme or handshake asks for a field.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};

use serde_json::Value;
use serde_json::value::RawValue;

mod scan;

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

    /// The top-level member the pointer starts in; `None` for the whole document.
    pub fn first_segment(&self) -> Option<&str> {
        self.segments.first().map(String::as_str)
    }
}

/// An object's members in order, each value as its JSON text. A short list
/// searched in order is cheaper than a hash map for the handful of members a
/// webhook has.
#[derive(Debug)]
struct Members<'a>(Vec<(Cow<'a, str>, &'a str)>);

/// Reads a JSON document that must be one object, keeping the members named in
/// `wanted` (all when `None`). It accepts what serde_json accepts: keys are
/// decoded and must be UTF-8, values must be UTF-8 (skipped ones too), and
/// skipped values are otherwise checked for grammar only.
fn members<'a>(text: &'a [u8], wanted: Option<&[String]>) -> Option<Members<'a>> {
    let mut scan = scan::Scanner::new(text);
    let mut members = Vec::with_capacity(wanted.map_or(8, <[String]>::len));
    if !scan.eat(b'{') {
        return None;
    }
    if !scan.eat(b'}') {
        loop {
            let start = scan.peek().0;
            let escaped = scan.string()?;
            let quoted = scan.since(start);
            let key = if escaped {
                Cow::Owned(serde_json::from_slice::<String>(quoted).ok()?)
            } else {
                Cow::Borrowed(std::str::from_utf8(&quoted[1..quoted.len() - 1]).ok()?)
            };
            if !scan.eat(b':') {
                return None;
            }
            let start = scan.peek().0;
            scan.value()?;
            let value = std::str::from_utf8(scan.since(start)).ok()?;
            if wanted.is_none_or(|w| w.iter().any(|k| *k == key)) {
                members.push((key, value));
            }
            if scan.eat(b'}') {
                break;
            }
            if !scan.eat(b',') {
                return None;
            }
        }
    }
    scan.at_end().then_some(Members(members))
}

impl<'a> Members<'a> {
    /// The last value of `key` (the one JSON parsers commonly keep), and
    /// whether the object holds `key` more than once.
    fn get(&self, key: &str) -> Option<Found<'a>> {
        let mut copies = self.0.iter().rev().filter(|(k, _)| k == key);
        let (_, value) = copies.next()?;
        Some(Found {
            value,
            repeated: copies.next().is_some(),
        })
    }
}

/// A member's value, and whether its object holds the member more than once.
#[derive(Debug, Clone, Copy)]
struct Found<'a> {
    value: &'a str,
    repeated: bool,
}

/// Whether `bytes` are one JSON object or array, as serde_json would read
/// them (UTF-8, whitespace around it allowed). Checked for grammar only: no
/// value is built.
pub fn is_document(bytes: &[u8]) -> bool {
    let mut scan = scan::Scanner::new(bytes);
    matches!(scan.peek().1, Some(b'{' | b'['))
        && scan.value().is_some()
        && scan.at_end()
        && std::str::from_utf8(bytes).is_ok()
}

/// A request body seen as JSON. Lookups never fail loudly: a body that is not JSON,
/// or lacks the field, simply has no value there.
#[derive(Debug)]
pub struct JsonBody<'a> {
    bytes: &'a [u8],
    wanted: Option<&'a [String]>,
    /// The wanted top-level members (all of them when nothing was said).
    top: OnceCell<Option<Members<'a>>>,
    /// All top-level members, for a lookup outside the wanted ones.
    all: OnceCell<Option<Members<'a>>>,
    /// Whether a lookup went through an object holding its member twice.
    met_duplicate: Cell<bool>,
}

impl<'a> JsonBody<'a> {
    /// Wraps raw body bytes; nothing is parsed yet.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            wanted: None,
            top: OnceCell::new(),
            all: OnceCell::new(),
            met_duplicate: Cell::new(false),
        }
    }

    /// Like [`JsonBody::new`], keeping only the top-level members named in
    /// `wanted` unless another is asked for. Skipped members are only checked
    /// for JSON grammar and UTF-8, which saves the work on large fields a
    /// scheme never reads.
    pub fn with_wanted(bytes: &'a [u8], wanted: &'a [String]) -> Self {
        Self {
            wanted: Some(wanted),
            ..Self::new(bytes)
        }
    }

    fn top(&self, key: &str) -> Option<&Members<'a>> {
        match self.wanted {
            Some(wanted) if !wanted.iter().any(|k| k == key) => {
                self.all.get_or_init(|| members(self.bytes, None)).as_ref()
            }
            wanted => self
                .top
                .get_or_init(|| members(self.bytes, wanted))
                .as_ref(),
        }
    }

    /// The JSON text at `pointer`. An object on the way that holds the
    /// member the pointer names more than once is noted (see
    /// [`JsonBody::met_duplicate`]); the last copy is read.
    fn raw_at(&self, pointer: &JsonPointer) -> Option<&'a str> {
        let (first, rest) = pointer.segments.split_first()?;
        let mut found = match self.top(first) {
            Some(members) => members.get(first)?,
            // Not an object: an array body (SendGrid's events) is read by index.
            None => {
                let start = self.bytes.iter().position(|b| !b" \t\n\r".contains(b))?;
                if self.bytes[start] != b'[' {
                    return None;
                }
                child(std::str::from_utf8(&self.bytes[start..]).ok()?, first)?
            }
        };
        for segment in rest {
            self.note(found);
            found = child(found.value, segment)?;
        }
        self.note(found);
        Some(found.value)
    }

    fn note(&self, found: Found<'_>) {
        if found.repeated {
            self.met_duplicate.set(true);
        }
    }

    /// Whether a lookup so far went through an object that holds the member
    /// it named more than once, at any level of its pointer
    /// (`{"Message":"a","Message":"b"}`). The view reads the last copy; an app
    /// may keep the first, so such a body means two things and a verifier
    /// refuses it.
    pub fn met_duplicate(&self) -> bool {
        self.met_duplicate.get()
    }

    /// The value at `pointer`, or `None` when the body is not JSON or has no such field.
    pub fn value_at(&self, pointer: &JsonPointer) -> Option<Value> {
        if pointer.segments.is_empty() {
            return serde_json::from_slice(self.bytes).ok();
        }
        serde_json::from_str(self.raw_at(pointer)?).ok()
    }

    /// The field at `pointer` as text: a JSON string's contents, or a number as
    /// written. Borrowed from the body when the string has no escapes.
    pub fn text_at(&self, pointer: &JsonPointer) -> Option<Cow<'a, str>> {
        let text = if pointer.segments.is_empty() {
            serde_json::from_slice::<&RawValue>(self.bytes).ok()?.get()
        } else {
            self.raw_at(pointer)?
        };
        match text.as_bytes().first()? {
            // A valid JSON string holds a backslash only in an escape.
            b'"' if !text.contains('\\') => Some(Cow::Borrowed(&text[1..text.len() - 1])),
            b'"' => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
            b'-' | b'0'..=b'9' => Some(Cow::Borrowed(text)),
            _ => None,
        }
    }

    /// The body with the string `value` added at `pointer` (objects on the
    /// way created as needed), every other byte as it was: the member goes
    /// last in the deepest object of the path the body has. Fails when that
    /// is not an object (a number, an array element that is missing) or the
    /// body is not JSON; the caller checks that the field is absent.
    pub fn insert(&self, pointer: &JsonPointer, value: &str) -> Result<Vec<u8>, String> {
        let crossing = || {
            format!(
                "`{}` crosses something in the body that is not an object",
                pointer.text
            )
        };
        let Some((_, parents)) = pointer.segments.split_last() else {
            return Err("the whole body cannot be replaced".to_owned());
        };
        let text = std::str::from_utf8(self.bytes)
            .ok()
            .filter(|_| is_document(self.bytes))
            .ok_or("the body is not JSON")?;
        // The deepest object of the path the body has (the root at least).
        let (depth, parent) = (0..=parents.len())
            .rev()
            .find_map(|depth| {
                let found = if depth == 0 {
                    Some(text.trim_matches([' ', '\t', '\n', '\r']))
                } else {
                    let prefix = JsonPointer {
                        text: String::new(),
                        segments: parents[..depth].to_vec(),
                    };
                    self.raw_at(&prefix)
                };
                found.map(|found| (depth, found))
            })
            .ok_or_else(crossing)?;
        if !parent.starts_with('{') || !parent.ends_with('}') {
            return Err(if depth == 0 {
                "the body is not a JSON object".to_owned()
            } else {
                crossing()
            });
        }
        let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let mut member = quote(value);
        for segment in pointer.segments[depth + 1..].iter().rev() {
            member = format!("{{{}:{member}}}", quote(segment));
        }
        let member = format!("{}:{member}", quote(&pointer.segments[depth]));
        // `parent` lies inside `text`: where its closing brace is.
        let start = (parent.as_ptr() as usize)
            .checked_sub(text.as_ptr() as usize)
            .filter(|start| start + parent.len() <= text.len())
            .ok_or_else(crossing)?;
        let close = start + parent.len() - 1;
        let empty = parent[1..parent.len() - 1].trim().is_empty();
        let mut out = Vec::with_capacity(text.len() + member.len() + 1);
        out.extend_from_slice(&self.bytes[..close]);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(member.as_bytes());
        out.extend_from_slice(&self.bytes[close..]);
        Ok(out)
    }
}

/// The member or element `segment` of the JSON value `text`.
fn child<'a>(text: &'a str, segment: &str) -> Option<Found<'a>> {
    match text.as_bytes().first()? {
        b'{' => members(text.as_bytes(), None)?.get(segment),
        b'[' => {
            let index = array_index(segment)?;
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(index).map(|item| Found {
                value: item.get(),
                repeated: false,
            })
        }
        _ => None,
    }
}

/// An array index as RFC 6901 writes it: `0`, or digits without a leading zero
/// (`01` and `+1` name no element).
fn array_index(segment: &str) -> Option<usize> {
    let digits = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    (digits && (segment == "0" || !segment.starts_with('0')))
        .then(|| segment.parse().ok())
        .flatten()
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
    fn wanted_members_are_parsed_first_and_others_on_demand() {
        let body = br#"{"id":"e1","pad":"xxxx","type":"t","esc":"a\nb"}"#;
        let wanted = vec!["id".to_owned(), "esc".to_owned()];
        let j = JsonBody::with_wanted(body, &wanted);
        assert_eq!(j.text_at(&ptr("/id")).as_deref(), Some("e1"));
        assert!(
            matches!(j.text_at(&ptr("/id")), Some(Cow::Borrowed(_))),
            "no escapes: borrowed"
        );
        assert_eq!(j.text_at(&ptr("/esc")).as_deref(), Some("a\nb"));
        assert_eq!(
            j.text_at(&ptr("/type")).as_deref(),
            Some("t"),
            "outside the wanted ones"
        );
        assert_eq!(
            JsonBody::with_wanted(b"{\"id\":1} trailing", &wanted).text_at(&ptr("/id")),
            None
        );
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

    /// Found by the `json` fuzz target (the input exactly): SendGrid's body is
    /// an array, and `/0/...` pointers must reach into it as RFC 6901 says.
    #[test]
    fn an_array_body_is_read_by_index() {
        let input = br#"/0
[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]
"#;
        let body = JsonBody::new(&input[3..]);
        let first = serde_json::from_slice::<Value>(&input[3..]).unwrap()[0].clone();
        assert_eq!(body.value_at(&ptr("/0")), Some(first));
        assert_eq!(
            body.text_at(&ptr("/0/sg_event_id")).as_deref(),
            Some("ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA")
        );
        assert_eq!(
            JsonBody::new(b" \n[7, 8]").text_at(&ptr("/1")).as_deref(),
            Some("8")
        );
        assert_eq!(JsonBody::new(b"[7, 8]").text_at(&ptr("/2")), None);
        assert_eq!(JsonBody::new(b"\x0c[7]").text_at(&ptr("/0")), None);
    }

    /// Found by the `json` fuzz target (the input exactly): a member the view
    /// skipped held invalid UTF-8, which serde_json refuses anywhere in a body,
    /// yet the wanted member was read; the view over all members read nothing.
    #[test]
    fn invalid_utf8_in_a_skipped_member_refuses_the_body() {
        let input = b"/payload/plainToken\n{\"payload\":{\"plainToken\":\"qgg8vlvZRS6UYooatFL8Aw\"},\"event_ts\":1654503849680,\"event\":\"endp\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2\xc2oint.url_validation\"}";
        let body = &input[20..];
        assert!(serde_json::from_slice::<Value>(body).is_err());
        let pointer = ptr("/payload/plainToken");
        let wanted = vec!["payload".to_owned()];
        assert_eq!(JsonBody::with_wanted(body, &wanted).text_at(&pointer), None);
        assert_eq!(JsonBody::new(body).text_at(&pointer), None);
        let other = vec!["event".to_owned()];
        assert_eq!(JsonBody::with_wanted(body, &other).text_at(&pointer), None);
    }

    /// A member a lookup reads, present twice at any level of its pointer, is
    /// noted (the last copy is still what is read); a repeated member no
    /// lookup goes through is not.
    #[test]
    fn duplicate_members_along_a_pointer_are_noted() {
        let noted = |body: &[u8], pointer: &str, wanted: Option<&[String]>| {
            let j = match wanted {
                Some(w) => JsonBody::with_wanted(body, w),
                None => JsonBody::new(body),
            };
            let text = j.text_at(&ptr(pointer)).map(Cow::into_owned);
            (text, j.met_duplicate())
        };
        let message = ["Message".to_owned(), "Type".to_owned()];
        for wanted in [None, Some(&message[..])] {
            let sns = br#"{"Message":"attacker","Type":"Notification","Message":"signed"}"#;
            assert_eq!(
                noted(sns, "/Message", wanted),
                (Some("signed".to_owned()), true)
            );
            assert_eq!(
                noted(sns, "/Type", wanted),
                (Some("Notification".to_owned()), false)
            );
            let escaped = br#"{"Mess\u0061ge":"attacker","Message":"signed"}"#;
            assert!(noted(escaped, "/Message", wanted).1, "keys compare decoded");
        }
        let nested = br#"{"data":{"challenge":"a","challenge":"b"},"x":{"k":1,"k":2}}"#;
        assert_eq!(
            noted(nested, "/data/challenge", None),
            (Some("b".to_owned()), true)
        );
        assert!(
            !noted(nested, "/data", None).1,
            "a member repeated inside the value read is not on the way"
        );
        let outer = br#"{"data":{"challenge":"a"},"data":{"challenge":"b"}}"#;
        assert_eq!(
            noted(outer, "/data/challenge", None),
            (Some("b".to_owned()), true)
        );
        let in_array = br#"{"value":[{"clientState":"a","clientState":"b"}]}"#;
        assert_eq!(
            noted(in_array, "/value/0/clientState", None),
            (Some("b".to_owned()), true)
        );
        assert_eq!(
            noted(br#"[{"event":"a","event":"b"}]"#, "/0/event", None),
            (Some("b".to_owned()), true)
        );
        let elsewhere = br#"{"id":"e1","pad":{"k":1,"k":2},"pad":0}"#;
        assert_eq!(
            noted(elsewhere, "/id", None),
            (Some("e1".to_owned()), false)
        );
        assert_eq!(
            noted(br#"{"a":{"b":1},"a":{"c":1}}"#, "/a/b", None),
            (None, true),
            "the repeated member was read even though the path ends in the last copy"
        );
        assert_eq!(
            noted(br#"{"id":1,"id":2}"#, "/missing", None),
            (None, false)
        );
    }

    #[test]
    fn documents_are_one_object_or_array() {
        for yes in [
            &b"{}"[..],
            b" [1, {\"a\": \"\xc3\xa9\"}]\n",
            b"{\"a\":[[]]}",
        ] {
            assert!(is_document(yes), "{:?}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"crc_token",
            b"\"{}\"",
            b"1",
            b"null",
            b"{} {}",
            b"{\"a\":}",
            b"[\"\xff\"]",
            b"\x0c{}",
        ] {
            assert!(!is_document(no), "{:?}", String::from_utf8_lossy(no));
        }
    }

    /// RFC 6901: an index is `0` or has no leading zero; `01` and `+1` name
    /// no element (serde_json's `Value::pointer` agrees).
    #[test]
    fn array_indexes_are_canonical() {
        let body = br#"{"a":[10,11,12]}"#;
        let j = JsonBody::new(body);
        assert_eq!(j.text_at(&ptr("/a/0")).as_deref(), Some("10"));
        assert_eq!(j.text_at(&ptr("/a/2")).as_deref(), Some("12"));
        for bad in ["/a/01", "/a/+1", "/a/", "/a/-1", "/a/1a"] {
            assert_eq!(j.text_at(&ptr(bad)), None, "{bad}");
        }
        assert!(
            JsonBody::new(br#"{"a":[{}]}"#)
                .insert(&ptr("/a/00/x"), "v")
                .is_err()
        );
    }

    #[test]
    fn insert_keeps_every_other_byte_and_creates_objects() {
        let insert = |body: &str, pointer: &str| {
            JsonBody::new(body.as_bytes())
                .insert(&ptr(pointer), "t\"")
                .map(|b| String::from_utf8(b).unwrap())
        };
        assert_eq!(
            insert(r#"{"z": 1, "a" :2}"#, "/signature/token").unwrap(),
            r#"{"z": 1, "a" :2,"signature":{"token":"t\""}}"#
        );
        assert_eq!(
            insert(r#" { "signature" : { } } "#, "/signature/a/b").unwrap(),
            r#" { "signature" : { "a":{"b":"t\""}} } "#
        );
        assert_eq!(
            insert(r#"{"value":[{"x":1}]}"#, "/value/0/clientState").unwrap(),
            r#"{"value":[{"x":1,"clientState":"t\""}]}"#
        );
        assert_eq!(insert("{}", "/a~1b").unwrap(), r#"{"a/b":"t\""}"#);
        for (body, pointer) in [
            (r#"{"a":1}"#, "/a/b"),
            (r#"{"value":[{"x":1}]}"#, "/value/5/x"),
            ("[1]", "/a"),
            ("not json", "/a"),
            ("{}", ""),
        ] {
            assert!(insert(body, pointer).is_err(), "{body} {pointer}");
        }
    }

    #[test]
    fn pointer_must_start_with_slash() {
        assert!(JsonPointer::parse("id").is_err());
        assert_eq!(ptr("/x").as_str(), "/x");
    }

    /// What `members` must agree with: serde_json reading the object, every
    /// value as `RawValue` (which must be UTF-8, as serde_json wants of a whole
    /// body), keeping the wanted ones.
    fn serde_members(text: &[u8], wanted: Option<&[String]>) -> Option<Vec<(String, String)>> {
        struct Reference<'w>(Option<&'w [String]>);
        impl<'de> serde::de::Visitor<'de> for Reference<'_> {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let raw = map.next_value::<&'de RawValue>()?;
                    if self.0.is_none_or(|w| w.contains(&key)) {
                        out.push((key, raw.get().to_owned()));
                    }
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_slice(text);
        let out = serde::Deserializer::deserialize_map(&mut de, Reference(wanted)).ok()?;
        de.end().ok()?;
        Some(out)
    }

    fn ours(text: &[u8], wanted: Option<&[String]>) -> Option<Vec<(String, String)>> {
        let Members(members) = members(text, wanted)?;
        let owned = members.into_iter();
        Some(owned.map(|(k, v)| (k.into_owned(), v.to_owned())).collect())
    }

    #[test]
    fn members_accept_exactly_what_serde_json_accepts() {
        let deep = format!(r#"{{"pad":{}{}}}"#, "[".repeat(1000), "]".repeat(1000));
        let long = format!(
            r#"{{"id":"{}","pad":"{}\n{}"}}"#,
            "a".repeat(70),
            "x".repeat(130),
            "y".repeat(64)
        );
        let seeds: Vec<&[u8]> = vec![
            br#"{"id":"evt_1","type":"t","createdAt":"2023-11-14T22:13:20Z","pad":"xx"}"#,
            br#"{"a":[1,-2.5e+3,true,false,null,{"b":[]},{}],"id":"\u00e9\n\"x\\\/\b\f\r\t","n":-0}"#,
            b"{ \"id\" : 0.5E-2 ,\t\"x\\u0069d\" : [ [ ] , { \"k\" : \"v\" } ]\r\n}",
            b"{\"pad\":\"\xff\xfe\",\"id\":\"\xc3\xa9\"}",
            br#"{"\ud800":1,"id":"\udc00","pad":"\ud83d\ude00"}"#,
            deep.as_bytes(),
            long.as_bytes(),
        ];
        let mutations = b"\"\\{}[],: 01-.eEu+a\n\x01\x1f\x7f\xff\xc3";
        let wanted = [
            None,
            Some(vec!["id".to_owned()]),
            Some(vec!["id".to_owned(), "pad".to_owned(), "type".to_owned()]),
        ];
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for seed in &seeds {
            cases.push(seed.to_vec());
            for at in 0..seed.len().min(120) {
                let mut cut = seed.to_vec();
                cut.remove(at);
                cases.push(cut);
                for &b in mutations {
                    let mut changed = seed.to_vec();
                    changed[at] = b;
                    cases.push(changed);
                }
            }
            cases.push(seed[..seed.len() - 1].to_vec());
        }
        for case in &cases {
            for w in &wanted {
                assert_eq!(
                    ours(case, w.as_deref()),
                    serde_members(case, w.as_deref()),
                    "{:?} wanting {w:?}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }
}

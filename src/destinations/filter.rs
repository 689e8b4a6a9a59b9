//! Which events a destination wants. Every value a filter reads comes from
//! bytes the signature covers (the config refuses any other): the event type
//! the scheme signs, the verified body, a header the signature covers.

use std::cell::RefCell;

use http::{HeaderMap, HeaderName};
use serde_json::Value;

use crate::json::{JsonBody, JsonPointer};

/// A pattern on event types: `*` stands for any run of characters, none
/// included (`invoice.*`, `*.created`, `*`); everything else for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// The pattern as written.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern. Linear in the two lengths
    /// for one `*`; at worst their product.
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (self.0.as_bytes(), text.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        // The last `*` seen, and where in `text` its run ends so far.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if p.get(pi) == Some(&b'*') {
                star = Some((pi, ti));
                pi += 1;
            } else if p.get(pi) == Some(&t[ti]) {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                // The star takes one more character.
                star = Some((sp, st + 1));
                pi = sp + 1;
                ti = st + 1;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The value at a JSON pointer of the body.
    Json(JsonPointer),
    /// A request header's value.
    Header(HeaderName),
}

/// What the value must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Equal to this (numbers by value: `1` equals `1.0`).
    Equals(Value),
    /// Equal to one of these.
    In(Vec<Value>),
}

impl Test {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Self::Equals(want) => same(value, want),
            Self::In(wants) => wants.iter().any(|want| same(value, want)),
        }
    }
}

/// JSON equality, numbers compared by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
        }
        _ => a == b,
    }
}

/// One `when` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What it reads.
    pub field: Field,
    /// What that must be.
    pub test: Test,
}

/// A destination's filter: the event type must match one of `events` (any
/// type, or none, when empty) and every condition of `when` must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Globs on the signed event type.
    pub events: Vec<Glob>,
    /// Conditions on the body and headers.
    pub when: Vec<Condition>,
}

/// What a filter looks at: a verified request. Made once per request and
/// asked by every destination's filter: the body is scanned once, and each
/// JSON field is looked up once whatever the number of filters reading it.
#[derive(Debug)]
pub struct Event<'a> {
    event_type: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    json: JsonBody<'a>,
    /// The fields looked up so far, by pointer: `None` when missing, or when
    /// the body holds a member of the pointer's path twice.
    looked_up: RefCell<Vec<(String, Option<Value>)>>,
}

impl<'a> Event<'a> {
    /// A verified request: the event type the signature covers (when the
    /// request has one), its headers and its body.
    pub fn new(event_type: Option<&'a str>, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            event_type,
            headers,
            body,
            json: JsonBody::new(body),
            looked_up: RefCell::new(Vec::new()),
        }
    }

    /// The body's value at `pointer`, unless it means two things.
    fn json_at(&self, pointer: &JsonPointer) -> Option<Value> {
        if let Some((_, value)) = self
            .looked_up
            .borrow()
            .iter()
            .find(|(p, _)| p == pointer.as_str())
        {
            return value.clone();
        }
        // The view notes a member met twice for good: once it has, each
        // lookup takes a fresh view to tell whether it met one itself.
        let value = if self.json.met_duplicate() {
            let fresh = JsonBody::new(self.body);
            fresh.value_at(pointer).filter(|_| !fresh.met_duplicate())
        } else {
            self.json
                .value_at(pointer)
                .filter(|_| !self.json.met_duplicate())
        };
        self.looked_up
            .borrow_mut()
            .push((pointer.as_str().to_owned(), value.clone()));
        value
    }

    /// The header's one value, unless it is given twice.
    fn header(&self, name: &HeaderName) -> Option<Value> {
        let mut values = self.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().map(|v| Value::String(v.to_owned())),
            _ => None,
        }
    }
}

impl Filter {
    /// Whether the destination wants `event`. A missing type, field or
    /// header does not match; nor does a body that is not JSON, nor a value
    /// that means two things (a JSON member or a header given twice).
    pub fn wants(&self, event: &Event<'_>) -> bool {
        if !self.events.is_empty()
            && !event
                .event_type
                .is_some_and(|t| self.events.iter().any(|g| g.matches(t)))
        {
            return false;
        }
        self.when.iter().all(|c| {
            let value = match &c.field {
                Field::Json(pointer) => event.json_at(pointer),
                Field::Header(name) => event.header(name),
            };
            value.is_some_and(|v| c.test.holds(&v))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn globs_match_whole_types() {
        let cases = [
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.", true),
            ("invoice.*", "invoice", false),
            ("invoice.*", "xinvoice.paid", false),
            ("*.created", "customer.subscription.created", true),
            ("*.created", "customer.created.later", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "x", true),
        ];
        for (pattern, text, matches) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                matches,
                "{pattern} {text}"
            );
        }
    }

    fn event<'a>(event_type: Option<&'a str>, headers: &'a HeaderMap, body: &'a [u8]) -> Event<'a> {
        Event::new(event_type, headers, body)
    }

    #[test]
    fn every_condition_must_hold_on_the_signed_values() {
        let filter = Filter {
            events: vec![Glob::new("invoice.*")],
            when: vec![
                Condition {
                    field: Field::Json(JsonPointer::parse("/data/object/livemode").unwrap()),
                    test: Test::Equals(json!(true)),
                },
                Condition {
                    field: Field::Json(JsonPointer::parse("/amount").unwrap()),
                    test: Test::In(vec![json!(5), json!(10)]),
                },
                Condition {
                    field: Field::Header(HeaderName::from_static("x-shop")),
                    test: Test::In(vec![json!("a"), json!("b")]),
                },
            ],
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-shop", "b".parse().unwrap());
        let body = br#"{"data":{"object":{"livemode":true}},"amount":10.0}"#;
        assert!(filter.wants(&event(Some("invoice.paid"), &headers, body)));
        assert!(!filter.wants(&event(Some("customer.created"), &headers, body)));
        assert!(!filter.wants(&event(None, &headers, body)), "no type");
        let test = br#"{"data":{"object":{"livemode":false}},"amount":10}"#;
        assert!(!filter.wants(&event(Some("invoice.paid"), &headers, test)));
        let missing = br#"{"amount":10}"#;
        assert!(!filter.wants(&event(Some("invoice.paid"), &headers, missing)));
        assert!(!filter.wants(&event(Some("invoice.paid"), &headers, b"not json")));
        // A member given twice means two things: it holds for neither.
        let twice = br#"{"data":{"object":{"livemode":false,"livemode":true}},"amount":10}"#;
        assert!(!filter.wants(&event(Some("invoice.paid"), &headers, twice)));
        let mut other = HeaderMap::new();
        other.insert("x-shop", "c".parse().unwrap());
        assert!(!filter.wants(&event(Some("invoice.paid"), &other, body)));
        let mut both = headers.clone();
        both.append("x-shop", "a".parse().unwrap());
        assert!(
            !filter.wants(&event(Some("invoice.paid"), &both, body)),
            "header twice"
        );
        assert!(!filter.wants(&event(Some("invoice.paid"), &HeaderMap::new(), body)));
        // No filter wants everything.
        assert!(Filter::default().wants(&event(None, &HeaderMap::new(), b"")));
    }
}

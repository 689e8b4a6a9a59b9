//! JSON pointers and the lazy JSON body view: the first line is a pointer, the
//! rest a body. Whatever serde_json makes of the same body is the reference:
//! a string field reads as its contents, a number as written, anything else
//! (or a body serde_json refuses) as nothing; asking for a member among the
//! "wanted" ones or outside them gives the same answer.

#![no_main]

use hookgate::json::{JsonBody, JsonPointer};
use hookgate_fuzz::split_line;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

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

    let wanted: Vec<String> = pointer
        .first_segment()
        .map(str::to_owned)
        .into_iter()
        .collect();
    assert_eq!(JsonBody::with_wanted(body, &wanted).text_at(&pointer), text);
    let others = vec!["some-other-member".to_owned()];
    assert_eq!(JsonBody::with_wanted(body, &others).text_at(&pointer), text);

    let Ok(document) = serde_json::from_slice::<Value>(body) else {
        return;
    };
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

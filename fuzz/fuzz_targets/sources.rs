//! The descriptor language's sources and templates: the first line is a
//! template, parsed and printed back; then a scheme signing that template
//! (and one answering a handshake with it) runs over the delivery in the rest
//! of the input, reading every kind of source from it. A template that reads
//! `{signature:K}` gets `K` from the delivery's `x-sig` header (`t=…,v1=…`).

#![no_main]

use hookgate::base::secret::Secret;
use hookgate::scheme::build::SchemeBuilder;
use hookgate::scheme::file::SchemeFile;
use hookgate::scheme::source::Source;
use hookgate::scheme::template::Template;
use hookgate::verify::Verifier;
use hookgate::verify::request::port_variants;
use hookgate_fuzz::{Delivery, exercise, split_line};
use libfuzzer_sys::fuzz_target;

/// The clock.
const NOW: i64 = 1_700_000_000;

/// A descriptor around `template`: as the signed content when `signed`, else
/// as a handshake's answer body.
fn descriptor(template: &str, signed: bool) -> Option<SchemeFile> {
    let mut table: toml::Table = toml::from_str(
        r#"
        algorithm = "hmac-sha256"
        signature = { header = "x-sig", format = "kv", key = "v1" }
        timestamp = { from = "signature:t" }
        event = { id = ["header:x-id", "json:/id", "form:id", "query:id", "signature:id"], type = "json:/data/type" }
        "#,
    )
    .ok()?;
    if signed {
        table.insert("signed".into(), template.into());
    } else {
        let mut handshake = toml::Table::new();
        handshake.insert("when".into(), "query:challenge".into());
        handshake.insert("verify_first".into(), false.into());
        handshake.insert("body".into(), template.into());
        handshake.insert(
            "headers".into(),
            toml::Table::from_iter([("x-answer".to_owned(), template.into())]).into(),
        );
        table.insert("handshake".into(), handshake.into());
    }
    toml::from_str(&toml::to_string(&table).ok()?).ok()
}

fuzz_target!(|data: &[u8]| {
    let (template, rest) = split_line(data);
    let Ok(template) = std::str::from_utf8(template) else {
        return;
    };
    if let Ok(parsed) = Template::parse(template) {
        assert_eq!(
            Template::parse(&parsed.to_string()).as_ref(),
            Ok(&parsed),
            "{template:?}"
        );
        for source in parsed.fields() {
            assert_eq!(Source::parse(&source.to_string()).as_ref(), Ok(source));
        }
    }
    for word in template.split(['{', '}', ' ']) {
        if let Ok(source) = Source::parse(word) {
            assert_eq!(
                Source::parse(&source.to_string()),
                Ok(source.clone()),
                "{word:?}"
            );
        }
    }
    let Some(delivery) = Delivery::parse(rest) else {
        return;
    };
    let req = delivery.signed();
    let _ = port_variants(req.url());
    let _ = req.form_params();
    let secret = Secret::new(b"fuzz-secret".to_vec());
    for signed in [true, false] {
        let Some(file) = descriptor(template, signed) else {
            continue;
        };
        let mut diagnostics = Vec::new();
        let Some(scheme) = SchemeBuilder::new(&mut diagnostics).scheme("fuzz", &file) else {
            continue;
        };
        let Ok(verifier) = Verifier::new(scheme.into(), std::slice::from_ref(&secret), None) else {
            continue;
        };
        exercise(&verifier, &req, NOW, &secret);
    }
});

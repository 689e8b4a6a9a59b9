//! Signature field grammars (plain, kv, versioned, pairs, jwt) in every encoding:
//! each line of the input is one value of the field, read the way a request
//! with several such headers is. Checks the caps on what one request can make
//! the verifier do, and that what a format writes it reads back.

#![no_main]

use std::sync::LazyLock;

use hookgate::scheme::presets;
use hookgate::scheme::signature::{
    Encoding, Format, JWT_INPUT, MAX_SIGNATURES, PAIR_LABEL, Received, jwt_signing_input,
};
use libfuzzer_sys::fuzz_target;

/// Every (format, encoding) a preset uses, and the generic ones besides.
static SPECS: LazyLock<Vec<(Format, Encoding)>> = LazyLock::new(|| {
    let mut specs: Vec<(Format, Encoding)> = presets::all()
        .values()
        .map(|s| (s.signature.format.clone(), s.signature.encoding))
        .collect();
    for encoding in [
        Encoding::Hex,
        Encoding::Base64,
        Encoding::Base64Url,
        Encoding::Text,
    ] {
        specs.push((
            Format::Plain {
                prefix: String::new(),
            },
            encoding,
        ));
        specs.push((Format::Jwt, encoding));
        // The separators a descriptor may set (not one written inside an entry).
        for separator in [',', ';', ' '] {
            let key = "v1".to_owned();
            specs.push((Format::KeyValue { separator, key }, encoding));
        }
        for separator in [';', ' ', '|'] {
            let version = "v1".to_owned();
            specs.push((Format::Versioned { separator, version }, encoding));
        }
    }
    specs.sort_by_key(|s| format!("{s:?}"));
    specs.dedup();
    specs
});

/// Longest entry a format decodes (`MAX_ENTRY_LEN`), in decoded bytes at most.
const MAX_DECODED: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    for (format, encoding) in SPECS.iter() {
        let mut received = Received::default();
        for value in &values {
            format.read(value, *encoding, &mut received);
        }
        assert!(
            received.signatures.len() <= MAX_SIGNATURES,
            "{format:?}: {} signatures",
            received.signatures.len()
        );
        assert!(
            received.fields.len() <= 16,
            "{format:?}: {} fields",
            received.fields.len()
        );
        assert!(received.signatures.iter().all(|s| s.len() <= MAX_DECODED));
        round_trip(format, *encoding, data);
    }
});

/// `data` as a signature, written by `format` and read back.
fn round_trip(format: &Format, encoding: Encoding, data: &[u8]) {
    if data.is_empty() || encoding == Encoding::Text {
        return;
    }
    let encoded = encoding.encode(data);
    let fields = match format {
        Format::Jwt => vec![(
            JWT_INPUT.to_owned(),
            jwt_signing_input(&[("iat".to_owned(), "1700000000".to_owned())]),
        )],
        Format::KeyValue { .. } => vec![("t".to_owned(), "1700000000".to_owned())],
        Format::Pairs { .. } => vec![(PAIR_LABEL.to_owned(), "public_key".to_owned())],
        Format::Plain { .. } | Format::Versioned { .. } => Vec::new(),
    };
    let written = format.write(&encoded, &fields);
    if written.len() > MAX_DECODED {
        return;
    }
    let mut received = Received::default();
    format.read(&written, encoding, &mut received);
    assert_eq!(received.signatures, [data], "{format:?} wrote {written:?}");
    if let Format::KeyValue { .. } = format {
        assert_eq!(received.field("t"), Some("1700000000"));
    }
    if let Format::Pairs { .. } = format {
        assert_eq!(received.labels, ["public_key"]);
    }
}

//! The signature field's grammar: where signatures are (headers, a JSON field,
//! a form field, a query parameter), how a value lists them (`sha256=<hex>`; `t=…,v1=…`;
//! `v1,<b64> v1,<b64>`; `pub1|<hex>&pub2|<hex>`), and how each is encoded.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderName;

use crate::json::JsonPointer;

/// Where the signature is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Request headers: every value of every listed name is read.
    Headers(Vec<HeaderName>),
    /// A field of the JSON body.
    Json(JsonPointer),
    /// A field of a form body.
    Form(String),
    /// A query parameter of the URL the provider calls.
    Query(String),
}

/// How one value of the signature field lists signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The whole value is one signature, after a required `prefix` (may be empty).
    Plain {
        /// Text before the encoded signature, e.g. `sha256=`.
        prefix: String,
    },
    /// `k=v` pairs split by `separator` or whitespace (Persona sends two sets of
    /// pairs side by side while a secret rotates); every value of `key` is a
    /// signature (several are alternatives); the other pairs are readable as
    /// `signature:K`.
    KeyValue {
        /// Between pairs: `,` (Stripe) or `;` (Paddle).
        separator: char,
        /// The key whose values are signatures, e.g. `v1`.
        key: String,
    },
    /// A JWT (`header.payload.signature`, an optional `Bearer ` before it): the
    /// signature is its third part, `signature:jwt` is the signed `header.payload`,
    /// and the payload's claims are readable as `signature:CLAIM`.
    Jwt,
    /// Entries `version,signature` split by `separator` (a space means any
    /// whitespace); entries of other versions are skipped.
    Versioned {
        /// Between entries.
        separator: char,
        /// The version to use, e.g. `v1`.
        version: String,
    },
    /// Entries `label|signature` split by `separator` (Braintree's
    /// `public_key|signature` pairs joined by `&`): each signature counts only
    /// for the secret written with the same label (`label|secret`).
    Pairs {
        /// Between entries.
        separator: char,
    },
}

/// Between a label and what it labels, in [`Format::Pairs`] entries and in the
/// secrets of such schemes.
pub const LABEL_SEPARATOR: char = '|';

/// The field holding the label to write, when signing in [`Format::Pairs`].
pub const PAIR_LABEL: &str = "label";

/// How a signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64; padding optional.
    Base64,
    /// URL-safe base64; padding optional.
    Base64Url,
    /// The text itself (tokens).
    Text,
}

const INDIFFERENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const BASE64URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);
const BASE64URL_UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false),
);

/// Decodes standard base64, padding optional (also for keys).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// Each byte's value as a hex digit of either case; 0xff for other bytes.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes hex of either case. Every pair is decoded and the digits are
/// checked once at the end: a loop without exits, unlike `hex::decode`'s.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let mut digits = 0;
    let bytes = pairs
        .map(|pair| {
            let (high, low) = (
                HEX_DIGITS[usize::from(pair[0])],
                HEX_DIGITS[usize::from(pair[1])],
            );
            digits |= high | low;
            high << 4 | low
        })
        .collect();
    (digits <= 0x0f).then_some(bytes)
}

impl Encoding {
    /// Parses the descriptor spelling.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "hex" => Self::Hex,
            "base64" => Self::Base64,
            "base64url" => Self::Base64Url,
            "text" => Self::Text,
            _ => return None,
        })
    }

    /// Decodes one signature; `None` when it is not valid in this encoding.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Hex => decode_hex(text),
            Self::Base64 => BASE64.decode(text).ok(),
            Self::Base64Url => BASE64URL.decode(text).ok(),
            Self::Text => Some(text.as_bytes().to_vec()),
        }
    }

    /// Encodes a signature the way a provider sends it.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(bytes),
            Self::Base64 => BASE64.encode(bytes),
            Self::Base64Url => BASE64URL_UNPADDED.encode(bytes),
            Self::Text => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// The signature field as read from one request.
#[derive(Debug, Default)]
pub struct Received {
    /// Whether the field was present at all.
    pub present: bool,
    /// Every well-formed signature, decoded.
    pub signatures: Vec<Vec<u8>>,
    /// The other `k=v` pairs of a key-value value, for `signature:K` sources.
    pub fields: Vec<(String, String)>,
    /// In the pairs format, the label of each signature (same order).
    pub labels: Vec<String>,
}

impl Received {
    /// The signatures a secret labelled `label` may have made: those with that
    /// label, or every one for a secret without a label.
    pub fn labelled(&self, label: Option<&[u8]>) -> Vec<&[u8]> {
        match label {
            None => self.signatures.iter().map(Vec::as_slice).collect(),
            Some(label) => self
                .signatures
                .iter()
                .zip(&self.labels)
                .filter(|(_, l)| l.as_bytes() == label)
                .map(|(s, _)| s.as_slice())
                .collect(),
        }
    }

    /// The first value of pair `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Longest value accepted for one signature entry; longer ones are ignored.
const MAX_ENTRY_LEN: usize = 4096;
/// Most signatures read from one request: rotation needs a handful, and each one
/// costs a check (an Ed25519 verification, for some schemes).
pub const MAX_SIGNATURES: usize = 16;

impl Format {
    /// Reads one value of the signature field into `out`.
    pub fn read(&self, value: &str, encoding: Encoding, out: &mut Received) {
        out.present = true;
        let push = |out: &mut Received, text: &str| {
            let text = text.trim();
            if !text.is_empty()
                && text.len() <= MAX_ENTRY_LEN
                && out.signatures.len() < MAX_SIGNATURES
            {
                if let Some(sig) = encoding.decode(text) {
                    out.signatures.push(sig);
                    return true;
                }
            }
            false
        };
        match self {
            Self::Plain { prefix } => {
                if let Some(rest) = value.trim().strip_prefix(prefix.as_str()) {
                    push(out, rest);
                }
            }
            Self::KeyValue { separator, key } => {
                let separator = *separator;
                for pair in value.split(|c: char| c == separator || c.is_ascii_whitespace()) {
                    let Some((k, v)) = pair.split_once('=') else {
                        continue;
                    };
                    let (k, v) = (k.trim(), v.trim());
                    if k == key {
                        push(out, v);
                    } else if out.fields.len() < 16 {
                        out.fields.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
            Self::Jwt => read_jwt(value, encoding, out),
            Self::Pairs { separator } => {
                for entry in value.split(*separator) {
                    let Some((label, sig)) = entry.split_once(LABEL_SEPARATOR) else {
                        continue;
                    };
                    // Compared as sent, as Braintree's SDKs do: no space around.
                    if label.len() <= MAX_ENTRY_LEN && sig.trim() == sig && push(out, sig) {
                        out.labels.push(label.to_owned());
                    }
                }
            }
            Self::Versioned { separator, version } => {
                let entries: Box<dyn Iterator<Item = &str>> = if *separator == ' ' {
                    Box::new(value.split_whitespace())
                } else {
                    Box::new(value.split(*separator))
                };
                for entry in entries {
                    if let Some((v, sig)) = entry.trim().split_once(',') {
                        if v == version {
                            push(out, sig);
                        }
                    }
                }
            }
        }
    }

    /// Writes one signature as a provider would: `fields` go first for key-value
    /// formats (e.g. Stripe's `t=`).
    pub fn write(&self, encoded: &str, fields: &[(String, String)]) -> String {
        match self {
            Self::Plain { prefix } => format!("{prefix}{encoded}"),
            Self::KeyValue { separator, key } => {
                let mut pairs: Vec<String> =
                    fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pairs.push(format!("{key}={encoded}"));
                pairs.join(&separator.to_string())
            }
            Self::Versioned { version, .. } => format!("{version},{encoded}"),
            Self::Pairs { .. } => {
                let label = fields
                    .iter()
                    .find(|(k, _)| k == PAIR_LABEL)
                    .map_or("", |(_, v)| v.as_str());
                format!("{label}{LABEL_SEPARATOR}{encoded}")
            }
            Self::Jwt => {
                let input = fields
                    .iter()
                    .find(|(k, _)| k == JWT_INPUT)
                    .map_or("", |(_, v)| v.as_str());
                format!("{input}.{encoded}")
            }
        }
    }
}

/// The `signature:` field holding a JWT's signed part, `header.payload`.
pub const JWT_INPUT: &str = "jwt";

/// Reads a JWT: the first one a request carries is its token; any further
/// value is ignored (a token's signature is checked against its own signed
/// part and claims, which one request cannot hold twice).
fn read_jwt(value: &str, encoding: Encoding, out: &mut Received) {
    if out.field(JWT_INPUT).is_some() {
        return;
    }
    let value = value.trim();
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim(),
        _ => value,
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if token.len() > MAX_ENTRY_LEN
        || header.is_empty()
        || payload.is_empty()
        || signature.is_empty()
    {
        return;
    }
    let Some(decoded) = encoding.decode(signature) else {
        return;
    };
    out.signatures.push(decoded);
    out.fields
        .push((JWT_INPUT.to_owned(), format!("{header}.{payload}")));
    let claims = Encoding::Base64Url
        .decode(payload)
        .and_then(|json| serde_json::from_slice(&json).ok());
    if let Some(serde_json::Value::Object(claims)) = claims {
        for (name, claim) in claims {
            let text = match claim {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if out.fields.len() < 16 {
                out.fields.push((name, text));
            }
        }
    }
}

/// Builds a JWT's signed part from claims, for signing: an HS256 header and
/// the claims as a JSON payload.
pub fn jwt_signing_input(claims: &[(String, String)]) -> String {
    let header = Encoding::Base64Url.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut payload = serde_json::Map::new();
    for (name, value) in claims {
        let json = value.parse::<i64>().map_or_else(
            |_| serde_json::Value::from(value.as_str()),
            serde_json::Value::from,
        );
        payload.insert(name.clone(), json);
    }
    let payload =
        Encoding::Base64Url.encode(serde_json::Value::Object(payload).to_string().as_bytes());
    format!("{header}.{payload}")
}

/// Where and how signatures are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSpec {
    /// Where.
    pub location: Location,
    /// Grammar of each value.
    pub format: Format,
    /// Encoding of each signature.
    pub encoding: Encoding,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: &Format, encoding: Encoding, value: &str) -> Received {
        let mut r = Received::default();
        format.read(value, encoding, &mut r);
        r
    }

    #[test]
    fn plain_requires_the_prefix() {
        let f = Format::Plain {
            prefix: "sha256=".into(),
        };
        assert_eq!(
            read(&f, Encoding::Hex, "sha256=0aff").signatures,
            [vec![0x0a, 0xff]]
        );
        assert_eq!(
            read(&f, Encoding::Hex, " sha256=0AFF ").signatures,
            [vec![0x0a, 0xff]]
        );
        assert!(read(&f, Encoding::Hex, "0aff").signatures.is_empty());
        assert!(read(&f, Encoding::Hex, "sha1=0aff").signatures.is_empty());
    }

    #[test]
    fn key_value_collects_alternatives_and_fields() {
        let f = Format::KeyValue {
            separator: ',',
            key: "v1".into(),
        };
        let r = read(&f, Encoding::Hex, "t=1700000000,v1=aa,v0=bb,v1=cc");
        assert_eq!(r.signatures, [vec![0xaa], vec![0xcc]]);
        assert_eq!(r.field("t"), Some("1700000000"));
        assert_eq!(r.field("v0"), Some("bb"));
        let paddle = Format::KeyValue {
            separator: ';',
            key: "h1".into(),
        };
        let r = read(&paddle, Encoding::Hex, "ts=1696195954;h1=dummy;h1=d9");
        assert_eq!((r.signatures.len(), r.field("ts")), (1, Some("1696195954")));
    }

    #[test]
    fn key_value_reads_sets_side_by_side() {
        // Persona while a secret rotates: two sets, space-separated.
        let f = Format::KeyValue {
            separator: ',',
            key: "v1".into(),
        };
        let r = read(&f, Encoding::Hex, "t=1700000000,v1=aa t=1700000000,v1=bb");
        assert_eq!(r.signatures, [vec![0xaa], vec![0xbb]]);
        assert_eq!(r.field("t"), Some("1700000000"));
        // WorkOS and Ghost put a space after each comma.
        let r = read(&f, Encoding::Hex, "t=5, v1=cc");
        assert_eq!(
            (&r.signatures, r.field("t")),
            (&vec![vec![0xcc]], Some("5"))
        );
    }

    #[test]
    fn versioned_skips_other_versions() {
        let f = Format::Versioned {
            separator: ' ',
            version: "v1".into(),
        };
        let r = read(&f, Encoding::Base64, "v1,AQI= v2,AAAA  v1a,AQI=\tv1,Aw==");
        assert_eq!(r.signatures, [vec![1, 2], vec![3]]);
        assert!(read(&f, Encoding::Base64, "v1,").signatures.is_empty());
        assert!(
            read(&f, Encoding::Base64, "v1,dawfeoifkpqwoekfpqoekf")
                .signatures
                .is_empty()
        );
    }

    #[test]
    fn pairs_keep_each_signature_with_its_label() {
        let f = Format::Pairs { separator: '&' };
        let r = read(
            &f,
            Encoding::Hex,
            "pub_a|aa&junk&pub_b|zz&pub_b|bb&|cc&pub_a|dd|ee&pub_a|ee ",
        );
        assert_eq!(r.signatures, [vec![0xaa], vec![0xbb], vec![0xcc]]);
        assert_eq!(r.labels, ["pub_a", "pub_b", ""]);
        assert_eq!(r.labelled(Some(b"pub_b")), [&[0xbb][..]]);
        assert_eq!(r.labelled(Some(b"pub_c")), Vec::<&[u8]>::new());
        assert_eq!(r.labelled(None).len(), 3);
        assert!(
            read(&f, Encoding::Hex, "no pair here")
                .signatures
                .is_empty()
        );
        let written = f.write("ab", &[(PAIR_LABEL.into(), "pub_a".into())]);
        assert_eq!(written, "pub_a|ab");
        assert_eq!(read(&f, Encoding::Hex, &written).labels, ["pub_a"]);
    }

    #[test]
    fn encodings_decode_and_encode() {
        assert_eq!(Encoding::Base64Url.decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(Encoding::Base64Url.encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(Encoding::Base64.decode("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(Encoding::Text.decode("tok"), Some(b"tok".to_vec()));
        assert_eq!(Encoding::Hex.decode("zz"), None);
    }

    #[test]
    fn hex_decodes_like_the_hex_crate() {
        let ascii = (0u8..128).map(char::from);
        for (a, b) in ascii
            .clone()
            .flat_map(|a| ascii.clone().map(move |b| (a, b)))
        {
            let text = format!("0a{a}{b}F9");
            assert_eq!(decode_hex(&text), hex::decode(&text).ok(), "{text:?}");
        }
        for text in ["", "a", "abc", "0A1b2C3d", "é0", "0g"] {
            assert_eq!(decode_hex(text), hex::decode(text).ok(), "{text:?}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        let kv = Format::KeyValue {
            separator: ',',
            key: "v1".into(),
        };
        let written = kv.write("ab", &[("t".into(), "5".into())]);
        assert_eq!(written, "t=5,v1=ab");
        let r = read(&kv, Encoding::Hex, &written);
        assert_eq!(
            (r.signatures.clone(), r.field("t")),
            (vec![vec![0xab]], Some("5"))
        );
        let v = Format::Versioned {
            separator: ' ',
            version: "v1".into(),
        };
        assert_eq!(v.write("AQI=", &[]), "v1,AQI=");
    }

    #[test]
    fn jwt_exposes_signature_signed_part_and_claims() {
        let input = jwt_signing_input(&[
            ("iat".into(), "1606808458".into()),
            ("aud".into(), "https://x".into()),
        ]);
        let token = format!("Bearer {input}.AQI");
        let r = read(&Format::Jwt, Encoding::Base64Url, &token);
        assert_eq!(r.signatures, [vec![1, 2]]);
        assert_eq!(r.field(JWT_INPUT), Some(input.as_str()));
        assert_eq!(
            (r.field("iat"), r.field("aud")),
            (Some("1606808458"), Some("https://x"))
        );
        for bad in ["a.b", "a.b.c.d", "..", "a.b.!!!", "Bearer", ""] {
            assert!(
                read(&Format::Jwt, Encoding::Base64Url, bad)
                    .signatures
                    .is_empty(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_request_has_one_jwt_however_many_values_it_sends() {
        // Found by the `signature` fuzz target: every value added a signature
        // (each an RSA or ECDSA check), past MAX_SIGNATURES.
        let first = jwt_signing_input(&[("aud".into(), "first".into())]);
        let other = jwt_signing_input(&[("aud".into(), "other".into())]);
        let mut r = Received::default();
        Format::Jwt.read(&format!("Bearer {first}.AQI"), Encoding::Base64Url, &mut r);
        for _ in 0..100 {
            Format::Jwt.read(&format!("Bearer {other}.AwQ"), Encoding::Base64Url, &mut r);
        }
        assert_eq!(r.signatures, [vec![1, 2]]);
        assert_eq!(r.field(JWT_INPUT), Some(first.as_str()));
        assert_eq!(r.field("aud"), Some("first"));
        assert_eq!(r.fields.len(), 2);
    }

    #[test]
    fn hostile_values_never_panic() {
        let formats = [
            Format::Jwt,
            Format::Plain {
                prefix: "v0=".into(),
            },
            Format::KeyValue {
                separator: ',',
                key: "v1".into(),
            },
            Format::Versioned {
                separator: ' ',
                version: "v1".into(),
            },
            Format::Pairs { separator: '&' },
        ];
        let long = "a".repeat(100_000);
        let many = "v1=aa,".repeat(10_000);
        let many_pairs = "k|aa&".repeat(10_000);
        for f in &formats {
            for e in [
                Encoding::Hex,
                Encoding::Base64,
                Encoding::Base64Url,
                Encoding::Text,
            ] {
                for v in [
                    "",
                    ",",
                    "=",
                    ",,,",
                    "v1=",
                    "v1,",
                    "=v1",
                    "é=ü",
                    long.as_str(),
                    many.as_str(),
                    many_pairs.as_str(),
                    "|",
                    "&|&",
                ] {
                    let r = read(f, e, v);
                    assert!(r.fields.len() <= 16 && r.signatures.len() <= MAX_SIGNATURES);
                    assert!(r.labels.len() <= r.signatures.len());
                }
            }
        }
    }
}

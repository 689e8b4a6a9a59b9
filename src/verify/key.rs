//! Key material: turns a configured secret into what a scheme's algorithm
//! checks with (a keyed HMAC state, a public key, a token), once per config load.

use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use sha1::{Digest, Sha1};

use crate::base::secret::Secret;
use crate::mac::{KeyedMac, constant_time_eq};
use crate::scheme::signature::{LABEL_SEPARATOR, decode_base64};
use crate::scheme::{Algorithm, KeyFormat};

/// A secret prepared for one algorithm.
#[derive(Debug)]
pub enum Key {
    /// HMAC state with the key absorbed (boxed: it is far larger than the others).
    Mac(Box<KeyedMac>),
    /// The secret bytes, hashed together with the content (`{secret}`).
    Hashed(Secret),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    /// An ECDSA P-256 public key (uncompressed SEC1 point).
    EcdsaP256(Vec<u8>),
    /// A token compared with the received one.
    Token(Secret),
}

/// Decodes a secret's text per `format`.
pub fn decode(format: KeyFormat, secret: &[u8]) -> Result<Vec<u8>, String> {
    let text = || {
        std::str::from_utf8(secret)
            .map(str::trim)
            .map_err(|_| "is not text".to_owned())
    };
    let base64 = |t: &str| decode_base64(t).ok_or_else(|| "is not valid base64".to_owned());
    match format {
        KeyFormat::Raw => Ok(secret.to_vec()),
        KeyFormat::Base64 => base64(text()?),
        KeyFormat::Hex => hex::decode(text()?).map_err(|_| "is not valid hex".to_owned()),
        KeyFormat::Whsec => {
            let t = text()?;
            base64(t.strip_prefix("whsec_").unwrap_or(t))
        }
        KeyFormat::Whpk => {
            let t = text()?;
            base64(t.strip_prefix("whpk_").unwrap_or(t))
        }
        KeyFormat::SpkiBase64 => {
            let der = base64(text()?)?;
            let (_, spki) = SubjectPublicKeyInfo::from_der(&der)
                .map_err(|_| "is not a DER SubjectPublicKeyInfo".to_owned())?;
            Ok(spki.subject_public_key.data.to_vec())
        }
        KeyFormat::Sha1 => Ok(Sha1::digest(secret).to_vec()),
    }
}

/// Splits a secret written `label|secret` (for the pairs signature format,
/// e.g. Braintree's `public_key|private_key`) at its first `|`. The error
/// says what is wrong with the secret's form, never what it contains.
pub fn split_label(secret: &[u8]) -> Result<(Secret, Secret), String> {
    let mut separator = [0; 4];
    let separator = LABEL_SEPARATOR.encode_utf8(&mut separator).as_bytes();
    let at = secret
        .windows(separator.len())
        .position(|w| w == separator)
        .filter(|at| *at > 0 && at + separator.len() < secret.len())
        .ok_or_else(|| {
            format!(
                "must be written LABEL{LABEL_SEPARATOR}SECRET (for Braintree: public_key{LABEL_SEPARATOR}private_key), both non-empty"
            )
        })?;
    Ok((
        Secret::new(&secret[..at]),
        Secret::new(&secret[at + separator.len()..]),
    ))
}

impl Key {
    /// Prepares `secret` for `algorithm`. The error says what is wrong with the
    /// key's form, never what it contains.
    pub fn prepare(
        algorithm: Algorithm,
        format: KeyFormat,
        secret: &Secret,
    ) -> Result<Self, String> {
        let bytes = decode(format, secret.expose()).map_err(|why| format!("the secret {why}"))?;
        match algorithm {
            Algorithm::Hmac(hash) => Ok(Self::Mac(Box::new(KeyedMac::new(hash, &bytes)))),
            Algorithm::Sha256 => Ok(Self::Hashed(Secret::new(bytes))),
            Algorithm::Token => Ok(Self::Token(Secret::new(bytes))),
            Algorithm::Ed25519 if bytes.len() == 32 => Ok(Self::Ed25519(bytes)),
            Algorithm::Ed25519 => Err(format!(
                "an Ed25519 public key is 32 bytes; this secret decodes to {}",
                bytes.len()
            )),
            Algorithm::EcdsaP256Sha256 if bytes.len() == 65 && bytes[0] == 4 => {
                Ok(Self::EcdsaP256(bytes))
            }
            Algorithm::EcdsaP256Sha256 => {
                Err("the secret is not an uncompressed P-256 public key".to_owned())
            }
            Algorithm::RsaSha1 | Algorithm::RsaSha256 | Algorithm::Es256 => Err(
                "the scheme verifies with keys the provider publishes; it takes no secret"
                    .to_owned(),
            ),
        }
    }

    /// Checks a signature over `message` (for the asymmetric and token kinds).
    pub fn check_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(public) => UnparsedPublicKey::new(&ED25519, public)
                .verify(message, signature)
                .is_ok(),
            Self::EcdsaP256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                .verify(message, signature)
                .is_ok(),
            Self::Token(token) => constant_time_eq(token.expose(), signature),
            Self::Mac(_) | Self::Hashed(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::new(text.as_bytes().to_vec())
    }

    #[test]
    fn whsec_prefix_is_optional() {
        let with = decode(KeyFormat::Whsec, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let without = decode(KeyFormat::Whsec, b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(with, without);
        assert_eq!(with.len(), 24);
    }

    #[test]
    fn ed25519_keys_must_be_32_bytes() {
        // RFC 8032 section 7.1, TEST 1 public key.
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        assert!(Key::prepare(Algorithm::Ed25519, KeyFormat::Hex, &secret(public)).is_ok());
        let short = Key::prepare(Algorithm::Ed25519, KeyFormat::Hex, &secret("abcd")).unwrap_err();
        assert!(short.contains("32 bytes"), "{short}");
        // RFC 8032 TEST 1: the empty message's signature verifies.
        let sig = hex::decode("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b").unwrap();
        let key = Key::prepare(Algorithm::Ed25519, KeyFormat::Hex, &secret(public)).unwrap();
        assert!(key.check_signature(b"", &sig));
        assert!(!key.check_signature(b"x", &sig));
    }

    #[test]
    fn malformed_keys_are_errors_without_material() {
        for (format, text) in [
            (KeyFormat::Hex, "zz-SECRETVALUE"),
            (KeyFormat::Base64, "!!SECRETVALUE!!"),
            (KeyFormat::Whsec, "whsec_***SECRETVALUE"),
            (KeyFormat::SpkiBase64, "AAAA"),
        ] {
            let e = Key::prepare(
                Algorithm::Hmac(crate::mac::HashAlg::Sha256),
                format,
                &secret(text),
            )
            .unwrap_err();
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
        let e = Key::prepare(Algorithm::EcdsaP256Sha256, KeyFormat::Raw, &secret("x")).unwrap_err();
        assert!(e.contains("P-256"), "{e}");
    }

    #[test]
    fn sha1_keys_are_the_raw_digest() {
        // FIPS 180 example: SHA-1("abc").
        assert_eq!(
            hex::encode(decode(KeyFormat::Sha1, b"abc").unwrap()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn labelled_secrets_split_at_the_first_bar() {
        let (label, rest) = split_label(b"pub|priv|more").unwrap();
        assert_eq!(
            (label.expose(), rest.expose()),
            (&b"pub"[..], &b"priv|more"[..])
        );
        for bad in [
            &b"SECRETVALUE"[..],
            b"|SECRETVALUE",
            b"SECRETVALUE|",
            b"",
            b"|",
        ] {
            let e = split_label(bad).unwrap_err();
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
    }

    #[test]
    fn tokens_compare_in_full() {
        let key = Key::prepare(Algorithm::Token, KeyFormat::Raw, &secret("tok")).unwrap();
        assert!(key.check_signature(b"", b"tok"));
        assert!(!key.check_signature(b"", b"to"));
        assert!(!key.check_signature(b"", b"tok2"));
    }
}

//! HMAC primitives: the hash functions, keyed MAC states prepared once per
//! secret at config load, and constant-time comparison.

use hmac::{Hmac, KeyInit, Mac};

/// Hash function under HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-1 (legacy schemes such as GitHub's `X-Hub-Signature`).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Parses `sha1`, `sha256` or `sha512`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// An HMAC state with the key already absorbed. Cloning it is cheaper than
/// re-keying, so each verification starts from a clone.
#[derive(Clone)]
pub enum KeyedMac {
    /// HMAC-SHA1 state.
    Sha1(Hmac<sha1::Sha1>),
    /// HMAC-SHA256 state.
    Sha256(Hmac<sha2::Sha256>),
    /// HMAC-SHA512 state.
    Sha512(Hmac<sha2::Sha512>),
}

impl std::fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedMac([redacted])")
    }
}

impl KeyedMac {
    /// Absorbs `key` for `alg`. HMAC accepts keys of any length.
    pub fn new(alg: HashAlg, key: &[u8]) -> Self {
        match alg {
            HashAlg::Sha1 => Self::Sha1(keyed(key)),
            HashAlg::Sha256 => Self::Sha256(keyed(key)),
            HashAlg::Sha512 => Self::Sha512(keyed(key)),
        }
    }

    /// Feeds message bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(m) => m.update(data),
            Self::Sha256(m) => m.update(data),
            Self::Sha512(m) => m.update(data),
        }
    }

    /// Hands the MAC of everything fed so far to `f`, without allocating.
    pub fn finalize_with<T>(self, f: impl FnOnce(&[u8]) -> T) -> T {
        match self {
            Self::Sha1(m) => f(&m.finalize().into_bytes()),
            Self::Sha256(m) => f(&m.finalize().into_bytes()),
            Self::Sha512(m) => f(&m.finalize().into_bytes()),
        }
    }

    /// The MAC of everything fed so far.
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha1(m) => m.finalize().into_bytes().to_vec(),
            Self::Sha256(m) => m.finalize().into_bytes().to_vec(),
            Self::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }
}

fn keyed<M: KeyInit>(key: &[u8]) -> M {
    match M::new_from_slice(key) {
        Ok(m) => m,
        // HMAC's key is padded or hashed to the block size, so any length works.
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// Compares a computed value with a received one in time that depends only on
/// their lengths, never on where they differ.
pub fn constant_time_eq(computed: &[u8], received: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    computed.ct_eq(received).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac_hex(alg: HashAlg, key: &[u8], msg: &[u8]) -> String {
        let mut m = KeyedMac::new(alg, key);
        m.update(msg);
        hex::encode(m.finalize())
    }

    #[test]
    fn rfc4231_case_2_sha256_and_sha512() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let msg = b"what do ya want for nothing?";
        assert_eq!(
            mac_hex(HashAlg::Sha256, b"Jefe", msg),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            mac_hex(HashAlg::Sha512, b"Jefe", msg),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn rfc2202_case_2_sha1() {
        assert_eq!(
            mac_hex(HashAlg::Sha1, b"Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn incremental_update_equals_one_shot() {
        let mut a = KeyedMac::new(HashAlg::Sha256, b"k");
        a.update(b"hello ");
        a.update(b"world");
        assert_eq!(
            hex::encode(a.finalize()),
            mac_hex(HashAlg::Sha256, b"k", b"hello world")
        );
    }

    #[test]
    fn constant_time_eq_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}

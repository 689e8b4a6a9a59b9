//! TLS on the webhook listener: the certificates of `[[server.tls]]`, loaded
//! and checked with the config (so a reload swaps them, and a broken pair
//! keeps the old set serving), and the choice of one by the name a client
//! asks for (SNI). The listener's rustls settings over them are `serve::tls`.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate chain with its key, and the names it serves.
#[derive(Debug)]
pub struct Certificate {
    /// The names of the leaf certificate (DNS subject alternative names,
    /// lower case; `*.example.com` covers one label).
    pub names: Vec<String>,
    /// The chain and key, ready for rustls.
    pub key: Arc<CertifiedKey>,
}

/// Why a certificate and key pair does not load, and which file is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The certificate file.
    Certificate(String),
    /// The key file (unreadable, unsupported, or not the certificate's key).
    Key(String),
}

impl Certificate {
    /// Reads a PEM chain (leaf first) and its PEM private key, and checks that
    /// they belong together. The message says what is wrong, never a key byte.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, Problem> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))
            .and_then(|certs| {
                certs.collect::<Result<_, _>>().map_err(|e| {
                    format!(
                        "{} is not a PEM certificate chain: {e}",
                        cert_file.display()
                    )
                })
            })
            .map_err(Problem::Certificate)?;
        let Some(leaf) = chain.first() else {
            let message = format!("{} holds no PEM certificate", cert_file.display());
            return Err(Problem::Certificate(message));
        };
        let names = dns_names(leaf).map_err(|e| {
            Problem::Certificate(format!(
                "{}: unreadable certificate: {e}",
                cert_file.display()
            ))
        })?;
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
            Problem::Key(format!(
                "{} is not a PEM private key: {e}",
                key_file.display()
            ))
        })?;
        let signing = provider::sign::any_supported_type(&key).map_err(|e| {
            Problem::Key(format!(
                "{}: unsupported private key: {e}",
                key_file.display()
            ))
        })?;
        let key = CertifiedKey::new(chain, signing);
        key.keys_match().map_err(|_| {
            Problem::Key(format!(
                "{} is not the key of the certificate in {}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
        Ok(Self {
            names,
            key: Arc::new(key),
        })
    }

    fn serves(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => pattern == name,
            })
    }
}

/// The DNS names of a certificate's subject alternative names, lower case.
fn dns_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// The certificates of a config, in file order.
#[derive(Debug)]
pub struct Certificates(pub Vec<Certificate>);

impl Certificates {
    /// The certificate for the name a client asked for: the first whose names
    /// cover it, else the first of all (clients without SNI, unknown names).
    pub fn pick(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let asked = server_name.map(str::to_ascii_lowercase);
        asked
            .and_then(|name| self.0.iter().find(|c| c.serves(&name)))
            .or_else(|| self.0.first())
            .map(|c| &c.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[&str]) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let signing = provider::sign::any_supported_type(
            &PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        Certificate {
            names: dns_names(cert.der()).unwrap(),
            key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
        }
    }

    #[test]
    fn the_name_asked_for_picks_the_certificate_else_the_first() {
        let set = Certificates(vec![
            certificate(&["a.example"]),
            certificate(&["b.example", "*.c.example"]),
        ]);
        let pick = |name| Arc::as_ptr(set.pick(name).unwrap());
        let (a, b) = (Arc::as_ptr(&set.0[0].key), Arc::as_ptr(&set.0[1].key));
        assert_eq!(pick(Some("a.example")), a);
        assert_eq!(pick(Some("B.Example")), b, "case-insensitive");
        assert_eq!(pick(Some("x.c.example")), b, "a wildcard covers one label");
        assert_eq!(pick(Some("y.x.c.example")), a, "only one label");
        assert_eq!(pick(Some("c.example")), a, "not the parent itself");
        assert_eq!(pick(Some("unknown.example")), a);
        assert_eq!(pick(None), a);
    }
}

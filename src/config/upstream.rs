//! A route's upstream: its URL checked, its host resolved and its
//! `upstream_ca_file` read (each once per load), and its connection target,
//! shared by the routes that name the same one.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use toml::Spanned;

use super::build::{Builder, cached, span};
use crate::forward::Upstream;
use crate::forward::{self, TrustedCas};

/// The first address of `host`, with port 0 (the port does not change what a
/// name resolves to).
fn resolve(host: &str) -> Result<SocketAddr, String> {
    match (host, 0).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(format!("upstream host `{host}` has no address")),
        Err(e) => Err(format!("cannot resolve upstream host `{host}`: {e}")),
    }
}

/// Reads a PEM file of CA certificates for an upstream.
fn read_ca_file(path: &Path) -> Result<TrustedCas, String> {
    read_pem_certificates(path).map(|certs| TrustedCas::new(&certs))
}

/// Reads a PEM file of certificates (DER each), each checked to be a parseable
/// X.509 certificate (the TLS stack would otherwise fail on it at connect time).
pub(super) fn read_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert {
            Ok(der) if x509_parser::parse_x509_certificate(&der).is_ok() => {
                certs.push(der.to_vec());
            }
            _ => return Err(format!("`{}` holds an invalid certificate", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

impl Builder<'_> {
    pub(super) fn upstream(
        &mut self,
        text: &Spanned<String>,
        ca_file: Option<&Spanned<String>>,
        timeout: Duration,
    ) -> Option<Upstream> {
        let raw = text.get_ref();
        let uri: Uri = match raw.parse() {
            Ok(uri) => uri,
            Err(e) => {
                self.error(span(text), format!("invalid upstream URL `{raw}`: {e}"));
                return None;
            }
        };
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                self.error(
                    span(text),
                    format!("upstream URL `{raw}` must start with http:// or https://"),
                );
                return None;
            }
        };
        let Some(authority) = uri.authority() else {
            self.error(span(text), format!("upstream URL `{raw}` has no host"));
            return None;
        };
        if authority.as_str().contains('@') {
            self.error(
                span(text),
                format!("upstream URL `{raw}` must not contain credentials"),
            );
            return None;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = match cached(&mut self.addresses, host.as_str(), resolve) {
            Ok(mut addr) => {
                addr.set_port(port);
                addr
            }
            Err(message) => {
                self.error(span(text), message);
                return None;
            }
        };
        // `http::Uri` reports path "/" for "http://host" too; only a written path rewrites.
        let after_authority = raw.split_once("://").map_or("", |(_, rest)| rest);
        let written_path = after_authority
            .find(['/', '?'])
            .is_some_and(|i| after_authority[i..].starts_with('/'));
        let path = uri
            .path_and_query()
            .filter(|_| written_path)
            .map(|pq| pq.path().to_owned());
        let query = uri.query().filter(|q| !q.is_empty()).map(str::to_owned);
        let ca = match ca_file {
            None => None,
            Some(file) if !tls => {
                self.error(span(file), "`upstream_ca_file` needs an https:// upstream");
                return None;
            }
            Some(file) => {
                let path = self.base_dir.join(file.get_ref());
                self.files.insert(path.clone());
                match cached(&mut self.ca_files, path.as_path(), read_ca_file) {
                    Ok(ca) => Some((path, ca)),
                    Err(message) => {
                        self.error(span(file), message);
                        return None;
                    }
                }
            }
        };
        let (ca_path, ca) = ca.unzip();
        let peer = self
            .peers
            .entry((addr, tls, host.clone(), timeout, ca_path))
            .or_insert_with(|| forward::peer(addr, tls, &host, timeout, ca.as_ref()));
        Some(Upstream {
            pool_key: forward::pool::key(peer, ca.as_ref().map(TrustedCas::digest)),
            peer: Arc::clone(peer),
            addr,
            tls,
            authority: authority.as_str().into(),
            path: path.map(Into::into),
            query: query.map(Into::into),
            url: raw.as_str().into(),
        })
    }
}

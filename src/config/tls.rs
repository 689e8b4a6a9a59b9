//! `[server] tls_listen` and `[[server.tls]]`: the TLS addresses, and each
//! certificate and key pair, read and checked at every load. A pair that does
//! not load is an error at its file's line, so a reload keeps the running
//! certificates.

use std::net::SocketAddr;
use std::path::Path;

use super::build::{Builder, span};
use super::file::ServerSection;
use super::server::same_socket;
use crate::tls::{Certificate, Certificates, Problem};

impl Builder<'_> {
    /// The `tls_listen` addresses (none when unset), or `None` when one is
    /// invalid or taken by `listen` or `admin_listen`.
    pub(super) fn tls_listen(
        &mut self,
        s: &ServerSection,
        listen: &[SocketAddr],
        admin_listen: Option<SocketAddr>,
    ) -> Option<Vec<SocketAddr>> {
        let Some(list) = &s.tls_listen else {
            if let Some(first) = s.tls.first() {
                self.warning(
                    span(first),
                    "`[[server.tls]]` without `tls_listen`: these certificates serve nothing",
                );
            }
            return Some(Vec::new());
        };
        let (addresses, mut ok) = self.addresses(list, "tls_listen");
        let taken = listen.iter().copied().chain(admin_listen);
        for addr in &addresses {
            if let Some(other) = taken.clone().find(|t| same_socket(*t, *addr)) {
                self.error(
                    span(list),
                    format!("`tls_listen` address {addr} shares a port with {other}"),
                );
                ok = false;
            }
        }
        if s.tls.is_empty() {
            self.error(
                span(list),
                "`tls_listen` needs at least one `[[server.tls]]` certificate",
            );
            ok = false;
        }
        ok.then_some(addresses)
    }

    /// Every `[[server.tls]]` pair, loaded; `None` when there is none or one
    /// does not load (each problem is reported at its file).
    pub(super) fn tls_certificates(&mut self, s: &ServerSection) -> Option<Certificates> {
        let mut loaded = Vec::new();
        for pair in &s.tls {
            let pair = pair.get_ref();
            let cert = self.base_dir.join(pair.cert_file.get_ref());
            let key = self.base_dir.join(pair.key_file.get_ref());
            self.files.extend([cert.clone(), key.clone()]);
            match Certificate::load(Path::new(&cert), Path::new(&key)) {
                Ok(certificate) => loaded.push(certificate),
                Err(Problem::Certificate(message)) => self.error(span(&pair.cert_file), message),
                Err(Problem::Key(message)) => self.error(span(&pair.key_file), message),
            }
        }
        (!loaded.is_empty() && loaded.len() == s.tls.len()).then_some(Certificates(loaded))
    }
}

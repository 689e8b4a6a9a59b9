//! The webhook listener's TLS settings, with rustls: TLS 1.2 and 1.3, ALPN
//! `http/1.1`, the certificate picked per connection from the running config
//! by the name the client asks for (SNI).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::runtime::ConfigStore;

/// Picks the certificate from the running config at each handshake, so a
/// reload's new certificates serve the next connection.
#[derive(Debug)]
struct Resolver(ConfigStore);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let config = self.0.snapshot();
        config.tls.as_ref()?.pick(hello.server_name()).cloned()
    }
}

/// The TLS settings of the webhook listener, over the certificates of the
/// config in `store`.
pub fn server_config(store: ConfigStore) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

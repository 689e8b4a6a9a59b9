use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::support::client::send;
use crate::support::gateway::{Gateway, free_port};
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

const SECRET: &str = "tls-secret";

/// A private CA that issues leaf certificates for the test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes a leaf for `names` to `dir/stem.pem` and its key to `dir/stem.key`.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.0)
            .unwrap();
        std::fs::write(dir.join(format!("{stem}.pem")), leaf.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.0.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection a full handshake: a resumed session shows the
        // certificate of the session it resumes.
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

/// `[server]` lines serving `stems` (in that order) on `port` with TLS.
fn tls_server(dir: &Path, port: u16, stems: &[&str]) -> String {
    let mut text = format!("tls_listen = \"127.0.0.1:{port}\"\n");
    for stem in stems {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        text.push_str(&format!(
            "[[server.tls]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    text
}

/// What one TLS connection saw: the certificate's DNS names, the negotiated
/// ALPN protocol, and the status of a signed request sent over it.
struct Seen {
    names: Vec<String>,
    alpn: Option<Vec<u8>>,
    status: u16,
}

async fn over_tls(connector: &TlsConnector, addr: SocketAddr, name: ServerName<'static>) -> Seen {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let leaf: &CertificateDer<'_> = &conn.peer_certificates().unwrap()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let (h, v) = sign::aryeo(SECRET, b"{}");
    let request = format!(
        "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Seen {
        names,
        alpn,
        status,
    }
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_sni_and_requests_go_upstream_as_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "a", &["a.example", "127.0.0.1"]);
    ca.issue(dir.path(), "b", &["b.example", "*.b.example"]);
    let upstream = Upstream::start().await;
    let port = free_port();
    let routes = route("tls", "/hook", &upstream.url(), &scheme("aryeo", &[SECRET]));
    let gw = Gateway::start_with(&routes, &tls_server(dir.path(), port, &["a", "b"])).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tls13 = ca.client(&[&rustls::version::TLS13]);

    let a = over_tls(&tls13, addr, dns("a.example")).await;
    assert_eq!(a.names, ["a.example"]);
    assert_eq!(a.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(a.status, 200);
    let b = over_tls(&tls13, addr, dns("x.b.example")).await;
    assert_eq!(b.names, ["b.example", "*.b.example"]);
    assert_eq!(b.status, 200);
    // No SNI (an IP address): the first certificate.
    let ip = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    assert_eq!(over_tls(&tls13, addr, ip).await.names, ["a.example"]);
    // TLS 1.2 clients are served too.
    let tls12 = ca.client(&[&rustls::version::TLS12]);
    assert_eq!(over_tls(&tls12, addr, dns("b.example")).await.status, 200);

    let got = upstream.requests();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.header("x-forwarded-proto") == "https"));
    // The plain listener keeps serving, as http.
    let (h, v) = sign::aryeo(SECRET, b"{}");
    assert_eq!(
        send(gw.addr, "POST", "/hook", &[(h, &v)], "{}")
            .await
            .status,
        200
    );
    assert_eq!(upstream.requests()[4].header("x-forwarded-proto"), "http");
}

/// A gateway (with an admin listener and `server_extra`) serving a new
/// certificate for `a.example` from `dir`, and a client of `ca`'s; checks the
/// certificate is served.
async fn serving_a(
    dir: &Path,
    ca: &Ca,
    server_extra: &str,
) -> (Gateway, Upstream, SocketAddr, TlsConnector) {
    ca.issue(dir, "a", &["a.example"]);
    let upstream = Upstream::start().await;
    let port = free_port();
    let routes = route("tls", "/hook", &upstream.url(), &scheme("aryeo", &[SECRET]));
    let server = format!("{server_extra}\n{}", tls_server(dir, port, &["a"]));
    let gw = Gateway::with_admin(&routes, &server).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = ca.client(&[&rustls::version::TLS13]);
    assert_eq!(
        over_tls(&client, addr, dns("a.example")).await.names,
        ["a.example"]
    );
    (gw, upstream, addr, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_certificates_and_a_broken_pair_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (gw, _upstream, addr, client) = serving_a(dir.path(), &ca, "watch_config = false").await;

    // A new certificate in the same files is served after a reload.
    ca.issue(dir.path(), "a", &["a.example", "new.example"]);
    let reload = send(gw.admin(), "POST", "/reload", &[], "").await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let seen = over_tls(&client, addr, dns("a.example")).await;
    assert_eq!(seen.names, ["a.example", "new.example"]);

    // A key that is not the certificate's: the reload is refused, naming the
    // key file, and the running certificate keeps serving.
    ca.issue(dir.path(), "other", &["other.example"]);
    std::fs::copy(dir.path().join("other.key"), dir.path().join("a.key")).unwrap();
    let reload = send(gw.admin(), "POST", "/reload", &[], "").await;
    assert_eq!(reload.status, 400);
    let problems = reload.json()["problems"].to_string();
    assert!(
        problems.contains("a.key is not the key of the certificate"),
        "{problems}"
    );
    assert!(
        problems.contains("hookgate.toml:"),
        "file:line:col: {problems}"
    );
    let seen = over_tls(&client, addr, dns("a.example")).await;
    assert_eq!(seen.names, ["a.example", "new.example"]);
    assert_eq!(seen.status, 200);

    // `check` reports the same problem.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&gw.config_path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("is not the key of the certificate"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_signal() {
    // The certificates live outside the config's directory, as under /etc/letsencrypt.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (gw, _upstream, addr, client) = serving_a(dir.path(), &ca, "").await;

    ca.issue(dir.path(), "a", &["a.example", "renewed.example"]);
    gw.wait_log("config reloaded (file)", 1).await;
    let seen = over_tls(&client, addr, dns("a.example")).await;
    assert_eq!(seen.names, ["a.example", "renewed.example"]);
    assert_eq!(seen.status, 200);
}

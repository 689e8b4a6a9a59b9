//! A real `redis-server` on a free loopback port, without persistence unless
//! asked; killed when the handle drops. It can be stopped and started again on the same port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::gateway::free_port;

/// A running (or stopped) Redis.
#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    /// Where a durable Redis keeps its files.
    dir: Option<tempfile::TempDir>,
}

impl Redis {
    /// Starts a Redis with no password.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a Redis with extra `redis-server` arguments (e.g. `--requirepass`).
    pub async fn start_with(extra: &[&str]) -> Self {
        let mut redis = Self {
            port: free_port(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            dir: None,
        };
        redis.resume().await;
        redis
    }

    /// Starts a Redis that keeps an append-only file in a directory of its
    /// own and writes every change to it before answering (`appendfsync
    /// always`): [`Redis::stop`] is a kill -9, and [`Redis::resume`] reloads
    /// what was acknowledged.
    pub async fn start_durable() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let mut redis = Self::start_with(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &path,
        ])
        .await;
        redis.dir = Some(dir);
        redis
    }

    /// Starts a Redis speaking only TLS, with a certificate for `127.0.0.1`
    /// from a fresh private CA written in `dir`; returns it and the CA's PEM file.
    pub async fn start_tls(dir: &std::path::Path) -> (Self, std::path::PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let (ca_file, cert_file, key_file) = (
            dir.join("ca.pem"),
            dir.join("redis.pem"),
            dir.join("redis.key"),
        );
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, leaf.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let port = free_port();
        let args = [
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            cert_file.display().to_string(),
            "--tls-key-file".to_owned(),
            key_file.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut redis = Self {
            port,
            extra: args.to_vec(),
            child: None,
            dir: None,
        };
        redis.resume().await;
        (redis, ca_file)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server; the port stays free for [`Redis::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port: empty, or as its
    /// append-only file has it when durable.
    pub async fn resume(&mut self) {
        let tls = self.extra.iter().any(|a| a == "--tls-port");
        let port = if tls {
            Vec::new()
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let child = Command::new("redis-server")
            .args(port)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    /// Runs a `redis-cli` command against it and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

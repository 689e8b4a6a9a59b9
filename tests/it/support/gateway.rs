//! Runs the real `hookgate` binary on a free loopback port with a config file in
//! a temporary directory; the process is killed when the handle drops.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running gateway process.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener, when started with [`Gateway::with_admin`].
    pub admin: Option<SocketAddr>,
    pub config_path: PathBuf,
    log_path: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Gateway {
    /// Starts the gateway with `routes` (TOML for `[[routes]]`; `[server]` is
    /// written here with a free listen port and `server_extra` keys).
    pub async fn start(routes: &str) -> Self {
        Self::start_with(routes, "").await
    }

    /// Like [`Gateway::start`], adding `server_extra` lines to `[server]`.
    pub async fn start_with(routes: &str, server_extra: &str) -> Self {
        Self::launch(routes, server_extra, false).await
    }

    /// Like [`Gateway::start_with`], with an admin listener on a free port.
    pub async fn with_admin(routes: &str, server_extra: &str) -> Self {
        Self::launch(routes, server_extra, true).await
    }

    /// Like [`Gateway::with_admin`], with extra environment variables.
    pub async fn with_env(routes: &str, server_extra: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_env(routes, server_extra, true, env).await
    }

    /// Like [`Gateway::with_admin`], listening on `[::]:PORT`: IPv4 clients
    /// arrive as `::ffff:a.b.c.d` (where `net.ipv6.bindv6only` is 0, Linux's
    /// default). `addr` is `127.0.0.1:PORT`.
    pub async fn dual_stack(routes: &str, server_extra: &str) -> Self {
        Self::launch_on("[::]", routes, server_extra, true, &[]).await
    }

    async fn launch(routes: &str, server_extra: &str, with_admin: bool) -> Self {
        Self::launch_env(routes, server_extra, with_admin, &[]).await
    }

    async fn launch_env(
        routes: &str,
        server_extra: &str,
        with_admin: bool,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch_on("127.0.0.1", routes, server_extra, with_admin, env).await
    }

    /// Starts the gateway listening on `listen_ip` and a free port.
    async fn launch_on(
        listen_ip: &str,
        routes: &str,
        server_extra: &str,
        with_admin: bool,
        env: &[(&str, &str)],
    ) -> Self {
        let mut dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookgate.toml");
        let log_path = dir.path().join("hookgate.log");
        for _attempt in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let admin: Option<SocketAddr> =
                with_admin.then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
            let admin_line = admin
                .map(|a| format!("admin_listen = \"{a}\"\n"))
                .unwrap_or_default();
            let text = format!(
                "[server]\nlisten = \"{listen_ip}:{port}\"\nthreads = 2\n{admin_line}{server_extra}\n{routes}"
            );
            std::fs::write(&config_path, text).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
                .args(["run", "--config"])
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut gateway = Self {
                addr,
                admin,
                config_path: config_path.clone(),
                log_path: log_path.clone(),
                child,
                _dir: dir,
            };
            if gateway.wait_ready().await {
                return gateway;
            }
            dir = gateway.into_dir();
        }
        panic!("the gateway did not start");
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }

    /// Waits until the listener accepts; false if the process died (port taken).
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                assert!(
                    log.contains("Address already in use"),
                    "gateway exited with {status}:\n{log}"
                );
                return false;
            }
            if self.ready().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gateway not ready after 20s:\n{}", self.log());
    }

    /// Whether the gateway serves: `/readyz` says so, or without an admin
    /// listener, the webhook listener accepts.
    async fn ready(&self) -> bool {
        let Some(admin) = self.admin else {
            return tokio::net::TcpStream::connect(self.addr).await.is_ok();
        };
        if tokio::net::TcpStream::connect(admin).await.is_err() {
            return false;
        }
        super::client::send(admin, "GET", "/readyz", &[], "")
            .await
            .status
            == 200
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("started with_admin")
    }

    /// The directory holding the config file.
    pub fn dir(&self) -> &std::path::Path {
        self.config_path.parent().unwrap()
    }

    /// Waits up to `wait` for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, wait: Duration) -> Option<i32> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `"HUP"`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Everything the gateway wrote to stdout (its access log, by default).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir().join("stdout.log")).unwrap_or_default()
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times.
    pub async fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "log never had {count}x {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        super::client::send(self.admin(), "GET", "/metrics", &[], "")
            .await
            .text()
    }

    /// Polls `/metrics` until it has every one of `lines` (a request's metrics
    /// are counted just after its response went out); the whole text.
    pub async fn metrics_with(&self, lines: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics().await;
            let missing: Vec<&&str> = lines.iter().filter(|l| !text.contains(**l)).collect();
            if missing.is_empty() {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "metrics lack {missing:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process with SIGKILL and waits for it: no drain, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the binary again on the same config file (same ports, same
    /// spool), after [`Self::kill9`] or an exit, and waits until it serves.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let stdout = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir().join("stdout.log"))
            .unwrap();
        self.child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(
            self.wait_ready().await,
            "the restarted gateway did not start"
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

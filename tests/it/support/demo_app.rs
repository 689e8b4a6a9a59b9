//! Runs `hookgate demo-app` on a free loopback port, its stdout kept in a
//! temporary file; the process is killed when the handle drops.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::gateway::free_port;

/// A running demo app.
#[derive(Debug)]
pub struct DemoApp {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl DemoApp {
    /// Starts the demo app and waits until it accepts connections.
    pub async fn start() -> Self {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
                .args(["demo-app", "--listen", &addr.to_string()])
                .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
                .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
                .spawn()
                .unwrap();
            let mut app = Self { addr, child, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && app.child.try_wait().unwrap().is_none() {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return app;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let stderr = std::fs::read_to_string(app.dir.path().join("stderr")).unwrap();
            assert!(
                stderr.contains("cannot listen"),
                "the demo app did not start:\n{stderr}"
            );
        }
        panic!("the demo app found no free port");
    }

    /// The app's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything it printed so far.
    pub fn printed(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Waits until it printed `count` requests; all it printed.
    pub async fn wait_printed(&self, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8(self.printed()).expect("printed text is UTF-8");
            if text.matches("body bytes)").count() >= count {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "printed {count} requests never:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

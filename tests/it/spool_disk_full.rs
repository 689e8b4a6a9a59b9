//! The local spool on a full disk (a small tmpfs the test mounts): 503
//! `spool_full` while it is full, every acknowledged delivery sent exactly
//! once when space is back, new requests accepted again without a restart, a
//! log that does not grow with every failure, and nothing sent again after a
//! restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::async_delivery::{admin, async_route, wait_admin};
use crate::spool_durability::copies;
use crate::support::client::{Answer, post};
use crate::support::gateway::{Gateway, free_port};
use crate::support::sign;
use crate::support::upstream::Upstream;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB; `None` (saying so) where this machine
    /// does not let the test mount one.
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy: detached now, gone once the last file is closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Fills the file system of `dir` with 1 MiB files until it is full; their paths.
fn fill(dir: &Path) -> Vec<PathBuf> {
    use std::io::Write;
    let chunk = vec![0x55u8; 1 << 20];
    let mut files = Vec::new();
    for i in 0.. {
        let path = dir.join(format!("ballast-{i}"));
        let mut file = std::fs::File::create(&path).unwrap();
        files.push(path);
        if file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            return files;
        }
    }
    unreachable!()
}

/// POSTs a Rye event `id` with a body of about `size` bytes.
async fn big_event(gw: &Gateway, id: &str, size: usize) -> Answer {
    let body = String::from_utf8(sign::rye_event(id, "order.created", sign::now())).unwrap();
    let body = body
        .replace(r#""n":1"#, &format!(r#""pad":"{}""#, "x".repeat(size)))
        .into_bytes();
    let (h, v) = sign::rye("k", &body);
    post(gw.addr, "/hook", &[(h, &v)], body).await
}

/// Events offered as a provider would, numbered, and those accepted.
#[derive(Default)]
struct Offers {
    n: usize,
    acked: Vec<String>,
}

impl Offers {
    /// Offers the next event with a body of about `size` bytes: accepted
    /// (202), or refused 503 `spool_full`.
    async fn offer(&mut self, gw: &Gateway, size: usize) -> bool {
        let id = format!("evt_full_{}", self.n);
        self.n += 1;
        let a = big_event(gw, &id, size).await;
        if a.status == 202 {
            self.acked.push(id);
            return true;
        }
        a.assert_error(503, "spool_full");
        false
    }
}

fn assert_none_twice(upstream: &Upstream) {
    let twice: Vec<(String, usize)> = copies(upstream)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// The value of the unlabelled metric `name`.
async fn metric(gw: &Gateway, name: &str) -> u64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_heals_without_a_restart_and_nothing_is_sent_twice() {
    const BODY: usize = 16 * 1024;
    let Some(disk) = Tmpfs::mount(24) else {
        return;
    };
    let spool = disk.path().join("spool");
    // The app is down: deliveries fail and are retried, so their records
    // are written again and again while the disk is full.
    let down = format!("http://127.0.0.1:{}", free_port());
    let retry = "max_attempts = 1000\nmin_backoff_ms = 50\nmax_backoff_ms = 200\nconcurrency = 16";
    let routes = format!(
        "{}[spool]\ndir = \"{}\"\n",
        async_route(&down, retry, ""),
        spool.display()
    );
    let mut gw = Gateway::with_admin(&routes, "").await;
    gw.metrics_with(&["hookgate_spool_unrecorded_total 0"])
        .await;
    // Nearly full: room for about 3 MiB of deliveries.
    let ballast = fill(disk.path());
    for path in ballast.iter().rev().take(4) {
        std::fs::remove_file(path).unwrap();
    }
    let ballast = &ballast[..ballast.len() - 4];

    let mut offers = Offers::default();
    while offers.offer(&gw, BODY).await {
        assert!(offers.n < 2000, "the disk never filled up");
    }
    let full_since = Instant::now();
    assert!(
        offers.acked.len() >= 20,
        "only {} accepted",
        offers.acked.len()
    );
    // The disk stays full for a while, the provider retrying and the
    // deliveries failing: every request is refused 503 `spool_full`.
    while full_since.elapsed() < Duration::from_secs(4) {
        offers.offer(&gw, BODY).await;
    }
    let refused = offers.n - offers.acked.len();
    assert!(refused > 10, "{refused} refused");
    // The budget counts what is stored: every acknowledged delivery.
    let bytes = metric(&gw, "hookgate_spool_bytes").await;
    let floor = (offers.acked.len() * BODY) as u64;
    assert!(
        (floor..floor * 2).contains(&bytes),
        "{bytes} bytes for {} deliveries",
        offers.acked.len()
    );

    // The app comes up while the disk is still full: what it gets, it gets once.
    let upstream = Upstream::start().await;
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, config.replace(&down, &upstream.url())).unwrap();
    assert_eq!(admin(&gw, "POST", "/reload").await.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_none_twice(&upstream);

    // Space is back: accepted again without a restart, and everything
    // acknowledged arrives.
    for path in ballast {
        std::fs::remove_file(path).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !offers.offer(&gw, 1024).await {
        assert!(Instant::now() < deadline, "still refused with space back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offers.offer(&gw, 1024).await, "accepted from now on");
    let Offers { acked, n } = offers;
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
    gw.metrics_with(&["hookgate_spool_bytes 0"]).await;
    let seen = copies(&upstream);
    let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_none_twice(&upstream);
    assert_eq!(seen.len(), acked.len(), "only acknowledged events arrive");

    // One line per kind of error per interval, not one per failure. The
    // record of each delivery attempt (target `hookgate::attempt`, one JSON
    // line per attempt, bounded by the retry schedule) is not an error line.
    let log = gw.log();
    let errors = || log.lines().filter(|l| !l.contains(" hookgate::attempt]"));
    let lines = errors().count();
    let tail: Vec<&str> = errors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(40)
        .collect();
    assert!(
        lines < 300,
        "{lines} log lines for {n} requests; the last: {tail:#?}"
    );

    // Even after kill -9, a restart sends nothing again: every delivery's
    // success was recorded.
    gw.kill9();
    gw.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
    assert_none_twice(&upstream);
    assert_eq!(copies(&upstream).len(), acked.len());
}

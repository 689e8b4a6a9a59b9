//! The access log: one JSON line per request. Requests append their line to a
//! shared buffer; a thread of its own writes the buffer in batches, so a request
//! never waits on the disk and the writer wakes a few times a second, not once
//! per line. Lines carry no secret, signature, body or query string (queries
//! can carry tokens such as Meta's `hub.verify_token`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::observe::metrics::Metrics;

/// Bytes of lines that may wait for the writer before new ones are dropped (and
/// counted): about 64 000 lines.
const MAX_PENDING: usize = 16 * 1024 * 1024;
/// Bytes of lines that wake the writer before its interval is up.
const BATCH: usize = 64 * 1024;
/// How long a line waits, at most, before it is written.
const WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nowhere.
    Off,
    /// Standard output.
    Stdout,
    /// A file, appended to; reopened on reload (for log rotation).
    File(PathBuf),
}

/// One access log line.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When the request ended, RFC 3339 UTC.
    pub time: String,
    /// The route that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// Request method.
    pub method: &'a str,
    /// Request path, without the query.
    pub path: &'a str,
    /// Status sent to the client (absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `forwarded`, `handshake`, `disconnected` or the error code.
    pub outcome: &'a str,
    /// Why verification refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The scheme that verified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<&'a str>,
    /// Index of the secret that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_index: Option<usize>,
    /// The event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    /// Request body bytes.
    pub body_bytes: usize,
    /// Whole request, milliseconds.
    pub duration_ms: f64,
    /// Upstream exchange, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Status the upstream answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// What went wrong upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<&'a str>,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The client's IP as `allow_ips` and rate limits saw it, when
    /// `trusted_proxies` made it another than the connection's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// `failed` when a monitor-mode route forwarded a request that failed
    /// verification (`reason` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<&'a str>,
    /// What dedup made of it: `claimed`, `duplicate`, `in_progress`, `bypassed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<&'a str>,
    /// The state call that failed: `claim`, `mark`, `release`, `rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<&'a str>,
}

/// Lines waiting for the writer, and requests for it.
#[derive(Debug, Default)]
struct Pending {
    /// Serialized lines, newline-terminated.
    lines: Vec<u8>,
    /// Reopen the file once this many bytes of `lines` are written (the lines
    /// queued before the reopen was asked for).
    reopen_at: Option<usize>,
    /// Flushes asked for, and the last one done.
    flush_asked: u64,
    flush_done: u64,
}

/// What request threads and the writer share.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: a batch is full, or a flush or reopen was asked for.
    work: Condvar,
    /// Wakes those waiting for a flush.
    flushed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle to the access log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    metrics: Metrics,
}

fn open(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Off => Box::new(io::sink()),
        Target::Stdout => Box::new(io::stdout()),
        Target::File(path) => Box::new(append(path)?),
    })
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// Starts writing to `target` (nothing is started for `Off`).
    pub fn start(target: &Target, metrics: Metrics) -> io::Result<Self> {
        if *target == Target::Off {
            return Ok(Self {
                shared: None,
                metrics,
            });
        }
        let out = open(target)?;
        let shared = Arc::new(Shared::default());
        let writer = Arc::downgrade(&shared);
        let target = target.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(&target, out, &writer))?;
        Ok(Self {
            shared: Some(shared),
            metrics,
        })
    }

    /// Whether lines go anywhere.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues one line; never blocks on the disk. When 16 MiB of lines
    /// already wait, the line is dropped and counted.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(shared) = &self.shared else { return };
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => return log::error!("cannot write an access log line: {e}"),
        };
        line.push(b'\n');
        let mut pending = shared.lock();
        if pending.lines.len() + line.len() > MAX_PENDING {
            drop(pending);
            return self.metrics.access_log_dropped();
        }
        pending.lines.extend_from_slice(&line);
        if pending.lines.len() >= BATCH {
            shared.work.notify_one();
        }
    }

    /// Waits (up to `timeout`) until every queued line is written.
    pub fn flush(&self, timeout: Duration) {
        let Some(shared) = &self.shared else { return };
        let mut pending = shared.lock();
        pending.flush_asked += 1;
        let asked = pending.flush_asked;
        shared.work.notify_one();
        let _ = shared
            .flushed
            .wait_timeout_while(pending, timeout, |p| p.flush_done < asked)
            .map_err(PoisonError::into_inner);
    }

    /// Reopens a file target, so a rotated log is started anew.
    pub fn reopen(&self) {
        if let Some(shared) = &self.shared {
            let mut pending = shared.lock();
            let at = pending.lines.len();
            pending.reopen_at.get_or_insert(at);
            shared.work.notify_one();
        }
    }
}

fn write_out(out: &mut Box<dyn Write + Send>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        log::error!("cannot write the access log: {e}");
    }
}

/// The writer thread: takes the queued lines as one batch when a batch is full,
/// when asked, or every [`WRITE_INTERVAL`], and writes them with one call. Ends
/// when every handle is gone.
fn write_batches(target: &Target, mut out: Box<dyn Write + Send>, shared: &Weak<Shared>) {
    let mut batch = Vec::new();
    while let Some(shared) = shared.upgrade() {
        let pending = shared.lock();
        let (mut pending, _) = shared
            .work
            .wait_timeout_while(pending, WRITE_INTERVAL, |p| {
                p.lines.len() < BATCH && p.reopen_at.is_none() && p.flush_asked == p.flush_done
            })
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut batch, &mut pending.lines);
        let reopen_at = pending.reopen_at.take();
        let asked = pending.flush_asked;
        drop(pending);

        let (before, after) = batch.split_at(reopen_at.unwrap_or(batch.len()));
        write_out(&mut out, before);
        if reopen_at.is_some() {
            match open(target) {
                Ok(fresh) => out = fresh,
                Err(e) => log::error!("cannot reopen the access log: {e}"),
            }
        }
        write_out(&mut out, after);
        batch.clear();
        shared.lock().flush_done = asked;
        shared.flushed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            time: "2026-01-01T00:00:00Z".into(),
            route: Some("r"),
            method: "POST",
            path,
            status: Some(200),
            outcome: "forwarded",
            reason: None,
            scheme: Some("rye"),
            secret_index: Some(0),
            event_id: Some("evt_1"),
            body_bytes: 2,
            duration_ms: 1.5,
            upstream_ms: Some(1.0),
            upstream_status: Some(200),
            upstream_error: None,
            client: Some("127.0.0.1:9".into()),
            forwarded_for: None,
            verification: None,
            dedup: None,
            state_error: None,
        }
    }

    #[test]
    fn writes_json_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(&Target::File(path.clone()), Metrics::new()).unwrap();
        log.write(&entry("/a"));
        log.flush(Duration::from_secs(5));
        let first: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(first["path"], "/a");
        assert_eq!(first["event_id"], "evt_1");
        assert!(first.get("reason").is_none(), "absent fields are left out");

        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.write(&entry("/before-reopen"));
        log.reopen();
        log.write(&entry("/b"));
        log.flush(Duration::from_secs(5));
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("/before-reopen") && !old.contains("/b\""),
            "{old}"
        );
        assert!(
            new.contains("\"path\":\"/b\"") && !new.contains("/before"),
            "{new}"
        );
    }
}

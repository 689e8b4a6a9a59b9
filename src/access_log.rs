//! The access log: one JSON line per request, written by a thread of its own so
//! a request never waits on the disk. Lines carry no secret, signature, body or
//! query string (queries can carry tokens such as Meta's `hub.verify_token`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;

/// Lines that may wait for the writer before new ones are dropped (and counted).
const QUEUE: usize = 65_536;

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
}

/// What the writer thread is asked to do.
enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
    Reopen,
}

/// A handle to the access log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Message>>,
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
            return Ok(Self { tx: None, metrics });
        }
        let out = BufWriter::new(open(target)?);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let target = target.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&target, out, &rx))?;
        Ok(Self {
            tx: Some(tx),
            metrics,
        })
    }

    /// Whether lines go anywhere.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; never blocks. A full queue drops the line and counts it.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => return log::error!("cannot write an access log line: {e}"),
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(Message::Line(line)) {
            self.metrics.access_log_dropped();
        }
    }

    /// Waits (up to `timeout`) until every queued line is written.
    pub fn flush(&self, timeout: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = mpsc::sync_channel(1);
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }

    /// Reopens a file target, so a rotated log is started anew.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Message::Reopen);
        }
    }
}

/// The writer thread: writes lines, flushing whenever the queue runs dry.
fn write_lines(target: &Target, mut out: BufWriter<Box<dyn Write + Send>>, rx: &Receiver<Message>) {
    loop {
        let message = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Line(line) => {
                if let Err(e) = out.write_all(&line) {
                    log::error!("cannot write the access log: {e}");
                }
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
            Message::Reopen => {
                let _ = out.flush();
                match open(target) {
                    Ok(fresh) => out = BufWriter::new(fresh),
                    Err(e) => log::error!("cannot reopen the access log: {e}"),
                }
            }
        }
    }
    let _ = out.flush();
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

        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.write(&entry("/b"));
        log.flush(Duration::from_secs(5));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("\"path\":\"/b\"")
        );
    }

    #[test]
    fn off_writes_nothing() {
        let log = AccessLog::start(&Target::Off, Metrics::new()).unwrap();
        log.write(&entry("/a"));
        log.flush(Duration::from_millis(10));
    }
}

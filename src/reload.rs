//! Live config: the shared [`ConfigStore`], the [`Reloader`] that SIGHUP, the
//! file watch and `POST /reload` all go through, and the [`ReloadService`] that
//! watches for SIGHUP and for changes to the config file and the files it reads
//! (`file:` secrets, CA files, certificates and keys). A file that does not
//! validate, secrets included, changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};

use crate::base::diagnostics::Report;
use crate::config::{self, Loaded};
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Metrics;
use crate::routes::RouteTable;
use crate::runtime::ConfigStore;
use crate::state::State;
use crate::watch::{Digests, DirWatch};

/// How often the SIGHUP flag is looked at.
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// How long a burst of file events must stay quiet before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The longest a steady stream of events in the directory delays a check.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// How often the file's contents are compared even without events (for
/// file systems that do not report changes, such as some network mounts).
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The SIGHUP signal.
    Sighup,
    /// A change to the config file or to a file it reads.
    File,
    /// `POST /reload` on the admin listener.
    Admin,
}

impl Trigger {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sighup => "sighup",
            Self::File => "file",
            Self::Admin => "admin",
        }
    }
}

/// What a successful reload changed, by route name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// The generation now serving.
    pub generation: u64,
    /// Routes that are new.
    pub added: Vec<String>,
    /// Routes that are gone.
    pub removed: Vec<String>,
    /// Routes whose settings or secrets changed.
    pub changed: Vec<String>,
    /// How many routes stayed the same.
    pub unchanged: usize,
    /// `[server]` settings changed; they take effect at the next restart.
    pub restart_needed: bool,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {}: added [{}], removed [{}], changed [{}], {} unchanged",
            self.generation,
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", "),
            self.unchanged
        )
    }
}

/// Compares two route tables by name and fingerprint; names come in each
/// table's order.
pub fn diff(old: &RouteTable, new: &RouteTable) -> (Vec<String>, Vec<String>, Vec<String>, usize) {
    let before: HashMap<&str, &[u8; 32]> = old
        .iter()
        .map(|r| (r.name.as_str(), &r.fingerprint))
        .collect();
    let now: HashSet<&str> = new.iter().map(|r| r.name.as_str()).collect();
    let (mut added, mut changed, mut unchanged) = (Vec::new(), Vec::new(), 0);
    for route in new.iter() {
        match before.get(route.name.as_str()) {
            None => added.push(route.name.clone()),
            Some(&fingerprint) if *fingerprint != route.fingerprint => {
                changed.push(route.name.clone());
            }
            Some(_) => unchanged += 1,
        }
    }
    let removed = old
        .iter()
        .filter(|r| !now.contains(r.name.as_str()))
        .map(|r| r.name.clone())
        .collect();
    (added, removed, changed, unchanged)
}

/// Loads the config file again and swaps it in when it validates. Every trigger
/// goes through here, one reload at a time.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    store: ConfigStore,
    metrics: Metrics,
    access_log: AccessLog,
    /// Whose local rate limits of routes gone are forgotten after a reload.
    state: State,
    /// Held for the whole of a reload; holds the digests of [`Self::files`]
    /// as last read.
    last_read: Mutex<Digests>,
    /// The config file and every file the running config reads or the last
    /// attempt to reload read: what is watched.
    files: std::sync::Mutex<Arc<[PathBuf]>>,
}

/// Reads and loads the config file: the digest of what was read, the load,
/// and the files the load reads.
fn read(path: &Path) -> (Option<[u8; 32]>, Result<Loaded, Report>, Vec<PathBuf>) {
    match config::read(path) {
        Ok(text) => {
            let digest = Sha256::digest(text.as_bytes()).into();
            let (loaded, files) = config::load_str_reading(path, &text);
            (Some(digest), loaded, files)
        }
        Err(report) => (None, Err(report), Vec::new()),
    }
}

/// The config file, and the files the running config and an attempt read.
fn watched(config: &Path, running: &[PathBuf], attempted: &[PathBuf]) -> Arc<[PathBuf]> {
    let all: BTreeSet<&PathBuf> = running.iter().chain(attempted).collect();
    std::iter::once(config.to_owned())
        .chain(all.into_iter().filter(|f| f.as_path() != config).cloned())
        .collect()
}

impl Reloader {
    /// Reloads `path` into `store`, counting in `metrics`, reopening the
    /// access log and forgetting the local rate limits of routes that no
    /// longer have one in `state` after each successful reload.
    pub fn new(
        path: PathBuf,
        store: ConfigStore,
        metrics: Metrics,
        access_log: AccessLog,
        state: State,
    ) -> Self {
        let files = watched(&path, &store.snapshot().files, &[]);
        Self {
            last_read: Mutex::new(Digests::read(&files)),
            files: std::sync::Mutex::new(files),
            path,
            store,
            metrics,
            access_log,
            state,
        }
    }

    /// The config file and the files it reads, as watched now.
    pub fn files(&self) -> Arc<[PathBuf]> {
        Arc::clone(&self.files.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Loads the file and swaps it in if it validates; otherwise logs every
    /// problem, keeps the running config and returns the problems.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadSummary, Report> {
        let mut last_read = self.last_read.lock().await;
        self.reload_locked(trigger, &mut last_read).await
    }

    /// Reloads when the contents of the config file or of a file it reads
    /// differ from those last read (a watched directory also reports changes
    /// to other files, and editors touch files without changing them). A
    /// missing config file is left alone until it is back.
    async fn reload_if_changed(&self) {
        let mut last_read = self.last_read.lock().await;
        let files = self.files();
        let Ok(now) = tokio::task::spawn_blocking(move || Digests::read(&files)).await else {
            return;
        };
        if now.get(&self.path).flatten().is_some() && now != *last_read {
            let _ = self.reload_locked(Trigger::File, &mut last_read).await;
        }
    }

    async fn reload_locked(
        &self,
        trigger: Trigger,
        last_read: &mut Digests,
    ) -> Result<ReloadSummary, Report> {
        let start = Instant::now();
        let path = self.path.clone();
        let files = self.files();
        // The files are read before the config loads: a change made while it
        // loads is then seen by the next check.
        let read = tokio::task::spawn_blocking(move || (Digests::read(&files), read(&path))).await;
        let (mut before, (digest, loaded, reading)) = match read {
            Ok(read) => read,
            Err(e) => {
                let d = crate::base::diagnostics::Diagnostic::error(
                    None,
                    format!("reload did not finish: {e}"),
                );
                let failed = (None, Err(Report::new(&self.path, "", &[d])), Vec::new());
                (last_read.clone(), failed)
            }
        };
        if digest.is_some() {
            before.set(&self.path, digest);
        }
        let result = loaded.map(|loaded| self.install(trigger, loaded));
        let files = watched(&self.path, &self.store.snapshot().files, &reading);
        // A file the config reads from now on is read again here, just after
        // the config read it.
        let carried = Arc::clone(&files);
        if let Ok(digests) = tokio::task::spawn_blocking(move || before.carried_to(&carried)).await
        {
            *last_read = digests;
        }
        *self.files.lock().unwrap_or_else(PoisonError::into_inner) = files;
        self.metrics
            .reload(trigger.as_str(), result.is_ok(), start.elapsed());
        if let Err(report) = &result {
            log::error!(
                "config reload ({}) failed; still serving generation {}:\n{report}",
                trigger.as_str(),
                self.store.snapshot().generation
            );
        }
        result
    }

    fn install(&self, trigger: Trigger, loaded: Loaded) -> ReloadSummary {
        for warning in loaded.warnings.lines() {
            log::warn!("{warning}");
        }
        let current = self.store.snapshot();
        let restart_needed = loaded.config.server != current.server;
        if restart_needed {
            log::warn!(
                "[server] settings changed in {}; they take effect at the next restart",
                self.path.display()
            );
        }
        let (added, removed, changed, unchanged) = diff(&current.routes, &loaded.config.routes);
        let loaded_at = loaded.config.loaded_at;
        let generation = self.store.replace(loaded.config);
        let unix = loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.metrics
            .config_loaded(generation, i64::try_from(unix).unwrap_or(i64::MAX));
        self.access_log.reopen();
        let running = self.store.snapshot();
        let limited: HashSet<&str> = running
            .routes
            .iter()
            .filter(|r| r.policy.as_ref().is_some_and(|p| p.rate_limit.is_some()))
            .map(|r| r.name.as_str())
            .collect();
        self.state.retain_limits(|route| limited.contains(route));
        let summary = ReloadSummary {
            generation,
            added,
            removed,
            changed,
            unchanged,
            restart_needed,
        };
        log::info!(
            "config reloaded ({}) from {}: {summary}",
            trigger.as_str(),
            self.path.display()
        );
        // Freeing 100,000 routes takes a tenth of a second, which neither this
        // reload nor the next should wait for (should the thread not start,
        // the closure and the config are dropped here).
        let _ = std::thread::Builder::new()
            .name("hookgate-old-config".to_owned())
            .spawn(move || drop(current));
        summary
    }
}

/// The background service that reloads on SIGHUP and on changes to the
/// config file and the files it reads.
#[derive(Debug)]
pub struct ReloadService {
    reloader: Arc<Reloader>,
    sighup: Arc<AtomicBool>,
    watch_file: bool,
}

impl ReloadService {
    /// Reloads through `reloader` when `sighup` is raised (by a signal handler
    /// installed at startup) and, with `watch_file`, when the config file or
    /// a file it reads changes.
    pub fn new(reloader: Arc<Reloader>, sighup: Arc<AtomicBool>, watch_file: bool) -> Self {
        Self {
            reloader,
            sighup,
            watch_file,
        }
    }

    /// Watches the directories holding the config file and the files it reads:
    /// a rename over a file, an editor's save-by-rename and a Kubernetes
    /// `..data` symlink swap all happen there.
    fn watch(events: mpsc::Sender<()>) -> Option<DirWatch> {
        match DirWatch::new(events) {
            Ok(watch) => Some(watch),
            Err(e) => {
                log::warn!(
                    "cannot watch files ({e}); comparing the config and its files every {}s instead",
                    FALLBACK_POLL.as_secs()
                );
                None
            }
        }
    }
}

/// Waits until no event came for [`DEBOUNCE`], or [`DEBOUNCE_MAX`] passed.
async fn settle(events: &mut mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(DEBOUNCE, events.recv()).await {
            Ok(Some(())) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut events) = mpsc::channel(1);
        let mut watch = if self.watch_file {
            Self::watch(tx)
        } else {
            None
        };
        let mut watching: Option<Arc<[PathBuf]>> = None;
        let mut signal_tick = tokio::time::interval(SIGNAL_POLL);
        let mut poll_tick = tokio::time::interval(FALLBACK_POLL);
        loop {
            // Each reload (whatever set it off) may change the files read.
            if let Some(watch) = &mut watch {
                let files = self.reloader.files();
                if !watching.as_ref().is_some_and(|w| Arc::ptr_eq(w, &files)) {
                    watch.watch(&files);
                    watching = Some(files);
                }
            }
            let file_changed = tokio::select! {
                _ = shutdown.changed() => return,
                _ = signal_tick.tick() => false,
                Some(()) = events.recv() => {
                    settle(&mut events).await;
                    true
                }
                _ = poll_tick.tick() => self.watch_file,
            };
            if self.sighup.swap(false, Ordering::SeqCst) {
                let _ = self.reloader.reload(Trigger::Sighup).await;
            } else if file_changed {
                self.reloader.reload_if_changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> RouteTable {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        config::load_str(&path, text).unwrap().config.routes
    }

    fn route(name: &str, secret: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://127.0.0.1:9\"\n\
             [routes.verify]\nscheme = \"rye\"\nsecrets = [\"{secret}\"]\n"
        )
    }

    #[test]
    fn diff_names_added_removed_and_changed_routes() {
        let old = table(&[route("a", "s1"), route("b", "s1"), route("c", "s1")].concat());
        let same = table(&[route("a", "s1"), route("b", "s1"), route("c", "s1")].concat());
        assert_eq!(diff(&old, &same), (vec![], vec![], vec![], 3));

        let new = table(&[route("a", "s1"), route("c", "s2"), route("d", "s1")].concat());
        let (added, removed, changed, unchanged) = diff(&old, &new);
        assert_eq!(added, ["d"]);
        assert_eq!(removed, ["b"]);
        assert_eq!(changed, ["c"], "a changed secret changes the route");
        assert_eq!(unchanged, 1);
    }
}

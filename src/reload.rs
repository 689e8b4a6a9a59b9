//! Live config: the shared [`ConfigStore`] and the [`Reloader`] background
//! service, which reloads on SIGHUP and when the config file changes (also when
//! it is replaced by rename). A file that does not validate changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config;
use crate::runtime::RuntimeConfig;

/// How often the file is checked, and how long it must stay unchanged before a
/// reload (so a file being written is not read half-way).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The current config snapshot, shared by every request and the reloader.
#[derive(Debug, Clone)]
pub struct ConfigStore(Arc<ArcSwap<RuntimeConfig>>);

impl ConfigStore {
    /// A store holding `config`.
    pub fn new(config: RuntimeConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The current snapshot. Take it once per request and keep it.
    pub fn snapshot(&self) -> Arc<RuntimeConfig> {
        self.0.load_full()
    }

    /// Installs `config` as the next generation and returns its number. Requests
    /// in flight keep the snapshot they took.
    pub fn replace(&self, mut config: RuntimeConfig) -> u64 {
        config.generation = self.0.load().generation + 1;
        let generation = config.generation;
        self.0.store(Arc::new(config));
        generation
    }
}

/// Identity of the file's current contents as cheap metadata. `metadata` follows
/// symlinks, so a rename over the file or a swapped symlink target both show up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        inode: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Reloads the config on request.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    store: ConfigStore,
    sighup: Arc<AtomicBool>,
    watch_file: bool,
}

impl Reloader {
    /// Reloads `path` into `store` when `sighup` is raised (by a signal handler
    /// installed at startup) and, with `watch_file`, when the file changes.
    pub fn new(
        path: PathBuf,
        store: ConfigStore,
        sighup: Arc<AtomicBool>,
        watch_file: bool,
    ) -> Self {
        Self {
            path,
            store,
            sighup,
            watch_file,
        }
    }

    /// Loads the file and swaps it in if it validates; otherwise logs every
    /// problem and keeps the running config.
    pub async fn reload(&self, trigger: &str) {
        let path = self.path.clone();
        let loaded = match tokio::task::spawn_blocking(move || config::load(&path)).await {
            Ok(result) => result,
            Err(e) => {
                log::error!("config reload ({trigger}) did not finish: {e}");
                return;
            }
        };
        let current = self.store.snapshot();
        match loaded {
            Ok(loaded) => {
                for warning in loaded.warnings.lines() {
                    log::warn!("{warning}");
                }
                if loaded.config.server != current.server {
                    log::warn!(
                        "[server] listen, threads or watch_config changed in {}; restart to apply",
                        self.path.display()
                    );
                }
                let routes = loaded.config.routes.len();
                let generation = self.store.replace(loaded.config);
                log::info!(
                    "config reloaded ({trigger}) from {}: generation {generation}, {routes} routes",
                    self.path.display()
                );
            }
            Err(report) => {
                log::error!(
                    "config reload ({trigger}) failed; keeping generation {}:\n{report}",
                    current.generation
                );
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen = fingerprint(&self.path);
        let mut changed = false;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            if self.sighup.swap(false, Ordering::SeqCst) {
                self.reload("SIGHUP").await;
                seen = fingerprint(&self.path);
                changed = false;
                continue;
            }
            if !self.watch_file {
                continue;
            }
            let now = fingerprint(&self.path);
            if now != seen {
                seen = now;
                changed = true;
            } else if changed && seen.is_some() {
                changed = false;
                self.reload("file change").await;
            }
        }
    }
}

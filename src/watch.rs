//! What a running config depends on, on disk: the config file and every file it
//! reads (`file:` secrets, CA files, certificates and keys). [`Digests`] tells a
//! change in their contents from a mere event; [`DirWatch`] watches the
//! directories holding them, so that a write in place, a replace by rename and a
//! Kubernetes `..data` symlink swap are all reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The digest of a file's contents; `None` when it cannot be read.
pub fn file_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

/// The contents' digest of each watched file, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests(Vec<(PathBuf, Option<[u8; 32]>)>);

impl Digests {
    /// Reads every one of `files` now.
    pub fn read(files: &[PathBuf]) -> Self {
        Self(
            files
                .iter()
                .map(|path| (path.clone(), file_digest(path)))
                .collect(),
        )
    }

    /// The digest taken of `path`, if it is among them.
    pub fn get(&self, path: &Path) -> Option<Option<[u8; 32]>> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, d)| *d)
    }

    /// The digests of `files`: those of `self` where it has them, read now
    /// otherwise.
    pub fn carried_to(&self, files: &[PathBuf]) -> Self {
        Self(
            files
                .iter()
                .map(|path| {
                    let digest = self.get(path).unwrap_or_else(|| file_digest(path));
                    (path.clone(), digest)
                })
                .collect(),
        )
    }

    /// Records `digest` for `path`.
    pub fn set(&mut self, path: &Path, digest: Option<[u8; 32]>) {
        match self.0.iter_mut().find(|(p, _)| p == path) {
            Some((_, d)) => *d = digest,
            None => self.0.push((path.to_owned(), digest)),
        }
    }
}

/// The directory an event about `file` happens in.
fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A watch on the directories holding a set of files, reporting any event but
/// a read on a channel. Events are only a hint; the files' contents decide.
#[derive(Debug)]
pub struct DirWatch {
    watcher: RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
}

impl DirWatch {
    /// A watch reporting on `events`, watching nothing yet.
    pub fn new(events: mpsc::Sender<()>) -> notify::Result<Self> {
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !matches!(e.kind, EventKind::Access(_))) {
                let _ = events.try_send(());
            }
        };
        Ok(Self {
            watcher: notify::recommended_watcher(handler)?,
            dirs: BTreeSet::new(),
        })
    }

    /// Watches the directories of `files` and no other; a directory that
    /// cannot be watched is logged, and the reloader's periodic check covers it.
    pub fn watch(&mut self, files: &[PathBuf]) {
        let wanted: BTreeSet<PathBuf> = files.iter().map(|f| parent(f)).collect();
        for gone in self.dirs.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        self.dirs.retain(|dir| wanted.contains(dir));
        for dir in wanted {
            if self.dirs.contains(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir);
                }
                Err(e) => log::warn!(
                    "cannot watch {} ({e}); its files are compared periodically instead",
                    dir.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_carry_over_and_read_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "two").unwrap();
        let before = Digests::read(std::slice::from_ref(&a));
        std::fs::write(&a, "changed").unwrap();
        let carried = before.carried_to(&[a.clone(), b.clone()]);
        assert_eq!(carried.get(&a), before.get(&a), "kept as it was read");
        assert_eq!(carried.get(&b), Some(file_digest(&b)));
        assert_ne!(carried, Digests::read(&[a, b]));
        assert_eq!(Digests::read(&[dir.path().join("none")]).0[0].1, None);
    }
}

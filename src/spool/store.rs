//! The storage interface of the spool and its `local` backend: redb, an
//! embedded crash-safe B-tree in one file. Every commit is one write
//! transaction made durable with fsync before it returns, so a commit carrying
//! many requests' changes costs one fsync (group commit, see [`super`]).
//!
//! After an I/O error (a full disk, say) redb refuses every later operation
//! ("Previous I/O error occurred. Please close and re-open the database."):
//! the store says so ([`Store::broken`]), and the spool closes it and opens it
//! again, which recovers what was committed last, as after a crash.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::Meta;

/// Delivery id → the request as it will be sent (see [`super::request`]).
const REQUESTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("requests");
/// Delivery id → its [`Meta`], as JSON.
const METAS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("metas");

/// A change to the store.
#[derive(Debug)]
pub enum Op {
    /// A new delivery: its record and request.
    Insert(Meta, Vec<u8>),
    /// A delivery's record changed.
    Update(Meta),
    /// A delivery is gone (delivered or deleted).
    Remove(u64),
}

/// Why the store failed; the message names no request data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spool store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

fn failed(e: impl fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Where the `local` backend keeps deliveries.
pub trait Store: Send + Sync + fmt::Debug {
    /// Applies `ops` together and makes them durable before returning.
    fn commit(&self, ops: &[&Op]) -> Result<(), StoreError>;
    /// Whether an I/O error broke it: it must be closed and opened again.
    fn broken(&self) -> bool;
    /// Every delivery's record, in id (arrival) order.
    fn metas(&self) -> Result<Vec<Meta>, StoreError>;
    /// A delivery's request, if it is there.
    fn request(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The `local` backend: one redb file.
#[derive(Debug)]
pub struct Local {
    db: Database,
    /// An I/O error happened: redb refuses everything from now on.
    broken: AtomicBool,
}

impl Local {
    /// Opens (or creates) the store in `dir`, which is created if missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("deliveries.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        // Both tables exist from the start, so reads never find them missing.
        let tx = db.begin_write().map_err(failed)?;
        tx.open_table(REQUESTS).map_err(failed)?;
        tx.open_table(METAS).map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(Self {
            db,
            broken: AtomicBool::new(false),
        })
    }

    /// The error as a [`StoreError`], noting an I/O error.
    fn failed(&self, e: impl Into<redb::Error>) -> StoreError {
        let e = e.into();
        if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
            self.broken.store(true, Ordering::Release);
        }
        failed(e)
    }
}

impl Store for Local {
    fn commit(&self, ops: &[&Op]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.failed(e))?;
        tx.set_durability(Durability::Immediate);
        {
            let mut requests = tx.open_table(REQUESTS).map_err(|e| self.failed(e))?;
            let mut metas = tx.open_table(METAS).map_err(|e| self.failed(e))?;
            for op in ops {
                match op {
                    Op::Insert(meta, request) => {
                        requests
                            .insert(meta.id, request.as_slice())
                            .map_err(|e| self.failed(e))?;
                        metas
                            .insert(meta.id, meta.encode().as_slice())
                            .map_err(|e| self.failed(e))?;
                    }
                    Op::Update(meta) => {
                        metas
                            .insert(meta.id, meta.encode().as_slice())
                            .map_err(|e| self.failed(e))?;
                    }
                    Op::Remove(id) => {
                        requests.remove(id).map_err(|e| self.failed(e))?;
                        metas.remove(id).map_err(|e| self.failed(e))?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| self.failed(e))
    }

    fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    fn metas(&self) -> Result<Vec<Meta>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = tx.open_table(METAS).map_err(|e| self.failed(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.failed(e))? {
            let (id, value) = entry.map_err(|e| self.failed(e))?;
            match Meta::decode(value.value()) {
                Some(meta) => out.push(meta),
                None => log::error!(
                    "spool: delivery {:016x} has an unreadable record; skipped",
                    id.value()
                ),
            }
        }
        Ok(out)
    }

    fn request(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = tx.open_table(REQUESTS).map_err(|e| self.failed(e))?;
        let value = table.get(id).map_err(|e| self.failed(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

//! SQLite: the pages' reads on connections of their own, opened read-only
//! and used through SQLite's own API on a blocking thread. A page's reads
//! (its session, who it is, its rows) cross to that thread once and run in
//! one read transaction, instead of each query and each row going through
//! a pool connection's worker thread and back.
//!
//! At most as many connections as the pool's size are open; a page waits
//! for one without holding a thread. A connection goes back to the idle
//! list when its work ends, even if the page that asked for it has gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::OpenFlags;
use tokio::sync::Semaphore;

use super::StoreError;

/// Each reader's own page cache, in KiB: the pages of the database file
/// are read in place from its mapping, shared by every reader through the
/// operating system's cache; this one holds what the mapping does not (the
/// pages still in the write-ahead log).
const READER_CACHE_KIB: u32 = 8 * 1024;

/// How much of the database file each reader maps (SQLite maps at most
/// what the file holds).
const READER_MMAP_BYTES: i64 = 1 << 40;

/// Statements each reader keeps prepared.
const READER_STATEMENTS: usize = 32;

/// The read-only connections to one SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteReaders {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// One per connection that may be open.
    permits: Arc<Semaphore>,
}

impl SqliteReaders {
    pub(crate) fn new(path: PathBuf, connections: u32) -> SqliteReaders {
        let connections = usize::try_from(connections.max(1)).unwrap_or(1);
        SqliteReaders {
            path,
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    /// Runs `work` in one read transaction of a reader, on a blocking
    /// thread.
    pub(crate) async fn read<T, Work>(self: &Arc<Self>, work: Work) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Work: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::NotCommitted("the readers are closed".into()))?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = readers.idle().pop();
            let mut connection = match idle {
                Some(connection) => connection,
                None => readers.open()?,
            };
            let done = match connection.transaction() {
                // Dropped at the end: a read transaction rolls back.
                Ok(transaction) => work(&transaction),
                Err(error) => Err(error.into()),
            };
            // One left inside a transaction (its rollback failed) is not
            // used again.
            if connection.is_autocommit() {
                readers.idle().push(connection);
            }
            done
        })
        .await
        .map_err(|error| StoreError::NotCommitted(format!("a read stopped: {error}")))?
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(30))?;
        connection.pragma_update(None, "cache_size", format!("-{READER_CACHE_KIB}"))?;
        connection.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
        connection.set_prepared_statement_cache_capacity(READER_STATEMENTS);
        Ok(connection)
    }
}

impl super::Store {
    /// Runs `work` in one read transaction of a SQLite reader: for the
    /// SQLite arm of a read, where the store always has its readers.
    pub(crate) async fn sqlite_read<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Work: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.sqlite_readers {
            Some(readers) => readers.read(work).await,
            None => Err(StoreError::NotCommitted("the store has no SQLite readers".into())),
        }
    }
}

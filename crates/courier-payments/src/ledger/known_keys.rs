//! The idempotency keys a SQLite ledger may hold, in memory, so that a new key (nearly every Authorize) is known
//! to be new without asking the store.
//!
//! Before an Authorize consults UserService and RiskService, the service looks for an earlier answer under its
//! key (a retry must not count twice towards a velocity rule). On SQLite that look-up was a pool query per call,
//! and sqlx runs each SQLite statement on a worker thread of its own: two thread hops and a page read for an
//! answer that is "no" for every first attempt. This process is the only writer of its SQLite file (it holds the
//! file's writer lock, taken here), so it can know every key the store holds: those the store had when it opened,
//! and those its own writer committed since. A Bloom filter (fastbloom) keeps them in about 14 bits a key
//! (1.8 MiB for the first million keys); "not in the filter" is certain and skips the query, "maybe" (a key used
//! before, or one false positive in a thousand) asks the store as before. The writer has the last word either way:
//! it finds a stored key inside its own transaction, so the filter decides only whether the pre-read happens.
//!
//! PostgreSQL gets no filter: several processes may write one database, so no process knows every key.

use std::path::{Path, PathBuf};

use fastbloom::AtomicBloomFilter;

/// False-positive rate of the filter: one first attempt in a thousand still reads the store.
const FALSE_POSITIVE_RATE: f64 = 0.001;
/// The filter is sized for at least this many keys, and for twice the keys the store holds when it opens; past
/// that its false-positive rate rises (more pre-reads, never a wrong answer) until the next start resizes it.
const LEAST_CAPACITY: usize = 1 << 20;

/// Why a SQLite ledger could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or another ledger in this one) writes this file.
    #[error(
        "another courier process is writing {file} (it holds {lock}): a SQLite ledger has one writer; stop that \
         process, or give this one its own --data-dir (or PostgreSQL, which several processes can share)"
    )]
    Locked { file: String, lock: String },
    /// The lock file could not be opened or locked.
    #[error("locking {lock}: {source}")]
    Lock { lock: String, source: std::io::Error },
    /// Reading the stored keys failed.
    #[error("reading the stored idempotency keys: {0}")]
    Database(#[from] sqlx::Error),
}

/// The keys the store may hold (see the module docs), and the file's writer lock, held as long as this lives.
pub(super) struct KnownKeys {
    filter: AtomicBloomFilter,
    _writer_lock: std::fs::File,
}

impl KnownKeys {
    /// Takes the writer lock of the SQLite file `file` and loads every stored key.
    pub async fn open(file: &str) -> Result<Self, OpenError> {
        let lock = lock_path(file);
        let shown = || lock.display().to_string();
        let writer_lock = match courier_kit::db::try_lock_exclusive(&lock) {
            Ok(Some(held)) => held,
            Ok(None) => return Err(OpenError::Locked { file: file.to_owned(), lock: shown() }),
            Err(source) => return Err(OpenError::Lock { lock: shown(), source }),
        };
        let file = file.to_owned();
        let filter = tokio::task::spawn_blocking(move || load(&file))
            .await
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(format!("loading the idempotency keys: {e}"))))?
            .map_err(super::sqlite::error)?;
        Ok(Self { filter, _writer_lock: writer_lock })
    }

    /// False only when no answer is stored under (scope, key).
    pub fn may_hold(&self, scope: &str, key: &str) -> bool {
        self.filter.contains(&(scope, key))
    }

    /// Records a key the writer is about to commit (before its callers hear the answer, so a retry that follows
    /// the answer always finds it).
    pub fn insert(&self, scope: &str, key: &str) {
        self.filter.insert(&(scope, key));
    }
}

/// Every stored key of the SQLite file `file`, in a filter sized for twice their number. Read with rusqlite on a
/// blocking thread, borrowing each row's text: through sqlx's pool every row was a hop to its worker thread and
/// two strings, which made loading 10M keys most of a large store's start-up.
fn load(file: &str) -> rusqlite::Result<AtomicBloomFilter> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(file, flags)?;
    conn.pragma_update(None, "query_only", true)?;
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM idempotency_keys", [], |row| row.get(0))?;
    let capacity = LEAST_CAPACITY.max(usize::try_from(stored).unwrap_or(0).saturating_mul(2));
    let filter = AtomicBloomFilter::with_false_pos(FALSE_POSITIVE_RATE).expected_items(capacity);
    let mut statement = conn.prepare("SELECT scope, idem_key FROM idempotency_keys")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        filter.insert(&(text(row, 0)?, text(row, 1)?));
    }
    Ok(filter)
}

/// Column `column` of `row` as text, borrowed from the row.
fn text<'row>(row: &'row rusqlite::Row<'_>, column: usize) -> rusqlite::Result<&'row str> {
    let value = row.get_ref(column)?;
    value
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e)))
}

/// The lock file next to the database file: SQLite's own locks are fcntl locks on the file itself, which flock
/// does not see, but a separate file keeps the two apart for anyone reading the code.
fn lock_path(file: &str) -> PathBuf {
    let mut lock = Path::new(file).as_os_str().to_owned();
    lock.push(".writer-lock");
    lock.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::AnyPool;

    async fn store(dir: &Path) -> (AnyPool, String) {
        let file = dir.join("courier.db").to_str().unwrap().to_owned();
        let config = courier_kit::db::DbConfig::new(format!("sqlite://{file}"));
        (crate::open_store(&config).await.expect("open the store"), file)
    }

    #[tokio::test]
    async fn the_stored_keys_are_known_after_a_restart_and_new_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, file) = store(dir.path()).await;
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, response, created_at_us) \
             VALUES ('merchant:m', 'k1', 'f', x'', 0)",
        )
        .execute(&pool)
        .await
        .expect("store a key");
        let known = KnownKeys::open(&file).await.expect("open");
        assert!(known.may_hold("merchant:m", "k1"), "a stored key must never be called new");
        // New keys are new, but for the odd false positive (one in a thousand).
        let maybe = (0..1000).filter(|i| known.may_hold("merchant:m", &format!("new-{i}"))).count();
        assert!(maybe < 10, "{maybe} of 1000 new keys were taken for stored ones");
        known.insert("merchant:m", "k2");
        assert!(known.may_hold("merchant:m", "k2"), "a key the writer commits is known at once");
    }

    #[tokio::test]
    async fn one_writer_per_file_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        // The pool created and migrated the file; it stays open as the server's would.
        let (_pool, file) = store(dir.path()).await;
        let first = KnownKeys::open(&file).await.expect("the first writer");
        let second = KnownKeys::open(&file).await.err().expect("a second writer is refused");
        assert!(matches!(second, OpenError::Locked { .. }), "{second}");
        assert!(second.to_string().contains("--data-dir"), "the refusal says what to do: {second}");
        drop(first);
        KnownKeys::open(&file).await.expect("free again once the first one closed");
    }
}

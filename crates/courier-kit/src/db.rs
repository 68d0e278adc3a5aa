//! Opening a database pool the same way for every service: SQLite (embedded default) or PostgreSQL through
//! sqlx's `Any` driver, SQLite pragmas for durability, and each service's own migrations.
//!
//! Services share one database and one `_sqlx_migrations` table, so each migrator ignores the others' versions
//! (users number theirs from 1, payments from 1001).

use std::sync::Once;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::Executor;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the call fails.
    pub acquire_timeout: Duration,
}

impl DbConfig {
    /// Defaults for `url`: 16 connections, 5 s acquire timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

/// What every SQLite connection runs first (the pool's, and the ledger writer's own). WAL: readers and the writer
/// do not block each other. FULL: fsync on every commit, so an acknowledged write survives power loss.
/// busy_timeout: a second writer (another process) waits for the lock instead of failing at once.
pub const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;";

/// Prepared statements each PostgreSQL connection keeps (sqlx's default is 100). The ledger writer's reads come in
/// power-of-two list lengths (nine per select, three selects) beside its one batch write, and the pool's readers
/// have their own; a shape pushed out of the cache costs a Parse and Describe round trip on its next use.
pub const POSTGRES_STATEMENT_CACHE: usize = 256;

/// Opens the pool, creating a SQLite file (and its directory) if needed, and applies `migrations`.
pub async fn open(config: &DbConfig, migrations: &Migrator) -> Result<AnyPool, sqlx::Error> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);

    let url = match config.url.strip_prefix("sqlite://") {
        Some(path) => {
            create_parent_dir(path)?;
            // rwc: create the file on first start.
            if path.contains('?') {
                config.url.clone()
            } else {
                format!("{}?mode=rwc", config.url)
            }
        }
        // Room for the ledger writer's statement shapes (see POSTGRES_STATEMENT_CACHE), unless the URL says.
        None if config.url.starts_with("postgres") && !config.url.contains("statement-cache-capacity") => {
            let separator = if config.url.contains('?') { '&' } else { '?' };
            format!("{}{separator}statement-cache-capacity={POSTGRES_STATEMENT_CACHE}", config.url)
        }
        None => config.url.clone(),
    };
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        // sqlx pings a connection before handing it out, to find ones the server closed. A SQLite connection is a
        // file handle in this process that nothing closes from outside, and each ping is a round trip to its
        // worker thread (two context switches): on SQLite that was a third of a GetUser's server CPU.
        .test_before_acquire(!sqlite)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                if conn.backend_name() == "SQLite" {
                    conn.execute(SQLITE_PRAGMAS).await?;
                }
                Ok(())
            })
        })
        // A connection that comes back still inside a transaction is closed, never reused. After a failed COMMIT or
        // ROLLBACK (SQLITE_FULL, a broken socket) sqlx's transaction depth no longer matches the database's: the
        // next `begin()` would be a SAVEPOINT inside a transaction that never ends, its `commit()` a RELEASE that
        // commits nothing, and the open transaction would hold SQLite's write lock until the process restarts.
        .after_release(|conn, _meta| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) }))
        .connect(&url)
        .await?;
    let mut migrator = Migrator::DEFAULT;
    migrator.migrations = migrations.migrations.clone();
    migrator.set_ignore_missing(true);
    migrator.run(&pool).await?;
    Ok(pool)
}

/// The least time before the caller's deadline at which a store operation gives up in [`before_deadline`]; a
/// tenth of the time left when that is more (the answer must still travel, and the caller's clock started first).
pub const REFUSAL_MARGIN: std::time::Duration = std::time::Duration::from_millis(10);

/// Below this much time left, [`before_deadline`] keeps no margin: it gives up at the deadline itself. With a
/// budget that short, a store that did not answer yet is more likely slow than gone, so its timing out says
/// little about the store (see [`is_short_budget`]); but it is still bounded, because an operation nobody waits
/// for any more must not hold a connection, or the ledger's single writer, until the store answers.
pub const LEAST_BOUNDED_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// True when an operation starting now with `deadline` has less than [`LEAST_BOUNDED_BUDGET`] left: its timing
/// out is no evidence that the store is unreachable.
pub fn is_short_budget(deadline: Option<crate::deadline::Instant>) -> bool {
    deadline.is_some_and(|deadline| {
        deadline.saturating_duration_since(crate::deadline::Instant::now()) < LEAST_BOUNDED_BUDGET
    })
}

/// Runs a store operation (an acquire, a query, a transaction's statements) until `deadline` (the deadline of
/// the call being served, [`crate::deadline::current`]) less a margin ([`REFUSAL_MARGIN`]), then gives up with
/// an I/O error ([`is_unreachable`]). A database that stops answering without resetting anything (packets
/// dropped) would otherwise hold every call until the caller's own deadline, which tells the caller nothing; this
/// way it hears UNAVAILABLE (nothing was changed) while it still listens. Unbounded without a deadline (the
/// pool's acquire timeout still applies); bounded at the deadline itself with less than [`LEAST_BOUNDED_BUDGET`]
/// left. Never wrap a COMMIT in this without finding out afterwards whether it applied.
pub async fn before_deadline<T>(
    deadline: Option<crate::deadline::Instant>,
    operation: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let Some(deadline) = deadline else { return operation.await };
    let now = crate::deadline::Instant::now();
    let left = deadline.saturating_duration_since(now);
    let margin = if left < LEAST_BOUNDED_BUDGET { std::time::Duration::ZERO } else { (left / 10).max(REFUSAL_MARGIN) };
    let give_up = deadline - margin;
    match tokio::time::timeout_at(give_up, operation).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the database did not answer before the call's deadline",
        ))),
    }
}

/// True when `error` says the database could not be reached or the connection broke (rather than the database
/// answering an error): a statement that failed this way on a read applied nothing and may be retried.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// The file of a `sqlite://` (or `sqlite:`) URL, without its query; `None` for another database.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(path.split('?').next().unwrap_or(path))
}

/// Takes an exclusive `flock(2)` on `path` (created if missing) without waiting: `Ok(None)` when another open file
/// holds it. The kernel releases it when the returned file is closed or the process dies, SIGKILL included, so a
/// crashed holder never leaves a stale lock behind (a PID file would).
pub fn try_lock_exclusive(path: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// True when the pool talks to SQLite (for the few statements that differ).
pub fn is_sqlite(pool: &AnyPool) -> bool {
    pool.connect_options().database_url.scheme() == "sqlite"
}

fn create_parent_dir(path: &str) -> Result<(), sqlx::Error> {
    let file = path.split('?').next().unwrap_or(path);
    if let Some(dir) = std::path::Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    Ok(())
}

/// Opens an existing store for a read-only command (`courier ledger check`): creates no file, no directory and
/// no table, so a mistyped path is an error rather than a new, empty and therefore "healthy" database.
pub async fn open_existing(config: &DbConfig) -> Result<AnyPool, sqlx::Error> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);

    let url = match config.url.strip_prefix("sqlite://") {
        Some(path) => {
            let file = path.split('?').next().unwrap_or(path);
            if !std::path::Path::new(file).is_file() {
                return Err(sqlx::Error::Configuration(format!("no database file at {file}").into()));
            }
            // ro: a checker never writes, and SQLite's own default (rwc) would create a missing file.
            if path.contains('?') {
                config.url.clone()
            } else {
                format!("{}?mode=ro", config.url)
            }
        }
        None => config.url.clone(),
    };
    AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect(&url)
        .await
}

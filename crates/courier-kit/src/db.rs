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
        None => config.url.clone(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                if conn.backend_name() == "SQLite" {
                    // WAL: readers and the writer do not block each other. FULL: fsync on every commit, so an
                    // acknowledged write survives power loss. busy_timeout: a second writer (another process)
                    // waits for the lock instead of failing at once.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                        .await?;
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

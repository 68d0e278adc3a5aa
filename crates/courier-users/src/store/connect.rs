//! Opening the store: pool set-up, SQLite pragmas, migrations.

use std::sync::Once;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

use super::{StoreError, UserStore};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the call fails.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Defaults for `url`: 16 connections, 5 s acquire timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool, creating a SQLite file (and its directory) if needed, and applies pending migrations.
pub async fn connect(config: &StoreConfig) -> Result<UserStore, StoreError> {
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
                    // WAL: readers and the writer do not block each other. FULL: fsync on every commit.
                    // busy_timeout: a second writer waits for the lock instead of failing at once.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    MIGRATOR.run(&pool).await.map_err(sqlx::Error::from)?;
    Ok(UserStore::new(pool))
}

fn create_parent_dir(path: &str) -> Result<(), StoreError> {
    let file = path.split('?').next().unwrap_or(path);
    if let Some(dir) = std::path::Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    }
    Ok(())
}

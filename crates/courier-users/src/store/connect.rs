//! Opening the store: the shared pool set-up (`courier_kit::db`) with the user service's migrations.

pub use courier_kit::db::DbConfig as StoreConfig;

use super::{StoreError, UserStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool, creating a SQLite file (and its directory) if needed, and applies pending migrations.
pub async fn connect(config: &StoreConfig) -> Result<UserStore, StoreError> {
    Ok(UserStore::new(courier_kit::db::open(config, &MIGRATOR).await?).with_fast_reads(&config.url))
}

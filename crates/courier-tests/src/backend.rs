//! The databases tests run against: a SQLite file in a temp dir, or a schema of its own in the real PostgreSQL.
//!
//! PostgreSQL comes from `COURIER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`). Tests that
//! need it (or a broker) are `#[ignore = "needs ..."]` and carry the service's name in their path (`postgres::`,
//! `..._postgres_...`), so a plain `cargo test` counts them as ignored instead of passing them; `scripts/test.sh`
//! runs them (`-- --ignored`) when the service answers, and always under `CI=true`. A test that runs and cannot
//! reach its service fails loudly: it never passes by skipping.

use sqlx::Connection;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database prepared for one test; dropping it removes the SQLite file (the PostgreSQL schema is dropped by
/// [`TestDatabase::cleanup`], which needs async).
pub struct TestDatabase {
    pub url: String,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// A fresh, empty database; panics, saying what to do, when PostgreSQL is unreachable.
    pub async fn database(self) -> TestDatabase {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("courier.db").display());
                TestDatabase { url, schema: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let base = std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
                let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL at {base} is unreachable ({error}): start it or set COURIER_TEST_POSTGRES_URL \
                         (this test is #[ignore]d by default; `scripts/test.sh` runs it when PostgreSQL answers)"
                    )
                });
                let schema = format!("courier_test_{}", uuid::Uuid::now_v7().simple());
                sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create schema");
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                TestDatabase { url, schema: Some((base, schema)), _dir: None }
            }
        }
    }
}

impl TestDatabase {
    /// Drops the test's PostgreSQL schema; a no-op for SQLite.
    pub async fn cleanup(&self) {
        if let Some((base, schema)) = &self.schema {
            if let Ok(mut conn) = sqlx::PgConnection::connect(base).await {
                let _ = sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn).await;
            }
        }
    }
}

/// Expands to one `#[tokio::test]` per backend for an async test function taking a [`Backend`].
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await }) *
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL"]
            async fn $name() { super::$name($crate::Backend::Postgres).await }) *
        }
    };
}

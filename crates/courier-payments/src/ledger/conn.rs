//! The few things the writer's transaction asks of a connection, so one [`Stage`](super::stage::Stage) and one
//! [`Tx`](super::apply::Tx) serve both stores: on PostgreSQL a sqlx transaction ([`SqlxConn`]), on SQLite the
//! writer's own rusqlite connection ([`super::sqlite::SqliteConn`]), which runs every statement on the writer's
//! thread instead of a channel round trip to a sqlx worker thread per statement.
//!
//! Rows are decoded through [`Columns`], which both a sqlx `AnyRow` (the pool's reads) and a rusqlite row of
//! values implement, so `rows.rs` holds each decoding once.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

/// One bound value, borrowed from the batch's rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// Every nullable column the ledger writes is an integer (a time), so NULL is bound as a missing integer.
    Null,
}

impl Param<'_> {
    pub fn opt_int(value: Option<i64>) -> Self {
        value.map_or(Param::Null, Param::Int)
    }
}

/// Reading a row's columns by name.
pub(super) trait Columns {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
}

/// A connection inside the writer's transaction. Errors are sqlx errors on both stores, so the writer classifies
/// failures one way (`not_committed_message`, `courier_kit::db::is_unreachable`).
pub(super) trait Conn {
    type Row: Columns;
    /// Every row `sql` returns.
    async fn fetch(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Self::Row>, sqlx::Error>;
    /// The first column of the one row `sql` returns (`None` for NULL); no row is an error.
    async fn scalar(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<i64>, sqlx::Error>;
    /// Runs `sql`; returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, sqlx::Error>;
}

/// A sqlx connection (the writer's open transaction on PostgreSQL).
pub(super) struct SqlxConn<'c>(pub &'c mut AnyConnection);

impl Conn for SqlxConn<'_> {
    type Row = AnyRow;

    async fn fetch(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<AnyRow>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_all(&mut *self.0).await
    }

    async fn scalar(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<i64>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_one(&mut *self.0).await?.try_get(0)
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, sqlx::Error> {
        Ok(bind(sqlx::query(sql), params).execute(&mut *self.0).await?.rows_affected())
    }
}

fn bind<'q>(mut query: Query<'q, Any, AnyArguments<'q>>, params: &[Param<'q>]) -> Query<'q, Any, AnyArguments<'q>> {
    for param in params {
        query = match *param {
            Param::Int(value) => query.bind(value),
            Param::Text(value) => query.bind(value),
            Param::Blob(value) => query.bind(value),
            Param::Null => query.bind(None::<i64>),
        };
    }
    query
}

impl Columns for AnyRow {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}

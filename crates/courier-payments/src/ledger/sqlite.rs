//! The SQLite writer's own connection: rusqlite, used on the writer's thread, with cached prepared statements.
//!
//! sqlx's SQLite driver runs each connection on a worker thread of its own and every statement is a channel round
//! trip to it (a futex wake-up and a context switch each way, for the command, each row and the end), with every
//! argument and row boxed through sqlx's `Any` driver. The writer runs about seven statements per batch, and that
//! traffic was ~13 % of the server's CPU under Authorize. Here a statement is a plain call on the writer's thread
//! ([`super::writer`] gives SQLite a dedicated thread for its whole life, so these blocking calls stall nothing
//! else). This process is the file's only writer (`known_keys` holds the writer lock), so one connection kept from
//! batch to batch keeps its page cache valid.
//!
//! Errors become sqlx errors: SQLite's own failures `sqlx::Error::Database` with the extended result code as the
//! code, as sqlx's driver reports them, so the writer's classification (a full disk, unreachable or not) is one.

use std::borrow::Cow;
use std::rc::Rc;

use rusqlite::types::Value;

use super::conn::{Columns, Conn, Param};

/// Prepared statements kept per connection: the stage's power-of-two shapes (a few sizes of each of seven
/// statements) and the handful of fixed ones, with room to spare (sqlx's SQLite default is 100).
const STATEMENT_CACHE: usize = 128;

/// The WAL size, in pages, at which a COMMIT also copies the log back into the file (SQLite's default is 1,000).
/// That COMMIT, and every call queued behind its batch, waits for the copy and its fsync, so a smaller checkpoint
/// more often trades a little copying (a hot page is copied more often) for shorter stalls. Measured at 6,000
/// Authorize/s open loop (docs/performance.md, step 11): p99 about 7 ms at 1,000 pages, 5 ms at 250, 16 to 80 ms at
/// 4,000; CPU per call the same within noise. A checkpoint on a thread of its own was worse (p99 11 to 14 ms):
/// its fsync of the database file and the writer's fsync of the log both end in a flush of the same device's
/// write cache, so commits waited for the checkpoint's writes anyway.
const CHECKPOINT_PAGES: i64 = 250;

/// The writer's connection to its SQLite file.
pub(super) struct SqliteConn {
    conn: rusqlite::Connection,
}

impl SqliteConn {
    /// Opens `file` (the store's pool created and migrated it) with the pragmas every courier SQLite connection has.
    pub fn open(file: &str) -> Result<Self, sqlx::Error> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(file, flags).map_err(error)?;
        // foreign_keys: what sqlx's driver turns on for every connection it opens.
        conn.execute_batch(courier_kit::db::SQLITE_PRAGMAS).map_err(error)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(error)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES).map_err(error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn })
    }

    /// True when no transaction is open (after a COMMIT that really committed, or before a BEGIN).
    pub fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// A prepared statement for `sql` with `params` bound. `$n` placeholders (the fixed statements, shared with
    /// PostgreSQL) are bound by their number, `?` ones (the stage's) in order.
    fn prepared(&self, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        for index in 1..=statement.parameter_count() {
            let number = statement.parameter_name(index).and_then(|name| name.strip_prefix('$')?.parse().ok());
            let param = number.unwrap_or(index).checked_sub(1).and_then(|i| params.get(i));
            let miscount = || rusqlite::Error::InvalidParameterCount(statement.parameter_count(), params.len());
            let param = param.ok_or_else(miscount)?;
            match *param {
                Param::Int(value) => statement.raw_bind_parameter(index, value)?,
                Param::Text(value) => statement.raw_bind_parameter(index, value)?,
                Param::Blob(value) => statement.raw_bind_parameter(index, value)?,
                Param::Null => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
            }
        }
        Ok(statement)
    }

    fn fetch_rows(&self, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<Vec<ValueRow>> {
        let mut statement = self.prepared(sql, params)?;
        let columns: Rc<[String]> = statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.raw_query();
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?;
            found.push(ValueRow { columns: columns.clone(), values });
        }
        Ok(found)
    }
}

impl Conn for SqliteConn {
    type Row = ValueRow;

    async fn fetch(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<ValueRow>, sqlx::Error> {
        self.fetch_rows(sql, params).map_err(error)
    }

    async fn scalar(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<i64>, sqlx::Error> {
        let rows = self.fetch_rows(sql, params).map_err(error)?;
        match rows.first().map(|row| &row.values[..]) {
            Some([Value::Integer(value), ..]) => Ok(Some(*value)),
            Some([Value::Null, ..]) => Ok(None),
            Some(_) => Err(sqlx::Error::Decode(format!("{sql}: not an integer").into())),
            None => Err(sqlx::Error::RowNotFound),
        }
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, sqlx::Error> {
        let changed = self.prepared(sql, params).and_then(|mut statement| statement.raw_execute()).map_err(error)?;
        Ok(changed as u64)
    }
}

/// A row as values, with the statement's column names.
pub(super) struct ValueRow {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl ValueRow {
    fn value(&self, column: &str) -> Result<&Value, sqlx::Error> {
        let index = self.columns.iter().position(|name| name == column);
        index.map(|i| &self.values[i]).ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))
    }
}

fn mismatch(column: &str, wanted: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column} holds no {wanted}").into())
}

impl Columns for ValueRow {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.opt_int(column)?.ok_or_else(|| mismatch(column, "integer"))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        match self.value(column)? {
            Value::Integer(value) => Ok(Some(*value)),
            Value::Null => Ok(None),
            _ => Err(mismatch(column, "integer")),
        }
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        match self.value(column)? {
            Value::Text(text) => Ok(text.clone()),
            _ => Err(mismatch(column, "text")),
        }
    }

    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        match self.value(column)? {
            Value::Blob(bytes) => Ok(bytes.clone()),
            Value::Text(text) => Ok(text.clone().into_bytes()),
            _ => Err(mismatch(column, "blob")),
        }
    }
}

/// A rusqlite error as sqlx reports the same failure: SQLite's own as a database error (see [`SqliteError`]),
/// the rest (a value of the wrong type, a misbound statement) as decoding errors, which are no less fatal to the
/// batch.
pub(super) fn error(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            sqlx::Error::Database(Box::new(SqliteError { code: failure.extended_code, message }))
        }
        other => sqlx::Error::Decode(Box::new(other)),
    }
}

/// A failure SQLite answered, with its extended result code (SQLITE_FULL is 13).
#[derive(Debug)]
pub(super) struct SqliteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.code)
    }
}

impl std::error::Error for SqliteError {}

impl sqlx::error::DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    /// The extended result code, as sqlx's SQLite driver reports it.
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                sqlx::error::ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::error::ErrorKind;

    #[tokio::test]
    async fn binds_numbered_and_anonymous_placeholders_and_reads_values_by_name() {
        let mut conn = SqliteConn { conn: rusqlite::Connection::open_in_memory().unwrap() };
        let params = [Param::Text("one"), Param::Int(2), Param::Null];
        let rows = conn.fetch("SELECT $2 AS two, $1 AS one, $3 AS none", &params).await.unwrap();
        assert_eq!(rows[0].int("two").unwrap(), 2);
        assert_eq!(rows[0].text("one").unwrap(), "one");
        assert_eq!(rows[0].opt_int("none").unwrap(), None);
        assert!(matches!(rows[0].text("two"), Err(sqlx::Error::Decode(_))), "an integer is no text");
        assert!(matches!(rows[0].int("missing"), Err(sqlx::Error::ColumnNotFound(_))));
        let blob = [Param::Blob(b"\x00\x01"), Param::Int(7)];
        let rows = conn.fetch("SELECT ? AS b, ? AS n", &blob).await.unwrap();
        assert_eq!(rows[0].blob("b").unwrap(), b"\x00\x01");
        assert_eq!(conn.scalar("SELECT NULL", &[]).await.unwrap(), None);
        assert!(matches!(conn.scalar("SELECT 1 WHERE 0", &[]).await, Err(sqlx::Error::RowNotFound)));
        let missing = conn.fetch("SELECT ?, ?", &[Param::Int(1)]).await.err().expect("a missing parameter");
        assert!(matches!(missing, sqlx::Error::Decode(_)), "{missing}");
    }

    #[test]
    fn sqlite_failures_are_database_errors_with_the_extended_code() {
        use rusqlite::ffi;
        let failure = |code| error(rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("failed".into())));
        let sqlx::Error::Database(full) = failure(ffi::SQLITE_FULL) else { panic!("not a database error") };
        assert_eq!(full.code().as_deref(), Some("13"));
        assert_eq!(full.message(), "failed");
        assert!(!courier_kit::db::is_unreachable(&sqlx::Error::Database(full)));
        let sqlx::Error::Database(unique) = failure(ffi::SQLITE_CONSTRAINT_UNIQUE) else {
            panic!("not a database error")
        };
        assert_eq!(unique.code().as_deref(), Some("2067"));
        assert_eq!(unique.kind(), ErrorKind::UniqueViolation);
    }
}

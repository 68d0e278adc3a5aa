//! Point reads on a SQLite store without a thread hop: rusqlite connections used on the calling thread.
//!
//! sqlx's SQLite driver runs every connection on a worker thread of its own, and each statement is a channel
//! round trip to it and back (the command, each row, the end), every one a futex wake-up and a context switch.
//! For a read by primary key, a few microseconds of SQLite work, those hops were more than half of a GetUser's
//! server CPU. A read done here runs on the caller's thread instead, with a cached prepared statement, on one of
//! a few connections kept open: in WAL mode readers never wait for the writer, so the read cannot block for long.
//!
//! It never waits at all: the connections have no busy timeout, and any error (a busy file during a checkpoint,
//! a schema change, a missing file) returns `None` from [`SqliteReads::read`], so the caller does the read the
//! ordinary way through its sqlx pool, which waits, reports and classifies failures as every other query does.
//! Writes never come here.

use std::path::PathBuf;
use std::sync::Mutex;

/// Read-only connections to one SQLite file. A read runs to its end without yielding, so no more run at once than
/// threads call it (the runtime's workers): every connection opened is kept for the next read, and their number
/// stays at that, where closing extras would make each read past a fixed count pay for opening a file.
#[derive(Debug)]
pub struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteReads {
    /// For a store at `url`; `None` when it is not a SQLite file ([`crate::db::sqlite_file`]).
    pub fn for_url(url: &str) -> Option<Self> {
        let path = crate::db::sqlite_file(url)?;
        (!path.is_empty() && path != ":memory:")
            .then(|| Self { path: PathBuf::from(path), idle: Mutex::new(Vec::new()) })
    }

    /// Runs `read` on a connection of this thread's own; `None` when that failed in any way (the caller then
    /// reads through its pool).
    pub fn read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<T> {
        let kept = self.idle.lock().expect("sqlite reads lock").pop();
        let conn = match kept {
            Some(conn) => conn,
            None => self.open().map_err(|e| tracing::debug!(error = %e, "sqlite fast read: cannot open")).ok()?,
        };
        let answer = read(&conn).map_err(|e| tracing::debug!(error = %e, "sqlite fast read failed")).ok();
        if answer.is_some() {
            self.idle.lock().expect("sqlite reads lock").push(conn);
        }
        answer
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        // Read-write flags with query_only: a read-only open cannot create the WAL index it may need, and
        // query_only makes any write an error anyway. No CREATE: the store's pool made the file.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.busy_timeout(std::time::Duration::ZERO)?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_and_answers_none_rather_than_wait_or_fail() {
        assert!(SqliteReads::for_url("postgres://localhost/test").is_none());
        assert!(SqliteReads::for_url("sqlite://:memory:").is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);").unwrap();
        writer.execute("INSERT INTO t VALUES (1, 'one')", []).unwrap();
        let reads = SqliteReads::for_url(&format!("sqlite://{}?mode=rwc", path.display())).unwrap();
        let get =
            |k: i64| move |c: &rusqlite::Connection| c.query_row("SELECT v FROM t WHERE k = ?1", [k], |r| r.get(0));
        assert_eq!(reads.read(get(1)), Some("one".to_owned()));
        // A writer holding its transaction open does not stop a WAL reader, which sees the last commit.
        writer.execute_batch("BEGIN; UPDATE t SET v = 'uno' WHERE k = 1;").unwrap();
        assert_eq!(reads.read(get(1)), Some("one".to_owned()));
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(reads.read(get(1)), Some("uno".to_owned()));
        // No row, a write, a missing table: None, for the caller's ordinary path to answer.
        assert_eq!(reads.read(get(2)), None::<String>);
        assert_eq!(reads.read(|c| c.execute("DELETE FROM t", [])), None);
        assert_eq!(reads.read(|c| c.query_row("SELECT 1 FROM missing", [], |r| r.get::<_, i64>(0))), None);
        assert_eq!(reads.read(get(1)), Some("uno".to_owned()), "the write was refused");
    }
}

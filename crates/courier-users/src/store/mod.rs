//! Users on SQLite or PostgreSQL, chosen by the URL, with one set of migrations and one set of queries.
//!
//! The SQL is portable (TEXT, BIGINT, `$n` placeholders), so both databases run through sqlx's `Any` driver and
//! behave the same. SQLite is the embedded default: a file in the data dir, WAL so readers never block the
//! writer, `synchronous=FULL` so an acknowledged write survives power loss.

mod connect;
mod list;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use courier_kit::sqlite_reads::SqliteReads;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

pub use connect::{connect, StoreConfig};
pub use list::{ListFilter, LIST_PAGE_ROWS};

use crate::model::{NewUser, Status, User, UserId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another user already has this email (case-insensitively).
    #[error("email already registered")]
    DuplicateEmail,
    /// The database failed or returned something this version cannot read.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A row held a value this version does not understand.
    #[error("corrupt row {id}: {what}")]
    Corrupt {
        /// The row's id column.
        id: String,
        /// What was wrong.
        what: &'static str,
    },
}

/// The user table. Cheap to clone: it is a handle to a connection pool.
#[derive(Clone, Debug)]
pub struct UserStore {
    pool: AnyPool,
    /// On SQLite, GetUser's read without sqlx's thread hop; the pool answers when it cannot.
    fast_reads: Option<Arc<SqliteReads>>,
}

/// `SELECT <every user column> FROM users <tail>`, built at compile time.
macro_rules! select_users {
    ($tail:literal) => {
        concat!("SELECT id, name, email, status, created_at_us, updated_at_us FROM users ", $tail)
    };
}
use select_users;

impl UserStore {
    /// Wraps an open, migrated pool (see [`connect`]).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool, fast_reads: None }
    }

    /// Reads by id on the calling thread when the store at `url` is a SQLite file ([`SqliteReads`]).
    pub fn with_fast_reads(mut self, url: &str) -> Self {
        self.fast_reads = SqliteReads::for_url(url).map(Arc::new);
        self
    }

    /// The underlying pool, for operational tooling and tests that seed data in bulk.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Inserts a new ACTIVE user.
    pub async fn create(&self, new: NewUser) -> Result<User, StoreError> {
        let now = now_us();
        let user = User {
            id: UserId::generate(),
            name: new.name,
            email: new.email,
            status: Status::Active,
            created_at_us: now,
            updated_at_us: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, email, email_key, status, created_at_us, updated_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.to_string())
        .bind(&user.name)
        .bind(&user.email)
        .bind(&new.email_key)
        .bind(user.status.number())
        .bind(user.created_at_us)
        .bind(user.updated_at_us)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(user),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::DuplicateEmail),
            Err(e) => Err(e.into()),
        }
    }

    /// The user with this id, if any.
    pub async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let fast = self.fast_reads.as_ref().and_then(|reads| {
            reads.read(|conn| {
                let mut statement = conn.prepare_cached(select_users!("WHERE id = ?1"))?;
                let row = statement.query_row([id.to_string()], |row| {
                    Ok(Columns {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        email: row.get(2)?,
                        status: row.get(3)?,
                        created_at_us: row.get(4)?,
                        updated_at_us: row.get(5)?,
                    })
                });
                rusqlite::OptionalExtension::optional(row)
            })
        });
        if let Some(columns) = fast {
            return columns.map(Columns::into_user).transpose();
        }
        let row = sqlx::query(select_users!("WHERE id = $1")).bind(id.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Sets a user's status, returning the updated user, or `None` when there is no such user.
    pub async fn update_status(&self, id: UserId, status: Status) -> Result<Option<User>, StoreError> {
        // One statement, so the change and the row returned are the same version of the user.
        let sql = "UPDATE users SET status = $1, updated_at_us = $2 WHERE id = $3 \
                   RETURNING id, name, email, status, created_at_us, updated_at_us";
        let row = sqlx::query(sql)
            .bind(status.number())
            .bind(now_us())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

/// A user row's columns as stored, whichever driver read them.
struct Columns {
    id: String,
    name: String,
    email: String,
    status: i64,
    created_at_us: i64,
    updated_at_us: i64,
}

impl Columns {
    fn into_user(self) -> Result<User, StoreError> {
        let corrupt = |what| StoreError::Corrupt { id: self.id.clone(), what };
        Ok(User {
            id: self.id.parse().map_err(|_| corrupt("malformed id"))?,
            status: Status::from_number(self.status).ok_or_else(|| corrupt("unknown status"))?,
            name: self.name,
            email: self.email,
            created_at_us: self.created_at_us,
            updated_at_us: self.updated_at_us,
        })
    }
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Columns {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        status: row.try_get("status")?,
        created_at_us: row.try_get("created_at_us")?,
        updated_at_us: row.try_get("updated_at_us")?,
    }
    .into_user()
}

fn now_us() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

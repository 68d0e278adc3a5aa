//! ListUsers from the store: keyset pages in id order, fetched one at a time as the consumer asks.
//!
//! Memory stays bounded by one page whatever the table's size, and no connection or transaction is held while a
//! slow client reads: each page is a short query, run to its end in a task of its own, resuming after the last
//! id seen. The cost is that a listing is
//! not a snapshot: users created during it appear if their id sorts after the cursor, which ids in creation
//! order make the natural reading ("everything up to now, and whatever arrived meanwhile").

use std::collections::VecDeque;

use futures::stream::{self, Stream};

use super::{select_users, user_from_row, StoreError, UserStore};
use crate::model::{Status, User, UserId};

/// Rows fetched per query.
pub const LIST_PAGE_ROWS: u32 = 256;

/// What to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    /// Only this status; `None` for all.
    pub status: Option<Status>,
    /// Start after this id.
    pub after: Option<UserId>,
    /// Stop after this many users; `None` for all.
    pub limit: Option<u64>,
}

struct Cursor {
    store: UserStore,
    filter: ListFilter,
    buffered: VecDeque<User>,
    sent: u64,
    exhausted: bool,
}

impl UserStore {
    /// Streams matching users in id order, one page of queries at a time (see the module docs).
    pub fn list(&self, filter: ListFilter) -> impl Stream<Item = Result<User, StoreError>> + Send + 'static {
        let cursor = Cursor { store: self.clone(), filter, buffered: VecDeque::new(), sent: 0, exhausted: false };
        stream::try_unfold(cursor, |mut cursor| async move {
            if cursor.filter.limit.is_some_and(|limit| cursor.sent >= limit) {
                return Ok(None);
            }
            if cursor.buffered.is_empty() && !cursor.exhausted {
                cursor.fetch_page().await?;
            }
            Ok(cursor.buffered.pop_front().map(|user| {
                cursor.sent += 1;
                cursor.filter.after = Some(user.id);
                (user, cursor)
            }))
        })
    }
}

impl Cursor {
    async fn fetch_page(&mut self) -> Result<(), StoreError> {
        let remaining = self.filter.limit.map_or(u64::MAX, |limit| limit - self.sent);
        let page = remaining.min(u64::from(LIST_PAGE_ROWS)) as i64;
        let after = self.filter.after.map(|id| id.to_string()).unwrap_or_default();
        let (pool, status) = (self.store.pool.clone(), self.filter.status);
        // The query runs in a task of its own. Polled inline, it would advance only while the response stream is
        // polled, and hyper stops polling a body while the client's HTTP/2 window is full: a slow reader would
        // park a half-run query, and its pooled connection, for as long as it liked (17 of them emptied the
        // pool). A task runs the query to the end and returns the connection whatever the client does.
        let query = tokio::spawn(async move {
            // "" sorts before every id, so one query shape serves the first page and the rest.
            match status {
                Some(status) => {
                    let sql = select_users!("WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3");
                    sqlx::query(sql).bind(status.number()).bind(after).bind(page).fetch_all(&pool).await
                }
                None => {
                    let sql = select_users!("WHERE id > $1 ORDER BY id LIMIT $2");
                    sqlx::query(sql).bind(after).bind(page).fetch_all(&pool).await
                }
            }
        });
        let rows = query.await.map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))??;
        self.exhausted = (rows.len() as i64) < page;
        for row in &rows {
            self.buffered.push_back(user_from_row(row)?);
        }
        Ok(())
    }
}

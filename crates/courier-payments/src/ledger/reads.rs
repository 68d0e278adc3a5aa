//! Reads: straight from the pool, never through the writer. Listings and the event feed page through the store
//! with keyset queries, so memory stays bounded by one page whatever the table's size.

use std::collections::VecDeque;
use std::time::Duration;

use courier_proto::payments::v1 as pb;
use futures::stream::{self, Stream};
use sqlx::Row;

use super::rows::{self, ACCOUNT_COLUMNS, AUTHORIZATION_COLUMNS, EVENT_COLUMNS};
use super::{Ledger, LedgerError};

/// Rows fetched per query.
const PAGE_ROWS: i64 = 256;

/// How often a live event feed looks for commits made by other processes (its own process wakes it at once).
const FOREIGN_COMMIT_POLL: Duration = Duration::from_millis(200);

/// What ListAuthorizations selects; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationFilter {
    pub account_id: Option<String>,
    pub merchant_id: Option<String>,
    pub status: Option<pb::AuthorizationStatus>,
    /// Created at or after, microseconds since the epoch.
    pub created_from_us: Option<i64>,
    /// Created strictly before.
    pub created_before_us: Option<i64>,
}

/// A one-shot read within the call's deadline: a database that stopped answering is UNAVAILABLE before the caller
/// gives up (see [`courier_kit::db::before_deadline`]).
async fn bounded<T>(read: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    courier_kit::db::before_deadline(courier_kit::deadline::current(), read).await
}

/// Where a listing resumes: after an authorization id, or (one account's) after its creation event's sequence.
enum Cursor {
    Start,
    Id(String),
    Sequence(i64),
}

impl Cursor {
    /// The id to list after: "" sorts before every id, so the first page and the rest share one query shape.
    fn id(&self) -> String {
        match self {
            Cursor::Id(id) => id.clone(),
            _ => String::new(),
        }
    }

    /// The creation event sequence to list after (sequences start at 1).
    fn sequence(&self) -> i64 {
        match self {
            Cursor::Sequence(sequence) => *sequence,
            _ => 0,
        }
    }
}

/// One bound value of a dynamically filtered query.
enum Arg {
    Text(String),
    Int(i64),
}

impl Ledger {
    /// The account, or `None`.
    pub async fn get_account(&self, id: &str) -> Result<Option<pb::Account>, LedgerError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = bounded(sqlx::query(&sql).bind(id).fetch_optional(self.pool())).await?;
        Ok(row.as_ref().map(rows::account_from_row).transpose()?.map(|a| a.to_proto()))
    }

    /// The authorization, or `None`.
    pub async fn get_authorization(&self, id: &str) -> Result<Option<pb::Authorization>, LedgerError> {
        let sql = format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE id = $1");
        let row = bounded(sqlx::query(&sql).bind(id).fetch_optional(self.pool())).await?;
        Ok(row.as_ref().map(rows::authorization_from_row).transpose()?)
    }

    /// The stored answer of an earlier Authorize with this merchant and key, read without the writer: a retry
    /// returns it without asking UserService or RiskService again (a retry must not count twice towards a
    /// velocity rule). `None` when the key is new; the writer still has the last word on races.
    pub async fn stored_authorization(
        &self,
        merchant_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<pb::Authorization>, LedgerError> {
        let scope = super::idempotency::merchant_scope(merchant_id);
        if self.inner.known_keys.as_ref().is_some_and(|known| !known.may_hold(&scope, key)) {
            return Ok(None);
        }
        let stored = bounded(self.inner.key_probe.stored(scope, key)).await?;
        stored
            .map(|stored| super::idempotency::decode(&stored.fingerprint, &stored.response, key, fingerprint))
            .transpose()
    }

    /// Streams matching authorizations in creation order, one page query at a time.
    pub fn list_authorizations(
        &self,
        filter: AuthorizationFilter,
    ) -> impl Stream<Item = Result<pb::Authorization, LedgerError>> + Send + 'static {
        let state = (self.clone(), filter, Cursor::Start, VecDeque::new(), false);
        stream::try_unfold(state, |(ledger, filter, after, mut page, mut exhausted)| async move {
            if page.is_empty() && !exhausted {
                page = ledger.authorization_page(&filter, &after).await?;
                exhausted = (page.len() as i64) < PAGE_ROWS;
            }
            // The next page starts after the last row handed out.
            Ok(page.pop_front().map(|(authorization, after): (pb::Authorization, Cursor)| {
                (authorization, (ledger, filter, after, page, exhausted))
            }))
        })
    }

    /// The page after `after`. One account's authorizations are found through its creation events (AUTHORIZED or
    /// DECLINED, one per authorization; `courier ledger check` verifies it) on the events_account index, in
    /// their sequence order; the writer gives out ids and sequences in the same order, so within one process this
    /// is id order too. Without an account, the authorizations' own id order.
    async fn authorization_page(
        &self,
        filter: &AuthorizationFilter,
        after: &Cursor,
    ) -> Result<VecDeque<(pb::Authorization, Cursor)>, LedgerError> {
        let mut args = Vec::new();
        let mut sql = match &filter.account_id {
            Some(account) => {
                args.extend([Arg::Text(account.clone()), Arg::Int(after.sequence())]);
                let columns = AUTHORIZATION_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>();
                format!(
                    "SELECT {}, e.sequence AS creation_sequence FROM events e \
                     JOIN authorizations a ON a.id = e.authorization_id \
                     WHERE e.account_id = $1 AND e.sequence > $2 AND e.type IN ({}, {})",
                    columns.join(", "),
                    pb::EventType::Authorized as i32,
                    pb::EventType::Declined as i32,
                )
            }
            None => {
                args.push(Arg::Text(after.id()));
                format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations a WHERE a.id > $1")
            }
        };
        let mut condition = |column: &str, op: &str, arg: Arg| {
            args.push(arg);
            sql.push_str(&format!(" AND a.{column} {op} ${}", args.len()));
        };
        if let Some(merchant) = &filter.merchant_id {
            condition("merchant_id", "=", Arg::Text(merchant.clone()));
        }
        if let Some(status) = filter.status {
            condition("status", "=", Arg::Int(status as i64));
        }
        if let Some(from) = filter.created_from_us {
            condition("created_at_us", ">=", Arg::Int(from));
        }
        if let Some(before) = filter.created_before_us {
            condition("created_at_us", "<", Arg::Int(before));
        }
        let order = if filter.account_id.is_some() { "e.sequence" } else { "a.id" };
        sql.push_str(&format!(" ORDER BY {order} LIMIT {PAGE_ROWS}"));
        let mut query = sqlx::query(&sql);
        for arg in args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(number) => query.bind(number),
            };
        }
        let rows = query.fetch_all(self.pool()).await?;
        let page = rows.iter().map(|row| {
            let authorization = rows::authorization_from_row(row)?;
            let cursor = match filter.account_id {
                Some(_) => Cursor::Sequence(row.try_get("creation_sequence")?),
                None => Cursor::Id(authorization.id.clone()),
            };
            Ok::<_, sqlx::Error>((authorization, cursor))
        });
        Ok(page.collect::<Result<_, _>>()?)
    }

    /// Events from `from_sequence` on (optionally one account's): the backlog, then live, without end.
    pub fn events(
        &self,
        from_sequence: i64,
        account_id: Option<String>,
    ) -> impl Stream<Item = Result<pb::Event, LedgerError>> + Send + 'static {
        let committed = self.inner.committed.clone();
        let closing = self.inner.closing.subscribe();
        let state = (self.clone(), from_sequence.max(1), VecDeque::new(), committed, closing, account_id);
        stream::try_unfold(state, |(ledger, mut next, mut page, mut committed, mut closing, account)| async move {
            while page.is_empty() {
                if *closing.borrow_and_update() {
                    // UNAVAILABLE, not a clean end: the watcher should reconnect (elsewhere) and resume.
                    let message = format!("the server is shutting down; resume with from_sequence {next}");
                    return Err(LedgerError::Unavailable(message));
                }
                page = ledger.event_page(next, account.as_deref()).await?;
                if page.is_empty() {
                    // Our own commits wake us at once; another process's are found by the poll.
                    tokio::select! {
                        _ = committed.changed() => {}
                        _ = closing.changed() => {}
                        _ = tokio::time::sleep(FOREIGN_COMMIT_POLL) => {}
                    }
                }
            }
            let event: pb::Event = page.pop_front().expect("page is not empty");
            next = event.sequence + 1;
            Ok(Some((event, (ledger, next, page, committed, closing, account))))
        })
    }

    async fn event_page(&self, from: i64, account: Option<&str>) -> Result<VecDeque<pb::Event>, LedgerError> {
        let rows = match account {
            Some(account) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE account_id = $1 AND sequence >= $2 \
                     ORDER BY sequence LIMIT {PAGE_ROWS}"
                );
                sqlx::query(&sql).bind(account).bind(from).fetch_all(self.pool()).await?
            }
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE sequence >= $1 ORDER BY sequence LIMIT {PAGE_ROWS}"
                );
                sqlx::query(&sql).bind(from).fetch_all(self.pool()).await?
            }
        };
        Ok(rows.iter().map(rows::event_from_row).collect::<Result<_, _>>()?)
    }
}

//! The writer's working set for one batch: every row the batch reads is fetched once (most of them up front, in
//! one query per table), every change is made to the cached row, and the changes go to the database at the end:
//! on SQLite in one multi-row statement per table, on PostgreSQL in one statement for all of them.
//!
//! Why: the writer holds the ledger lock for the whole batch, so the batch's database round trips bound the
//! ledger's throughput. Applied one by one, an Authorize costs six statements (key lookup, account read, account
//! update and three inserts); staged, a batch of N costs six round trips on PostgreSQL (BEGIN, the ledger lock,
//! two reads, the write, COMMIT). Decisions still read before they write, in order: an operation sees every
//! change made by the operations before it in its batch, because it reads the same cached rows.

use std::collections::HashMap;

use courier_proto::payments::v1 as pb;

use super::conn::{Columns, Conn, Param};
use super::rows::{self, AccountRow};
use super::statements::{
    json_rows, postgres_batch_write, Statement, StatementTexts, ACCOUNT_WIDTH, AUTHORIZATION_WIDTH, EVENT_WIDTH,
    KEY_WIDTH,
};

/// Rows per multi-row statement at most: under SQLite's and PostgreSQL's bound-parameter limits (19 x 256).
/// Statements carry a power-of-two number of rows, so a handful of distinct statements serve every batch size
/// and stay in the connection's prepared-statement cache instead of being parsed again for each batch.
const ROWS_PER_STATEMENT: usize = 256;

/// A cached row and whether the batch changed it.
struct Cached<T> {
    row: Option<T>,
    dirty: bool,
}

/// A stored idempotent answer: the request's fingerprint and the encoded response.
#[derive(Clone)]
pub(super) struct StoredKey {
    pub fingerprint: String,
    pub response: Vec<u8>,
}

/// One event to append, with its sequence number already assigned.
pub(super) struct EventRow {
    pub sequence: i64,
    pub kind: pb::EventType,
    pub account_id: String,
    pub authorization_id: String,
    pub amount: i64,
    pub currency: String,
    pub code: String,
    pub decided_by: pb::Decider,
}

/// See the module documentation. The writer keeps one for its whole life and [`Stage::reset`]s it per batch, so
/// its maps keep their capacity and its statement texts are built once.
pub(super) struct Stage {
    /// SQLite or PostgreSQL: how rows are chunked into statements ([`chunks`]).
    sqlite: bool,
    texts: StatementTexts,
    accounts: HashMap<String, Cached<AccountRow>>,
    authorizations: HashMap<String, Cached<pb::Authorization>>,
    keys: HashMap<(String, String), Cached<StoredKey>>,
    events: Vec<EventRow>,
}

impl Stage {
    pub fn new(sqlite: bool) -> Self {
        let (accounts, authorizations, keys, events) = Default::default();
        Self { sqlite, texts: StatementTexts::new(sqlite), accounts, authorizations, keys, events }
    }

    /// Forgets the last batch's rows (a new batch reads afresh under the ledger lock).
    pub fn reset(&mut self) {
        self.accounts.clear();
        self.authorizations.clear();
        self.keys.clear();
        self.events.clear();
    }

    /// Fetches, in one query per table, the rows named by `account_ids`, `authorization_ids` and `keys` that are
    /// not cached yet. Rows that do not exist are remembered as absent.
    pub async fn prefetch<C: Conn>(
        &mut self,
        conn: &mut C,
        account_ids: &[&str],
        authorization_ids: &[&str],
    ) -> Result<(), sqlx::Error> {
        let wanted: Vec<&str> =
            unique(authorization_ids.iter().copied().filter(|id| !self.authorizations.contains_key(*id)));
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            let padded = padded(chunk);
            let sql = self.texts.get(Statement::SelectAuthorizations, padded.len());
            let found = conn.fetch(sql, &texts(&padded)).await?;
            for row in &found {
                let authorization = rows::authorization_from_row(row)?;
                self.authorizations.insert(authorization.id.clone(), Cached { row: Some(authorization), dirty: false });
            }
            for id in chunk {
                self.authorizations.entry((*id).to_owned()).or_insert(Cached { row: None, dirty: false });
            }
        }
        // The accounts of the authorizations just read come along: captures and voids change them.
        let of_authorizations = authorization_ids
            .iter()
            .filter_map(|id| self.authorizations.get(*id)?.row.as_ref().map(|a| a.account_id.clone()))
            .collect::<Vec<_>>();
        let named = account_ids.iter().copied().chain(of_authorizations.iter().map(String::as_str));
        let wanted: Vec<&str> = unique(named.filter(|id| !self.accounts.contains_key(*id)));
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            let padded = padded(chunk);
            let sql = self.texts.get(Statement::SelectAccounts, padded.len());
            let found = conn.fetch(sql, &texts(&padded)).await?;
            for row in &found {
                let account = rows::account_from_row(row)?;
                self.accounts.insert(account.id.clone(), Cached { row: Some(account), dirty: false });
            }
            for id in chunk {
                self.accounts.entry((*id).to_owned()).or_insert(Cached { row: None, dirty: false });
            }
        }
        Ok(())
    }

    /// Fetches the stored answers of `(scope, key)` pairs not cached yet, in one query per chunk.
    pub async fn prefetch_keys<C: Conn>(&mut self, conn: &mut C, keys: &[(String, &str)]) -> Result<(), sqlx::Error> {
        let mut wanted: Vec<(&str, &str)> = keys
            .iter()
            .map(|(scope, key)| (scope.as_str(), *key))
            .filter(|(scope, key)| !self.keys.contains_key(&((*scope).to_owned(), (*key).to_owned())))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            let padded = padded(chunk);
            let sql = self.texts.get(Statement::SelectKeys, padded.len());
            let params: Vec<Param<'_>> =
                padded.iter().flat_map(|(scope, key)| [Param::Text(scope), Param::Text(key)]).collect();
            for row in conn.fetch(sql, &params).await? {
                let stored = StoredKey { fingerprint: row.text("fingerprint")?, response: row.blob("response")? };
                let id = (row.text("scope")?, row.text("idem_key")?);
                self.keys.insert(id, Cached { row: Some(stored), dirty: false });
            }
            for (scope, key) in chunk {
                self.keys.entry(((*scope).to_owned(), (*key).to_owned())).or_insert(Cached { row: None, dirty: false });
            }
        }
        Ok(())
    }

    /// The account as the batch sees it (fetched if it was not prefetched).
    pub async fn account(&mut self, conn: &mut impl Conn, id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
        if !self.accounts.contains_key(id) {
            self.prefetch(conn, &[id], &[]).await?;
        }
        Ok(self.accounts.get(id).and_then(|cached| cached.row.clone()))
    }

    /// The authorization as the batch sees it (fetched if it was not prefetched).
    pub async fn authorization(
        &mut self,
        conn: &mut impl Conn,
        id: &str,
    ) -> Result<Option<pb::Authorization>, sqlx::Error> {
        if !self.authorizations.contains_key(id) {
            self.prefetch(conn, &[], &[id]).await?;
        }
        Ok(self.authorizations.get(id).and_then(|cached| cached.row.clone()))
    }

    /// The stored answer for `(scope, key)` as the batch sees it (fetched if it was not prefetched).
    pub async fn stored_key(
        &mut self,
        conn: &mut impl Conn,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredKey>, sqlx::Error> {
        let id = (scope.to_owned(), key.to_owned());
        if !self.keys.contains_key(&id) {
            self.prefetch_keys(conn, &[(id.0.clone(), key)]).await?;
        }
        Ok(self.keys.get(&id).and_then(|cached| cached.row.clone()))
    }

    /// A new or changed account, written at [`Stage::flush`].
    pub fn put_account(&mut self, account: AccountRow) {
        self.accounts.insert(account.id.clone(), Cached { row: Some(account), dirty: true });
    }

    /// A new or changed authorization, written at [`Stage::flush`].
    pub fn put_authorization(&mut self, authorization: pb::Authorization) {
        self.authorizations.insert(authorization.id.clone(), Cached { row: Some(authorization), dirty: true });
    }

    /// The (scope, key) pairs this batch stores.
    pub fn written_keys(&self) -> impl Iterator<Item = &(String, String)> {
        dirty(&self.keys).map(|(id, _)| id)
    }

    /// A new idempotent answer, written at [`Stage::flush`].
    pub fn put_key(&mut self, scope: String, key: String, stored: StoredKey) {
        self.keys.insert((scope, key), Cached { row: Some(stored), dirty: true });
    }

    pub fn push_event(&mut self, event: EventRow) {
        self.events.push(event);
    }

    /// The batch's last event, if it made any (how the writer recognises its batch after a lost COMMIT answer).
    pub fn last_event(&self) -> Option<&EventRow> {
        self.events.last()
    }

    /// Writes every change, new rows inserted and changed rows updated by the same upsert, and `last_sequence`
    /// (when the batch moved it). `now` stamps the new idempotency keys. With `outbox`, the events are also
    /// queued for the outbox relay. On SQLite, where a statement is a call in this process, one multi-row
    /// statement per table (per chunk of rows); on PostgreSQL, where every statement is a round trip, one
    /// statement for the whole batch ([`postgres_batch_write`]).
    pub async fn flush(
        &mut self,
        conn: &mut impl Conn,
        now: i64,
        outbox: bool,
        last_sequence: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        let mut accounts: Vec<&AccountRow> = dirty_rows(&self.accounts);
        accounts.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut account_params = Vec::with_capacity(accounts.len() * ACCOUNT_WIDTH);
        for a in &accounts {
            account_params.extend([
                Param::Text(&a.id),
                Param::Text(&a.owner_user_id),
                Param::Text(&a.currency),
                Param::Int(a.credit_limit),
                Param::Int(a.posted_balance),
                Param::Int(a.held_amount),
                Param::Int(a.status as i64),
                Param::Int(a.created_at_us),
                Param::Int(a.updated_at_us),
            ]);
        }

        let mut authorizations: Vec<&pb::Authorization> = dirty_rows(&self.authorizations);
        authorizations.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let metadata = authorizations
            .iter()
            .map(|a| serde_json::to_string(&a.metadata).map_err(|e| sqlx::Error::Encode(Box::new(e))))
            .collect::<Result<Vec<String>, _>>()?;
        let mut authorization_params = Vec::with_capacity(authorizations.len() * AUTHORIZATION_WIDTH);
        for (a, metadata) in authorizations.iter().zip(&metadata) {
            let us = |t: &Option<prost_types::Timestamp>| t.as_ref().map(courier_kit::time::us_from_timestamp);
            authorization_params.extend([
                Param::Text(&a.id),
                Param::Text(&a.account_id),
                Param::Text(&a.merchant_id),
                Param::Int(a.amount),
                Param::Text(&a.currency),
                Param::Int(i64::from(a.decision)),
                Param::Text(&a.response_code),
                Param::Int(i64::from(a.decline_reason)),
                Param::Int(i64::from(a.status)),
                Param::Int(a.held_amount),
                Param::Int(a.captured_amount),
                Param::Int(a.available_after),
                Param::Text(&a.description),
                Param::Text(metadata),
                Param::Int(us(&a.created_at).unwrap_or(now)),
                Param::opt_int(us(&a.expires_at)),
                Param::opt_int(us(&a.resolved_at)),
                Param::Int(i64::from(a.decided_by)),
                Param::Int(i64::from(a.risk_score)),
            ]);
        }

        let mut event_params = Vec::with_capacity(self.events.len() * EVENT_WIDTH);
        for e in &self.events {
            event_params.extend([
                Param::Int(e.sequence),
                Param::Int(e.kind as i64),
                Param::Text(&e.account_id),
                Param::Text(&e.authorization_id),
                Param::Int(e.amount),
                Param::Text(&e.currency),
                Param::Text(&e.code),
                Param::Int(now),
                Param::Int(e.decided_by as i64),
            ]);
        }

        let mut key_params = Vec::new();
        for ((scope, key), stored) in dirty(&self.keys) {
            key_params.extend([
                Param::Text(scope),
                Param::Text(key),
                Param::Text(&stored.fingerprint),
                Param::Blob(&stored.response),
                Param::Int(now),
            ]);
        }

        let tables = [
            (Statement::UpsertAccounts, ACCOUNT_WIDTH, &account_params),
            (Statement::UpsertAuthorizations, AUTHORIZATION_WIDTH, &authorization_params),
            (Statement::InsertEvents, EVENT_WIDTH, &event_params),
            (Statement::InsertKeys, KEY_WIDTH, &key_params),
        ];
        if !self.sqlite {
            let json = tables.map(|(_, width, params)| json_rows(params, width));
            let mut params: Vec<Param<'_>> = json.iter().map(|rows| Param::Text(rows)).collect();
            params.extend([Param::Int(i64::from(outbox)), Param::opt_int(last_sequence)]);
            conn.execute(postgres_batch_write(), &params).await?;
            return Ok(());
        }
        for (statement, width, params) in tables {
            let mut rest = params.as_slice();
            for rows in power_chunks(params.len() / width) {
                let (chunk, tail) = rest.split_at(rows * width);
                conn.execute(self.texts.get(statement, rows), chunk).await?;
                rest = tail;
            }
        }
        if outbox {
            if let (Some(first), Some(last)) = (self.events.first(), self.events.last()) {
                // The batch's events are consecutive: one statement copies them into the outbox, in the same
                // transaction (and the same commit) as the events themselves.
                let sql = "INSERT INTO outbox (sequence, created_at_us) \
                     SELECT sequence, occurred_at_us FROM events WHERE sequence >= $1 AND sequence <= $2";
                conn.execute(sql, &[Param::Int(first.sequence), Param::Int(last.sequence)]).await?;
            }
        }
        if let Some(sequence) = last_sequence {
            let sql = "UPDATE ledger_meta SET last_sequence = $1 WHERE id = 1";
            conn.execute(sql, &[Param::Int(sequence)]).await?;
        }
        Ok(())
    }
}

/// The row counts of the statements that write `rows` rows on SQLite: powers of two, largest first (see
/// [`ROWS_PER_STATEMENT`]).
fn power_chunks(mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if rows == 0 {
            return None;
        }
        let size = ROWS_PER_STATEMENT.min(1 << rows.ilog2());
        rows -= size;
        Some(size)
    })
}

/// `values` padded to a power-of-two length by repeating the last one (harmless in `IN (...)` and `OR` lists).
pub(super) fn padded<T: Copy>(values: &[T]) -> Vec<T> {
    let mut padded = values.to_vec();
    if let Some(&last) = values.last() {
        padded.resize(values.len().next_power_of_two(), last);
    }
    padded
}

/// The rows of `map` the batch changed (or added), with their keys.
fn dirty<K, T>(map: &HashMap<K, Cached<T>>) -> impl Iterator<Item = (&K, &T)> {
    map.iter().filter(|(_, cached)| cached.dirty).filter_map(|(id, cached)| Some((id, cached.row.as_ref()?)))
}

fn dirty_rows<T>(map: &HashMap<String, Cached<T>>) -> Vec<&T> {
    dirty(map).map(|(_, row)| row).collect()
}

/// `ids` without repeats, in first-seen order.
fn unique<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

/// Text values as bound parameters.
fn texts<'a>(values: &[&'a str]) -> Vec<Param<'a>> {
    values.iter().map(|value| Param::Text(value)).collect()
}

#[cfg(test)]
mod tests {
    use super::{padded, power_chunks};

    #[test]
    fn statements_carry_power_of_two_rows() {
        assert_eq!(power_chunks(7).collect::<Vec<_>>(), [4, 2, 1]);
        assert_eq!(power_chunks(600).collect::<Vec<_>>(), [256, 256, 64, 16, 8]);
        assert_eq!(padded(&[1, 2, 3]), [1, 2, 3, 3]);
        assert!(padded::<u8>(&[]).is_empty());
    }
}

//! The text of the writer's multi-row statements, built once per (statement, row count) and kept: the writer runs
//! the same few shapes for every batch, so building them again would only allocate.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use super::conn::Param;
use super::rows::{ACCOUNT_COLUMNS, AUTHORIZATION_COLUMNS, EVENT_COLUMNS};

/// Values per row of each table the writer writes, in the order of its column list (and of the stage's params).
pub(super) const ACCOUNT_WIDTH: usize = 9;
pub(super) const AUTHORIZATION_WIDTH: usize = 19;
pub(super) const EVENT_WIDTH: usize = 9;
pub(super) const KEY_WIDTH: usize = 5;

const KEY_COLUMNS: &str = "scope, idem_key, fingerprint, response, created_at_us";

/// What an upsert changes in a row that exists.
const ACCOUNTS_ON_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET posted_balance = excluded.posted_balance, \
     held_amount = excluded.held_amount, status = excluded.status, updated_at_us = excluded.updated_at_us";
const AUTHORIZATIONS_ON_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     captured_amount = excluded.captured_amount, resolved_at_us = excluded.resolved_at_us";

/// The statements the stage runs with a variable number of rows: the reads on both stores, the writes on SQLite
/// (PostgreSQL writes a batch in one statement, [`postgres_batch_write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Statement {
    SelectAccounts,
    SelectAuthorizations,
    SelectKeys,
    UpsertAccounts,
    UpsertAuthorizations,
    InsertEvents,
    InsertKeys,
}

/// See the module documentation.
pub(super) struct StatementTexts {
    /// SQLite takes anonymous `?` placeholders (numbered `$n` ones cost it a name lookup per parameter, which
    /// grows with the statement); PostgreSQL takes `$n`.
    sqlite: bool,
    built: HashMap<(Statement, usize), String>,
}

impl StatementTexts {
    pub fn new(sqlite: bool) -> Self {
        Self { sqlite, built: HashMap::new() }
    }

    /// The text of `statement` for `rows` rows (or values, for the selects).
    pub fn get(&mut self, statement: Statement, rows: usize) -> &str {
        let sqlite = self.sqlite;
        self.built.entry((statement, rows)).or_insert_with(|| build(sqlite, statement, rows))
    }
}

fn build(sqlite: bool, statement: Statement, rows: usize) -> String {
    let p = Placeholders { sqlite };
    match statement {
        Statement::SelectAccounts => {
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({})", p.list(1, rows))
        }
        Statement::SelectAuthorizations => {
            format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE id IN ({})", p.list(1, rows))
        }
        Statement::SelectKeys if sqlite => {
            // OR of (scope AND key) pairs: SQLite runs each term as a primary-key probe.
            let terms: Vec<String> = (0..rows)
                .map(|i| format!("(scope = {} AND idem_key = {})", p.one(2 * i + 1), p.one(2 * i + 2)))
                .collect();
            format!("SELECT scope, idem_key, fingerprint, response FROM idempotency_keys WHERE {}", terms.join(" OR "))
        }
        Statement::SelectKeys => {
            // A join with the wanted pairs: PostgreSQL plans an OR of pairs as a bitmap OR whose planning and
            // scanning grow faster than the list (measured: 4.1 ms for 64 pairs, 0.45 ms for 16), and this as
            // one primary-key probe per pair.
            format!(
                "SELECT scope, idem_key, k.fingerprint, k.response FROM (VALUES {}) AS wanted (scope, idem_key) \
                 JOIN idempotency_keys k USING (scope, idem_key)",
                p.rows(rows, 2)
            )
        }
        Statement::UpsertAccounts => {
            format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES {} {ACCOUNTS_ON_CONFLICT}",
                p.rows(rows, ACCOUNT_WIDTH)
            )
        }
        Statement::UpsertAuthorizations => format!(
            "INSERT INTO authorizations ({AUTHORIZATION_COLUMNS}) VALUES {} {AUTHORIZATIONS_ON_CONFLICT}",
            p.rows(rows, AUTHORIZATION_WIDTH)
        ),
        Statement::InsertEvents => format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {}", p.rows(rows, EVENT_WIDTH)),
        Statement::InsertKeys => {
            format!("INSERT INTO idempotency_keys ({KEY_COLUMNS}) VALUES {}", p.rows(rows, KEY_WIDTH))
        }
    }
}

/// A whole batch's writes on PostgreSQL, in one statement and so one round trip: each table's rows travel as one
/// parameter, a JSON array of rows ([`json_rows`]; `$1` accounts, `$2` authorizations, `$3` events, `$4` keys),
/// which `jsonb_array_elements` turns back into rows inside data-modifying CTEs (PostgreSQL runs every one of them
/// to completion); `$5` is 1 to copy the events into the outbox as well, `$6` the new last sequence (NULL: the
/// batch made no event). One shape whatever the batch holds, so it stays prepared. Measured against a statement
/// per table per chunk: docs/performance.md, step 14.
pub(super) fn postgres_batch_write() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        // `kinds`: each column's type, in the order of the table's column list (text, integer, blob).
        let rows = |param: usize, kinds: &str, width: usize| {
            assert_eq!(kinds.len(), width, "a kind for every column of ${param}'s rows");
            let columns: Vec<String> = kinds
                .chars()
                .enumerate()
                .map(|(i, kind)| match kind {
                    't' => format!("r->>{i}"),
                    'i' => format!("(r->>{i})::bigint"),
                    'b' => format!("decode(r->>{i}, 'hex')"),
                    _ => unreachable!("column kinds are t, i and b"),
                })
                .collect();
            format!("SELECT {} FROM jsonb_array_elements(${param}::jsonb) AS r", columns.join(", "))
        };
        format!(
            "WITH accounts_written AS (INSERT INTO accounts ({ACCOUNT_COLUMNS}) {} {ACCOUNTS_ON_CONFLICT}), \
             authorizations_written AS (INSERT INTO authorizations ({AUTHORIZATION_COLUMNS}) {} \
             {AUTHORIZATIONS_ON_CONFLICT}), \
             events_written AS (INSERT INTO events ({EVENT_COLUMNS}) {}), \
             outbox_written AS (INSERT INTO outbox (sequence, created_at_us) \
             SELECT (r->>0)::bigint, (r->>7)::bigint FROM jsonb_array_elements($3::jsonb) AS r WHERE $5::bigint = 1), \
             keys_written AS (INSERT INTO idempotency_keys ({KEY_COLUMNS}) {}) \
             UPDATE ledger_meta SET last_sequence = $6::bigint WHERE id = 1 AND $6::bigint IS NOT NULL",
            rows(1, "tttiiiiii", ACCOUNT_WIDTH),
            rows(2, "tttititiiiiittiiiii", AUTHORIZATION_WIDTH),
            rows(3, "iittittii", EVENT_WIDTH),
            rows(4, "tttbi", KEY_WIDTH),
        )
    });
    &TEXT
}

/// Rows of `width` values as a JSON array of arrays, the form [`postgres_batch_write`] takes a table's rows in:
/// text as strings, integers as numbers (JSON numbers are exact in PostgreSQL), blobs as hex strings, NULL as null.
pub(super) fn json_rows(params: &[Param<'_>], width: usize) -> String {
    let mut out = Vec::with_capacity(2 + params.len() * 12);
    out.push(b'[');
    for (i, row) in params.chunks(width).enumerate() {
        out.extend_from_slice(if i == 0 { b"[" } else { b",[" });
        for (j, param) in row.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            // Writing to a Vec cannot fail.
            match *param {
                Param::Int(value) => write!(out, "{value}").unwrap(),
                Param::Text(text) => serde_json::to_writer(&mut out, text).unwrap(),
                Param::Blob(bytes) => {
                    out.push(b'"');
                    bytes.iter().for_each(|byte| write!(out, "{byte:02x}").unwrap());
                    out.push(b'"');
                }
                Param::Null => out.extend_from_slice(b"null"),
            }
        }
        out.push(b']');
    }
    out.push(b']');
    String::from_utf8(out).expect("JSON of UTF-8 text is UTF-8")
}

struct Placeholders {
    sqlite: bool,
}

impl Placeholders {
    /// The placeholder of the `n`th (1-based) bound value.
    fn one(&self, n: usize) -> String {
        if self.sqlite {
            "?".to_owned()
        } else {
            format!("${n}")
        }
    }

    /// `count` placeholders from the `first`th, comma-separated.
    fn list(&self, first: usize, count: usize) -> String {
        (first..first + count).map(|n| self.one(n)).collect::<Vec<_>>().join(", ")
    }

    /// `(..., ...), (..., ...)`: placeholders for `rows` rows of `columns` values.
    fn rows(&self, rows: usize, columns: usize) -> String {
        (0..rows).map(|row| format!("({})", self.list(row * columns + 1, columns))).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_suit_each_database() {
        let mut postgres = StatementTexts::new(false);
        assert!(postgres.get(Statement::SelectAccounts, 3).ends_with("IN ($1, $2, $3)"));
        assert!(postgres.get(Statement::SelectKeys, 2).contains("(VALUES ($1, $2), ($3, $4))"));
        let mut sqlite = StatementTexts::new(true);
        assert!(sqlite.get(Statement::SelectAccounts, 3).ends_with("IN (?, ?, ?)"));
        assert!(sqlite.get(Statement::InsertKeys, 2).ends_with("VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)"));
    }

    #[test]
    fn rows_travel_to_postgres_as_json_arrays() {
        let params = [
            Param::Text("a\"b\\c\u{e9}"),
            Param::Int(-9_007_199_254_740_993),
            Param::Blob(&[0, 0xab]),
            Param::Null,
            Param::Text(""),
            Param::Int(0),
            Param::Blob(&[]),
            Param::Int(i64::MAX),
        ];
        let expected = "[[\"a\\\"b\\\\c\u{e9}\",-9007199254740993,\"00ab\",null],[\"\",0,\"\",9223372036854775807]]";
        assert_eq!(json_rows(&params, 4), expected);
        assert_eq!(json_rows(&[], 4), "[]");
    }

    #[test]
    fn widths_match_the_column_lists() {
        let count = |columns: &str| columns.split(", ").count();
        assert_eq!(count(ACCOUNT_COLUMNS), ACCOUNT_WIDTH);
        assert_eq!(count(AUTHORIZATION_COLUMNS), AUTHORIZATION_WIDTH);
        assert_eq!(count(EVENT_COLUMNS), EVENT_WIDTH);
        assert_eq!(count(KEY_COLUMNS), KEY_WIDTH);
        assert_eq!(postgres_batch_write().matches("jsonb_array_elements").count(), 5);
    }
}

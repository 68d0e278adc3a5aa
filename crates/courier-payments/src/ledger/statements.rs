//! The text of the writer's multi-row statements, built once per (statement, row count) and kept: the writer runs
//! the same few shapes for every batch, so building them again would only allocate.

use std::collections::HashMap;

use super::rows::{ACCOUNT_COLUMNS, AUTHORIZATION_COLUMNS, EVENT_COLUMNS};

/// The statements the stage runs with a variable number of rows.
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
        Statement::UpsertAccounts => format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
             posted_balance = excluded.posted_balance, held_amount = excluded.held_amount, \
             status = excluded.status, updated_at_us = excluded.updated_at_us",
            p.rows(rows, 9)
        ),
        Statement::UpsertAuthorizations => format!(
            "INSERT INTO authorizations ({AUTHORIZATION_COLUMNS}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
             status = excluded.status, captured_amount = excluded.captured_amount, \
             resolved_at_us = excluded.resolved_at_us",
            p.rows(rows, 19)
        ),
        Statement::InsertEvents => format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {}", p.rows(rows, 9)),
        Statement::InsertKeys => format!(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, response, created_at_us) VALUES {}",
            p.rows(rows, 5)
        ),
    }
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
    use super::{Statement, StatementTexts};

    #[test]
    fn placeholders_suit_each_database() {
        let mut postgres = StatementTexts::new(false);
        assert!(postgres.get(Statement::InsertKeys, 2).ends_with("VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)"));
        assert!(postgres.get(Statement::SelectKeys, 2).contains("(VALUES ($1, $2), ($3, $4))"));
        let mut sqlite = StatementTexts::new(true);
        assert!(sqlite.get(Statement::SelectAccounts, 3).ends_with("IN (?, ?, ?)"));
    }
}

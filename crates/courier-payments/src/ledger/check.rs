//! `courier ledger check`: every invariant of the ledger, verified over the whole store.
//!
//! - The event log is gap-free: sequences 1..=last_sequence, each once.
//! - Money is conserved: each account's posted balance equals its credits minus its captures, as the log says.
//! - Held equals the sum of the account's open holds; no account is over its limit (available >= 0).
//! - Every authorization is in exactly one consistent state, with exactly the events that state implies, and its
//!   creation event names its account.

use std::collections::HashMap;

use courier_proto::payments::v1 as pb;
use sqlx::AnyPool;
use sqlx::Row;

use pb::{AuthorizationStatus as AuthStatus, EventType};

/// The first broken invariant found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{invariant}: {detail}")]
pub struct Violation {
    /// Which invariant (a short stable name).
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

/// What a passing check covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub accounts: u64,
    pub authorizations: u64,
    pub events: u64,
}

#[derive(Default)]
struct AccountTotals {
    credited: i128,
    captured: i128,
    open_holds: i128,
}

#[derive(Default)]
struct EventCounts {
    authorized: u32,
    declined: u32,
    resolutions: u32,
    captured: i64,
    /// The account its AUTHORIZED or DECLINED event names (a listing by account finds it through that event).
    created_for: Option<String>,
}

fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation { invariant, detail: detail.into() }
}

/// True when the store holds a payments ledger (its migrations ran): a read-only checker asks this first, so a
/// store of another kind, or an empty one, is reported as such rather than as a failed read.
pub async fn has_ledger(pool: &AnyPool) -> bool {
    sqlx::query("SELECT last_sequence FROM ledger_meta WHERE id = 1")
        .fetch_optional(pool)
        .await
        .is_ok_and(|row| row.is_some())
}

/// Checks every invariant; `Ok(Err(_))` is the first violation, the outer error a failed read.
pub async fn check(pool: &AnyPool) -> Result<Result<CheckSummary, Violation>, sqlx::Error> {
    let mut summary = CheckSummary::default();

    // The log: gap-free and matching the counter.
    let last: i64 = sqlx::query_scalar("SELECT last_sequence FROM ledger_meta WHERE id = 1").fetch_one(pool).await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(MIN(sequence), 0) AS lo, COALESCE(MAX(sequence), 0) AS hi FROM events",
    )
    .fetch_one(pool)
    .await?;
    let (count, low, high): (i64, i64, i64) = (row.try_get("n")?, row.try_get("lo")?, row.try_get("hi")?);
    summary.events = count as u64;
    if count != high || (count > 0 && low != 1) || high != last {
        let detail = format!("{count} events span {low}..={high}, the counter says {last}");
        return Ok(Err(violation("event sequence gap-free", detail)));
    }

    // Per-account money from the log, and per-authorization event counts.
    let mut totals: HashMap<String, AccountTotals> = HashMap::new();
    let mut per_authorization: HashMap<String, EventCounts> = HashMap::new();
    let events = sqlx::query("SELECT type, account_id, authorization_id, amount FROM events").fetch_all(pool).await?;
    for event in &events {
        let kind: i64 = event.try_get("type")?;
        let account: String = event.try_get("account_id")?;
        let authorization: String = event.try_get("authorization_id")?;
        let amount: i64 = event.try_get("amount")?;
        let counts = (!authorization.is_empty()).then(|| per_authorization.entry(authorization).or_default());
        match EventType::try_from(kind as i32) {
            Ok(EventType::Credited) => totals.entry(account).or_default().credited += i128::from(amount),
            Ok(EventType::Captured) => {
                totals.entry(account).or_default().captured += i128::from(amount);
                if let Some(c) = counts {
                    c.resolutions += 1;
                    c.captured = amount;
                }
            }
            Ok(kind @ (EventType::Authorized | EventType::Declined)) => {
                if let Some(c) = counts {
                    *if kind == EventType::Authorized { &mut c.authorized } else { &mut c.declined } += 1;
                    c.created_for = Some(account);
                }
            }
            Ok(EventType::Voided | EventType::Expired) => counts.into_iter().for_each(|c| c.resolutions += 1),
            Ok(EventType::AccountOpened | EventType::AccountStatusChanged) => {}
            Ok(EventType::Unspecified) | Err(_) => {
                return Ok(Err(violation("event types", format!("unknown type {kind}"))))
            }
        }
    }

    // Authorizations: one consistent state each, the events that state implies, open holds summed per account.
    let authorizations = sqlx::query(
        "SELECT id, account_id, amount, status, held_amount, captured_amount, resolved_at_us FROM authorizations",
    )
    .fetch_all(pool)
    .await?;
    summary.authorizations = authorizations.len() as u64;
    for row in &authorizations {
        let id: String = row.try_get("id")?;
        let account: String = row.try_get("account_id")?;
        let amount: i64 = row.try_get("amount")?;
        let status: i64 = row.try_get("status")?;
        let held: i64 = row.try_get("held_amount")?;
        let captured: i64 = row.try_get("captured_amount")?;
        let resolved: Option<i64> = row.try_get("resolved_at_us")?;
        let counts = per_authorization.remove(&id).unwrap_or_default();
        let status = AuthStatus::try_from(status as i32).unwrap_or(AuthStatus::Unspecified);
        let consistent = match status {
            AuthStatus::Declined => held == 0 && captured == 0 && resolved.is_none() && counts.declined == 1,
            AuthStatus::Held => held == amount && captured == 0 && resolved.is_none() && counts.resolutions == 0,
            AuthStatus::Captured => {
                captured > 0 && captured <= held && resolved.is_some() && counts.captured == captured
            }
            AuthStatus::Voided | AuthStatus::Expired => captured == 0 && resolved.is_some(),
            AuthStatus::Unspecified => false,
        };
        let approved = status != AuthStatus::Declined;
        let events_match = if approved {
            counts.authorized == 1
                && counts.declined == 0
                && counts.resolutions == u32::from(status != AuthStatus::Held)
        } else {
            counts.authorized == 0 && counts.resolutions == 0
        };
        if counts.created_for.as_ref().is_some_and(|created_for| *created_for != account) {
            let detail = format!("{id} is {account}'s, its creation event names {:?}", counts.created_for);
            return Ok(Err(violation("creation event of the authorization's account", detail)));
        }
        if !consistent || !events_match {
            let detail = format!(
                "{id} is {status:?} (amount {amount}, held {held}, captured {captured}) with {} authorized, {} declined \
                 and {} resolving events",
                counts.authorized, counts.declined, counts.resolutions
            );
            return Ok(Err(violation("every hold in exactly one state", detail)));
        }
        if status == AuthStatus::Held {
            totals.entry(account).or_default().open_holds += i128::from(held);
        }
    }
    if let Some(orphan) = per_authorization.keys().next() {
        return Ok(Err(violation("every hold in exactly one state", format!("events name missing {orphan}"))));
    }

    // Accounts against the log and their limit.
    let accounts =
        sqlx::query("SELECT id, credit_limit, posted_balance, held_amount FROM accounts").fetch_all(pool).await?;
    summary.accounts = accounts.len() as u64;
    for row in &accounts {
        let id: String = row.try_get("id")?;
        let limit: i64 = row.try_get("credit_limit")?;
        let posted: i64 = row.try_get("posted_balance")?;
        let held: i64 = row.try_get("held_amount")?;
        let total = totals.remove(&id).unwrap_or_default();
        if i128::from(posted) != total.credited - total.captured {
            let detail = format!("{id} posts {posted}, its log says {} - {}", total.credited, total.captured);
            return Ok(Err(violation("money conserved", detail)));
        }
        if i128::from(held) != total.open_holds {
            let detail = format!("{id} holds {held}, its open holds sum to {}", total.open_holds);
            return Ok(Err(violation("held equals open holds", detail)));
        }
        if i128::from(posted) + i128::from(limit) - i128::from(held) < 0 || held < 0 || limit < 0 {
            let detail = format!("{id}: posted {posted} + limit {limit} - held {held} < 0");
            return Ok(Err(violation("no account over its limit", detail)));
        }
    }
    // Money may only move on accounts that exist (declines to unknown accounts move none).
    if let Some((id, _)) = totals.iter().find(|(_, t)| t.credited != 0 || t.captured != 0 || t.open_holds != 0) {
        return Ok(Err(violation("money conserved", format!("money moved on missing account {id}"))));
    }
    Ok(Ok(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing by account finds an authorization through its creation event, so an event naming another account
    /// is a broken store, not a detail.
    #[tokio::test]
    async fn a_creation_event_naming_another_account_is_a_violation() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("courier.db").display());
        let pool = crate::open_store(&courier_kit::db::DbConfig::new(url)).await.unwrap();
        // A decline for an unknown account moves no money: the smallest store with one authorization.
        sqlx::query(
            "INSERT INTO authorizations (id, account_id, merchant_id, amount, currency, decision, response_code, \
             decline_reason, status, held_amount, captured_amount, available_after, description, metadata_json, \
             created_at_us) VALUES ('auth_1', 'acct_a', 'm', 5, 'USD', 2, '14', 1, $1, 0, 0, 0, '', '{}', 0)",
        )
        .bind(AuthStatus::Declined as i32)
        .execute(&pool)
        .await
        .unwrap();
        let event = |account: &'static str| {
            sqlx::query(
                "INSERT INTO events (sequence, type, account_id, authorization_id, amount, currency, response_code, \
                 occurred_at_us) VALUES (1, $1, $2, 'auth_1', 5, 'USD', '14', 0)",
            )
            .bind(EventType::Declined as i32)
            .bind(account)
        };
        event("acct_b").execute(&pool).await.unwrap();
        sqlx::query("UPDATE ledger_meta SET last_sequence = 1").execute(&pool).await.unwrap();
        let found = check(&pool).await.unwrap().unwrap_err();
        assert_eq!(found.invariant, "creation event of the authorization's account", "{found}");

        sqlx::query("DELETE FROM events").execute(&pool).await.unwrap();
        event("acct_a").execute(&pool).await.unwrap();
        assert_eq!(check(&pool).await.unwrap().map(|s| s.authorizations), Ok(1));
    }
}

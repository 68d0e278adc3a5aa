//! Rows to protobuf messages, and the column lists every query selects.

use std::collections::BTreeMap;

use courier_kit::time::timestamp_from_us;
use courier_proto::payments::v1 as pb;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::conn::Columns;

pub(super) const ACCOUNT_COLUMNS: &str =
    "id, owner_user_id, currency, credit_limit, posted_balance, held_amount, status, created_at_us, updated_at_us";

pub(super) const AUTHORIZATION_COLUMNS: &str = "id, account_id, merchant_id, amount, currency, decision, \
     response_code, decline_reason, status, held_amount, captured_amount, available_after, description, \
     metadata_json, created_at_us, expires_at_us, resolved_at_us, decided_by, risk_score";

pub const EVENT_COLUMNS: &str =
    "sequence, type, account_id, authorization_id, amount, currency, response_code, occurred_at_us, decided_by";

/// An account as the writer works on it.
#[derive(Debug, Clone)]
pub(super) struct AccountRow {
    pub id: String,
    pub owner_user_id: String,
    pub currency: String,
    pub credit_limit: i64,
    pub posted_balance: i64,
    pub held_amount: i64,
    pub status: pb::AccountStatus,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl AccountRow {
    /// posted + credit limit - held, computed wide so no intermediate sum can wrap.
    pub fn available(&self) -> i128 {
        i128::from(self.posted_balance) + i128::from(self.credit_limit) - i128::from(self.held_amount)
    }

    pub fn to_proto(&self) -> pb::Account {
        pb::Account {
            id: self.id.clone(),
            owner_user_id: self.owner_user_id.clone(),
            currency: self.currency.clone(),
            credit_limit: self.credit_limit,
            posted_balance: self.posted_balance,
            held_amount: self.held_amount,
            available_amount: clamp(self.available()),
            status: self.status as i32,
            created_at: Some(timestamp_from_us(self.created_at_us)),
            updated_at: Some(timestamp_from_us(self.updated_at_us)),
        }
    }
}

/// Saturates into i64; the ledger's checks keep real values inside it.
pub(super) fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// An account from a row of the pool (an `AnyRow`) or of the SQLite writer's connection.
pub(super) fn account_from_row(row: &impl Columns) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        id: row.text("id")?,
        owner_user_id: row.text("owner_user_id")?,
        currency: row.text("currency")?,
        credit_limit: row.int("credit_limit")?,
        posted_balance: row.int("posted_balance")?,
        held_amount: row.int("held_amount")?,
        status: enum_value(row.int("status")?, pb::AccountStatus::try_from)?,
        created_at_us: row.int("created_at_us")?,
        updated_at_us: row.int("updated_at_us")?,
    })
}

pub(super) fn authorization_from_row(row: &impl Columns) -> Result<pb::Authorization, sqlx::Error> {
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&row.text("metadata_json")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(pb::Authorization {
        id: row.text("id")?,
        account_id: row.text("account_id")?,
        merchant_id: row.text("merchant_id")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        decision: enum_value(row.int("decision")?, pb::Decision::try_from)? as i32,
        response_code: row.text("response_code")?,
        decline_reason: enum_value(row.int("decline_reason")?, pb::DeclineReason::try_from)? as i32,
        status: enum_value(row.int("status")?, pb::AuthorizationStatus::try_from)? as i32,
        held_amount: row.int("held_amount")?,
        captured_amount: row.int("captured_amount")?,
        available_after: row.int("available_after")?,
        description: row.text("description")?,
        metadata,
        created_at: Some(timestamp_from_us(row.int("created_at_us")?)),
        expires_at: row.opt_int("expires_at_us")?.map(timestamp_from_us),
        resolved_at: row.opt_int("resolved_at_us")?.map(timestamp_from_us),
        decided_by: enum_value(row.int("decided_by")?, pb::Decider::try_from)? as i32,
        risk_score: i32::try_from(row.int("risk_score")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

pub fn event_from_row(row: &AnyRow) -> Result<pb::Event, sqlx::Error> {
    let kind: i64 = row.try_get("type")?;
    let decided_by: i64 = row.try_get("decided_by")?;
    Ok(pb::Event {
        sequence: row.try_get("sequence")?,
        r#type: enum_value(kind, pb::EventType::try_from)? as i32,
        account_id: row.try_get("account_id")?,
        authorization_id: row.try_get("authorization_id")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        response_code: row.try_get("response_code")?,
        occurred_at: Some(timestamp_from_us(row.try_get("occurred_at_us")?)),
        decided_by: enum_value(decided_by, pb::Decider::try_from)? as i32,
    })
}

/// A stored enum number back to the enum; an unknown number is a corrupt row, reported, never guessed.
fn enum_value<E>(number: i64, convert: impl Fn(i32) -> Result<E, prost::UnknownEnumValue>) -> Result<E, sqlx::Error> {
    i32::try_from(number)
        .ok()
        .and_then(|n| convert(n).ok())
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown enum number {number} in the store").into()))
}

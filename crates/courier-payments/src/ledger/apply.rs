//! Each operation applied inside the writer's transaction.
//!
//! Every operation decides from what it reads and only then writes, so an operation that is rejected writes nothing
//! (the one exception: a capture or void that finds its hold past expiry expires it, then refuses). Reads and
//! writes go through the batch's [`Stage`]: rows are fetched once per batch and changes reach the database in
//! one multi-row statement per table when the batch finishes. The outer `Result` is a database failure and aborts
//! the whole batch; the inner one is the operation's own answer.

use std::collections::HashMap;

use courier_proto::payments::v1 as pb;
use prost::Message;

use super::conn::{Columns, Conn, Param};
use super::idempotency;
use super::metrics::Decided;
use super::rows::{self, AccountRow, AUTHORIZATION_COLUMNS};
use super::stage::{EventRow, Stage, StoredKey};
use super::{
    AuthorizeCmd, CaptureCmd, CreditCmd, Done, Holder, LedgerError, NewAccount, Op, Risk, SweepReport, VoidCmd,
};
use crate::config::{Fallback, PaymentsConfig};
use crate::model::{new_account_id, new_authorization_id, response_code};
use pb::{AccountStatus, AuthorizationStatus as AuthStatus, Decider, DeclineReason, EventType};

type Answer = Result<Done, LedgerError>;

/// Holds swept per batch, so one sweep never makes a batch unboundedly long.
const SWEEP_LIMIT: i64 = 512;

/// The writer's view of one open transaction.
pub(super) struct Tx<'a, C: Conn> {
    conn: &'a mut C,
    config: &'a PaymentsConfig,
    now: i64,
    sequence: i64,
    first_sequence: i64,
    /// Authorizations decided so far, for the metrics once (if) the batch commits.
    decided: Vec<Decided>,
    /// The batch's rows and changes.
    stage: &'a mut Stage,
    /// Stand-in approvals this batch made per account, not in the database until the flush.
    stood_in_staged: HashMap<String, i64>,
}

impl<'a, C: Conn> Tx<'a, C> {
    /// Takes the ledger lock (the `ledger_meta` row) and reads the last sequence number, on `conn`, inside the
    /// batch's transaction.
    pub async fn begin(
        conn: &'a mut C,
        stage: &'a mut Stage,
        config: &'a PaymentsConfig,
        now: i64,
    ) -> Result<Tx<'a, C>, sqlx::Error> {
        // An UPDATE, not a SELECT: it takes the row lock on PostgreSQL (and the write lock on SQLite) first, so
        // concurrent writers from other processes wait here instead of deadlocking later.
        let sql = "UPDATE ledger_meta SET last_sequence = last_sequence WHERE id = 1 RETURNING last_sequence";
        let sequence = conn.scalar(sql, &[]).await?.ok_or(sqlx::Error::RowNotFound)?;
        stage.reset();
        let (decided, stood_in_staged) = (Vec::new(), HashMap::new());
        Ok(Tx { conn, config, now, sequence, first_sequence: sequence, decided, stage, stood_in_staged })
    }

    /// Reads, in a few queries, every row the batch's operations name (accounts, authorizations, idempotency
    /// keys), so applying them costs no further round trip in the common case.
    pub async fn prefetch<'o>(&mut self, ops: impl Iterator<Item = &'o Op> + Clone) -> Result<(), sqlx::Error> {
        let accounts: Vec<&str> = ops
            .clone()
            .filter_map(|op| match op {
                Op::Authorize(cmd) => Some(cmd.account_id.as_str()),
                Op::Credit(cmd) => Some(cmd.account_id.as_str()),
                Op::SetStatus { account_id, .. } => Some(account_id.as_str()),
                _ => None,
            })
            .collect();
        let authorizations: Vec<&str> = ops
            .clone()
            .filter_map(|op| match op {
                Op::Capture(cmd) => Some(cmd.authorization_id.as_str()),
                Op::Void(cmd) => Some(cmd.authorization_id.as_str()),
                _ => None,
            })
            .collect();
        self.stage.prefetch(self.conn, &accounts, &authorizations).await?;
        let mut keys = Vec::new();
        for op in ops {
            match op {
                Op::Authorize(cmd) => {
                    keys.push((idempotency::merchant_scope(&cmd.merchant_id), cmd.idempotency_key.as_str()))
                }
                Op::Credit(cmd) => {
                    keys.push((idempotency::account_scope(&cmd.account_id), cmd.idempotency_key.as_str()))
                }
                Op::Capture(CaptureCmd { authorization_id, idempotency_key, .. })
                | Op::Void(VoidCmd { authorization_id, idempotency_key, .. }) => {
                    if let Some(authorization) = self.stage.authorization(self.conn, authorization_id).await? {
                        keys.push((idempotency::merchant_scope(&authorization.merchant_id), idempotency_key.as_str()));
                    }
                }
                _ => {}
            }
        }
        self.stage.prefetch_keys(self.conn, &keys).await
    }

    /// Writes the batch's changes and the last sequence number; returns it with the authorizations decided in
    /// this transaction.
    pub async fn finish(self) -> Result<(i64, Vec<Decided>), sqlx::Error> {
        let moved = (self.sequence != self.first_sequence).then_some(self.sequence);
        self.stage.flush(self.conn, self.now, self.config.outbox, moved).await?;
        Ok((self.sequence, self.decided))
    }

    pub async fn apply(&mut self, op: &Op) -> Result<Answer, sqlx::Error> {
        match op {
            Op::Open(new) => self.open(new).await,
            Op::Credit(cmd) => self.credit(cmd).await,
            Op::SetStatus { account_id, status } => self.set_status(account_id, *status).await,
            Op::Authorize(cmd) => self.authorize(cmd).await,
            Op::Capture(cmd) => self.capture(cmd).await,
            Op::Void(cmd) => self.void(cmd).await,
            Op::Sweep => self.sweep().await,
        }
    }

    async fn open(&mut self, new: &NewAccount) -> Result<Answer, sqlx::Error> {
        let account = AccountRow {
            id: new_account_id(),
            owner_user_id: new.owner_user_id.clone(),
            currency: new.currency.clone(),
            credit_limit: new.credit_limit,
            posted_balance: 0,
            held_amount: 0,
            status: AccountStatus::Active,
            created_at_us: self.now,
            updated_at_us: self.now,
        };
        self.stage.put_account(account.clone());
        self.event(EventType::AccountOpened, &account.id, "", 0, &account.currency, "");
        Ok(Ok(Done::Account(account.to_proto())))
    }

    async fn set_status(&mut self, account_id: &str, status: AccountStatus) -> Result<Answer, sqlx::Error> {
        let Some(mut account) = self.account(account_id).await? else {
            return Ok(Err(not_found("account", account_id)));
        };
        if account.status == AccountStatus::Closed && status != AccountStatus::Closed {
            return Ok(Err(LedgerError::rejected("ACCOUNT_CLOSED", "closing an account is final")));
        }
        if account.status != status {
            account.status = status;
            account.updated_at_us = self.now;
            self.stage.put_account(account.clone());
            self.event(EventType::AccountStatusChanged, account_id, "", 0, &account.currency, "");
        }
        Ok(Ok(Done::Account(account.to_proto())))
    }

    async fn credit(&mut self, cmd: &CreditCmd) -> Result<Answer, sqlx::Error> {
        let scope = idempotency::account_scope(&cmd.account_id);
        if let Some(replay) =
            self.replay::<pb::CreditAccountResponse>(&scope, &cmd.idempotency_key, &cmd.fingerprint).await?
        {
            return Ok(replay.map(Done::Credited));
        }
        let Some(mut account) = self.account(&cmd.account_id).await? else {
            return Ok(Err(not_found("account", &cmd.account_id)));
        };
        if account.status == AccountStatus::Closed {
            return Ok(Err(LedgerError::rejected("ACCOUNT_CLOSED", "a closed account takes no credits")));
        }
        if account.currency != cmd.currency {
            let message = format!("the account is in {}, the credit in {}", account.currency, cmd.currency);
            return Ok(Err(LedgerError::rejected("CURRENCY_MISMATCH", message)));
        }
        // posted + limit must stay representable, so available can never overflow.
        let posted = account.posted_balance.checked_add(cmd.amount);
        let Some(posted) = posted.filter(|p| p.checked_add(account.credit_limit).is_some()) else {
            return Ok(Err(LedgerError::rejected("AMOUNT_OVERFLOW", "the balance would exceed the largest amount")));
        };
        account.posted_balance = posted;
        account.updated_at_us = self.now;
        self.stage.put_account(account.clone());
        let sequence = self.event(EventType::Credited, &account.id, "", cmd.amount, &account.currency, "");
        let response = pb::CreditAccountResponse { account: Some(account.to_proto()), event_sequence: sequence };
        self.remember(scope, &cmd.idempotency_key, &cmd.fingerprint, &response);
        Ok(Ok(Done::Credited(response)))
    }

    async fn authorize(&mut self, cmd: &AuthorizeCmd) -> Result<Answer, sqlx::Error> {
        let scope = idempotency::merchant_scope(&cmd.merchant_id);
        if let Some(replay) = self.replay::<pb::Authorization>(&scope, &cmd.idempotency_key, &cmd.fingerprint).await? {
            return Ok(replay.map(Done::Authorization));
        }
        let account = self.account(&cmd.account_id).await?;
        let stood_in_today = match (cmd.risk, self.config.risk_fallback) {
            (Risk::Unavailable, Fallback::StandIn) => self.stood_in_today(&cmd.account_id).await?,
            _ => 0,
        };
        let decision = decide(account.as_ref(), cmd, self.config, stood_in_today);
        let mut authorization = pb::Authorization {
            id: new_authorization_id(),
            account_id: cmd.account_id.clone(),
            merchant_id: cmd.merchant_id.clone(),
            amount: cmd.amount,
            currency: cmd.currency.clone(),
            description: cmd.description.clone(),
            metadata: cmd.metadata.clone(),
            created_at: Some(courier_kit::time::timestamp_from_us(self.now)),
            decided_by: cmd.risk.decider() as i32,
            risk_score: cmd.risk.score(),
            ..Default::default()
        };
        match (decision, account) {
            (Ok(()), Some(mut account)) => {
                account.held_amount += cmd.amount; // amount <= available, so held <= posted + limit: no overflow
                account.updated_at_us = self.now;
                if cmd.risk == Risk::Unavailable {
                    *self.stood_in_staged.entry(cmd.account_id.clone()).or_default() += cmd.amount;
                }
                let expires_at = self.now.saturating_add(duration_us(self.config.hold_ttl));
                authorization.decision = pb::Decision::Approved as i32;
                authorization.response_code = response_code(DeclineReason::Unspecified).into();
                authorization.status = AuthStatus::Held as i32;
                authorization.held_amount = cmd.amount;
                authorization.available_after = rows::clamp(account.available());
                authorization.expires_at = Some(courier_kit::time::timestamp_from_us(expires_at));
                self.stage.put_account(account);
            }
            (decline, account) => {
                let reason = decline.err().unwrap_or(DeclineReason::UnknownAccount);
                authorization.decision = pb::Decision::Declined as i32;
                authorization.response_code = response_code(reason).into();
                authorization.decline_reason = reason as i32;
                authorization.status = AuthStatus::Declined as i32;
                authorization.available_after = account.map_or(0, |a| rows::clamp(a.available()));
            }
        }
        self.stage.put_authorization(authorization.clone());
        let kind = if authorization.held_amount > 0 { EventType::Authorized } else { EventType::Declined };
        let code = authorization.response_code.clone();
        let event = NewEvent {
            kind,
            account_id: &cmd.account_id,
            authorization_id: &authorization.id,
            amount: cmd.amount,
            currency: &cmd.currency,
            code: &code,
            decided_by: cmd.risk.decider(),
        };
        self.append(event);
        self.remember(scope, &cmd.idempotency_key, &cmd.fingerprint, &authorization);
        let reason = DeclineReason::try_from(authorization.decline_reason).unwrap_or(DeclineReason::Unspecified);
        self.decided.push(Decided { reason, decider: cmd.risk.decider() });
        Ok(Ok(Done::Authorization(authorization)))
    }

    async fn capture(&mut self, cmd: &CaptureCmd) -> Result<Answer, sqlx::Error> {
        let Some(mut authorization) = self.authorization(&cmd.authorization_id).await? else {
            return Ok(Err(not_found("authorization", &cmd.authorization_id)));
        };
        let scope = idempotency::merchant_scope(&authorization.merchant_id);
        if let Some(replay) = self.replay::<pb::Authorization>(&scope, &cmd.idempotency_key, &cmd.fingerprint).await? {
            return Ok(replay.map(Done::Authorization));
        }
        if let Some(refusal) = self.open_hold_or_refusal(&authorization, "capture").await? {
            return Ok(Err(refusal));
        }
        let amount = if cmd.amount == 0 { authorization.held_amount } else { cmd.amount };
        if amount > authorization.held_amount {
            let message = format!("capture of {amount} exceeds the held {}", authorization.held_amount);
            return Ok(Err(LedgerError::rejected("CAPTURE_EXCEEDS_HOLD", message)));
        }
        let Some(mut account) = self.account(&authorization.account_id).await? else {
            return Err(missing_account(&authorization));
        };
        // amount <= held <= posted + limit, so posted - amount >= -limit: no overflow.
        account.posted_balance -= amount;
        account.held_amount -= authorization.held_amount;
        account.updated_at_us = self.now;
        self.stage.put_account(account);
        authorization.status = AuthStatus::Captured as i32;
        authorization.captured_amount = amount;
        self.resolve(&mut authorization);
        let (account_id, auth_id, currency) = (&authorization.account_id, &authorization.id, &authorization.currency);
        self.event(EventType::Captured, account_id, auth_id, amount, currency, "");
        self.remember(scope, &cmd.idempotency_key, &cmd.fingerprint, &authorization);
        Ok(Ok(Done::Authorization(authorization)))
    }

    async fn void(&mut self, cmd: &VoidCmd) -> Result<Answer, sqlx::Error> {
        let Some(mut authorization) = self.authorization(&cmd.authorization_id).await? else {
            return Ok(Err(not_found("authorization", &cmd.authorization_id)));
        };
        let scope = idempotency::merchant_scope(&authorization.merchant_id);
        if let Some(replay) = self.replay::<pb::Authorization>(&scope, &cmd.idempotency_key, &cmd.fingerprint).await? {
            return Ok(replay.map(Done::Authorization));
        }
        if let Some(refusal) = self.open_hold_or_refusal(&authorization, "void").await? {
            return Ok(Err(refusal));
        }
        self.release(&mut authorization, AuthStatus::Voided, EventType::Voided).await?;
        self.remember(scope, &cmd.idempotency_key, &cmd.fingerprint, &authorization);
        Ok(Ok(Done::Authorization(authorization)))
    }

    async fn sweep(&mut self) -> Result<Answer, sqlx::Error> {
        let sql = format!(
            "SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE status = $1 AND expires_at_us <= $2 \
             ORDER BY expires_at_us LIMIT $3"
        );
        let params = [Param::Int(AuthStatus::Held as i64), Param::Int(self.now), Param::Int(SWEEP_LIMIT)];
        let due = self.conn.fetch(&sql, &params).await?;
        let mut report = SweepReport::default();
        for row in &due {
            // This batch may already have resolved the hold: the staged row is the truth.
            let id = row.text("id")?;
            let Some(mut authorization) = self.stage.authorization(self.conn, &id).await? else { continue };
            if authorization.status != AuthStatus::Held as i32 {
                continue;
            }
            self.release(&mut authorization, AuthStatus::Expired, EventType::Expired).await?;
            report.expired += 1;
        }
        let cutoff = self.now.saturating_sub(duration_us(self.config.idempotency_retention));
        let sql = "DELETE FROM idempotency_keys WHERE created_at_us < $1";
        report.forgotten_keys = self.conn.execute(sql, &[Param::Int(cutoff)]).await?;
        Ok(Ok(Done::Swept(report)))
    }

    /// `None` when the hold is open and may be resolved; otherwise why not. A hold found past its expiry is
    /// expired here, in this transaction, before refusing.
    async fn open_hold_or_refusal(
        &mut self,
        authorization: &pb::Authorization,
        verb: &str,
    ) -> Result<Option<LedgerError>, sqlx::Error> {
        let status = AuthStatus::try_from(authorization.status).unwrap_or(AuthStatus::Unspecified);
        let expired = LedgerError::rejected("HOLD_EXPIRED", format!("cannot {verb}: the hold expired"));
        Ok(Some(match status {
            AuthStatus::Held => {
                let expires_at =
                    authorization.expires_at.as_ref().map_or(i64::MAX, courier_kit::time::us_from_timestamp);
                if expires_at > self.now {
                    return Ok(None);
                }
                let mut due = authorization.clone();
                self.release(&mut due, AuthStatus::Expired, EventType::Expired).await?;
                expired
            }
            AuthStatus::Expired => expired,
            AuthStatus::Captured => {
                LedgerError::rejected("ALREADY_CAPTURED", format!("cannot {verb}: already captured"))
            }
            AuthStatus::Voided => LedgerError::rejected("ALREADY_VOIDED", format!("cannot {verb}: already voided")),
            AuthStatus::Declined | AuthStatus::Unspecified => {
                LedgerError::rejected("AUTHORIZATION_DECLINED", format!("cannot {verb}: the authorization declined"))
            }
        }))
    }

    /// Releases the whole hold (void or expiry).
    async fn release(
        &mut self,
        authorization: &mut pb::Authorization,
        status: AuthStatus,
        kind: EventType,
    ) -> Result<(), sqlx::Error> {
        let Some(mut account) = self.account(&authorization.account_id).await? else {
            return Err(missing_account(authorization));
        };
        account.held_amount -= authorization.held_amount;
        account.updated_at_us = self.now;
        self.stage.put_account(account);
        authorization.status = status as i32;
        self.resolve(authorization);
        let (account_id, auth_id, currency) = (&authorization.account_id, &authorization.id, &authorization.currency);
        self.event(kind, account_id, auth_id, authorization.held_amount, currency, "");
        Ok(())
    }

    fn resolve(&mut self, authorization: &mut pb::Authorization) {
        authorization.resolved_at = Some(courier_kit::time::timestamp_from_us(self.now));
        self.stage.put_authorization(authorization.clone());
    }

    /// What the stand-in policy already approved for the account since midnight UTC (the daily limit's base).
    async fn stood_in_today(&mut self, account_id: &str) -> Result<i64, sqlx::Error> {
        const DAY_US: i64 = 24 * 3600 * 1_000_000;
        let midnight = self.now - self.now.rem_euclid(DAY_US);
        // CAST: PostgreSQL's SUM over BIGINT is NUMERIC. `decided_by = 2` (DECIDER_STAND_IN) is a literal, not a
        // parameter: it is the condition of the partial index `authorizations_stand_in` (migration 1004), which a
        // planner uses only when the query names the same constant.
        const _: () = assert!(Decider::StandIn as i64 == 2);
        let total: Option<i64> = self
            .conn
            .scalar(
                "SELECT CAST(SUM(amount) AS BIGINT) FROM authorizations \
                 WHERE account_id = $1 AND decided_by = 2 AND created_at_us >= $2 AND decision = $3",
                &[Param::Text(account_id), Param::Int(midnight), Param::Int(pb::Decision::Approved as i64)],
            )
            .await?;
        Ok(total.unwrap_or(0) + self.stood_in_staged.get(account_id).copied().unwrap_or(0))
    }

    async fn account(&mut self, id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
        self.stage.account(self.conn, id).await
    }

    async fn authorization(&mut self, id: &str) -> Result<Option<pb::Authorization>, sqlx::Error> {
        self.stage.authorization(self.conn, id).await
    }

    /// Appends an event with the next sequence number; returns it.
    fn event(
        &mut self,
        kind: EventType,
        account_id: &str,
        authorization_id: &str,
        amount: i64,
        currency: &str,
        code: &str,
    ) -> i64 {
        let new =
            NewEvent { kind, account_id, authorization_id, amount, currency, code, decided_by: Decider::Unspecified };
        self.append(new)
    }

    fn append(&mut self, event: NewEvent<'_>) -> i64 {
        let NewEvent { kind, account_id, authorization_id, amount, currency, code, decided_by } = event;
        self.sequence += 1;
        self.stage.push_event(EventRow {
            sequence: self.sequence,
            kind,
            account_id: account_id.to_owned(),
            authorization_id: authorization_id.to_owned(),
            amount,
            currency: currency.to_owned(),
            code: code.to_owned(),
            decided_by,
        });
        self.sequence
    }

    /// The stored answer for (scope, key) as this batch sees it; see [`idempotency::decode`].
    async fn replay<M: Message + Default>(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<Result<M, LedgerError>>, sqlx::Error> {
        let stored = self.stage.stored_key(self.conn, scope, key).await?;
        Ok(stored.map(|stored| idempotency::decode(&stored.fingerprint, &stored.response, key, fingerprint)))
    }

    fn remember(&mut self, scope: String, key: &str, fingerprint: &str, answer: &impl Message) {
        let stored = StoredKey { fingerprint: fingerprint.to_owned(), response: answer.encode_to_vec() };
        self.stage.put_key(scope, key.to_owned(), stored);
    }
}

/// One event to append.
struct NewEvent<'a> {
    kind: EventType,
    account_id: &'a str,
    authorization_id: &'a str,
    amount: i64,
    currency: &'a str,
    code: &'a str,
    decided_by: Decider,
}

/// The decision rules, in the order a card issuer applies them.
fn decide(
    account: Option<&AccountRow>,
    cmd: &AuthorizeCmd,
    config: &PaymentsConfig,
    stood_in_today: i64,
) -> Result<(), DeclineReason> {
    let Some(account) = account else { return Err(DeclineReason::UnknownAccount) };
    if account.status != AccountStatus::Active {
        return Err(DeclineReason::AccountNotActive);
    }
    match cmd.holder {
        Holder::Active => {}
        Holder::NotActive => return Err(DeclineReason::HolderNotActive),
        Holder::Unavailable => return Err(DeclineReason::IssuerUnavailable),
    }
    if account.currency != cmd.currency {
        return Err(DeclineReason::CurrencyMismatch);
    }
    if cmd.amount > config.max_authorization_amount {
        return Err(DeclineReason::AmountNotAllowed);
    }
    match (cmd.risk, config.risk_fallback) {
        (Risk::Assessed { deny: true, .. }, _) => return Err(DeclineReason::SuspectedFraud),
        (Risk::Unavailable, Fallback::FailClosed) => return Err(DeclineReason::IssuerUnavailable),
        (Risk::Unavailable, Fallback::StandIn) => {
            let over_day =
                i128::from(stood_in_today) + i128::from(cmd.amount) > i128::from(config.stand_in_daily_limit);
            if cmd.amount > config.stand_in_max_amount || over_day {
                return Err(DeclineReason::IssuerUnavailable);
            }
        }
        (Risk::Unavailable, Fallback::FailOpen) | (Risk::Assessed { deny: false, .. }, _) | (Risk::NotConsulted, _) => {
        }
    }
    if i128::from(cmd.amount) > account.available() {
        return Err(DeclineReason::InsufficientFunds);
    }
    Ok(())
}

fn not_found(kind: &'static str, id: &str) -> LedgerError {
    LedgerError::NotFound { kind, id: id.to_owned() }
}

/// An authorization whose account is gone is a broken store: abort the batch rather than guess.
fn missing_account(authorization: &pb::Authorization) -> sqlx::Error {
    sqlx::Error::Decode(
        format!("authorization {} names missing account {}", authorization.id, authorization.account_id).into(),
    )
}

fn duration_us(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

//! The two-phase ledger: accounts, holds that resolve exactly once, idempotency, and the event log.
//!
//! Every change goes through one writer task per process ([`writer`]) that batches concurrent operations into one
//! transaction and one durable commit (group commit, as TigerBeetle batches): an operation is acknowledged only
//! after its batch committed, and a batch commits whole or not at all. Reads go straight to the pool.
//!
//! Several processes may share one PostgreSQL database: each transaction first locks the single `ledger_meta` row,
//! which orders writers across processes. That lock makes every decision a plain read-then-write (no lost update
//! can slip between them) and keeps event sequence numbers gap-free and committed in order.

mod apply;
mod check;
mod conn;
mod idempotency;
mod key_probe;
mod known_keys;
mod metrics;
mod reads;
mod rows;
mod sqlite;
mod stage;
mod statements;
mod sweeper;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;

use courier_proto::payments::v1 as pb;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, watch};

pub use check::{check, has_ledger, CheckSummary, Violation};
pub use known_keys::OpenError;
pub use reads::AuthorizationFilter;
/// For the outbox relay, which reads the events it publishes straight from the store.
pub use rows::{event_from_row, EVENT_COLUMNS};
pub use writer::WriterStats;

use crate::config::PaymentsConfig;
use crate::model::Clock;

/// A new account's terms.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub owner_user_id: String,
    pub currency: String,
    pub credit_limit: i64,
}

/// Funds in.
#[derive(Debug, Clone)]
pub struct CreditCmd {
    pub account_id: String,
    pub amount: i64,
    pub currency: String,
    pub idempotency_key: String,
    pub fingerprint: String,
}

/// What the service learned about the account holder before asking the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// ACTIVE in UserService.
    Active,
    /// Suspended, closed or gone: decline 62.
    NotActive,
    /// UserService did not answer: decline 91.
    Unavailable,
}

/// What the risk assessment said before the ledger decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    /// No risk service is configured.
    NotConsulted,
    /// RiskService answered: `deny` declines with 59.
    Assessed { score: i32, deny: bool },
    /// RiskService did not answer in time, failed, or its circuit is open: the fallback policy decides.
    Unavailable,
}

impl Risk {
    /// Who decided, as the wire and the event record it.
    pub fn decider(self) -> pb::Decider {
        match self {
            Risk::NotConsulted => pb::Decider::Unspecified,
            Risk::Assessed { .. } => pb::Decider::Risk,
            Risk::Unavailable => pb::Decider::StandIn,
        }
    }

    /// The score to record (0 when there was none).
    pub fn score(self) -> i32 {
        match self {
            Risk::Assessed { score, .. } => score,
            _ => 0,
        }
    }
}

/// A hold asked for.
#[derive(Debug, Clone)]
pub struct AuthorizeCmd {
    pub idempotency_key: String,
    pub account_id: String,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    pub metadata: BTreeMap<String, String>,
    pub fingerprint: String,
    pub holder: Holder,
    pub risk: Risk,
}

/// A capture asked for; `amount` 0 captures the whole hold.
#[derive(Debug, Clone)]
pub struct CaptureCmd {
    pub authorization_id: String,
    pub amount: i64,
    pub idempotency_key: String,
    pub fingerprint: String,
}

/// A void asked for.
#[derive(Debug, Clone)]
pub struct VoidCmd {
    pub authorization_id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
}

/// Why an operation did not apply. Declines are not errors: they are authorizations with decision DECLINED.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The account or authorization does not exist.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The operation cannot apply in the current state; `reason` is the ErrorInfo reason.
    #[error("{message}")]
    Rejected { reason: &'static str, message: String },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key {key:?} was already used with a different request")]
    KeyReused { key: String },
    /// The batch holding this operation did not commit; nothing of it was applied.
    #[error("the ledger could not commit: {0}")]
    Unavailable(String),
    /// The batch's COMMIT was sent but its answer was lost, and the ledger could not find out whether it applied.
    /// A retry with the same idempotency key is safe and tells.
    #[error("outcome unknown: retry with the same idempotency key")]
    OutcomeUnknown,
    /// A read failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl LedgerError {
    fn rejected(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected { reason, message: message.into() }
    }
}

/// What the writer applies.
#[derive(Debug)]
enum Op {
    Open(NewAccount),
    Credit(CreditCmd),
    SetStatus { account_id: String, status: pb::AccountStatus },
    Authorize(AuthorizeCmd),
    Capture(CaptureCmd),
    Void(VoidCmd),
    Sweep,
}

/// What an applied operation answers.
#[derive(Debug)]
enum Done {
    Account(pb::Account),
    Credited(pb::CreditAccountResponse),
    Authorization(pb::Authorization),
    Swept(SweepReport),
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Holds past their expiry that were released.
    pub expired: u64,
    /// Idempotency keys older than the retention that were forgotten.
    pub forgotten_keys: u64,
}

/// A handle on the ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    jobs: mpsc::Sender<writer::Job>,
    clock: Clock,
    config: PaymentsConfig,
    /// The last sequence number this process committed; live watchers wake on it.
    committed: watch::Receiver<i64>,
    /// What the writer has done.
    stats: Arc<writer::WriterStats>,
    /// On SQLite, the keys the store may hold (and the file's writer lock); `None` on PostgreSQL.
    known_keys: Option<Arc<known_keys::KnownKeys>>,
    /// The batched read of stored answers before any outbound call (for keys `known_keys` may hold).
    key_probe: key_probe::KeyProbe,
    /// Set when the server shuts down: live event feeds end, so they do not hold the drain open.
    closing: watch::Sender<bool>,
}

impl Ledger {
    /// Starts the writer on `pool` (already migrated) and returns the handle. The writer stops when the last
    /// handle is dropped. On SQLite this process becomes the file's only writer: it fails if another holds the
    /// file's writer lock, and it loads the stored idempotency keys (module `known_keys`).
    pub async fn start(pool: AnyPool, config: PaymentsConfig, clock: Clock) -> Result<Self, OpenError> {
        let url = pool.connect_options().database_url.to_string();
        let known_keys = match courier_kit::db::sqlite_file(&url) {
            Some(file) => Some(Arc::new(known_keys::KnownKeys::open(file).await?)),
            None => None,
        };
        let stats = Arc::new(writer::WriterStats::default());
        let (jobs, committed) =
            writer::spawn(pool.clone(), config.clone(), clock.clone(), stats.clone(), known_keys.clone());
        let closing = watch::Sender::new(false);
        let key_probe = key_probe::KeyProbe::spawn(pool.clone(), known_keys.is_some());
        let inner = Inner { pool, jobs, clock, config, committed, stats, closing, known_keys, key_probe };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// What the writer has committed so far in this process.
    pub fn writer_stats(&self) -> &writer::WriterStats {
        &self.inner.stats
    }

    /// Ends every live event feed (after what it already sent): called when the server starts draining, so
    /// watchers reconnect elsewhere and resume from their last sequence instead of pinning the old process.
    pub fn close_feeds(&self) {
        self.inner.closing.send_replace(true);
    }

    /// The pool, for tools that read the store directly.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// The ledger's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The configuration the ledger runs with.
    pub fn config(&self) -> &PaymentsConfig {
        &self.inner.config
    }

    /// Opens an account (the caller has checked the holder).
    pub async fn open_account(&self, new: NewAccount) -> Result<pb::Account, LedgerError> {
        match self.submit(Op::Open(new)).await? {
            Done::Account(account) => Ok(account),
            other => unexpected(other),
        }
    }

    /// Credits an account.
    pub async fn credit(&self, cmd: CreditCmd) -> Result<pb::CreditAccountResponse, LedgerError> {
        match self.submit(Op::Credit(cmd)).await? {
            Done::Credited(response) => Ok(response),
            other => unexpected(other),
        }
    }

    /// Changes an account's status.
    pub async fn set_status(&self, account_id: String, status: pb::AccountStatus) -> Result<pb::Account, LedgerError> {
        match self.submit(Op::SetStatus { account_id, status }).await? {
            Done::Account(account) => Ok(account),
            other => unexpected(other),
        }
    }

    /// Decides an authorization and stores it, approved or declined.
    pub async fn authorize(&self, cmd: AuthorizeCmd) -> Result<pb::Authorization, LedgerError> {
        self.submit_for_authorization(Op::Authorize(cmd)).await
    }

    /// Decides several authorizations, in order, each as [`Ledger::authorize`] would: all are queued before any
    /// answer is awaited, so they share the writer's batches (AuthorizeStream).
    pub async fn authorize_many(&self, cmds: Vec<AuthorizeCmd>) -> Vec<Result<pb::Authorization, LedgerError>> {
        let mut queued = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            queued.push(self.enqueue(Op::Authorize(cmd)).await);
        }
        let answers = queued.into_iter().map(|queued| async move {
            match queued?.await.map_err(|_| writer_gone())?? {
                Done::Authorization(authorization) => Ok(authorization),
                other => unexpected(other),
            }
        });
        futures::future::join_all(answers).await
    }

    /// Captures a hold.
    pub async fn capture(&self, cmd: CaptureCmd) -> Result<pb::Authorization, LedgerError> {
        self.submit_for_authorization(Op::Capture(cmd)).await
    }

    /// Voids a hold.
    pub async fn void(&self, cmd: VoidCmd) -> Result<pb::Authorization, LedgerError> {
        self.submit_for_authorization(Op::Void(cmd)).await
    }

    /// Releases every hold past its expiry and forgets idempotency keys past their retention, now.
    pub async fn sweep(&self) -> Result<SweepReport, LedgerError> {
        match self.submit(Op::Sweep).await? {
            Done::Swept(report) => Ok(report),
            other => unexpected(other),
        }
    }

    /// Runs [`Ledger::sweep`] every `sweep_interval` until the last handle is dropped.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        sweeper::spawn(Arc::downgrade(&self.inner))
    }

    async fn submit_for_authorization(&self, op: Op) -> Result<pb::Authorization, LedgerError> {
        match self.submit(op).await? {
            Done::Authorization(authorization) => Ok(authorization),
            other => unexpected(other),
        }
    }

    async fn submit(&self, op: Op) -> Result<Done, LedgerError> {
        self.enqueue(op).await?.await.map_err(|_| writer_gone())?
    }

    /// Hands `op` to the writer (waiting while its queue is full); the receiver gets the answer.
    async fn enqueue(&self, op: Op) -> Result<oneshot::Receiver<Result<Done, LedgerError>>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let deadline = courier_kit::deadline::current();
        self.inner.jobs.send(writer::Job { op, reply, deadline }).await.map_err(|_| writer_gone())?;
        Ok(answer)
    }
}

fn writer_gone() -> LedgerError {
    LedgerError::Unavailable("the ledger writer has stopped".into())
}

fn unexpected<T>(done: Done) -> Result<T, LedgerError> {
    Err(LedgerError::Unavailable(format!("the writer answered an unexpected {done:?}")))
}

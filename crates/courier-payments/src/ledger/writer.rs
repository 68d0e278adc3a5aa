//! Group commit: one writer takes every queued operation (up to `max_batch`), applies them in order inside one
//! transaction and commits once, so N concurrent callers share one fsync instead of queueing for N.
//!
//! Answers are sent only after the commit returned: an acknowledged operation is durable. If anything in the batch
//! fails at the database level, the whole transaction rolls back and every caller in it hears UNAVAILABLE, so no
//! operation is ever half-written. Business outcomes (declines, rejections) are answers, not failures: they do not
//! disturb the rest of the batch.
//!
//! On PostgreSQL the writer is a task on the server's runtime, taking a pool connection per batch. On SQLite it
//! is a thread of its own for its whole life, with its own rusqlite connection ([`super::sqlite`]): its statements
//! are plain blocking calls there, with no thread hop per statement, and they stall no other task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use courier_kit::db::before_deadline;

use super::apply::Tx;
use super::conn::{Conn, SqlxConn};
use super::known_keys::KnownKeys;
use super::metrics::Decided;
use super::sqlite::SqliteConn;
use super::stage::{EventRow, Stage};
use super::{Done, LedgerError, Op};
use crate::config::PaymentsConfig;
use crate::model::Clock;

/// One operation and where its answer goes.
pub(super) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done, LedgerError>>,
    /// The caller's deadline, if it has one: nobody waits for the batch beyond the latest of its jobs'.
    pub deadline: Option<courier_kit::deadline::Instant>,
}

/// Counters of the writer's work, for benchmarks (Prometheus metrics: `super::metrics`).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Operations answered from committed transactions.
    pub operations: AtomicU64,
}

/// Starts the writer; returns the queue and the committed-sequence signal.
pub(super) fn spawn(
    pool: AnyPool,
    config: PaymentsConfig,
    clock: Clock,
    stats: Arc<WriterStats>,
    known_keys: Option<Arc<KnownKeys>>,
) -> (mpsc::Sender<Job>, watch::Receiver<i64>) {
    // The queue is bounded: when the database falls behind, callers wait here (and their deadlines apply) rather
    // than piling up unbounded work in memory.
    let (jobs, queue) = mpsc::channel(config.max_batch.max(1) * 4);
    let (committed, watch) = watch::channel(0);
    let url = pool.connect_options().database_url.to_string();
    match courier_kit::db::sqlite_file(&url) {
        Some(file) => {
            let store = OwnSqlite { file: file.to_owned(), conn: None };
            // Its own current-thread runtime runs the same loop; the queue, the answers and the watch are tokio
            // channels, which work across runtimes.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let runtime = runtime.expect("a runtime for the SQLite ledger writer");
            let writer = move || runtime.block_on(run(store, config, clock, queue, committed, stats, known_keys));
            std::thread::Builder::new()
                .name("ledger-writer".into())
                .spawn(writer)
                .expect("a thread for the SQLite ledger writer");
        }
        None => {
            tokio::spawn(run(Pooled(pool), config, clock, queue, committed, stats, known_keys));
        }
    }
    (jobs, watch)
}

/// Where the writer applies and commits its batches.
trait Store {
    /// SQLite or not (the statement texts differ).
    fn sqlite(&self) -> bool;
    /// Applies and commits `batch`; see [`Failed`] for what an error means.
    async fn commit(
        &mut self,
        stage: &mut Stage,
        config: &PaymentsConfig,
        clock: &Clock,
        batch: &[Job],
        deadline: Option<courier_kit::deadline::Instant>,
    ) -> Result<Applied, Failed>;
}

async fn run(
    mut store: impl Store,
    config: PaymentsConfig,
    clock: Clock,
    mut queue: mpsc::Receiver<Job>,
    committed: watch::Sender<i64>,
    stats: Arc<WriterStats>,
    known_keys: Option<Arc<KnownKeys>>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let mut stage = Stage::new(store.sqlite());
    while let Some(first) = queue.recv().await {
        batch.push(first);
        take_queued(&mut queue, &mut batch, max_batch);
        // The batch is not full: wait `commit_linger` for more callers to join it, fewer commits (and fsyncs) for
        // some latency. On SQLite the writer has its thread to itself, so it sleeps there (to the microsecond);
        // the runtime's timer rounds up to milliseconds.
        if !config.commit_linger.is_zero() && batch.len() < max_batch {
            match store.sqlite() {
                true => std::thread::sleep(config.commit_linger),
                false => tokio::time::sleep(config.commit_linger).await,
            }
            take_queued(&mut queue, &mut batch, max_batch);
        }
        // A caller that gave up before its turn is not applied: it was never acknowledged, so either outcome is
        // correct, and skipping spends nothing. (A caller that gives up later finds the result by its key.)
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        // A caller without a deadline waits as long as it takes; otherwise the last caller's deadline bounds the
        // batch, so a database that stopped answering is refused (UNAVAILABLE) while the callers still listen.
        let deadline = match batch.iter().all(|job| job.deadline.is_some()) {
            true => batch.iter().filter_map(|job| job.deadline).max(),
            false => None,
        };
        // A batch that started with almost no time left and timed out says nothing about the database.
        let short_budget = courier_kit::db::is_short_budget(deadline);
        match store.commit(&mut stage, &config, &clock, &batch, deadline).await {
            Ok((answers, last_sequence, decided)) => {
                super::metrics::committed(batch.len(), started.elapsed(), &decided);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
                committed.send_if_modified(|seen| std::mem::replace(seen, last_sequence) != last_sequence);
                if let Some(known) = &known_keys {
                    stage.written_keys().for_each(|(scope, key)| known.insert(scope, key));
                }
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(Failed::NotCommitted(error)) => {
                tracing::error!(target: "courier::ledger", %error, operations = batch.len(), "batch rolled back");
                let message = not_committed_message(&error);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(LedgerError::Unavailable(message.clone())));
                }
                // The database could not be reached: the calls queued behind this batch are refused with it (they
                // were never tried, so nothing of them was applied) instead of each waiting out an attempt of its
                // own behind the last, past its caller's deadline.
                if courier_kit::db::is_unreachable(&error) && !short_budget {
                    while let Ok(job) = queue.try_recv() {
                        let _ = job.reply.send(Err(LedgerError::Unavailable(message.clone())));
                    }
                }
            }
            Err(Failed::Unknown(error)) => {
                tracing::error!(
                    target: "courier::ledger", %error, operations = batch.len(),
                    "the COMMIT's answer was lost and checking whether it applied failed: outcome unknown"
                );
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(LedgerError::OutcomeUnknown));
                }
            }
        }
    }
}

/// Moves what is already queued into `batch`, up to `max_batch` jobs, without waiting.
fn take_queued(queue: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize) {
    while batch.len() < max_batch {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

type Answers = Vec<Result<Done, LedgerError>>;

/// A batch's answers, its last sequence number and the authorizations it decided.
type Applied = (Answers, i64, Vec<Decided>);

/// Why a batch has no answers.
enum Failed {
    /// Proven not committed: nothing of the batch was applied.
    NotCommitted(sqlx::Error),
    /// The COMMIT was sent, its answer was lost, and finding out whether it applied failed too.
    Unknown(sqlx::Error),
}

/// Applies every operation of `batch` on `conn`, inside the transaction the caller opened, up to (not including)
/// the COMMIT.
async fn apply(
    conn: &mut impl Conn,
    stage: &mut Stage,
    config: &PaymentsConfig,
    clock: &Clock,
    batch: &[Job],
) -> Result<Applied, sqlx::Error> {
    let mut tx = Tx::begin(conn, stage, config, clock.now_us()).await?;
    tx.prefetch(batch.iter().map(|job| &job.op)).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        answers.push(tx.apply(&job.op).await?);
    }
    let (last_sequence, decided) = tx.finish().await?;
    Ok((answers, last_sequence, decided))
}

/// The SQLite writer's own connection to `file`, opened when a batch needs it and kept while batches commit. This
/// process is the file's only writer, so the connection's page cache and prepared statements stay valid from
/// batch to batch. Any failure closes it, which rolls back whatever transaction SQLite still holds for it (after
/// SQLITE_FULL, say), and the next batch opens a fresh one.
struct OwnSqlite {
    file: String,
    conn: Option<SqliteConn>,
}

impl Store for OwnSqlite {
    fn sqlite(&self) -> bool {
        true
    }

    /// Never cut short by a deadline: every statement is a blocking call that either finishes or fails, so when
    /// this returns the batch committed or it did not, and a failed COMMIT on SQLite (which runs in this process)
    /// did not.
    async fn commit(
        &mut self,
        stage: &mut Stage,
        config: &PaymentsConfig,
        clock: &Clock,
        batch: &[Job],
        _deadline: Option<courier_kit::deadline::Instant>,
    ) -> Result<Applied, Failed> {
        let mut conn = match self.conn.take() {
            // A connection is kept only after a COMMIT that left no transaction open; check anyway.
            Some(conn) if conn.is_autocommit() => conn,
            _ => SqliteConn::open(&self.file).map_err(Failed::NotCommitted)?,
        };
        let attempt = async {
            // IMMEDIATE: the write lock first, as the ledger_meta UPDATE would take it anyway.
            conn.execute("BEGIN IMMEDIATE", &[]).await?;
            let applied = apply(&mut conn, stage, config, clock, batch).await?;
            conn.execute("COMMIT", &[]).await?;
            Ok(applied)
        };
        match attempt.await {
            Ok(_) if !conn.is_autocommit() => {
                let message = "the commit left the connection inside a transaction; it was rolled back";
                Err(Failed::NotCommitted(sqlx::Error::Protocol(message.into())))
            }
            Ok(applied) => {
                tracing::trace!(target: "courier::ledger", operations = batch.len(), "batch committed");
                self.conn = Some(conn);
                Ok(applied)
            }
            Err(error) => Err(Failed::NotCommitted(error)),
        }
    }
}

/// Batches on pool connections (PostgreSQL), one per batch; the pool's ping replaces one the server closed.
struct Pooled(AnyPool);

impl Store for Pooled {
    fn sqlite(&self) -> bool {
        false
    }

    /// Any failure discards the connection.
    async fn commit(
        &mut self,
        stage: &mut Stage,
        config: &PaymentsConfig,
        clock: &Clock,
        batch: &[Job],
        deadline: Option<courier_kit::deadline::Instant>,
    ) -> Result<Applied, Failed> {
        let pool = &self.0;
        let acquire = || before_deadline(deadline, pool.acquire());
        let mut conn = acquire().await.map_err(Failed::NotCommitted)?;
        if conn.is_in_transaction() {
            // The pool closes such connections when they come back (courier_kit::db); never build on one.
            discard(conn).await;
            conn = acquire().await.map_err(Failed::NotCommitted)?;
        }
        let attempt = attempt(&mut conn, stage, config, clock, batch, deadline).await;
        let error = match attempt {
            // A COMMIT that "succeeded" with the connection still in a transaction was a RELEASE inside a
            // transaction that never ends: nothing is durable. Closing the connection rolls that transaction back.
            Ok(_) if conn.is_in_transaction() => {
                discard(conn).await;
                let message = "the commit left the connection inside a transaction; it was rolled back";
                return Err(Failed::NotCommitted(sqlx::Error::Protocol(message.into())));
            }
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        // Any failure: this connection's state (its transaction depth, an aborted or half-open transaction, a
        // broken socket) is no longer trusted. Closing it ends whatever transaction the database still holds for
        // it, and the next batch gets a fresh connection, so the writer serves again as soon as the database can.
        discard(conn).await;
        match error {
            Attempt::BeforeCommit(error) => Err(Failed::NotCommitted(error)),
            // An error the database answered (a serialization failure, a full disk) means it did not commit.
            Attempt::Commit(error @ sqlx::Error::Database(_), _) => Err(Failed::NotCommitted(error)),
            // The connection broke during COMMIT: it may have committed. Ask the database.
            Attempt::Commit(error, done) => match stage.last_event() {
                None => Err(Failed::NotCommitted(error)),
                Some(last) => match committed_retrying(pool, last).await {
                    Ok(true) => {
                        tracing::warn!(target: "courier::ledger", %error, "the COMMIT's answer was lost; it had committed");
                        Ok(done)
                    }
                    Ok(false) => Err(Failed::NotCommitted(error)),
                    Err(check) => {
                        tracing::warn!(target: "courier::ledger", %check, "checking whether the batch committed failed");
                        Err(Failed::Unknown(error))
                    }
                },
            },
        }
    }
}

/// Where an attempt on a pool connection failed.
enum Attempt {
    /// Before COMMIT was sent: the transaction never committed.
    BeforeCommit(sqlx::Error),
    /// COMMIT itself failed; the answers hold if it committed after all.
    Commit(sqlx::Error, Applied),
}

/// Closes a pooled connection instead of returning it (the pool opens a replacement when needed).
async fn discard(conn: sqlx::pool::PoolConnection<sqlx::Any>) {
    let _ = conn.detach().close_hard().await;
}

/// Applies the batch in one transaction on `conn` and commits it. Over the network everything before the COMMIT
/// gives up at `deadline` (nothing is applied: the connection is then discarded, which rolls the transaction
/// back), and so does the COMMIT, whose fate [`Pooled::commit`] then asks the database.
async fn attempt(
    conn: &mut sqlx::AnyConnection,
    stage: &mut Stage,
    config: &PaymentsConfig,
    clock: &Clock,
    batch: &[Job],
    deadline: Option<courier_kit::deadline::Instant>,
) -> Result<Applied, Attempt> {
    let before = Attempt::BeforeCommit;
    let mut transaction = before_deadline(deadline, conn.begin()).await.map_err(before)?;
    let mut open = SqlxConn(&mut transaction);
    let staged = before_deadline(deadline, apply(&mut open, stage, config, clock, batch));
    let (answers, last_sequence, decided) = staged.await.map_err(before)?;
    if let Err(error) = before_deadline(deadline, transaction.commit()).await {
        return Err(Attempt::Commit(error, (answers, last_sequence, decided)));
    }
    tracing::trace!(target: "courier::ledger", operations = batch.len(), last_sequence, "batch committed");
    Ok((answers, last_sequence, decided))
}

/// How long the writer keeps asking whether a batch whose COMMIT answer was lost committed: long enough to ride
/// out a brief network cut, short enough that the callers (Authorize's default budget is 250 ms) still hear an
/// answer; past it they hear "outcome unknown".
const CHECK_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// [`committed`], retried until [`CHECK_FOR`] has passed.
async fn committed_retrying(pool: &AnyPool, last: &EventRow) -> Result<bool, sqlx::Error> {
    let started = std::time::Instant::now();
    loop {
        let attempt = tokio::time::timeout(CHECK_FOR, committed(pool, last)).await;
        match attempt {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) if started.elapsed() >= CHECK_FOR => return Err(error),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
            Ok(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
        }
    }
}

/// Whether the batch whose last event is `last` committed, asked on a fresh connection while holding the ledger
/// lock (so a COMMIT still in flight on the server has finished, one way or the other). Sequence numbers are
/// gap-free, so after a failed batch another writer reuses them: the event at that sequence must be this batch's.
async fn committed(pool: &AnyPool, last: &EventRow) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut transaction = conn.begin().await?;
    sqlx::query("UPDATE ledger_meta SET last_sequence = last_sequence WHERE id = 1").execute(&mut *transaction).await?;
    let row: Option<(i64, String, String, i64)> =
        sqlx::query_as("SELECT type, account_id, authorization_id, amount FROM events WHERE sequence = $1")
            .bind(last.sequence)
            .fetch_optional(&mut *transaction)
            .await?;
    transaction.rollback().await?;
    Ok(row.is_some_and(|(kind, account_id, authorization_id, amount)| {
        kind == last.kind as i64
            && account_id == last.account_id
            && authorization_id == last.authorization_id
            && amount == last.amount
    }))
}

/// What callers of a batch that did not commit hear; a full disk says so, since freeing space is the fix.
fn not_committed_message(error: &sqlx::Error) -> String {
    let disk_full = match error {
        // SQLITE_FULL is 13 (extended codes keep it in the low byte); PostgreSQL's disk_full is 53100.
        sqlx::Error::Database(e) => {
            e.code().is_some_and(|code| code == "53100" || code.parse::<i32>().is_ok_and(|c| c & 0xff == 13))
        }
        _ => false,
    };
    if disk_full {
        "the ledger's disk is full: the batch did not commit and nothing was applied; retry once space is freed".into()
    } else {
        "the batch did not commit: nothing was applied".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::NewAccount;
    use std::time::Duration;

    fn opens(count: usize) -> Vec<Job> {
        let open = || NewAccount { owner_user_id: "u".into(), currency: "EUR".into(), credit_limit: 0 };
        // The answers are not listened to: the test reads what `commit` returns.
        (0..count).map(|_| Job { op: Op::Open(open()), reply: oneshot::channel().0, deadline: None }).collect()
    }

    /// With `commit_linger`, callers that arrive while the writer waits share the first one's commit; without it,
    /// a lone caller commits at once.
    #[tokio::test]
    async fn a_lingering_writer_commits_late_arrivals_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("courier.db").display());
        let pool = crate::open_store(&courier_kit::db::DbConfig::new(url)).await.unwrap();
        // Without a linger the three late callers may share one commit or not, as the writer thread happens to
        // wake between their sends: the claim is only that the lone first caller committed alone and at once.
        for (linger, commits) in [(Duration::ZERO, 2..=4), (Duration::from_secs(1), 1..=1)] {
            let config = PaymentsConfig { commit_linger: linger, ..PaymentsConfig::default() };
            let stats = Arc::new(WriterStats::default());
            let (jobs, _) = spawn(pool.clone(), config, Clock::system(), stats.clone(), None);
            let submit = |count| {
                opens(count).into_iter().map(|mut job| {
                    let (reply, answer) = oneshot::channel();
                    job.reply = reply;
                    (job, answer)
                })
            };
            let (first, first_answer) = submit(1).next().unwrap();
            jobs.send(first).await.unwrap();
            let started = std::time::Instant::now();
            if linger.is_zero() {
                first_answer.await.unwrap().unwrap();
                assert_eq!(stats.commits.load(Ordering::Relaxed), 1, "the lone caller committed alone");
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut answers = Vec::new();
            for (job, answer) in submit(3) {
                jobs.send(job).await.unwrap();
                answers.push(answer);
            }
            for answer in answers {
                answer.await.unwrap().unwrap();
            }
            let committed = stats.commits.load(Ordering::Relaxed);
            assert!(commits.contains(&committed), "linger {linger:?}: {committed} commits, expected {commits:?}");
            assert_eq!(stats.operations.load(Ordering::Relaxed), 4);
            if !linger.is_zero() {
                assert!(started.elapsed() >= linger - Duration::from_millis(20), "answered only after the linger");
            }
        }
    }

    #[tokio::test]
    async fn a_full_disk_rolls_the_sqlite_batch_back_and_the_next_batch_commits_on_a_fresh_connection() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("courier.db").to_str().unwrap().to_owned();
        let pool = crate::open_store(&courier_kit::db::DbConfig::new(format!("sqlite://{file}"))).await.unwrap();
        let mut full = SqliteConn::open(&file).unwrap();
        // The file may not grow past its size: what a full disk is to SQLite (SQLITE_FULL).
        let pages = full.scalar("PRAGMA page_count", &[]).await.unwrap().unwrap();
        full.fetch(&format!("PRAGMA max_page_count = {pages}"), &[]).await.unwrap();
        let mut store = OwnSqlite { file, conn: Some(full) };
        let (config, clock, mut stage) = (PaymentsConfig::default(), Clock::system(), Stage::new(true));

        let Err(Failed::NotCommitted(error)) = store.commit(&mut stage, &config, &clock, &opens(500), None).await
        else {
            panic!("a batch that does not fit must not commit");
        };
        assert!(not_committed_message(&error).contains("disk is full"), "{error}");
        assert!(store.conn.is_none(), "the failed batch's connection was closed");

        let Ok((answers, _, _)) = store.commit(&mut stage, &config, &clock, &opens(3), None).await else {
            panic!("the next batch commits on a fresh connection");
        };
        assert_eq!(answers.len(), 3);
        assert!(store.conn.as_ref().is_some_and(SqliteConn::is_autocommit), "kept for the next batch, idle");
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(&pool).await.unwrap();
        assert_eq!(accounts, 3, "nothing of the failed batch was applied");
    }
}

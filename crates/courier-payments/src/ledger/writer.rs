//! Group commit: one task takes every queued operation (up to `max_batch`), applies them in order inside one
//! transaction and commits once, so N concurrent callers share one fsync instead of queueing for N.
//!
//! Answers are sent only after the commit returned: an acknowledged operation is durable. If anything in the batch
//! fails at the database level, the whole transaction rolls back and every caller in it hears UNAVAILABLE, so no
//! operation is ever half-written. Business outcomes (declines, rejections) are answers, not failures: they do not
//! disturb the rest of the batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::apply::Tx;
use super::metrics::Decided;
use super::stage::Stage;
use super::{Done, LedgerError, Op};
use crate::config::PaymentsConfig;
use crate::model::Clock;

/// One operation and where its answer goes.
pub(super) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done, LedgerError>>,
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
) -> (mpsc::Sender<Job>, watch::Receiver<i64>) {
    // The queue is bounded: when the database falls behind, callers wait here (and their deadlines apply) rather
    // than piling up unbounded work in memory.
    let (jobs, queue) = mpsc::channel(config.max_batch.max(1) * 4);
    let (committed, watch) = watch::channel(0);
    tokio::spawn(run(pool, config, clock, queue, committed, stats));
    (jobs, watch)
}

async fn run(
    pool: AnyPool,
    config: PaymentsConfig,
    clock: Clock,
    mut queue: mpsc::Receiver<Job>,
    committed: watch::Sender<i64>,
    stats: Arc<WriterStats>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let mut stage = Stage::new(courier_kit::db::is_sqlite(&pool));
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A caller that gave up before its turn is not applied: it was never acknowledged, so either outcome is
        // correct, and skipping spends nothing. (A caller that gives up later finds the result by its key.)
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        match commit(&pool, &mut stage, &config, &clock, &batch).await {
            Ok((answers, last_sequence, decided)) => {
                super::metrics::committed(batch.len(), started.elapsed(), &decided);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
                committed.send_if_modified(|seen| std::mem::replace(seen, last_sequence) != last_sequence);
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => {
                tracing::error!(target: "courier::ledger", %error, operations = batch.len(), "batch rolled back");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(LedgerError::Unavailable("the batch did not commit".into())));
                }
            }
        }
    }
}

type Answers = Vec<Result<Done, LedgerError>>;

async fn commit(
    pool: &AnyPool,
    stage: &mut Stage,
    config: &PaymentsConfig,
    clock: &Clock,
    batch: &[Job],
) -> Result<(Answers, i64, Vec<Decided>), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut transaction = conn.begin().await?;
    let mut tx = Tx::begin(&mut transaction, stage, config, clock.now_us()).await?;
    tx.prefetch(batch.iter().map(|job| &job.op)).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        answers.push(tx.apply(&job.op).await?);
    }
    let (last_sequence, decided) = tx.finish().await?;
    transaction.commit().await?;
    tracing::trace!(target: "courier::ledger", operations = batch.len(), last_sequence, "batch committed");
    Ok((answers, last_sequence, decided))
}

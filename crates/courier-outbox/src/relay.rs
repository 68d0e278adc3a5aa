//! The relay: one task per process that publishes the outbox in sequence order.
//!
//! Each round takes the oldest pending rows (up to `batch`), publishes them, waits for the broker's confirms and
//! only then stamps the confirmed prefix `published_at_us`. A failure (broker down, connection cut) keeps the
//! rest pending: the relay reconnects with backoff and carries on from the first unconfirmed event, so the broker
//! sees every event in order, possibly twice across a failure (same message id), never with a gap.
//!
//! Only one relay publishes per database, whatever the number of replicas running with the same configuration:
//! on PostgreSQL it holds a session advisory lock (released by the server when its connection dies), on SQLite
//! an exclusive flock(2) on `<database file>.outbox-lock` (released by the kernel when the process dies). The
//! others stand by and retry the lock every second.
//!
//! The relay never slows Authorize: it reads with its own queries outside the writer, and the writer only adds
//! one INSERT ... SELECT per batch.

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_payments::ledger::{event_from_row, EVENT_COLUMNS};
use courier_proto::payments::v1 as pb;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::config::{Broker, OutboxConfig};
use crate::metrics::RELAY;
use crate::sink::Sink;

/// The first half of the relay's advisory lock key on PostgreSQL ("cobx"); the second is the schema's hash.
const PG_LOCK_CLASS: i32 = 0x636f_6278;

/// How often a standby relay tries for the lock, and how often the holder checks its lock connection.
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// Backoff after a failed round, doubling up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often published rows past the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration key `outbox.{key}`: {message}")]
pub struct StartError {
    pub key: &'static str,
    pub message: String,
}

/// Starts the relay for `config` on `pool` (the payments store at `database_url`), unless the broker is `none`.
///
/// A URL that is not one of the broker's is always an error; an unreachable broker is an error when `required`,
/// else a warning (the relay keeps trying and the backlog grows until the broker answers).
pub async fn start(
    pool: AnyPool,
    database_url: &str,
    config: OutboxConfig,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartError> {
    if config.broker == Broker::None {
        return Ok(None);
    }
    Sink::check_url(&config).map_err(|message| StartError { key: "url", message })?;
    let sink = match Sink::connect(&config).await {
        Ok(sink) => Some(sink),
        Err(error) if config.required => {
            let message = format!("{:?} broker at {} is unreachable: {error}", config.broker, redact(&config.url));
            return Err(StartError { key: "url", message });
        }
        Err(error) => {
            tracing::warn!(
                target: "courier::outbox", broker = ?config.broker, url = %redact(&config.url), %error,
                "outbox broker unreachable at start; events queue in the outbox until it answers \
                 (set `outbox.required = true` to refuse to start instead)"
            );
            None
        }
    };
    let lock = Lock::new(&pool, database_url);
    Ok(Some(tokio::spawn(run(pool, config, sink, lock))))
}

async fn run(pool: AnyPool, config: OutboxConfig, mut sink: Option<Sink>, mut lock: Lock) {
    let broker = format!("{:?}", config.broker).to_ascii_lowercase();
    let mut backoff = BACKOFF_MIN;
    let mut pruned_at = std::time::Instant::now() - PRUNE_INTERVAL;
    loop {
        if !lock.hold(&pool).await {
            tokio::time::sleep(LOCK_RETRY).await;
            continue;
        }
        if let Err(error) = backlog(&pool).await {
            tracing::warn!(target: "courier::outbox", %error, "reading the outbox backlog failed");
        }
        if sink.is_none() {
            match Sink::connect(&config).await {
                Ok(connected) => {
                    tracing::info!(target: "courier::outbox", %broker, "outbox broker connected");
                    sink = Some(connected);
                }
                Err(error) => {
                    RELAY.errors.with_label_values(&[broker.as_str()]).inc();
                    tracing::warn!(target: "courier::outbox", %broker, %error, "outbox broker unreachable");
                    backoff = wait(backoff).await;
                    continue;
                }
            }
        }
        let events = match pending(&pool, config.batch.max(1)).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(target: "courier::outbox", %error, "reading the outbox failed");
                backoff = wait(backoff).await;
                continue;
            }
        };
        if events.is_empty() {
            // Once a minute, or as often as a shorter retention asks (it is checked when the relay is idle).
            if pruned_at.elapsed() >= PRUNE_INTERVAL.min(config.retention) {
                pruned_at = std::time::Instant::now();
                if let Err(error) = prune(&pool, config.retention).await {
                    tracing::warn!(target: "courier::outbox", %error, "pruning the outbox failed");
                }
            }
            tokio::time::sleep(config.poll_interval).await;
            continue;
        }
        let started = std::time::Instant::now();
        let (confirmed, error) = sink.as_ref().expect("connected").publish(&events, &config).await;
        if confirmed > 0 {
            let (first, last) = (events[0].sequence, events[confirmed - 1].sequence);
            if let Err(error) = mark(&pool, first, last).await {
                // Confirmed but not stamped: published again next round, with the same ids (at least once).
                tracing::warn!(target: "courier::outbox", %error, "stamping published outbox rows failed");
            }
            RELAY.published.with_label_values(&[broker.as_str()]).inc_by(confirmed as u64);
        }
        match error {
            None => {
                RELAY.publish_seconds.observe(started.elapsed().as_secs_f64());
                backoff = BACKOFF_MIN;
            }
            Some(error) => {
                RELAY.errors.with_label_values(&[broker.as_str()]).inc();
                tracing::warn!(target: "courier::outbox", %broker, %error, confirmed, "publishing to the broker failed; reconnecting");
                sink = None;
                backoff = wait(backoff).await;
            }
        }
    }
}

async fn wait(backoff: Duration) -> Duration {
    tokio::time::sleep(backoff).await;
    (backoff * 2).min(BACKOFF_MAX)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The oldest pending events, in sequence order.
async fn pending(pool: &AnyPool, limit: usize) -> Result<Vec<pb::Event>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE sequence IN \
         (SELECT sequence FROM outbox WHERE published_at_us IS NULL ORDER BY sequence LIMIT {limit}) \
         ORDER BY sequence"
    );
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    rows.iter().map(event_from_row).collect()
}

async fn mark(pool: &AnyPool, first: i64, last: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET published_at_us = $1 WHERE published_at_us IS NULL AND sequence >= $2 AND sequence <= $3",
    )
    .bind(now_us())
    .bind(first)
    .bind(last)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets the backlog gauges.
async fn backlog(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n, MIN(created_at_us) AS oldest FROM outbox WHERE published_at_us IS NULL")
            .fetch_one(pool)
            .await?;
    let count: i64 = row.try_get("n")?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    RELAY.pending.with_label_values(&[] as &[&str]).set(count);
    let age = oldest.map_or(0.0, |oldest| (now_us() - oldest).max(0) as f64 / 1e6);
    RELAY.oldest.with_label_values(&[] as &[&str]).set(age);
    Ok(())
}

async fn prune(pool: &AnyPool, retention: Duration) -> Result<(), sqlx::Error> {
    let before = now_us() - retention.as_micros() as i64;
    sqlx::query("DELETE FROM outbox WHERE published_at_us IS NOT NULL AND published_at_us < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(())
}

/// One relay per database (see the module documentation).
enum Lock {
    Postgres { held: Option<AnyConnection>, checked: std::time::Instant },
    Sqlite { path: std::path::PathBuf, held: Option<File> },
}

impl Lock {
    fn new(pool: &AnyPool, database_url: &str) -> Self {
        if courier_kit::db::is_sqlite(pool) {
            let file = courier_kit::db::sqlite_file(database_url).unwrap_or(database_url);
            Lock::Sqlite { path: format!("{file}.outbox-lock").into(), held: None }
        } else {
            Lock::Postgres { held: None, checked: std::time::Instant::now() }
        }
    }

    /// Whether this relay holds the lock (taking it if it is free).
    async fn hold(&mut self, pool: &AnyPool) -> bool {
        match self {
            Lock::Sqlite { path, held } => {
                if held.is_none() {
                    *held = courier_kit::db::try_lock_exclusive(path).ok().flatten();
                    if held.is_some() {
                        tracing::info!(target: "courier::outbox", lock = %path.display(), "outbox relay active");
                    }
                }
                held.is_some()
            }
            Lock::Postgres { held, checked } => {
                if let Some(conn) = held.as_mut() {
                    if checked.elapsed() < LOCK_RETRY {
                        return true;
                    }
                    *checked = std::time::Instant::now();
                    // The lock lives as long as its session: a dead connection means it is gone.
                    if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                        return true;
                    }
                    tracing::warn!(target: "courier::outbox", "outbox relay lost its lock connection");
                    *held = None;
                }
                let Ok(mut conn) = pool.acquire().await else { return false };
                // Advisory locks are per database, and courier's tables live in a schema (the search path): the key
                // names both, so deployments in different schemas of one database each get their relay.
                let locked: Result<bool, _> =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                        .bind(PG_LOCK_CLASS)
                        .fetch_one(&mut *conn)
                        .await;
                if matches!(locked, Ok(true)) {
                    tracing::info!(target: "courier::outbox", "outbox relay active (advisory lock taken)");
                    *checked = std::time::Instant::now();
                    // Out of the pool: the lock is this session's, for the relay's whole life.
                    *held = Some(conn.detach());
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

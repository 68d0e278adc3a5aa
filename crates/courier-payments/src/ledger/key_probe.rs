//! The read of stored answers that Authorize makes before any outbound call (a retry must not reach risk twice),
//! batched across callers the way the writer batches commits.
//!
//! Nearly every Authorize is a first attempt whose key the store does not hold, yet each one asked the database:
//! on PostgreSQL, where no in-memory filter can know what other processes wrote, a round trip and a statement per
//! call, measured at a third of the server's CPU per Authorize and a fifth of the database's. Here the lookups that
//! arrive while earlier ones are in flight go to the database together, as one statement of (scope, key) terms
//! (the writer's own prefetch statement), so N concurrent callers cost one statement.
//!
//! At most [`IN_FLIGHT`] statements run at once; while all of them are out, lookups queue and form the next, larger
//! batch, so a slow database gets fewer, bigger statements rather than more of them.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::conn::{Columns, Conn, Param, SqlxConn};
use super::stage::{padded, StoredKey};
use super::statements::{Statement, StatementTexts};

/// Statements in flight at once (each holds a pool connection while it runs).
const IN_FLIGHT: usize = 4;

/// Most keys one statement asks for (the writer's statement shapes go this far).
const MAX_KEYS: usize = 256;

/// The queue's bound: past it callers wait for room (with their deadlines) instead of piling up in memory.
const QUEUE: usize = 4 * MAX_KEYS;

type Reply = oneshot::Sender<Result<Option<StoredKey>, sqlx::Error>>;

/// One caller's lookup.
struct Lookup {
    scope: String,
    key: String,
    deadline: Option<courier_kit::deadline::Instant>,
    reply: Reply,
}

/// The handle: send a lookup, hear its stored answer. The task ends when the last handle is dropped.
pub(super) struct KeyProbe {
    queue: mpsc::Sender<Lookup>,
}

impl KeyProbe {
    /// Starts the batching task on the current runtime.
    pub fn spawn(pool: AnyPool, sqlite: bool) -> Self {
        let (queue, lookups) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, StatementTexts::new(sqlite), lookups));
        Self { queue }
    }

    /// The stored answer of `(scope, key)`, `None` when the store holds no such key.
    pub async fn stored(&self, scope: String, key: &str) -> Result<Option<StoredKey>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let deadline = courier_kit::deadline::current();
        let lookup = Lookup { scope, key: key.to_owned(), deadline, reply };
        self.queue.send(lookup).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn run(pool: AnyPool, mut texts: StatementTexts, mut lookups: mpsc::Receiver<Lookup>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = lookups.recv().await {
        // Taken before the batch is gathered: while every statement is out, the queue fills and the next batch
        // is larger.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_KEYS {
            match lookups.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        // A caller that gave up is not asked for.
        batch.retain(|lookup| !lookup.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let sql = texts.get(Statement::SelectKeys, batch.len().next_power_of_two()).to_owned();
        let pool = pool.clone();
        tokio::spawn(async move {
            let _permit = permit;
            answer(&pool, &sql, batch).await;
        });
    }
}

/// Runs one statement for `batch` and answers each lookup; a failure is every caller's error.
async fn answer(pool: &AnyPool, sql: &str, batch: Vec<Lookup>) {
    // Nobody waits beyond the latest caller's deadline (a caller without one waits as long as it takes).
    let deadline = match batch.iter().all(|lookup| lookup.deadline.is_some()) {
        true => batch.iter().filter_map(|lookup| lookup.deadline).max(),
        false => None,
    };
    let wanted: Vec<(&str, &str)> = batch.iter().map(|lookup| (lookup.scope.as_str(), lookup.key.as_str())).collect();
    let found = courier_kit::db::before_deadline(deadline, fetch(pool, sql, &padded(&wanted))).await;
    match found {
        Ok(found) => {
            for lookup in batch {
                // Cloned, not taken: two lookups of one key (a retry racing its first attempt) may share a batch.
                let stored = found.get(&(lookup.scope, lookup.key)).cloned();
                let _ = lookup.reply.send(Ok(stored));
            }
        }
        Err(error) => {
            for lookup in batch {
                let _ = lookup.reply.send(Err(copy_of(&error)));
            }
        }
    }
}

/// An error each caller of a failed batch can own (sqlx errors are not `Clone`), classified as the original:
/// unreachable (a cut connection, a timeout: UNAVAILABLE) or not (INTERNAL), with its message.
fn copy_of(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        error if courier_kit::db::is_unreachable(error) => sqlx::Error::Protocol(error.to_string()),
        error => sqlx::Error::Decode(error.to_string().into()),
    }
}

async fn fetch(
    pool: &AnyPool,
    sql: &str,
    wanted: &[(&str, &str)],
) -> Result<HashMap<(String, String), StoredKey>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let params: Vec<Param<'_>> =
        wanted.iter().flat_map(|(scope, key)| [Param::Text(scope), Param::Text(key)]).collect();
    let rows = SqlxConn(&mut conn).fetch(sql, &params).await?;
    rows.iter()
        .map(|row| {
            let stored = StoredKey { fingerprint: row.text("fingerprint")?, response: row.blob("response")? };
            Ok(((row.text("scope")?, row.text("idem_key")?), stored))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores keys k0, k2, k4, ... of scope `merchant:m` in `pool`, each answered with its own fingerprint.
    async fn seed(pool: &AnyPool) {
        for n in (0..100).step_by(2) {
            sqlx::query("INSERT INTO idempotency_keys VALUES ($1, $2, $3, $4, 0)")
                .bind("merchant:m")
                .bind(format!("k{n}"))
                .bind(format!("f{n}"))
                .bind(vec![n as u8])
                .execute(pool)
                .await
                .unwrap();
        }
    }

    async fn sqlite_store(dir: &std::path::Path) -> AnyPool {
        let url = format!("sqlite://{}", dir.join("courier.db").display());
        let pool = crate::open_store(&courier_kit::db::DbConfig::new(url)).await.unwrap();
        seed(&pool).await;
        pool
    }

    /// Far more lookups than statements in flight, keys repeated: answered in batches, each with its own row.
    async fn each_hears_its_own_key(pool: AnyPool, sqlite: bool) {
        let probe = Arc::new(KeyProbe::spawn(pool, sqlite));
        let lookups = (0..400).map(|n| {
            let probe = probe.clone();
            async move { (n % 100, probe.stored("merchant:m".into(), &format!("k{}", n % 100)).await.unwrap()) }
        });
        for (n, stored) in futures::future::join_all(lookups).await {
            match stored {
                Some(stored) => {
                    assert_eq!(n % 2, 0, "k{n} is not stored");
                    assert_eq!((stored.fingerprint, stored.response), (format!("f{n}"), vec![n as u8]));
                }
                None => assert_eq!(n % 2, 1, "k{n} is stored"),
            }
        }
        // Same key, other scope: not found.
        assert!(probe.stored("merchant:other".into(), "k0").await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_each_hear_their_own_key() {
        let dir = tempfile::tempdir().unwrap();
        each_hears_its_own_key(sqlite_store(dir.path()).await, true).await;
    }

    /// The PostgreSQL statement (a join with a VALUES list), on a database of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs postgres"]
    async fn postgres_concurrent_lookups_each_hear_their_own_key() {
        // The server of the suites' database (COURIER_TEST_POSTGRES_URL, as courier-tests reads it).
        let url =
            std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or("postgres://postgres@127.0.0.1:5432/test".into());
        let server = url.rsplit_once('/').map_or(url.as_str(), |(server, _)| server);
        // A plain pool on the server's own database, to create and drop the test's (no migrations there).
        sqlx::any::install_default_drivers();
        let admin = AnyPool::connect(&format!("{server}/postgres")).await;
        let admin = admin.expect("PostgreSQL answers (this test runs under --ignored)");
        let database = format!("courier_probe_{}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&admin).await.unwrap();
        let pool = crate::open_store(&courier_kit::db::DbConfig::new(format!("{server}/{database}"))).await.unwrap();
        seed(&pool).await;
        each_hears_its_own_key(pool.clone(), false).await;
        pool.close().await;
        sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)")).execute(&admin).await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_store_is_every_callers_unreachable_error() {
        let dir = tempfile::tempdir().unwrap();
        let pool = sqlite_store(dir.path()).await;
        let probe = KeyProbe::spawn(pool.clone(), true);
        pool.close().await;
        let Err(error) = probe.stored("merchant:m".into(), "k0").await else { panic!("a closed store answered") };
        assert!(courier_kit::db::is_unreachable(&error), "UNAVAILABLE to the caller, not INTERNAL: {error:?}");
    }
}

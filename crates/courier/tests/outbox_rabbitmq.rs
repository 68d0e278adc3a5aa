//! The outbox relay against a real RabbitMQ at 127.0.0.1:5672 (`#[ignore = "needs RabbitMQ"]`): every committed
//! event once per message id (the consumer dedupes, as docs/outbox.md says consumers must), in sequence order; a
//! rolled-back batch publishes nothing; the broker cut for 10 s under Authorize load; SIGKILL between commit and
//! confirm, 10 rounds. Each test has its own exchange and queue, deleted at the end.

use std::collections::BTreeMap;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_proto::payments::v1 as pb;
use courier_tests::outbox::{last_sequence_at, patient, AuthorizeLoad, PERMISSIVE_RULES};
use courier_tests::payments::authorize_request;
use courier_tests::process::{funded_account, ledger_check, CourierProcess};
use courier_tests::proxy::Proxy;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const RABBITMQ: &str = "127.0.0.1:5672";

fn up(data_dir: &str, addr: &str, exchange: &str) -> CourierProcess {
    up_on(data_dir, addr, exchange, &[])
}

fn up_on(data_dir: &str, addr: &str, exchange: &str, store: &[&str]) -> CourierProcess {
    let rules = std::path::Path::new(data_dir).join("permissive-rules.toml");
    std::fs::write(&rules, PERMISSIVE_RULES).expect("write rules");
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let mut args = vec!["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    args.extend_from_slice(store);
    let env = [
        ("COURIER_DATABASE_MAX_CONNECTIONS", "8"),
        ("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "10min"),
        ("COURIER_OUTBOX__BROKER", "rabbitmq"),
        ("COURIER_OUTBOX__URL", url.as_str()),
        ("COURIER_OUTBOX__EXCHANGE", exchange),
        ("COURIER_RISK__RULES_FILE", rules.to_str().expect("utf-8 path")),
        ("COURIER_PAYMENTS__USERS_TIMEOUT", "5s"),
        ("COURIER_PAYMENTS__RISK_TIMEOUT", "5s"),
    ];
    CourierProcess::start_with_env(BIN, &args, &env)
}

async fn store(data_dir: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{data_dir}/courier.db");
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("open the store")
}

async fn last_sequence(data_dir: &str) -> i64 {
    last_sequence_at(&format!("sqlite://{data_dir}/courier.db")).await
}

/// A consumer of everything published to the test's exchange: (message id, event) in arrival order.
struct Consumer {
    received: Arc<Mutex<Vec<(String, pb::Event)>>>,
    channel: lapin::Channel,
    exchange: String,
    _connection: lapin::Connection,
}

impl Consumer {
    /// Declares the exchange (as the relay does) and a queue bound to all of it, before courier publishes.
    async fn start(exchange: &str) -> Consumer {
        let url = format!("amqp://guest:guest@{RABBITMQ}/%2f");
        let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .expect("RabbitMQ at 127.0.0.1:5672 (needs RabbitMQ)");
        let channel = connection.create_channel().await.unwrap();
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(exchange.into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
        let name = queue.name().clone();
        channel
            .queue_bind(name.clone(), exchange.into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let mut consumer =
            channel.basic_consume(name, "outbox-test".into(), no_ack, FieldTable::default()).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let id = delivery.properties.message_id().as_ref().map(|id| id.to_string()).unwrap_or_default();
                let event = pb::Event::decode(delivery.data.as_slice()).expect("a courier.payments.v1.Event");
                sink.lock().unwrap().push((id, event));
            }
        });
        Consumer { received, channel, exchange: exchange.to_owned(), _connection: connection }
    }

    /// Waits until events 1..=`last` all arrived, then checks: deduplicated by message id, each is its event,
    /// first arrivals in sequence order, and nothing outside 1..=`last`.
    async fn assert_received_events_1_to(&self, last: i64) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let distinct: BTreeMap<String, ()> =
                self.received.lock().unwrap().iter().map(|(id, _)| (id.clone(), ())).collect();
            if distinct.len() as i64 >= last {
                break;
            }
            assert!(Instant::now() < end, "only {} of {last} events arrived", distinct.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = self.received.lock().unwrap().clone();
        let mut seen = std::collections::BTreeSet::new();
        let mut first_arrivals = Vec::new();
        for (id, event) in &received {
            assert_eq!(id, &event.sequence.to_string(), "message id is the event's sequence");
            if seen.insert(event.sequence) {
                first_arrivals.push(event.sequence);
            }
        }
        let expected: Vec<i64> = (1..=last).collect();
        assert_eq!(first_arrivals, expected, "every event once (after dedupe by id), in order, no other");
        eprintln!("{} deliveries for {last} events ({} redelivered)", received.len(), received.len() as i64 - last);
    }

    async fn delete(self) {
        self.channel.exchange_delete(self.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.unwrap();
    }
}

fn exchange(test: &str) -> String {
    format!("courier.test.{test}.{}.{}", std::process::id(), uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ"]
async fn every_committed_event_reaches_rabbitmq_once_in_order_and_a_rolled_back_batch_publishes_nothing() {
    let exchange = exchange("order");
    let consumer = Consumer::start(&exchange).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = up(data_dir, RABBITMQ, &exchange);
    let account = funded_account(&server, &server, 1_000_000).await;
    let mut payments = server.payments();
    for _ in 0..20 {
        payments.authorize(patient(authorize_request(&account, 100))).await.expect("authorize");
    }
    // A batch that fails at the database (a trigger refuses its event) rolls back whole: its caller hears
    // UNAVAILABLE, and neither the event nor its outbox row exists, so nothing is published for it.
    let mut conn = store(data_dir).await;
    sqlx::query(
        "CREATE TRIGGER refuse_666 BEFORE INSERT ON events WHEN NEW.amount = 666 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let refused = payments.authorize(patient(authorize_request(&account, 666))).await.expect_err("rolled back");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    sqlx::query("DROP TRIGGER refuse_666").execute(&mut conn).await.unwrap();
    for _ in 0..20 {
        payments.authorize(patient(authorize_request(&account, 100))).await.expect("authorize");
    }
    // Opened, credited, 40 holds; the refused one left no sequence number behind.
    assert_eq!(last_sequence(data_dir).await, 42);
    consumer.assert_received_events_1_to(42).await;
    assert!(consumer.received.lock().unwrap().iter().all(|(_, event)| event.amount != 666));
    server.kill();
    ledger_check(BIN, &["--data-dir", data_dir]);
    consumer.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ"]
async fn rabbitmq_down_for_10s_under_load_authorizations_unaffected_backlog_drains() {
    let exchange = exchange("down");
    let consumer = Consumer::start(&exchange).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let proxy = Proxy::start(RABBITMQ).await;
    let server = up(&data_dir, &proxy.addr().to_string(), &exchange);
    let account = funded_account(&server, &server, 1_000_000_000).await;
    let end = Instant::now() + Duration::from_secs(30);
    while consumer.received.lock().unwrap().len() < 2 {
        assert!(Instant::now() < end, "the first events never reached RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = AuthorizeLoad::start(&server.payments(), &account, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut(Duration::from_secs(10));
    let before = load.answered();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = load.answered() - before;
    let received_during = consumer.received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.stop().await;
    assert!(during > 0, "authorizations went on while the broker was down");
    let last = last_sequence(&data_dir).await;
    eprintln!(
        "{during} authorizations answered in 8 s of the cut; {received_during} deliveries by then; {last} events"
    );
    assert!((received_during as i64) < last, "the backlog waited for the broker");
    consumer.assert_received_events_1_to(last).await;
    server.kill();
    ledger_check(BIN, &["--data-dir", &data_dir]);
    consumer.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ"]
async fn sigkill_between_commit_and_confirm_rabbitmq_delivers_every_event() {
    let exchange = exchange("kill");
    let consumer = Consumer::start(&exchange).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let mut account = None;
    for round in 0..10 {
        let server = up(&data_dir, RABBITMQ, &exchange);
        let account_id = match &account {
            Some(id) => String::clone(id),
            None => account.insert(funded_account(&server, &server, 1_000_000_000).await).clone(),
        };
        let mut load = Vec::new();
        for _ in 0..4 {
            let (mut payments, account_id) = (server.payments(), account_id.clone());
            load.push(tokio::spawn(async move {
                for _ in 0..50 {
                    if payments.authorize(patient(authorize_request(&account_id, 1))).await.is_err() {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200 + 70 * round)).await;
        server.kill();
        for task in load {
            let _ = task.await;
        }
        ledger_check(BIN, &["--data-dir", &data_dir]);
    }
    let server = up(&data_dir, RABBITMQ, &exchange);
    let last = last_sequence(&data_dir).await;
    consumer.assert_received_events_1_to(last).await;
    server.kill();
    ledger_check(BIN, &["--data-dir", &data_dir]);
    consumer.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and RabbitMQ"]
async fn two_replicas_on_one_postgres_one_relay_publishes_to_rabbitmq() {
    let exchange = exchange("replicas");
    let consumer = Consumer::start(&exchange).await;
    let database = courier_tests::Backend::Postgres.database().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let store = ["--database-url", database.url.as_str()];
    let mut servers: Vec<CourierProcess> =
        dirs.iter().map(|dir| up_on(dir.path().to_str().unwrap(), RABBITMQ, &exchange, &store)).collect();
    let account = funded_account(&servers[0], &servers[0], 1_000_000_000).await;
    let load = |servers: &[CourierProcess], rounds: usize| {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (mut payments, account) = (servers[i % servers.len()].payments(), account.clone());
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        payments.authorize(patient(authorize_request(&account, 1))).await.expect("authorize");
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks)
    };
    load(&servers, 50).await;
    let last = last_sequence_at(&database.url).await;
    consumer.assert_received_events_1_to(last).await;
    // Both replicas run a relay; had both published, the rows they both read would have arrived twice.
    assert_eq!(consumer.received.lock().unwrap().len() as i64, last, "one relay published, each event once");

    // The other replica's relay takes over from a dead one (whichever of the two held the lock).
    servers.remove(0).kill();
    load(&servers, 50).await;
    let last = last_sequence_at(&database.url).await;
    consumer.assert_received_events_1_to(last).await;
    drop(servers);
    ledger_check(BIN, &store);
    database.cleanup().await;
    consumer.delete().await;
}

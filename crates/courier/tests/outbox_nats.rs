//! The outbox relay against a real NATS JetStream at 127.0.0.1:4222 (`#[ignore = "needs NATS"]`): every committed
//! event once per message id, in sequence order; the broker cut for 10 s under Authorize load; SIGKILL between
//! commit and confirm, 10 rounds. Each test has its own stream and subject prefix, deleted at the end.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use courier_proto::payments::v1 as pb;
use courier_tests::outbox::{last_sequence_at, patient, AuthorizeLoad, PERMISSIVE_RULES};
use courier_tests::payments::authorize_request;
use courier_tests::process::{funded_account, ledger_check, CourierProcess};
use courier_tests::proxy::Proxy;
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const NATS: &str = "127.0.0.1:4222";

/// A stream and subject prefix no other test run uses.
fn names(test: &str) -> (String, String) {
    let unique = format!("{}{}", std::process::id(), uuid::Uuid::now_v7().simple());
    (format!("COURIER_{test}_{unique}"), format!("courier.test.{test}.{unique}"))
}

fn up(data_dir: &str, url: &str, stream: &str, prefix: &str) -> CourierProcess {
    up_with(data_dir, url, stream, prefix, "24h")
}

fn up_with(data_dir: &str, url: &str, stream: &str, prefix: &str, retention: &str) -> CourierProcess {
    let rules = std::path::Path::new(data_dir).join("permissive-rules.toml");
    std::fs::write(&rules, PERMISSIVE_RULES).expect("write rules");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    let env = [
        ("COURIER_OUTBOX__BROKER", "nats"),
        ("COURIER_OUTBOX__URL", url),
        ("COURIER_OUTBOX__STREAM", stream),
        ("COURIER_OUTBOX__SUBJECT_PREFIX", prefix),
        ("COURIER_OUTBOX__RETENTION", retention),
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

/// The last committed event's sequence, read from the SQLite store.
async fn last_sequence(data_dir: &str) -> i64 {
    last_sequence_at(&format!("sqlite://{data_dir}/courier.db")).await
}

async fn context() -> jetstream::Context {
    let client = async_nats::connect(NATS).await.expect("NATS at 127.0.0.1:4222 (needs NATS)");
    jetstream::new(client)
}

/// Waits until `stream` holds `expected` messages, then checks that message i is event i (body and
/// `Nats-Msg-Id`), for every i: each committed event once, in order, nothing else.
async fn assert_stream_holds_events_1_to(js: &jetstream::Context, stream: &str, expected: i64) {
    let mut handle = js.get_stream(stream).await.expect("the relay created its stream");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = handle.info().await.expect("stream info").state.messages;
        if messages as i64 == expected {
            break;
        }
        assert!(messages as i64 <= expected, "{messages} messages for {expected} events: a duplicate or an extra");
        assert!(Instant::now() < end, "only {messages} of {expected} events reached the stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for sequence in 1..=expected {
        let message = handle.get_raw_message(sequence as u64).await.expect("stream message");
        let event = pb::Event::decode(message.payload).expect("a courier.payments.v1.Event");
        assert_eq!(event.sequence, sequence, "stream message {sequence} is event {}", event.sequence);
        let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(id.as_deref(), Some(sequence.to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS"]
async fn every_committed_event_reaches_nats_once_in_order_none_for_a_rolled_back_batch() {
    let (stream, prefix) = names("order");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = up_with(data_dir, &format!("nats://{NATS}"), &stream, &prefix, "1ms");
    let account = funded_account(&server, &server, 1_000_000).await;
    let mut payments = server.payments();
    // A batch that fails at the database (a trigger refuses its event) rolls back whole: neither the event nor
    // its outbox row exists, so nothing is published for it and no sequence number is skipped.
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
    for i in 0..40 {
        let authorization =
            payments.authorize(patient(authorize_request(&account, 100))).await.unwrap().into_inner().authorization;
        if i % 4 == 0 {
            let capture = pb::CaptureRequest {
                authorization_id: authorization.unwrap().id,
                idempotency_key: courier_tests::payments::key(),
                ..Default::default()
            };
            payments.capture(patient(capture)).await.expect("capture");
        }
    }
    // Opened, credited, 40 holds, 10 captures.
    assert_eq!(last_sequence(data_dir).await, 52);
    let js = context().await;
    assert_stream_holds_events_1_to(&js, &stream, 52).await;
    // The subject names the event type.
    let message = js.get_stream(&stream).await.unwrap().get_raw_message(3).await.unwrap();
    assert_eq!(message.subject.as_str(), format!("{prefix}.authorized"));
    // Published rows are deleted after the retention (1 ms here); the events stay.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&mut conn).await.unwrap();
        if rows == 0 {
            break;
        }
        assert!(Instant::now() < end, "{rows} published outbox rows outlived the retention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last_sequence(data_dir).await, 52);
    server.kill();
    ledger_check(BIN, &["--data-dir", data_dir]);
    js.delete_stream(&stream).await.expect("delete the test stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS"]
async fn nats_down_for_10s_under_load_authorizations_unaffected_backlog_drains() {
    let (stream, prefix) = names("down");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let proxy = Proxy::start(NATS).await;
    let server = up(&data_dir, &format!("nats://{}", proxy.addr()), &stream, &prefix);
    let account = funded_account(&server, &server, 1_000_000_000).await;
    let js = context().await;
    // The relay is connected and publishing before the cut.
    let mut handle = js.get_stream(&stream).await.expect("the relay created its stream");
    let end = Instant::now() + Duration::from_secs(30);
    while handle.info().await.unwrap().state.messages < 2 {
        assert!(Instant::now() < end, "the first events never reached NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let load = AuthorizeLoad::start(&server.payments(), &account, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut(Duration::from_secs(10));
    let before = load.answered();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = load.answered() - before;
    let metrics = admin_metrics(server.admin.as_deref().unwrap()).await;
    let pending = metrics.lines().find_map(|l| l.strip_prefix("courier_outbox_pending ")?.parse::<f64>().ok());
    assert!(pending.unwrap_or(0.0) > 0.0, "a backlog while the broker is down: {pending:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.stop().await;
    assert!(during > 0, "authorizations went on while the broker was down");
    let last = last_sequence(&data_dir).await;
    eprintln!("{during} authorizations answered in 8 s of the cut; {last} events in all");
    assert_stream_holds_events_1_to(&js, &stream, last).await;
    server.kill();
    ledger_check(BIN, &["--data-dir", &data_dir]);
    js.delete_stream(&stream).await.expect("delete the test stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NATS"]
async fn sigkill_between_commit_and_confirm_nats_keeps_one_message_per_event() {
    let (stream, prefix) = names("kill");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let url = format!("nats://{NATS}");
    let mut account = None;
    for round in 0..10 {
        let server = up(&data_dir, &url, &stream, &prefix);
        let account_id = match &account {
            Some(id) => String::clone(id),
            None => account.insert(funded_account(&server, &server, 1_000_000_000).await).clone(),
        };
        // Concurrent load, killed mid-flight: some batches committed and not yet published or confirmed.
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
    let server = up(&data_dir, &url, &stream, &prefix);
    let last = last_sequence(&data_dir).await;
    let js = context().await;
    assert_stream_holds_events_1_to(&js, &stream, last).await;
    server.kill();
    ledger_check(BIN, &["--data-dir", &data_dir]);
    js.delete_stream(&stream).await.expect("delete the test stream");
}

async fn admin_metrics(admin: &str) -> String {
    courier_tests::http::get(admin, "/metrics").await.1
}

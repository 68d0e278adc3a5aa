//! The outbox without a broker: what `[outbox]` refuses at start, and what an optional broker that is down does
//! (authorizations unaffected, the backlog grows). The broker tests are outbox_nats.rs and outbox_rabbitmq.rs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use courier_tests::payments::authorize_request;
use courier_tests::process::{funded_account, ledger_check, CourierProcess};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// Runs `courier up` with `env`, expecting it to exit by itself; returns its status and stderr.
fn up_exits(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let data_dir = dir.path().to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data_dir])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start courier");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("courier up kept running with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_bad_outbox_url_stops_the_process_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) =
        up_exits(&dir, &[("COURIER_OUTBOX__BROKER", "rabbitmq"), ("COURIER_OUTBOX__URL", "http://127.0.0.1:5672")]);
    assert!(!status.success());
    assert!(stderr.contains("`outbox.url`") && stderr.contains("amqp://"), "{stderr}");

    let (status, stderr) = up_exits(&dir, &[("COURIER_OUTBOX__BROKER", "kafka")]);
    assert!(!status.success());
    assert!(stderr.contains("broker"), "{stderr}");
}

#[test]
fn a_required_broker_that_is_down_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let env = [
        ("COURIER_OUTBOX__BROKER", "nats"),
        ("COURIER_OUTBOX__URL", url.as_str()),
        ("COURIER_OUTBOX__REQUIRED", "true"),
    ];
    let (status, stderr) = up_exits(&dir, &env);
    assert!(!status.success());
    assert!(stderr.contains("`outbox.url`") && stderr.contains("unreachable"), "{stderr}");
}

async fn metrics(admin: &str) -> String {
    courier_tests::http::get(admin, "/metrics").await.1
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_broker_that_is_down_leaves_authorizations_alone_and_the_backlog_grows() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let env = [("COURIER_OUTBOX__BROKER", "rabbitmq"), ("COURIER_OUTBOX__URL", url.as_str())];
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    let server = CourierProcess::start_logged(BIN, &args, &env, "warn");
    let logs = server.logs.clone().expect("logged");
    logs.wait_for(Duration::from_secs(30), "the unreachable-broker warning", |line| {
        line.contains("outbox broker unreachable at start")
    });
    let account = funded_account(&server, &server, 1_000_000).await;
    let mut payments = server.payments();
    for _ in 0..10 {
        let authorization = payments.authorize(authorize_request(&account, 100)).await.expect("authorize").into_inner();
        assert_eq!(authorization.authorization.expect("authorization").response_code, "00");
    }
    // Account opened, credited, ten holds: twelve events queued, none published.
    let admin = server.admin.clone().expect("admin port");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = gauge(&metrics(&admin).await, "courier_outbox_pending");
        if pending == Some(12.0) {
            break;
        }
        assert!(Instant::now() < end, "courier_outbox_pending is {pending:?}, not 12");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    ledger_check(BIN, &["--data-dir", data_dir]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    let server = CourierProcess::start(BIN, &args);
    let account = funded_account(&server, &server, 1_000_000).await;
    server.payments().authorize(authorize_request(&account, 100)).await.expect("authorize");
    let metrics = metrics(server.admin.as_deref().expect("admin port")).await;
    assert_eq!(gauge(&metrics, "courier_outbox_pending"), None, "no relay runs, so no backlog is reported");
    server.kill();
    ledger_check(BIN, &["--data-dir", data_dir]);
}

//! Graceful drain of `courier up` on SIGTERM, with a health watcher open and Authorize calls in flight: health
//! turns NOT_SERVING for `server.drain_lead` before the listener stops, the watch stream is then ended (it does
//! not hold the drain), and the process exits as soon as the calls in flight are done.
//! And payments' own calls to the co-located users and risk are never refused by that drain: an Authorize still
//! in flight when the listener stops is decided by risk with its holder known, not stood in or declined 91.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_proto::payments::v1 as pb;
use courier_tests::payments::authorize_request;
use courier_tests::process::CourierProcess;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
/// `server.drain_lead`'s default.
const LEAD: Duration = Duration::from_millis(300);
/// `server.shutdown_grace`'s default: the drain must end well before it.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_announces_not_serving_first_ends_watches_and_exits_once_calls_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let mut server = CourierProcess::start(
        BIN,
        &["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", &data_dir],
    );
    let account = courier_tests::process::funded_account(&server, &server, 1_000_000_000).await;

    // A watcher, as a balancer's health checking keeps one: every status with when it came, and when it ended.
    let mut health = HealthClient::new(server.channel.clone());
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(reply)) = watch.message().await {
            seen.push((Instant::now(), reply.status()));
        }
        (seen, Instant::now())
    });

    // Authorize calls in flight all through the drain.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (mut client, account, stop) = (server.payments(), account.clone(), stop.clone());
            tokio::spawn(async move {
                let mut deciders = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut call = tonic::Request::new(authorize_request(&account, 1));
                    call.set_timeout(Duration::from_secs(2));
                    match client.authorize(call).await {
                        Ok(answer) => deciders.push(answer.into_inner().authorization.unwrap().decided_by()),
                        // Refused once the listener stopped: the caller goes elsewhere.
                        Err(_) => break,
                    }
                }
                deciders
            })
        })
        .collect();
    let warmed = Instant::now();
    while warmed.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let addr = server.addr.clone();
    server.terminate();
    let terminated = Instant::now();
    // The first new connection refused: the listener has stopped.
    let refused = loop {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            break Instant::now();
        }
        assert!(terminated.elapsed() < GRACE, "the listener still accepts {GRACE:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = server.wait_exit(GRACE + Duration::from_secs(2)).await.expect("the process exited");
    let exited = terminated.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}");
    assert!(exited < Duration::from_secs(3), "exited {exited:?} after SIGTERM, not well under the {GRACE:?} grace");

    let (seen, ended) = watcher.await.unwrap();
    let not_serving = seen
        .iter()
        .find(|(_, status)| *status == ServingStatus::NotServing)
        .map(|(at, _)| *at)
        .expect("the watcher was told NOT_SERVING");
    let lead = refused.duration_since(not_serving);
    assert!(lead >= LEAD - Duration::from_millis(50), "NOT_SERVING only {lead:?} before the listener stopped");
    assert!(ended <= terminated + exited, "the watch stream ended before the process exited");

    let deciders: Vec<pb::Decider> = futures::future::try_join_all(load).await.unwrap().concat();
    assert!(!deciders.is_empty(), "Authorize calls were answered during the drain");
    courier_tests::process::ledger_check(BIN, &["--data-dir", &data_dir]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_calls_in_flight_when_the_listener_stops_still_reach_the_colocated_risk_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    // Every Authorize waits longer than the drain lead before its handler runs, so calls accepted just before
    // SIGTERM ask users and risk only after the listener has stopped and its connections were told GOAWAY.
    let config = dir.path().join("courier.toml");
    let delay = Duration::from_millis(600);
    std::fs::write(
        &config,
        format!(
            "[server.faults.\"/courier.payments.v1.PaymentService/Authorize\"]\ndelay = \"{}ms\"\n",
            delay.as_millis()
        ),
    )
    .unwrap();
    let mut server = CourierProcess::start(
        BIN,
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--data-dir",
            &data_dir,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let account = courier_tests::process::funded_account(&server, &server, 1_000_000_000).await;

    // Calls started one by one, 20 ms apart, so some are always inside the delay when the listener stops.
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let (mut client, account) = (server.payments(), account.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i)).await;
                let mut call = tonic::Request::new(authorize_request(&account, 1));
                call.set_timeout(Duration::from_secs(5));
                let answer = client.authorize(call).await;
                (answer, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.terminate();
    let terminated = Instant::now();
    let status = server.wait_exit(GRACE + Duration::from_secs(2)).await.expect("the process exited");
    assert!(status.success(), "exit status {status:?}");

    let mut answered_after_lead = 0;
    for call in calls {
        let (answer, at) = call.await.unwrap();
        // Calls that came after the listener stopped were refused (the caller goes elsewhere): not this test's.
        let Ok(answer) = answer else { continue };
        let authorization = answer.into_inner().authorization.unwrap();
        // Risk decides (its velocity rule declines some of these calls on one account with 59); never the
        // stand-in, and never 91 (holder unknown).
        let after = at.duration_since(terminated);
        assert_eq!(
            authorization.decided_by(),
            pb::Decider::Risk,
            "stood in {after:?} after SIGTERM: {authorization:?}"
        );
        assert_ne!(authorization.response_code, "91", "declined 91 {after:?} after SIGTERM: {authorization:?}");
        if at > terminated + LEAD + Duration::from_millis(50) {
            answered_after_lead += 1;
        }
    }
    assert!(answered_after_lead > 0, "no Authorize was still in flight when the listener stopped");
    courier_tests::process::ledger_check(BIN, &["--data-dir", &data_dir]);
}

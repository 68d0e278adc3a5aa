//! Server protection: the concurrency limit's refusal carries pushback, and a saturated server sheds calls that
//! cannot make their deadline.

mod support;

use std::time::Duration;

use courier_kit::client::{MethodOptions, ResilientChannel, RetryPolicy};
use courier_kit::server::ServerOptions;
use support::{call, TestServer, GET, HANG, UNARY};
use tonic::Code;

fn hang(server: &TestServer) {
    tokio::spawn(call(server.channel(), HANG, None));
}

#[tokio::test]
async fn a_refusal_at_the_concurrency_limit_carries_pushback() {
    let mut options = ServerOptions { max_concurrent_calls: 1, ..ServerOptions::default() };
    options.overload.retry_pushback = Some(Duration::from_millis(25));
    let server = TestServer::start(options).await;
    hang(&server);
    server.script.wait_hanging(1).await;

    let status = call(server.channel(), UNARY, None).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let pushback = status.metadata().get("grpc-retry-pushback-ms").expect("pushback");
    assert_eq!(pushback, "25");
    assert_eq!(server.script.calls(UNARY), 0);
}

#[tokio::test]
async fn the_resilient_client_waits_out_the_pushback_before_retrying() {
    let mut options = ServerOptions { max_concurrent_calls: 1, ..ServerOptions::default() };
    options.overload.retry_pushback = Some(Duration::from_millis(40));
    let server = TestServer::start(options).await;
    let retried = RetryPolicy { retryable_status_codes: vec![Code::ResourceExhausted], ..RetryPolicy::default() };
    // No health watch: it would be a call in flight too, taking the only permit.
    let channel = ResilientChannel::builder("busy")
        .endpoint(server.url())
        .health_check(false)
        .method(GET, MethodOptions { retry: Some(retried), ..MethodOptions::idempotent() })
        .build()
        .unwrap();
    hang(&server);
    server.script.wait_hanging(1).await;
    let started = tokio::time::Instant::now();
    assert_eq!(call(channel, GET, None).await.unwrap_err().code(), Code::ResourceExhausted);
    // Three attempts, two pushbacks of 40 ms between them.
    assert!(started.elapsed() >= Duration::from_millis(80), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_saturated_server_sheds_calls_whose_deadline_is_shorter_than_the_expected_service_time() {
    let mut options = ServerOptions { max_concurrent_calls: 4, ..ServerOptions::default() };
    options.overload.saturation = 0.5;
    options.overload.expected_service_times.insert(UNARY.into(), Duration::from_millis(500));
    let server = TestServer::start(options).await;
    let short = Some(Duration::from_millis(200));

    // One call in flight: not saturated, a short deadline is fine.
    hang(&server);
    server.script.wait_hanging(1).await;
    call(server.channel(), UNARY, short).await.unwrap();

    // Two in flight: saturated. A call that cannot finish in time is refused at once; one that can is served.
    hang(&server);
    server.script.wait_hanging(2).await;
    let status = call(server.channel(), UNARY, short).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("saturated"), "{status:?}");
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
    call(server.channel(), UNARY, Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(server.script.calls(UNARY), 2, "the shed call never reached the handler");
}

//! gRFC A6 retries through the resilient client, against a real server: attempts, the previous-attempts header,
//! idempotency, pushback, the deadline and throttling.

mod support;

use std::time::Duration;

use courier_kit::client::{BreakerOptions, MethodOptions, ResilientChannel, ResilientChannelBuilder, ThrottleOptions};
use courier_kit::server::ServerOptions;
use support::{call, retrying_client, Reply, TestServer, GET, UNARY};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn client(server: &TestServer, attempts: u32) -> ResilientChannelBuilder {
    retrying_client("echo", server, attempts)
}

#[tokio::test]
async fn unavailable_is_retried_up_to_max_attempts_with_the_previous_attempts_header() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 3).build().unwrap();

    server.script.then([Reply::Fail(Code::Unavailable), Reply::Fail(Code::Unavailable), Reply::Ok]);
    let answer = call(channel.clone(), GET, None).await.unwrap();
    assert_eq!(answer.get_ref().as_ref(), b"ping");
    let attempts: Vec<_> = server.script.seen(GET).iter().map(|seen| seen.previous_attempts).collect();
    assert_eq!(attempts, [None, Some(1), Some(2)]);

    // Always failing: three attempts, then the last answer.
    server.script.otherwise(Reply::Fail(Code::Unavailable));
    let status = call(channel, GET, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.script.calls(GET), 6);
}

#[tokio::test]
async fn non_retryable_codes_and_non_idempotent_methods_are_never_retried() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 5).build().unwrap();
    server.script.otherwise(Reply::Fail(Code::Unavailable));
    assert_eq!(call(channel.clone(), UNARY, None).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(server.script.calls(UNARY), 1, "UNARY is not idempotent");

    server.script.otherwise(Reply::Fail(Code::Internal));
    assert_eq!(call(channel, GET, None).await.unwrap_err().code(), Code::Internal);
    assert_eq!(server.script.calls(GET), 1, "INTERNAL is not in the retryable codes");
}

#[tokio::test]
async fn server_pushback_sets_the_retry_delay() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 3).build().unwrap();
    server.script.then([Reply::FailWithPushback(Code::Unavailable, "150"), Reply::Ok]);
    call(channel, GET, None).await.unwrap();
    let seen = server.script.seen(GET);
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_millis(150), "retried after {waited:?}, pushback said 150 ms");
}

#[tokio::test]
async fn negative_or_malformed_pushback_stops_retries() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 5).build().unwrap();
    for pushback in ["-1", "later"] {
        server.script.then([Reply::FailWithPushback(Code::Unavailable, pushback), Reply::Ok]);
        let status = call(channel.clone(), GET, None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        // Consume the unused scripted OK.
        call(channel.clone(), UNARY, None).await.unwrap();
    }
    assert_eq!(server.script.calls(GET), 2, "one attempt each");
}

#[tokio::test]
async fn retries_never_go_past_the_deadline() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 5).max_timeout(Duration::from_secs(2)).build().unwrap();
    server.script.then([Reply::FailWithPushback(Code::Unavailable, "5000"), Reply::Ok]);
    let started = tokio::time::Instant::now();
    assert_eq!(call(channel, GET, None).await.unwrap_err().code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(1), "it waited for a retry it could not make");
    assert_eq!(server.script.calls(GET), 1);
}

#[tokio::test]
async fn throttling_stops_retries_after_a_burst_of_failures_and_allows_them_after_successes() {
    let server = TestServer::start(ServerOptions::default()).await;
    let throttle = ThrottleOptions { enabled: true, max_tokens: 10.0, token_ratio: 0.1 };
    let channel = client(&server, 5).throttle(throttle).build().unwrap();
    server.script.otherwise(Reply::Fail(Code::Unavailable));

    // 10 tokens: four failed attempts leave 6 (> 5, retry), the fifth leaves 5: max attempts reached anyway.
    call(channel.clone(), GET, None).await.unwrap_err();
    assert_eq!(server.script.calls(GET), 5);
    assert_eq!(channel.state().retry_tokens, Some(5.0));
    // Now a failure leaves 4: no retry.
    call(channel.clone(), GET, None).await.unwrap_err();
    assert_eq!(server.script.calls(GET), 6);

    // Successes refill 0.1 each: 30 of them make 7 tokens.
    server.script.otherwise(Reply::Ok);
    for _ in 0..30 {
        call(channel.clone(), GET, None).await.unwrap();
    }
    assert_eq!(channel.state().retry_tokens, Some(7.0));
    // A failure leaves 6: one retry; its failure leaves 5: no more.
    server.script.otherwise(Reply::Fail(Code::Unavailable));
    let before = server.script.calls(GET);
    call(channel.clone(), GET, None).await.unwrap_err();
    assert_eq!(server.script.calls(GET) - before, 2);
}

#[tokio::test]
async fn a_request_over_the_retry_buffer_is_sent_once() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut options = courier_kit::client::UpstreamOptions {
        urls: vec![server.url()],
        retry_buffer_bytes: 2,
        breaker: BreakerOptions { enabled: false, ..BreakerOptions::default() },
        ..Default::default()
    };
    options.methods.insert(GET.into(), MethodOptions::idempotent());
    let channel = ResilientChannel::from_options("echo", options).unwrap();
    server.script.then([Reply::Fail(Code::Unavailable), Reply::Ok]);
    // "ping" is 9 bytes framed: over the 2-byte buffer.
    assert_eq!(call(channel, GET, None).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(server.script.calls(GET), 1);
}

#[tokio::test]
async fn a_generated_client_wraps_the_resilient_channel() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = client(&server, 3).method("/grpc.health.v1.Health/", MethodOptions::idempotent()).build().unwrap();
    let mut health = HealthClient::new(channel);
    let reply = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let channel = ResilientChannel::builder("gone").endpoint(url).health_check(false).build().unwrap();
    let status = call(channel, UNARY, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

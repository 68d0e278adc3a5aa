//! The circuit breaker (adaptive throttling) against a real server that fails, then recovers.

mod support;

use std::time::Duration;

use courier_kit::client::{BreakerOptions, ResilientChannel};
use courier_kit::server::ServerOptions;
use support::{call, Reply, TestServer, UNARY};
use tonic::Code;

#[tokio::test]
async fn the_breaker_opens_under_failures_and_closes_after_recovery() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("flaky")
        .endpoint(server.url())
        // A short window: recovery comes as the failures (and the refusals they caused) age out of it.
        .breaker(BreakerOptions { k: 2.0, window: Duration::from_secs(1), buckets: 10, ..BreakerOptions::default() })
        .build()
        .unwrap();

    // The upstream fails: after a few calls most are refused locally and never reach it.
    server.script.otherwise(Reply::Fail(Code::Unavailable));
    let mut refused_locally = 0;
    for _ in 0..20 {
        let status = call(channel.clone(), UNARY, None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        if status.message().contains("circuit open") {
            refused_locally += 1;
        }
    }
    assert!(refused_locally > 0, "the breaker never refused a call");
    assert_eq!(server.script.calls(UNARY) + refused_locally, 20, "a refused call reached the server");
    let state = channel.state();
    assert!(state.circuit_open() && state.reject_probability > 0.5, "{state:?}");

    // The upstream recovers: the calls the breaker still lets through succeed, and it closes by itself as the
    // failures leave the window. The test keeps calling meanwhile; it never sleeps.
    server.script.otherwise(Reply::Ok);
    let recovering = tokio::time::Instant::now();
    while channel.state().circuit_open() {
        assert!(recovering.elapsed() < Duration::from_secs(20), "still open: {:?}", channel.state());
        let _ = call(channel.clone(), UNARY, None).await;
        tokio::task::yield_now().await;
    }
    let reached = server.script.calls(UNARY);
    for _ in 0..20 {
        call(channel.clone(), UNARY, None).await.expect("closed: every call goes through");
    }
    assert_eq!(server.script.calls(UNARY), reached + 20);
    assert_eq!(channel.state().reject_probability, 0.0);
}

#[tokio::test]
async fn answers_that_say_nothing_of_the_upstreams_health_keep_it_closed() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("picky").endpoint(server.url()).build().unwrap();
    server.script.otherwise(Reply::Fail(Code::NotFound));
    for _ in 0..50 {
        assert_eq!(call(channel.clone(), UNARY, None).await.unwrap_err().code(), Code::NotFound);
    }
    assert_eq!(server.script.calls(UNARY), 50);
    assert!(!channel.state().circuit_open());
}

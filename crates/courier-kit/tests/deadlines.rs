//! Deadlines: the server's (caller's `grpc-timeout` or the method's default, minimum budget, DEADLINE_EXCEEDED
//! when it passes, readable by handlers) and their propagation through the resilient client.

mod support;

use std::time::Duration;

use courier_kit::client::ResilientChannel;
use courier_kit::deadline::{self, grpc_timeout, Instant};
use courier_kit::server::ServerOptions;
use support::{call, raw_call, TestServer, DEADLINE, HANG, RELAY, UNARY};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn millis(response: tonic::Response<bytes::Bytes>) -> u128 {
    std::str::from_utf8(response.get_ref()).unwrap().parse().expect("the handler saw a deadline")
}

fn options(configure: impl FnOnce(&mut ServerOptions)) -> ServerOptions {
    let mut options = ServerOptions::default();
    configure(&mut options);
    options
}

#[test]
fn grpc_timeout_parses_every_unit_and_refuses_garbage() {
    let parse = |text: &str| grpc_timeout::parse(text.as_bytes());
    assert_eq!(parse("1H"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse("2M"), Ok(Duration::from_secs(120)));
    assert_eq!(parse("3S"), Ok(Duration::from_secs(3)));
    assert_eq!(parse("250m"), Ok(Duration::from_millis(250)));
    assert_eq!(parse("75u"), Ok(Duration::from_micros(75)));
    assert_eq!(parse("12345678n"), Ok(Duration::from_nanos(12_345_678)));
    for garbage in ["", "S", "5", "5s", "5 S", "-5S", "1.5S", "123456789S", "5SS", "0x5S"] {
        assert!(parse(garbage).is_err(), "{garbage:?}");
    }
}

#[tokio::test]
async fn a_call_without_a_deadline_gets_its_methods_default_and_the_handler_reads_it() {
    let server = TestServer::start(options(|o| {
        o.deadlines.methods.insert(DEADLINE.into(), Duration::from_millis(250));
    }))
    .await;
    let left = millis(call(server.channel(), DEADLINE, None).await.unwrap());
    assert!((100..=250).contains(&left), "{left} ms left of a 250 ms default");
    // The caller's own deadline wins over the default.
    let left = millis(call(server.channel(), DEADLINE, Some(Duration::from_secs(2))).await.unwrap());
    assert!((1500..=2000).contains(&left), "{left} ms left of the caller's 2 s");
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_ignored_for_the_default() {
    let server = TestServer::start(options(|o| o.deadlines.default = Duration::from_millis(700))).await;
    let mut grpc = tonic::client::Grpc::new(server.channel());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(bytes::Bytes::new());
    request.metadata_mut().insert("grpc-timeout", "soon".parse().unwrap());
    let path = http::uri::PathAndQuery::from_static(DEADLINE);
    let left = millis(grpc.unary(request, path, support::BytesCodec).await.unwrap());
    assert!((400..=700).contains(&left), "{left} ms left of the 700 ms default");
}

#[tokio::test]
async fn a_budget_below_the_minimum_is_refused_before_the_handler_runs() {
    let server = TestServer::start(options(|o| {
        o.deadlines.minimums.insert(UNARY.into(), Duration::from_millis(50));
    }))
    .await;
    let status = call(server.channel(), UNARY, Some(Duration::from_millis(20))).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(server.script.calls(UNARY), 0, "the handler must not run");
    // Enough budget: served.
    call(server.channel(), UNARY, Some(Duration::from_millis(500))).await.unwrap();
    assert_eq!(server.script.calls(UNARY), 1);
}

#[tokio::test]
async fn the_server_answers_deadline_exceeded_when_the_deadline_passes() {
    let server = TestServer::start(options(|o| {
        o.deadlines.methods.insert(HANG.into(), Duration::from_millis(100));
    }))
    .await;
    // The caller's deadline, several times: always DEADLINE_EXCEEDED, never the CANCELLED of tonic's own timer.
    for _ in 0..5 {
        let status = raw_call(server.addr, HANG, &[("grpc-timeout", "60m")]).await;
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    // The method's default.
    let started = Instant::now();
    let status = raw_call(server.addr, HANG, &[]).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(99));
    assert_eq!(server.script.calls(HANG), 6);
}

#[tokio::test]
async fn the_callers_deadline_ends_a_stream_but_a_default_does_not() {
    let server = TestServer::start(options(|o| o.deadlines.default = Duration::from_millis(100))).await;
    let mut health = HealthClient::new(server.channel());
    let watch = |timeout: Option<Duration>| {
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    };

    let mut stream = health.watch(watch(Some(Duration::from_millis(150)))).await.unwrap().into_inner();
    assert!(stream.next().await.unwrap().is_ok(), "the first status");
    let ended = stream.next().await.expect("the stream ends with a status").unwrap_err();
    assert_eq!(ended.code(), Code::DeadlineExceeded);

    // Without a caller deadline, the 100 ms default bounds the handler's setup only: the feed stays open.
    let mut stream = health.watch(watch(None)).await.unwrap().into_inner();
    assert!(stream.next().await.unwrap().is_ok());
    let next = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(next.is_err(), "the feed ended: {next:?}");
}

#[tokio::test]
async fn an_outbound_call_gets_the_remaining_budget_minus_the_reserve() {
    let upstream = TestServer::start(ServerOptions::default()).await;
    let front = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("upstream")
        .endpoint(upstream.url())
        .reserve(Duration::from_millis(200))
        .max_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    *front.script.relay.lock().unwrap() = Some(channel);

    call(front.channel(), RELAY, Some(Duration::from_secs(1))).await.unwrap();
    let sent = upstream.script.seen(UNARY)[0].timeout.expect("a propagated grpc-timeout");
    assert!(sent <= Duration::from_millis(800), "{sent:?}: more than 1 s - 200 ms reserve");
    assert!(sent > Duration::from_millis(500), "{sent:?}: far less than 1 s - 200 ms reserve");
}

#[tokio::test]
async fn without_an_inbound_deadline_the_cap_alone_applies_and_the_cap_bounds_a_long_one() {
    let upstream = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("upstream")
        .endpoint(upstream.url())
        .reserve(Duration::from_millis(100))
        .max_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    call(channel.clone(), UNARY, None).await.unwrap();
    // An inbound deadline far away: the cap still bounds the call.
    let far = Instant::now() + Duration::from_secs(60);
    deadline::scope(far, call(channel.clone(), UNARY, None)).await.unwrap();
    for seen in upstream.script.seen(UNARY) {
        let sent = seen.timeout.unwrap();
        assert!(sent <= Duration::from_millis(300) && sent > Duration::from_millis(150), "{sent:?}");
    }
}

#[tokio::test]
async fn no_budget_left_after_the_reserve_fails_at_once_without_sending() {
    let upstream = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("upstream")
        .endpoint(upstream.url())
        .reserve(Duration::from_millis(50))
        .build()
        .unwrap();
    let soon = Instant::now() + Duration::from_millis(30);
    let status = deadline::scope(soon, call(channel, UNARY, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("reserved"), "{status:?}");
    assert_eq!(upstream.script.calls(UNARY), 0);
}

#[tokio::test]
async fn a_slow_upstream_fails_with_deadline_exceeded_at_the_local_deadline() {
    let upstream = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("upstream")
        .endpoint(upstream.url())
        .max_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let started = Instant::now();
    let status = call(channel, HANG, None).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(140) && took < Duration::from_secs(2), "{took:?}");
}

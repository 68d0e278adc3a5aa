//! The metrics the runtime records, read back from the process registry: per-method calls, server refusals, and
//! the resilient client's retries, local refusals and breaker gauge. Each test uses its own method or upstream
//! name, or is alone in moving a series, so tests running in parallel in this binary do not disturb each other.

mod support;

use courier_kit::client::{BreakerOptions, ResilientChannel};
use courier_kit::server::ServerOptions;
use support::{call, retrying_client, Reply, TestServer, GET, HANG, UNARY};
use tonic::Code;

/// The value of the series printed exactly as `series` (`name{label="value",...}`), 0 when absent.
fn sample(series: &str) -> f64 {
    let text = courier_kit::metrics::render();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_and_refusals_by_reason() {
    let server = TestServer::start(ServerOptions { max_concurrent_calls: 1, ..ServerOptions::default() }).await;
    tokio::spawn(call(server.channel(), HANG, None));
    server.script.wait_hanging(1).await;

    let refused = r#"courier_server_refused_total{reason="concurrency_limit"}"#;
    let before = sample(refused);
    let status = call(server.channel(), UNARY, None).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(sample(refused) - before, 1.0);
    let unary = format!(r#"courier_rpc_server_calls_total{{code="RESOURCE_EXHAUSTED",method="{UNARY}"}}"#);
    assert!(sample(&unary) >= 1.0, "{}", courier_kit::metrics::render());
    let hanging = format!(r#"courier_rpc_server_in_flight{{method="{HANG}"}}"#);
    assert!(sample(&hanging) >= 1.0, "the hanging call is in flight");
}

#[tokio::test]
async fn the_client_counts_retries_per_upstream() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = retrying_client("metrics-retries", &server, 3).build().unwrap();
    server.script.then([Reply::Fail(Code::Unavailable), Reply::Fail(Code::Unavailable), Reply::Ok]);
    call(channel, GET, None).await.unwrap();
    assert_eq!(sample(r#"courier_client_retries_total{upstream="metrics-retries"}"#), 2.0);
}

#[tokio::test]
async fn the_client_reports_its_breaker_and_local_refusals() {
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = ResilientChannel::builder("metrics-breaker")
        .endpoint(server.url())
        .breaker(BreakerOptions { k: 2.0, ..BreakerOptions::default() })
        .build()
        .unwrap();
    server.script.otherwise(Reply::Fail(Code::Unavailable));
    let mut refused_locally = 0.0;
    for _ in 0..20 {
        let status = call(channel.clone(), UNARY, None).await.unwrap_err();
        if status.message().contains("circuit open") {
            refused_locally += 1.0;
        }
    }
    assert!(refused_locally > 0.0, "the breaker never refused a call");
    let refused = r#"courier_client_refused_total{reason="circuit_open",upstream="metrics-breaker"}"#;
    assert_eq!(sample(refused), refused_locally);
    let gauge = sample(r#"courier_client_breaker_reject_probability{upstream="metrics-breaker"}"#);
    assert!(gauge > 0.0 && gauge <= 1.0, "{gauge}");
}

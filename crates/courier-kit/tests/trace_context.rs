//! The resilient client sends W3C `traceparent` naming the span it is called from, on every attempt of a call.

mod support;

use courier_kit::logging::{self, LogFormat};
use courier_kit::server::ServerOptions;
use courier_kit::trace::{self, Telemetry};
use support::{call, retrying_client, Reply, TestServer, GET};
use tonic::Code;
use tracing::Instrument;

#[tokio::test]
async fn every_attempt_names_the_calling_span_and_calls_outside_a_span_send_none() {
    let telemetry = Telemetry::new("trace-context-test", None).unwrap();
    logging::init(LogFormat::Human, "warn", &telemetry).unwrap();
    let server = TestServer::start(ServerOptions::default()).await;
    let channel = retrying_client("echo", &server, 3).build().unwrap();

    // A span of the kind the server layer opens for each call being served.
    let serving = tracing::info_span!(target: trace::SPAN_TARGET, "rpc");
    let context = trace::span_context(&serving);
    assert!(context.is_valid(), "logging gives the span its ids");
    let expected = format!("00-{}-{}-01", context.trace_id(), context.span_id());

    server.script.then([Reply::Fail(Code::Unavailable), Reply::Fail(Code::Unavailable), Reply::Ok]);
    call(channel.clone(), GET, None).instrument(serving).await.unwrap();
    let sent: Vec<_> = server.script.seen(GET).into_iter().map(|seen| seen.traceparent).collect();
    assert_eq!(sent, [Some(expected.clone()), Some(expected.clone()), Some(expected)], "the retries carry it too");

    // Outside any call there is no trace to continue.
    server.script.then([Reply::Ok]);
    call(channel, GET, None).await.unwrap();
    assert_eq!(server.script.seen(GET).last().unwrap().traceparent, None);
}

//! Fault injection: off by default, and each configured fault (delay, error, drop) observed on a real server.

mod support;

use std::time::Duration;

use courier_kit::layers::faults::{DropMode, FaultOptions};
use courier_kit::server::ServerOptions;
use support::{call, TestServer, UNARY};
use tokio::time::Instant;
use tonic::Code;

async fn server_with(fault: FaultOptions) -> TestServer {
    let mut options = ServerOptions::default();
    options.faults.insert(UNARY.into(), fault);
    TestServer::start(options).await
}

#[tokio::test]
async fn faults_are_absent_without_configuration() {
    assert!(ServerOptions::default().faults.is_empty());
    let server = TestServer::start(ServerOptions::default()).await;
    let started = Instant::now();
    for _ in 0..50 {
        call(server.channel(), UNARY, None).await.unwrap();
    }
    assert_eq!(server.script.calls(UNARY), 50);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_injected_delay_slows_the_call() {
    let server = server_with(FaultOptions { delay: Duration::from_millis(150), ..FaultOptions::default() }).await;
    let started = Instant::now();
    call(server.channel(), UNARY, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    // The delay counts against the call's deadline, which the server enforces.
    let status = call(server.channel(), UNARY, Some(Duration::from_millis(50))).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
}

#[tokio::test]
async fn an_injected_error_is_answered_without_reaching_the_handler() {
    let server = server_with(FaultOptions { error: Some(Code::Unavailable), ..FaultOptions::default() }).await;
    let status = call(server.channel(), UNARY, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "injected fault");
    assert_eq!(server.script.calls(UNARY), 0);
}

#[tokio::test]
async fn an_injected_error_with_a_probability_fails_some_calls() {
    let fault = FaultOptions { error: Some(Code::Internal), error_probability: 0.5, ..FaultOptions::default() };
    let server = server_with(fault).await;
    let mut failed = 0;
    for _ in 0..200 {
        if call(server.channel(), UNARY, None).await.is_err() {
            failed += 1;
        }
    }
    // Binomial(200, 0.5): outside 50..150 once in ~10^12 runs.
    assert!((50..150).contains(&failed), "{failed} of 200 failed");
    assert_eq!(server.script.calls(UNARY), 200 - failed);
}

#[tokio::test]
async fn a_dropped_call_is_reset() {
    let fault = FaultOptions { drop: DropMode::Reset, drop_probability: 1.0, ..FaultOptions::default() };
    let server = server_with(fault).await;
    let status = call(server.channel(), UNARY, None).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(status.message().contains("reset") || status.message().contains("h2"), "{status:?}");
    assert_eq!(server.script.calls(UNARY), 0);
}

#[tokio::test]
async fn a_dropped_call_never_answers() {
    let fault = FaultOptions { drop: DropMode::Hang, drop_probability: 1.0, ..FaultOptions::default() };
    let server = server_with(fault).await;
    let answer = tokio::time::timeout(Duration::from_millis(300), call(server.channel(), UNARY, None)).await;
    assert!(answer.is_err(), "answered: {answer:?}");
    assert_eq!(server.script.calls(UNARY), 0);
}

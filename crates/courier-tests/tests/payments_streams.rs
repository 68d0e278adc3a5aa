//! PaymentService's streaming calls on SQLite and PostgreSQL: the event feed (backlog, live, resume), listings
//! from the store with every filter, AuthorizeStream's per-message errors and bounded work, BatchCapture summaries.

use std::time::Duration;

use courier_kit::time::timestamp_from_us;
use courier_proto::payments::v1 as pb;
use courier_tests::payments::*;
use courier_tests::{on_every_backend, Backend, TestServer};
use futures::{StreamExt, TryStreamExt};
use tonic::Code;

use pb::EventType;

const WAIT: Duration = Duration::from_secs(10);

async fn next_event(stream: &mut tonic::Streaming<pb::WatchEventsResponse>) -> pb::Event {
    let message = tokio::time::timeout(WAIT, stream.message()).await.expect("an event in time");
    message.expect("stream ok").expect("stream open").event.expect("event")
}

async fn events_backlog_then_live_then_resume(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 0).await;
    let held = authorize(&mut payments, authorize_request(&account.id, 100)).await;
    authorize(&mut payments, authorize_request(&account.id, 5_000)).await;

    let watch = pb::WatchEventsRequest { from_sequence: 0, account_id: String::new() };
    let mut feed = payments.watch_events(watch).await.unwrap().into_inner();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut feed).await);
    }
    let kinds: Vec<EventType> = seen.iter().map(|e| e.r#type()).collect();
    assert_eq!(kinds, [EventType::AccountOpened, EventType::Credited, EventType::Authorized, EventType::Declined]);
    assert_eq!(seen.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        (seen[2].authorization_id.as_str(), seen[2].amount, seen[2].response_code.as_str()),
        (held.id.as_str(), 100, "00")
    );
    assert_eq!(seen[3].response_code, "51");

    // Live: a capture made now arrives on the open feed.
    payments.capture(capture_request(&held.id, 60)).await.unwrap();
    let live = next_event(&mut feed).await;
    assert_eq!((live.sequence, live.r#type(), live.amount), (5, EventType::Captured, 60));
    drop(feed);

    // Resume after a disconnect: from the last seen + 1, nothing missed, nothing twice.
    credit(&mut payments, &account.id, 7).await;
    let resumed = payments.watch_events(pb::WatchEventsRequest { from_sequence: 6, account_id: account.id.clone() });
    let mut resumed = resumed.await.unwrap().into_inner();
    let next = next_event(&mut resumed).await;
    assert_eq!((next.sequence, next.r#type(), next.amount), (6, EventType::Credited, 7));
    drop(resumed);

    let bad =
        payments.watch_events(pb::WatchEventsRequest { from_sequence: -1, account_id: "x".into() }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Shutdown ends a live feed with UNAVAILABLE (reconnect and resume), not a clean end, and does not wait for it.
    let watch = pb::WatchEventsRequest { from_sequence: 7, account_id: String::new() };
    let mut live = payments.watch_events(watch).await.unwrap().into_inner();
    let mut server = server;
    server.begin_shutdown();
    let end = tokio::time::timeout(WAIT, live.message()).await.expect("the feed ends at once").unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("from_sequence 7"), "{end:?}");
    server.join().await.unwrap();
    server.database.cleanup().await;
}

async fn a_live_feed_sees_many_concurrent_commits_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let account = funded_account(&server, 1_000_000, 0).await;
    let watch = pb::WatchEventsRequest { from_sequence: 3, account_id: String::new() };
    let mut feed = server.payments().watch_events(watch).await.unwrap().into_inner();
    let writers = (0..8).map(|_| {
        let (mut payments, id) = (server.payments(), account.id.clone());
        tokio::spawn(async move {
            for _ in 0..25 {
                authorize(&mut payments, authorize_request(&id, 1)).await;
            }
        })
    });
    futures::future::try_join_all(writers).await.unwrap();
    for expected in 3..3 + 200 {
        let event = next_event(&mut feed).await;
        assert_eq!(event.sequence, expected, "gap-free, in order, no duplicates");
        assert_eq!(event.r#type(), EventType::Authorized);
    }
    drop(feed);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn list_authorizations_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut payments = server.payments();
    let first = funded_account(&server, 10_000, 0).await;
    let second = funded_account(&server, 10_000, 0).await;
    let mut ids = Vec::new();
    // 300 of the first account's: its listing (through its events) takes more than one page of 256 too.
    for i in 0..400 {
        let account = if i % 4 == 0 { &second } else { &first };
        let mut request = authorize_request(&account.id, 1);
        request.merchant_id = if i % 2 == 0 { "m_even".into() } else { "m_odd".into() };
        ids.push(authorize(&mut payments, request).await.id);
    }
    let before_void = server.clock.now_us();
    server.clock.advance(Duration::from_secs(60));
    payments.void(void_request(&ids[1])).await.unwrap();
    let late = authorize(&mut payments, authorize_request(&first.id, 1)).await;

    let list = |filter: pb::ListAuthorizationsRequest| {
        let mut payments = server.payments();
        async move {
            let stream = payments.list_authorizations(filter).await.unwrap().into_inner();
            stream.map_ok(|m| m.authorization.unwrap()).try_collect::<Vec<_>>().await.unwrap()
        }
    };
    let all = list(pb::ListAuthorizationsRequest::default()).await;
    assert_eq!(all.len(), 401, "more than one page of 256");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "creation order");

    for account in [&first, &second] {
        let by_account =
            list(pb::ListAuthorizationsRequest { account_id: account.id.clone(), ..Default::default() }).await;
        let expected: Vec<_> = all.iter().filter(|a| a.account_id == account.id).collect();
        assert_eq!(by_account.iter().collect::<Vec<_>>(), expected, "the account's, in the same creation order");
    }
    let first_held = pb::ListAuthorizationsRequest {
        account_id: first.id.clone(),
        status: pb::AuthorizationStatus::Held as i32,
        ..Default::default()
    };
    assert_eq!(list(first_held).await.len(), 300, "the voided one is left out, across pages");
    let by_merchant = list(pb::ListAuthorizationsRequest { merchant_id: "m_odd".into(), ..Default::default() }).await;
    assert_eq!(by_merchant.len(), 200);
    let voided =
        list(pb::ListAuthorizationsRequest { status: pb::AuthorizationStatus::Voided as i32, ..Default::default() })
            .await;
    assert_eq!(voided.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [ids[1].as_str()]);
    let recent = list(pb::ListAuthorizationsRequest {
        created_from: Some(timestamp_from_us(before_void + 1)),
        ..Default::default()
    })
    .await;
    assert_eq!(recent.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [late.id.as_str()]);
    let early = pb::ListAuthorizationsRequest {
        account_id: first.id.clone(),
        merchant_id: "m_even".into(),
        created_before: Some(timestamp_from_us(before_void + 1)),
        ..Default::default()
    };
    assert_eq!(list(early).await.len(), 100);

    let bad = pb::ListAuthorizationsRequest {
        account_id: "nope".into(),
        status: 99,
        created_from: Some(timestamp_from_us(10)),
        created_before: Some(timestamp_from_us(5)),
        ..Default::default()
    };
    let error = payments.list_authorizations(bad).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    server.shutdown().await;
}

async fn authorize_stream_answers_each_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let account = funded_account(&server, 100, 0).await;
    let mut requests: Vec<pb::AuthorizeStreamRequest> = (0..200)
        .map(|i| pb::AuthorizeStreamRequest {
            correlation_id: format!("c{i}"),
            request: Some(authorize_request(&account.id, 1)),
        })
        .collect();
    requests[17].request.as_mut().unwrap().amount = 0; // malformed
    requests[42].request = None; // missing
    let answers = server.payments().authorize_stream(futures::stream::iter(requests)).await.unwrap().into_inner();
    let answers: Vec<pb::AuthorizeStreamResponse> = answers.try_collect().await.expect("the stream ends OK");
    assert_eq!(answers.len(), 200, "one answer per message");
    let mut approved = 0;
    let mut ids: Vec<&str> = answers.iter().map(|a| a.correlation_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every correlation id exactly once");
    for answer in &answers {
        match answer.result.as_ref().expect("a result") {
            pb::authorize_stream_response::Result::Error(error) => {
                assert!(["c17", "c42"].contains(&answer.correlation_id.as_str()), "{answer:?}");
                assert_eq!(error.code, Code::InvalidArgument as i32);
                assert!(!error.details.is_empty(), "BadRequest details travel with the error");
            }
            pb::authorize_stream_response::Result::Authorization(a) => {
                approved += i32::from(a.decision() == pb::Decision::Approved);
            }
        }
    }
    assert_eq!(approved, 100, "funded for exactly 100");
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

/// AuthorizeStreamRequest's shape, but with the correlation id as raw bytes, so a test can send one message that
/// is not valid protobuf for the server (a string field holding invalid UTF-8).
#[derive(Clone, PartialEq, prost::Message)]
struct LooseRequest {
    #[prost(bytes = "vec", tag = "1")]
    correlation_id: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    request: Option<pb::AuthorizeRequest>,
}

async fn a_broken_inbound_stream_ends_with_its_error_not_ok(backend: Backend) {
    let server = TestServer::start(backend).await;
    let account = funded_account(&server, 1_000, 0).await;
    let good = |id: &str| LooseRequest { correlation_id: id.into(), request: Some(authorize_request(&account.id, 1)) };
    let messages =
        vec![good("a"), good("b"), LooseRequest { correlation_id: vec![0xff, 0xfe], request: None }, good("c")];
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<LooseRequest, pb::AuthorizeStreamResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/courier.payments.v1.PaymentService/AuthorizeStream");
    let request = tonic::Request::new(futures::stream::iter(messages));
    let mut answers = grpc.streaming(request, path, codec).await.unwrap().into_inner();
    let mut answered = Vec::new();
    let end = loop {
        match answers.message().await {
            Ok(Some(answer)) => answered.push(answer.correlation_id),
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let end = end.expect("the stream ends with an error status, not OK");
    assert_ne!(end.code(), Code::Ok);
    assert!(!answered.contains(&"c".to_string()), "nothing after the broken message is read");
    server.shutdown().await;
}

async fn authorize_stream_reads_no_further_than_its_bound(backend: Backend) {
    let server = TestServer::start(backend).await;
    let account = funded_account(&server, 1_000_000, 0).await;
    let bound = server.ledger.config().stream_in_flight;
    // The client sends without end; the server reads only as answers are taken. Nothing is read here, so the
    // number of messages the server pulled stays bounded by its in-flight limit plus transport buffers.
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let id = account.id.clone();
    let endless = futures::stream::iter(0..).map(move |i| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pb::AuthorizeStreamRequest { correlation_id: format!("c{i}"), request: Some(authorize_request(&id, 1)) }
    });
    let mut answers = server.payments().authorize_stream(endless).await.unwrap().into_inner();
    // Take a few answers, then stop reading.
    for _ in 0..bound {
        answers.message().await.unwrap().unwrap();
    }
    let ledger = server.ledger.clone();
    let account_id = account.id.clone();
    // This measures a stall, so it must look at the clock: the held amount has to stop growing while the client
    // keeps offering messages. An unbounded server would keep authorizing until the loop gives up.
    let mut last = -1;
    for _ in 0..50 {
        let held = ledger.get_account(&account_id).await.unwrap().unwrap().held_amount;
        if held == last {
            break;
        }
        last = held;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let offered = pulled.load(std::sync::atomic::Ordering::Relaxed);
    assert!(last < 20_000, "work stopped at {last} authorizations (client offered {offered})");
    drop(answers);
    server.shutdown().await;
}

async fn batch_capture_summarises(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 100_000, 0).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(authorize(&mut payments, authorize_request(&account.id, 100)).await.id);
    }
    payments.void(void_request(&held[3])).await.unwrap();
    let mut items: Vec<pb::BatchCaptureRequest> =
        held.iter().map(|id| pb::BatchCaptureRequest { capture: Some(capture_request(id, 40)) }).collect();
    items.push(pb::BatchCaptureRequest { capture: Some(capture_request("auth_0190f5a0c2b87cc3a1b2c3d4e5f60718", 1)) });
    items.push(pb::BatchCaptureRequest { capture: None });
    // 150 more failures: the summary lists the first 100 and says it was truncated.
    for _ in 0..150 {
        items.push(pb::BatchCaptureRequest { capture: Some(capture_request(&held[0], 0)) });
    }
    let summary = payments.batch_capture(futures::stream::iter(items.clone())).await.unwrap().into_inner();
    assert_eq!((summary.captured, summary.failed, summary.captured_amount), (9, 153, 9 * 40));
    assert_eq!(summary.failures.len(), 100);
    assert!(summary.failures_truncated);
    let first = &summary.failures[0];
    assert_eq!((first.index, first.authorization_id.as_str()), (3, held[3].as_str()));
    assert_eq!(first.error.as_ref().unwrap().code, Code::FailedPrecondition as i32);

    // The same batch again: every capture replays by its key, none posts twice.
    let again = payments.batch_capture(futures::stream::iter(items[..10].to_vec())).await.unwrap().into_inner();
    assert_eq!((again.captured, again.failed), (9, 1));
    let after = account_now(&server, &account.id).await;
    assert_eq!(after.posted_balance, 100_000 - 9 * 40);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn account_now(server: &TestServer, id: &str) -> pb::Account {
    courier_tests::payments::account(&mut server.payments(), id).await
}

on_every_backend!(
    events_backlog_then_live_then_resume,
    a_live_feed_sees_many_concurrent_commits_in_order,
    list_authorizations_filters,
    authorize_stream_answers_each_message,
    authorize_stream_reads_no_further_than_its_bound,
    a_broken_inbound_stream_ends_with_its_error_not_ok,
    batch_capture_summarises,
);

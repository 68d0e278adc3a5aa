//! AuthorizeStream asks RiskService about its messages in batches (ScoreBatch), each message decided as it would
//! be alone: a failed batch call stands its messages in, and a RiskService older than ScoreBatch (UNIMPLEMENTED) is
//! asked one Score per message instead. Authorize keeps asking with Score. Faults are injected on the co-located
//! RiskService's methods through the server's fault layer, which the in-process calls pass.

use courier_kit::layers::FaultOptions;
use courier_proto::payments::v1 as pb;
use courier_tests::payments::*;
use courier_tests::{Backend, TestOptions, TestServer};
use futures::TryStreamExt;
use tonic::Code;

const SCORE_BATCH: &str = "/courier.risk.v1.RiskService/ScoreBatch";
/// Under the built-in velocity rule (more than 20 attempts a minute per account deny).
const MESSAGES: usize = 15;

async fn start(score_batch_fails_with: Option<Code>) -> TestServer {
    let mut options = TestOptions { risk: Some(courier_risk::RiskConfig::default()), ..TestOptions::default() };
    if let Some(code) = score_batch_fails_with {
        let fault = FaultOptions { error: Some(code), ..FaultOptions::default() };
        options.server.faults.insert(SCORE_BATCH.into(), fault);
    }
    TestServer::start_configured(Backend::Sqlite, options).await
}

/// Streams `MESSAGES` authorizations of 1 on `account_id`; the answers, in request order.
async fn stream_authorizations(server: &TestServer, account_id: &str) -> Vec<pb::Authorization> {
    let requests: Vec<pb::AuthorizeStreamRequest> = (0..MESSAGES)
        .map(|i| pb::AuthorizeStreamRequest {
            correlation_id: i.to_string(),
            request: Some(authorize_request(account_id, 1)),
        })
        .collect();
    let answers = server.payments().authorize_stream(futures::stream::iter(requests)).await.unwrap().into_inner();
    let mut answers: Vec<pb::AuthorizeStreamResponse> = answers.try_collect().await.expect("the stream ends OK");
    answers.sort_by_key(|answer| answer.correlation_id.parse::<usize>().unwrap());
    answers
        .into_iter()
        .map(|answer| match answer.result.expect("a result") {
            pb::authorize_stream_response::Result::Authorization(authorization) => authorization,
            pb::authorize_stream_response::Result::Error(error) => panic!("message failed: {error:?}"),
        })
        .collect()
}

fn deciders(authorizations: &[pb::Authorization]) -> Vec<(pb::Decider, &str)> {
    authorizations.iter().map(|a| (a.decided_by(), a.response_code.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_scored_by_risk_in_batches() {
    let server = start(None).await;
    let account = funded_account(&server, 1_000, 0).await;
    let decided = stream_authorizations(&server, &account.id).await;
    assert_eq!(deciders(&decided), vec![(pb::Decider::Risk, "00"); MESSAGES]);
    let held = server.ledger.get_account(&account.id).await.unwrap().expect("the account").held_amount;
    assert_eq!(held, MESSAGES as i64);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_score_batch_stands_its_messages_in_and_authorize_still_uses_score() {
    let server = start(Some(Code::Unavailable)).await;
    let account = funded_account(&server, 1_000, 0).await;
    let decided = stream_authorizations(&server, &account.id).await;
    // The default fallback stands small amounts in.
    assert_eq!(deciders(&decided), vec![(pb::Decider::StandIn, "00"); MESSAGES]);
    let unary = authorize(&mut server.payments(), authorize_request(&account.id, 1)).await;
    assert_eq!((unary.decided_by(), unary.response_code.as_str()), (pb::Decider::Risk, "00"));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_without_score_batch_is_asked_one_score_per_message() {
    let server = start(Some(Code::Unimplemented)).await;
    let account = funded_account(&server, 1_000, 0).await;
    let decided = stream_authorizations(&server, &account.id).await;
    assert_eq!(deciders(&decided), vec![(pb::Decider::Risk, "00"); MESSAGES]);
    let refused = refused_score_batches();
    assert!(refused >= 1, "ScoreBatch was tried first");
    // The next stream's batches go straight to Score: the refusal was remembered, not paid again per batch.
    let account = funded_account(&server, 1_000, 0).await;
    let decided = stream_authorizations(&server, &account.id).await;
    assert_eq!(deciders(&decided), vec![(pb::Decider::Risk, "00"); MESSAGES]);
    assert_eq!(refused_score_batches(), refused, "no ScoreBatch asked again within the recheck interval");
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

/// ScoreBatch calls answered UNIMPLEMENTED in this process, from its metrics (only the test above injects it).
fn refused_score_batches() -> u64 {
    let metrics = courier_kit::metrics::render();
    let series = format!("courier_rpc_server_calls_total{{code=\"UNIMPLEMENTED\",method=\"{SCORE_BATCH}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&series)).map_or(0, |count| count.trim().parse().unwrap())
}

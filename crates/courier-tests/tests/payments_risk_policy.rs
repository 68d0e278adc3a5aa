//! The explicit fallback when RiskService cannot answer, decided in the ledger: `stand_in` (per authorization and
//! per account per day limits), `fail_closed`, `fail_open`; DENY declines 59. Who decided is on the authorization
//! and on its event. (The RiskService calls themselves are exercised in the cross-service tests.)

use courier_payments::config::Fallback;
use courier_payments::ledger::Risk;
use courier_payments::model::validate;
use courier_proto::payments::v1 as pb;
use courier_tests::payments::*;
use courier_tests::{on_every_backend, Backend, TestOptions, TestServer};
use futures::StreamExt;

async fn start(backend: Backend, fallback: Fallback) -> TestServer {
    let mut options = TestOptions::default();
    options.payments.risk_fallback = fallback;
    options.payments.stand_in_max_amount = 1_000;
    options.payments.stand_in_daily_limit = 2_500;
    TestServer::start_configured(backend, options).await
}

async fn decide(server: &TestServer, account_id: &str, amount: i64, risk: Risk) -> pb::Authorization {
    let mut cmd = validate::authorize(&authorize_request(account_id, amount), "").expect("valid");
    cmd.risk = risk;
    server.ledger.authorize(cmd).await.expect("decided")
}

fn code(authorization: &pb::Authorization) -> (&str, pb::Decider) {
    (authorization.response_code.as_str(), authorization.decided_by())
}

async fn stand_in_approves_small_amounts_up_to_a_daily_limit(backend: Backend) {
    let server = start(backend, Fallback::StandIn).await;
    let account = funded_account(&server, 100_000, 0).await;
    let id = account.id.as_str();
    assert_eq!(code(&decide(&server, id, 1_001, Risk::Unavailable).await), ("91", pb::Decider::StandIn));
    assert_eq!(code(&decide(&server, id, 1_000, Risk::Unavailable).await), ("00", pb::Decider::StandIn));
    assert_eq!(code(&decide(&server, id, 1_000, Risk::Unavailable).await), ("00", pb::Decider::StandIn));
    // 2,000 stood in today; 600 more would pass the 2,500 daily limit, 500 does not.
    assert_eq!(code(&decide(&server, id, 600, Risk::Unavailable).await), ("91", pb::Decider::StandIn));
    assert_eq!(code(&decide(&server, id, 500, Risk::Unavailable).await), ("00", pb::Decider::StandIn));
    assert_eq!(code(&decide(&server, id, 1, Risk::Unavailable).await), ("91", pb::Decider::StandIn));
    // Risk answering again decides as usual; the next UTC day starts a new limit.
    assert_eq!(
        code(&decide(&server, id, 5_000, Risk::Assessed { score: 120, deny: false }).await),
        ("00", pb::Decider::Risk)
    );
    server.clock.advance(std::time::Duration::from_secs(24 * 3600));
    assert_eq!(code(&decide(&server, id, 1_000, Risk::Unavailable).await), ("00", pb::Decider::StandIn));

    // The event records who decided.
    let watch = pb::WatchEventsRequest { from_sequence: 3, account_id: account.id.clone() };
    let mut events = server.payments().watch_events(watch).await.unwrap().into_inner();
    let first = events.next().await.unwrap().unwrap().event.unwrap();
    assert_eq!(
        (first.r#type(), first.decided_by(), first.response_code.as_str()),
        (pb::EventType::Declined, pb::Decider::StandIn, "91")
    );
    drop(events);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn fail_closed_and_fail_open(backend: Backend) {
    let closed = start(backend, Fallback::FailClosed).await;
    let account = funded_account(&closed, 10_000, 0).await;
    assert_eq!(code(&decide(&closed, &account.id, 1, Risk::Unavailable).await), ("91", pb::Decider::StandIn));
    closed.assert_ledger_consistent().await;
    closed.shutdown().await;

    let open = start(backend, Fallback::FailOpen).await;
    let account = funded_account(&open, 10_000, 0).await;
    assert_eq!(code(&decide(&open, &account.id, 9_000, Risk::Unavailable).await), ("00", pb::Decider::StandIn));
    // Funds still bind: fail_open skips risk, not the ledger.
    assert_eq!(code(&decide(&open, &account.id, 1_001, Risk::Unavailable).await), ("51", pb::Decider::StandIn));
    open.assert_ledger_consistent().await;
    open.shutdown().await;
}

async fn risk_deny_declines_59_with_its_score(backend: Backend) {
    let server = start(backend, Fallback::StandIn).await;
    let account = funded_account(&server, 10_000, 0).await;
    let denied = decide(&server, &account.id, 10, Risk::Assessed { score: 930, deny: true }).await;
    assert_eq!(
        (code(&denied), denied.risk_score, denied.decline_reason()),
        (("59", pb::Decider::Risk), 930, pb::DeclineReason::SuspectedFraud)
    );
    let stored =
        server.payments().get_authorization(pb::GetAuthorizationRequest { authorization_id: denied.id.clone() }).await;
    assert_eq!(stored.unwrap().into_inner().authorization.unwrap(), denied);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

on_every_backend!(
    stand_in_approves_small_amounts_up_to_a_daily_limit,
    fail_closed_and_fail_open,
    risk_deny_declines_59_with_its_score,
);

//! Score over a real socket: every rule fires and names itself, thresholds, velocity windows on a manual clock,
//! first use of a merchant, bounded memory, and validation at the boundary.

mod common;

use std::time::Duration;

use common::{request, score, violated_fields, RiskServer, RULES};
use courier_proto::risk::v1 as pb;
use courier_risk::RiskConfig;
use futures::StreamExt;
use pb::RiskDecision::{Allow, Deny, Review};

fn ago(server: &RiskServer, age: Duration) -> prost_types::Timestamp {
    let micros = server.clock.now_us() - age.as_micros() as i64;
    courier_kit::time::timestamp_from_us(micros)
}

#[tokio::test]
async fn each_rule_fires_and_its_reason_appears() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    const DAY: Duration = Duration::from_secs(24 * 3600);

    // Every case is a new account, so the first-use rule (10) fires alongside the rule under test.
    let cases: Vec<(&str, pb::ScoreRequest, i32, pb::RiskDecision, Vec<&str>)> = vec![
        ("plain", request("acct_plain"), 10, Allow, vec!["merchant.first_use"]),
        (
            "amount",
            pb::ScoreRequest { amount: 20_000, ..request("acct_amount") },
            310,
            Allow,
            vec!["amount.large", "merchant.first_use"],
        ),
        (
            "two amount tiers",
            pb::ScoreRequest { amount: 200_000, ..request("acct_tiers") },
            610,
            Review,
            vec!["amount.large", "amount.huge", "merchant.first_use"],
        ),
        (
            "deny above",
            pb::ScoreRequest { amount: 2_000_000, ..request("acct_limit") },
            1000,
            Deny,
            vec!["amount.large", "amount.huge", "amount.limit", "merchant.first_use"],
        ),
        (
            "deny list",
            pb::ScoreRequest { merchant_id: "mch_fraud".into(), ..request("acct_denylist") },
            1000,
            Deny,
            vec!["merchant.denied", "merchant.first_use"],
        ),
        (
            "new account",
            pb::ScoreRequest { account_created_at: Some(ago(&server, DAY)), ..request("acct_new") },
            50,
            Allow,
            vec!["merchant.first_use", "account.new"],
        ),
        (
            "old account",
            pb::ScoreRequest { account_created_at: Some(ago(&server, 30 * DAY)), ..request("acct_old") },
            10,
            Allow,
            vec!["merchant.first_use"],
        ),
        (
            "drains the balance",
            pb::ScoreRequest { amount: 95, available_amount: Some(100), ..request("acct_drain") },
            90,
            Allow,
            vec!["merchant.first_use", "amount.drains"],
        ),
        (
            "leaves most of the balance",
            pb::ScoreRequest { amount: 95, available_amount: Some(1_000), ..request("acct_rich") },
            10,
            Allow,
            vec!["merchant.first_use"],
        ),
    ];
    for (name, request, expected_score, decision, rules) in cases {
        let outcome = score(&mut risk, request).await;
        assert_eq!((outcome.score, outcome.decision), (expected_score, decision), "{name}: {outcome:?}");
        assert_eq!(outcome.rules, rules, "{name}");
        assert_eq!(outcome.version, "v1");
    }

    // Velocity: the fourth attempt within 60 s is one more than `max = 3`.
    for _ in 0..3 {
        assert!(!score(&mut risk, request("acct_fast")).await.rules.contains(&"velocity.burst".to_owned()));
    }
    let fourth = score(&mut risk, request("acct_fast")).await;
    assert_eq!((fourth.score, fourth.rules), (200, vec!["velocity.burst".to_owned()]));

    // Reasons carry the rule's text (its own `reason`, or one made from its parameters) and its contribution.
    let response = risk.score(pb::ScoreRequest { amount: 2_000_000, ..request("acct_texts") }).await.unwrap();
    let reasons = response.into_inner().reasons;
    let large = &reasons[0];
    assert_eq!((large.description.as_str(), large.score, large.deny), ("amount above 10000", 300, false));
    let limit = reasons.iter().find(|r| r.rule_id == "amount.limit").unwrap();
    assert_eq!((limit.description.as_str(), limit.score, limit.deny), ("amount above the risk limit", 0, true));
    let velocity = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    let burst = velocity.rule_set.unwrap().rules.into_iter().find(|r| r.id == "velocity.burst").unwrap();
    assert_eq!(burst.description, "more than 3 attempts in 1m");
    server.shutdown().await;
}

#[tokio::test]
async fn thresholds_map_scores_to_allow_review_and_deny() {
    // Tiers that add up to the edges of the bands: 250, 500, 799, 800.
    let rules = r#"
[rollout]
active = "t"

[[rule_set]]
version = "t"
review_at = 500
deny_at = 800

[[rule_set.amount_above]]
id = "a"
amount = 0
score = 250

[[rule_set.amount_above]]
id = "b"
amount = 1_000
score = 250

[[rule_set.amount_above]]
id = "c"
amount = 2_000
score = 299

[[rule_set.amount_above]]
id = "d"
amount = 3_000
score = 1
"#;
    let server = RiskServer::with_rules(rules).await;
    let mut risk = server.client();
    for (amount, expected, decision) in
        [(1, 250, Allow), (1_000, 250, Allow), (1_001, 500, Review), (2_001, 799, Review), (3_001, 800, Deny)]
    {
        let outcome = score(&mut risk, pb::ScoreRequest { amount, ..request("acct_t") }).await;
        assert_eq!((outcome.score, outcome.decision), (expected, decision), "amount {amount}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn velocity_counts_attempts_in_a_sliding_window_and_resets() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let fired = |outcome: &common::Outcome| outcome.rules.contains(&"velocity.burst".to_owned());
    let attempt = || request("acct_velocity");

    for _ in 0..3 {
        assert!(!fired(&score(&mut risk, attempt()).await));
    }
    assert!(fired(&score(&mut risk, attempt()).await), "4 attempts in the window: more than 3");

    // Just inside the window the first four still count (5 now).
    server.clock.advance(Duration::from_millis(59_999));
    assert!(fired(&score(&mut risk, attempt()).await));

    // 60 s after the first four they leave the window: only the last one and this one remain.
    server.clock.advance(Duration::from_millis(1));
    assert!(!fired(&score(&mut risk, attempt()).await));

    // Long after everything, the count starts from scratch, and a new burst fires again.
    server.clock.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        assert!(!fired(&score(&mut risk, attempt()).await));
    }
    assert!(fired(&score(&mut risk, attempt()).await));

    // Velocity is per account.
    assert!(!fired(&score(&mut risk, request("acct_other")).await));
    server.shutdown().await;
}

#[tokio::test]
async fn first_use_of_a_merchant_is_remembered_unless_denied() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let first_use = |outcome: &common::Outcome| outcome.rules.contains(&"merchant.first_use".to_owned());

    assert!(first_use(&score(&mut risk, request("acct_m")).await));
    assert!(!first_use(&score(&mut risk, request("acct_m")).await), "shop is known now");
    let elsewhere = pb::ScoreRequest { merchant_id: "other_shop".into(), ..request("acct_m") };
    assert!(first_use(&score(&mut risk, elsewhere).await));
    assert!(first_use(&score(&mut risk, request("acct_n")).await), "merchants are per account");

    // A denied attempt is not a use: the next attempt at that merchant is still a first.
    let denied = pb::ScoreRequest { amount: 2_000_000, merchant_id: "pricey".into(), ..request("acct_m") };
    assert_eq!(score(&mut risk, denied.clone()).await.decision, Deny);
    let again = pb::ScoreRequest { amount: 100, ..denied };
    assert!(first_use(&score(&mut risk, again).await));
    server.shutdown().await;
}

#[tokio::test]
async fn state_stays_bounded_under_many_distinct_accounts() {
    let config = RiskConfig { max_accounts: 100, max_merchants_per_account: 4, ..RiskConfig::default() };
    let server = RiskServer::with_rules_configured(RULES, config).await;
    let capacity = server.engine.account_capacity();
    assert!((64..=100).contains(&capacity), "{capacity}");

    let calls = futures::stream::iter(0..3_000).map(|i| {
        let mut risk = server.client();
        async move { risk.score(request(&format!("acct_{i:05}"))).await.map(|_| ()) }
    });
    let results: Vec<_> = calls.buffer_unordered(32).collect().await;
    assert!(results.iter().all(Result::is_ok));
    let tracked = server.engine.tracked_accounts();
    assert!(tracked <= capacity, "{tracked} accounts remembered, capacity {capacity}");
    assert!(tracked >= capacity / 4, "recent accounts are kept: {tracked}");

    // One account at 50 merchants: the 4 most recent are remembered.
    let mut risk = server.client();
    for m in 0..50 {
        score(&mut risk, pb::ScoreRequest { merchant_id: format!("m{m}"), ..request("acct_shopper") }).await;
    }
    assert_eq!(server.engine.merchants_of("acct_shopper"), 4);
    let recent = pb::ScoreRequest { merchant_id: "m49".into(), ..request("acct_shopper") };
    assert!(!score(&mut risk, recent).await.rules.contains(&"merchant.first_use".to_owned()));
    let forgotten = pb::ScoreRequest { merchant_id: "m0".into(), ..request("acct_shopper") };
    assert!(score(&mut risk, forgotten).await.rules.contains(&"merchant.first_use".to_owned()));
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_name_every_bad_field() {
    let server = RiskServer::builtin().await;
    let mut risk = server.client();
    let bad = pb::ScoreRequest {
        account_id: String::new(),
        merchant_id: "no spaces allowed".into(),
        amount: 0,
        currency: "usd".into(),
        account_created_at: Some(prost_types::Timestamp { seconds: 0, nanos: -1 }),
        available_amount: Some(-5),
    };
    let status = risk.score(bad).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["account_id", "merchant_id", "amount", "currency", "account_created_at", "available_amount"]
    );
    assert_eq!(
        status.message(),
        "invalid fields: account_id, merchant_id, amount, currency, account_created_at, available_amount"
    );

    for (request, field, message) in [
        (pb::ScoreRequest { account_id: "a".repeat(65), ..request("x") }, "account_id", "1 to 64 of A-Z a-z 0-9 _ -"),
        (pb::ScoreRequest { amount: -1, ..request("x") }, "amount", "must be more than zero (minor units)"),
        (pb::ScoreRequest { currency: String::new(), ..request("x") }, "currency", "required"),
        (
            pb::ScoreRequest { currency: "DOLLARS".into(), ..request("x") },
            "currency",
            "not an ISO 4217 currency code (e.g. USD)",
        ),
        (
            pb::ScoreRequest {
                account_created_at: Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }),
                ..request("x")
            },
            "account_created_at",
            "must be between 0001-01-01 and 9999-12-31",
        ),
    ] {
        let status = risk.score(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), [field]);
        assert_eq!(status.message(), format!("invalid {field}: {message}"));
    }
    // Nothing invalid was recorded.
    assert_eq!(server.engine.tracked_accounts(), 0);

    // Zero available is valid (and drains); unset context fields are fine.
    let ok = pb::ScoreRequest { available_amount: Some(0), ..request("acct_ok") };
    assert!(risk.score(ok).await.is_ok());
    server.shutdown().await;
}

/// ScoreBatch answers as that many Score calls in order would: each attempt counts for the velocity rule before the
/// next is scored, a malformed item gets its own INVALID_ARGUMENT while the others are scored, and a batch out of
/// bounds is refused whole.
#[tokio::test]
async fn score_batch_scores_in_order_as_single_calls_would() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let mut requests = vec![request("acct_batch"); 4];
    requests.insert(2, pb::ScoreRequest { amount: 0, currency: "usd".into(), ..request("acct_batch") });
    let results = risk.score_batch(pb::ScoreBatchRequest { requests }).await.expect("ScoreBatch").into_inner().results;
    assert_eq!(results.len(), 5);
    let velocity: Vec<Option<bool>> = results
        .iter()
        .map(|result| match result.result.as_ref().expect("a result") {
            pb::score_batch_result::Result::Response(response) => {
                Some(response.reasons.iter().any(|reason| reason.rule_id == "velocity.burst"))
            }
            pb::score_batch_result::Result::Error(error) => {
                assert_eq!(error.code, tonic::Code::InvalidArgument as i32, "{error:?}");
                let status = tonic::Status::with_details(
                    tonic::Code::InvalidArgument,
                    error.message.clone(),
                    prost::Message::encode_to_vec(error).into(),
                );
                assert_eq!(violated_fields(&status), ["amount", "currency"]);
                None
            }
        })
        .collect();
    // The fourth valid attempt is the fourth in the window: more than 3 (the malformed one is not an attempt).
    assert_eq!(velocity, [Some(false), Some(false), None, Some(false), Some(true)]);
    // The same account's next single Score counts the batch's attempts too.
    assert!(score(&mut risk, request("acct_batch")).await.rules.contains(&"velocity.burst".to_owned()));

    for size in [0, 1_001] {
        let requests = vec![request("acct_bounds"); size];
        let refused = risk.score_batch(pb::ScoreBatchRequest { requests }).await.unwrap_err();
        assert_eq!(violated_fields(&refused), ["requests"], "{size} attempts");
    }
    server.shutdown().await;
}

//! Rollout over a real socket: a shadow candidate never changes a decision but its disagreements are counted, a
//! percentage rollout is stable per account and near its percentage, and SetRollout promotes and rolls back.

mod common;

use std::collections::HashSet;

use common::{reason, request, score, violated_fields, RiskServer, RULES};
use courier_proto::risk::v1 as pb;
use courier_risk::rollout::share_bucket;
use futures::StreamExt;
use pb::RiskDecision::{Allow, Deny};
use pb::RolloutMode;
use tonic::Code;

/// v1 allows everything, v2 denies everything: every shadow evaluation disagrees.
const ALLOW_VS_DENY: &str = r#"
[rollout]
active = "v1"

[[rule_set]]
version = "v1"

[[rule_set.amount_above]]
id = "never"
amount = 9_000_000_000_000
score = 1

[[rule_set]]
version = "v2"

[[rule_set.amount_above]]
id = "always"
amount = 0
deny = true
"#;

fn set(version: &str, mode: RolloutMode, percent: i32) -> pb::SetRolloutRequest {
    pb::SetRolloutRequest { version: version.into(), mode: mode as i32, percent }
}

async fn stats(server: &RiskServer) -> pb::GetRolloutStatsResponse {
    server.client().get_rollout_stats(pb::GetRolloutStatsRequest {}).await.unwrap().into_inner()
}

#[tokio::test]
async fn shadow_mode_does_not_change_the_decision_but_counts_disagreements() {
    let rules = RULES.replace("active = \"v1\"", "active = \"v1\"\ncandidate = \"v2\"\nmode = \"shadow\"");
    let server = RiskServer::with_rules(&rules).await;
    let mut risk = server.client();

    // 6,000 is above v2's deny limit and below every v1 amount rule: v1 allows, v2 (in shadow) would deny.
    let response = risk.score(pb::ScoreRequest { amount: 6_000, ..request("acct_s") }).await.unwrap().into_inner();
    assert_eq!((response.decision(), response.rule_set_version.as_str()), (Allow, "v1"));
    assert!(!response.decided_by_candidate);
    let shadow = response.shadow.expect("a shadow evaluation ran");
    assert_eq!((shadow.rule_set_version.as_str(), shadow.decision(), shadow.score), ("v2", Deny, 1000));
    // Only the enforced set's reasons are sent.
    assert_eq!(response.reasons.iter().map(|r| r.rule_id.as_str()).collect::<Vec<_>>(), ["merchant.first_use"]);

    // 100 is fine for both: a shadow evaluation that agrees.
    let agreeing = score(&mut risk, request("acct_s")).await;
    assert_eq!(agreeing.decision, Allow);

    let counted = stats(&server).await;
    assert_eq!(
        (counted.evaluations, counted.shadow_evaluations, counted.disagreements, counted.shadow_stricter),
        (2, 2, 1, 1)
    );
    assert_eq!((counted.shadow_more_lenient, counted.decided_by_candidate), (0, 0));
    let rollout = counted.rollout.unwrap();
    assert_eq!((rollout.active_version.as_str(), rollout.candidate_version.as_str()), ("v1", "v2"));
    assert_eq!(rollout.candidate_mode(), RolloutMode::Shadow);
    server.shutdown().await;
}

#[tokio::test]
async fn percentage_rollout_is_stable_per_account_and_near_the_percentage() {
    let server = RiskServer::with_rules(ALLOW_VS_DENY).await;
    let mut risk = server.client();
    risk.set_rollout(set("v2", RolloutMode::Percentage, 25)).await.unwrap();

    const ACCOUNTS: usize = 10_000;
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct_{i:032x}")).collect();
    let decide = |accounts: Vec<String>| {
        let server = &server;
        futures::stream::iter(accounts)
            .map(move |account| {
                let mut risk = server.client();
                async move {
                    let response = risk.score(request(&account)).await.unwrap().into_inner();
                    (account, response)
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
    };
    let first = decide(accounts.clone()).await;
    let mut candidate = HashSet::new();
    for (account, response) in &first {
        // The candidate decides exactly where the account's stable bucket is below the percentage; the other set
        // runs in shadow either way.
        let by_candidate = share_bucket("v2", account) < 25;
        assert_eq!(response.decided_by_candidate, by_candidate, "{account}");
        let (version, decision, shadow) = if by_candidate { ("v2", Deny, "v1") } else { ("v1", Allow, "v2") };
        assert_eq!((response.rule_set_version.as_str(), response.decision()), (version, decision));
        assert_eq!(response.shadow.as_ref().unwrap().rule_set_version, shadow);
        if by_candidate {
            candidate.insert(account.clone());
        }
    }
    let share = candidate.len() as f64 / ACCOUNTS as f64;
    assert!((0.23..=0.27).contains(&share), "{} of {ACCOUNTS} accounts got the candidate", candidate.len());

    // The same accounts again: every one lands on the same side.
    let again = decide(accounts[..2_000].to_vec()).await;
    for (account, response) in &again {
        assert_eq!(response.decided_by_candidate, candidate.contains(account), "{account} moved");
    }

    let counted = stats(&server).await;
    let n = candidate.len() as i64 + again.iter().filter(|(a, _)| candidate.contains(a)).count() as i64;
    let total = (ACCOUNTS + 2_000) as i64;
    assert_eq!((counted.evaluations, counted.shadow_evaluations, counted.decided_by_candidate), (total, total, n));
    // v1 and v2 always disagree: stricter in shadow where v1 decided, more lenient where v2 did.
    assert_eq!((counted.disagreements, counted.shadow_stricter, counted.shadow_more_lenient), (total, total - n, n));

    // Raising the percentage only adds accounts.
    risk.set_rollout(set("v2", RolloutMode::Percentage, 50)).await.unwrap();
    for account in candidate.iter().take(500) {
        assert!(risk.score(request(account)).await.unwrap().into_inner().decided_by_candidate, "{account} left");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn set_rollout_promotes_rolls_back_and_refuses_what_cannot_apply() {
    let server = RiskServer::with_rules(ALLOW_VS_DENY).await;
    let mut risk = server.client();
    assert_eq!(score(&mut risk, request("acct_r")).await.version, "v1");

    // Shadow first: nothing changes for callers, and the statistics start from zero with the new rollout.
    score(&mut risk, request("acct_r")).await;
    let shadow = risk.set_rollout(set("v2", RolloutMode::Shadow, 0)).await.unwrap().into_inner();
    assert_eq!(shadow.previous.unwrap().candidate_version, "");
    assert_eq!(shadow.rollout.unwrap().candidate_mode(), RolloutMode::Shadow);
    assert_eq!(stats(&server).await.evaluations, 0);
    assert_eq!(score(&mut risk, request("acct_r")).await.decision, Allow);

    // ENFORCE replaces the active set for everyone.
    let enforced = risk.set_rollout(set("v2", RolloutMode::Enforce, 0)).await.unwrap().into_inner();
    let now = enforced.rollout.unwrap();
    assert_eq!((now.active_version.as_str(), now.candidate_version.as_str()), ("v2", ""));
    assert_eq!(enforced.previous.unwrap().candidate_version, "v2");
    let outcome = score(&mut risk, request("acct_r")).await;
    assert_eq!((outcome.version.as_str(), outcome.decision), ("v2", Deny));
    let response = risk.score(request("acct_r")).await.unwrap().into_inner();
    assert!(response.shadow.is_none() && !response.decided_by_candidate);

    // Rollback is switching back.
    risk.set_rollout(set("v1", RolloutMode::Enforce, 0)).await.unwrap();
    assert_eq!(score(&mut risk, request("acct_r")).await.version, "v1");

    // What cannot apply.
    let missing = risk.set_rollout(set("v9", RolloutMode::Shadow, 0)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "rule_set v9 not found");
    let active = risk.set_rollout(set("v1", RolloutMode::Percentage, 10)).await.unwrap_err();
    assert_eq!((active.code(), reason(&active).as_str()), (Code::FailedPrecondition, "CANDIDATE_IS_ACTIVE"));
    let nothing = pb::SetRolloutRequest { version: String::new(), mode: 0, percent: 7 };
    assert_eq!(violated_fields(&risk.set_rollout(nothing).await.unwrap_err()), ["version", "mode"]);
    let unknown_mode = pb::SetRolloutRequest { version: "v2".into(), mode: 42, percent: 0 };
    let status = risk.set_rollout(unknown_mode).await.unwrap_err();
    assert_eq!(status.message(), "invalid mode: must be SHADOW, PERCENTAGE or ENFORCE, got 42");
    assert_eq!(
        violated_fields(&risk.set_rollout(set("v2", RolloutMode::Percentage, 101)).await.unwrap_err()),
        ["percent"]
    );
    assert_eq!(violated_fields(&risk.set_rollout(set("v2", RolloutMode::Shadow, 5)).await.unwrap_err()), ["percent"]);
    assert_eq!(violated_fields(&risk.set_rollout(set("v 2", RolloutMode::Shadow, 0)).await.unwrap_err()), ["version"]);
    // Nothing of the refused calls applied.
    let rollout = stats(&server).await.rollout.unwrap();
    assert_eq!((rollout.active_version.as_str(), rollout.candidate_version.as_str()), ("v1", ""));
    server.shutdown().await;
}

#[tokio::test]
async fn get_rule_set_describes_the_rules_and_the_rollout() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let active = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    let set = active.rule_set.unwrap();
    assert_eq!((set.version.as_str(), set.review_at, set.deny_at, set.rules.len()), ("v1", 500, 800, 8));
    let velocity = set.rules.iter().find(|r| r.id == "velocity.burst").unwrap();
    let Some(pb::rule::Condition::Velocity(condition)) = &velocity.condition else { panic!("{velocity:?}") };
    assert_eq!((condition.max, condition.window.unwrap().seconds), (3, 60));
    assert_eq!(active.versions, ["v1", "v2"]);
    assert_eq!(active.rules_file, server.rules().path.display().to_string());
    assert_eq!(active.last_reload_error, "");
    assert_eq!(active.rollout.unwrap().active_version, "v1");

    let v2 = risk.get_rule_set(pb::GetRuleSetRequest { version: "v2".into() }).await.unwrap().into_inner();
    let v2 = v2.rule_set.unwrap();
    assert_eq!((v2.version.as_str(), v2.rules[0].deny, v2.rules[0].score), ("v2", true, 0));

    let missing = risk.get_rule_set(pb::GetRuleSetRequest { version: "v3".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = risk.get_rule_set(pb::GetRuleSetRequest { version: "v/3".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&malformed), ["version"]);
    server.shutdown().await;
}

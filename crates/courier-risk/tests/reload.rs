//! Rules from a file, changed at run time: ReloadRules and the file watcher switch versions without a restart; a
//! bad file at start refuses to start, and a bad file on reload keeps the rules in force and says why.

mod common;

use std::time::Duration;

use common::{reason, request, score, RiskServer, RulesFile, RULES};
use courier_proto::risk::v1 as pb;
use courier_risk::engine::{Loads, StartError};
use courier_risk::{Clock, RiskConfig, RiskEngine};
use pb::RiskDecision::{Allow, Deny};
use tonic::Code;

fn v2_active() -> String {
    // A different size as well as a new modification time, so the watcher's check cannot miss it.
    RULES.replace("active = \"v1\"", "active = \"v2\"  # switched")
}

const BROKEN: &str = "[rollout]\nactive = \"v1\"\n\n[[rule_set]]\nversion = \"v1\"\nreview_at = \"high\"\n";

async fn reload(server: &RiskServer) -> Result<pb::ReloadRulesResponse, tonic::Status> {
    server.client().reload_rules(pb::ReloadRulesRequest {}).await.map(tonic::Response::into_inner)
}

async fn wait_for(server: &RiskServer, done: impl FnMut(&Loads) -> bool) {
    let mut loads = server.engine.subscribe();
    tokio::time::timeout(Duration::from_secs(30), loads.wait_for(done))
        .await
        .expect("the watcher acted within 30 s")
        .expect("engine alive");
}

#[tokio::test]
async fn reload_rules_switches_the_rule_set_version_at_run_time() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let probe = || pb::ScoreRequest { amount: 6_000, ..request("acct_reload") };
    assert_eq!(score(&mut risk, probe()).await.version, "v1");
    let first = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner().loaded_at.unwrap();

    server.rules().write(&v2_active());
    server.clock.advance(Duration::from_secs(1));
    let reloaded = reload(&server).await.unwrap();
    assert_eq!(reloaded.rollout.unwrap().active_version, "v2");
    assert_eq!(reloaded.loaded_at.unwrap().seconds, first.seconds + 1);
    assert_eq!(reloaded.versions, ["v1", "v2"]);
    let outcome = score(&mut risk, probe()).await;
    assert_eq!((outcome.version.as_str(), outcome.decision), ("v2", Deny));

    // The file's rollout applies on every load, over an earlier SetRollout.
    let back = pb::SetRolloutRequest { version: "v1".into(), mode: pb::RolloutMode::Enforce as i32, percent: 0 };
    risk.set_rollout(back).await.unwrap();
    assert_eq!(score(&mut risk, probe()).await.version, "v1");
    reload(&server).await.unwrap();
    assert_eq!(score(&mut risk, probe()).await.version, "v2");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_rules_in_force_and_says_why() {
    let server = RiskServer::with_rules(RULES).await;
    let mut risk = server.client();
    let loaded_at = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner().loaded_at;

    server.rules().write(BROKEN);
    let status = reload(&server).await.unwrap_err();
    assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "RULES_INVALID"));
    let path = server.rules().path.display().to_string();
    assert!(
        status.message().starts_with(&format!("rules file {path}: TOML parse error at line 6")),
        "{}",
        status.message()
    );
    assert!(status.message().contains("invalid type: string \"high\", expected i64"), "{}", status.message());

    // A file that parses but does not make sense is refused the same way, every problem listed.
    server.rules().write(&RULES.replace("max = 3", "max = 0").replace("percent = 90", "percent = 0"));
    let status = reload(&server).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status
        .message()
        .contains(r#"rule_set "v1", velocity rule "velocity.burst": `max` must be 1 to 1000, got 0"#));
    assert!(status
        .message()
        .contains(r#"rule_set "v1", drains_available rule "amount.drains": `percent` must be 1 to 100, got 0"#));

    // The old rules still decide, and GetRuleSet says what went wrong.
    let outcome = score(&mut risk, pb::ScoreRequest { amount: 6_000, ..request("acct_bad") }).await;
    assert_eq!((outcome.version.as_str(), outcome.decision), ("v1", Allow));
    let described = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    assert!(described.last_reload_error.contains("`max` must be 1 to 1000, got 0"), "{}", described.last_reload_error);
    assert_eq!(described.loaded_at, loaded_at);

    // Fixed, it loads, and the error is gone.
    server.rules().write(&v2_active());
    reload(&server).await.unwrap();
    let described = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    assert_eq!((described.last_reload_error.as_str(), described.rule_set.unwrap().version.as_str()), ("", "v2"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_watcher_reloads_a_changed_file_and_keeps_the_rules_when_it_turns_bad() {
    let config = RiskConfig { watch_interval: Duration::from_millis(10), ..RiskConfig::default() };
    let server = RiskServer::with_rules_configured(RULES, config).await;
    let mut risk = server.client();
    let probe = || pb::ScoreRequest { amount: 6_000, ..request("acct_watch") };
    assert_eq!(score(&mut risk, probe()).await.version, "v1");

    server.rules().write(&v2_active());
    wait_for(&server, |loads| loads.succeeded >= 2).await;
    assert_eq!(score(&mut risk, probe()).await.version, "v2");

    server.rules().write(BROKEN);
    wait_for(&server, |loads| loads.failed >= 1).await;
    assert_eq!(score(&mut risk, probe()).await.version, "v2", "a bad file changes nothing");
    let described = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    assert!(described.last_reload_error.contains("TOML parse error at line 6"), "{}", described.last_reload_error);

    // A bad file is reported once, not every tick; a fixed one loads again.
    server.rules().write(RULES);
    wait_for(&server, |loads| loads.succeeded >= 3).await;
    assert_eq!(server.engine.subscribe().borrow().failed, 1);
    assert_eq!(score(&mut risk, probe()).await.version, "v1");
    server.shutdown().await;
}

#[test]
fn a_bad_rules_file_refuses_to_start_naming_the_problem() {
    let file = RulesFile::new(BROKEN);
    let config = RiskConfig { rules_file: file.path.clone(), ..RiskConfig::default() };
    let error = RiskEngine::start(&config, Clock::manual()).unwrap_err();
    assert!(matches!(error, StartError::Rules(_)));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("rules file {}: TOML parse error at line 6", file.path.display())),
        "{message}"
    );
    assert!(message.contains("review_at = \"high\""), "{message}");

    let missing = RiskConfig { rules_file: file.path.with_file_name("absent.toml"), ..RiskConfig::default() };
    let message = RiskEngine::start(&missing, Clock::manual()).unwrap_err().to_string();
    assert!(message.contains("absent.toml: cannot read it: No such file or directory"), "{message}");

    let tiny = RiskConfig { max_accounts: 1, ..RiskConfig::default() };
    let message = RiskEngine::start(&tiny, Clock::manual()).unwrap_err().to_string();
    assert_eq!(message, "invalid configuration key `risk.max_accounts`: must be at least 2, got 1");
}

#[tokio::test]
async fn without_a_rules_file_the_builtin_rules_run_and_reload_is_refused() {
    let server = RiskServer::builtin().await;
    let mut risk = server.client();
    let described = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    assert_eq!((described.rule_set.unwrap().version.as_str(), described.rules_file.as_str()), ("builtin-1", ""));
    let status = reload(&server).await.unwrap_err();
    assert_eq!((status.code(), reason(&status).as_str()), (Code::FailedPrecondition, "NO_RULES_FILE"));
    assert_eq!(score(&mut risk, request("acct_builtin")).await.decision, Allow);
    server.shutdown().await;
}

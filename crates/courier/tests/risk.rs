//! RiskService in the `courier` binary: `serve risk` alone with rules from the `[risk]` table, a bad rules file
//! stopping the process before it listens, and `up` serving risk beside users and payments.

use std::process::Command;

use courier_proto::risk::v1 as pb;
use courier_proto::risk::v1::risk_service_client::RiskServiceClient;
use courier_tests::process::CourierProcess;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

const RULES: &str = r#"
[rollout]
active = "v1"

[[rule_set]]
version = "v1"

[[rule_set.amount_above]]
id = "amount.large"
amount = 10_000
score = 600

[[rule_set]]
version = "v2"

[[rule_set.amount_above]]
id = "amount.strict"
amount = 5_000
deny = true
"#;

fn score_request(amount: i64) -> pb::ScoreRequest {
    pb::ScoreRequest {
        account_id: "acct_01a1fe15b12f74e8905abc4b89284e1f".into(),
        merchant_id: "coffee_shop".into(),
        amount,
        currency: "USD".into(),
        account_created_at: None,
        available_amount: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_risk_alone_with_rules_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let config = dir.path().join("courier.toml");
    std::fs::write(
        &config,
        format!("[risk]\nrules_file = {:?}\nwatch_interval = \"0s\"\n", rules.display().to_string()),
    )
    .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = CourierProcess::start(
        BIN,
        &["serve", "risk", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--config", config.to_str().unwrap()],
    );
    let mut risk = RiskServiceClient::new(server.channel.clone());

    let scored = risk.score(score_request(20_000)).await.unwrap().into_inner();
    assert_eq!(
        (scored.rule_set_version.as_str(), scored.score, scored.decision()),
        ("v1", 600, pb::RiskDecision::Review)
    );

    // Only risk runs in this process.
    let create = courier_proto::users::v1::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() };
    assert_eq!(server.users().create_user(create).await.unwrap_err().code(), Code::Unimplemented);

    // The file changes; ReloadRules puts it in force without a restart.
    std::fs::write(&rules, RULES.replace("active = \"v1\"", "active = \"v2\"")).unwrap();
    let reloaded = risk.reload_rules(pb::ReloadRulesRequest {}).await.unwrap().into_inner();
    assert_eq!(reloaded.rollout.unwrap().active_version, "v2");
    let scored = risk.score(score_request(6_000)).await.unwrap().into_inner();
    assert_eq!((scored.rule_set_version.as_str(), scored.decision()), ("v2", pb::RiskDecision::Deny));
}

#[test]
fn a_bad_rules_file_stops_the_process_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES.replace("amount = 5_000", "amount = -5")).unwrap();
    let output = Command::new(BIN)
        .args(["serve", "risk", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("COURIER_RISK__RULES_FILE", &rules)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "error: rules file {}: rule_set \"v2\", amount_above rule \"amount.strict\": `amount` must be zero or more \
         (minor units), got -5",
        rules.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_risk_beside_users_and_payments() {
    let dir = tempfile::tempdir().unwrap();
    let server = CourierProcess::start(
        BIN,
        &["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()],
    );
    let mut risk = RiskServiceClient::new(server.channel.clone());
    let scored = risk.score(score_request(100)).await.unwrap().into_inner();
    assert_eq!((scored.rule_set_version.as_str(), scored.decision()), ("builtin-1", pb::RiskDecision::Allow));
    let described = risk.get_rule_set(pb::GetRuleSetRequest::default()).await.unwrap().into_inner();
    assert_eq!(described.rules_file, "");

    // Users and payments are there too.
    let create = courier_proto::users::v1::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() };
    server.users().create_user(create).await.unwrap();
    let missing = courier_proto::payments::v1::GetAccountRequest { account_id: score_request(1).account_id };
    assert_eq!(server.payments().get_account(missing).await.unwrap_err().code(), Code::NotFound);
}

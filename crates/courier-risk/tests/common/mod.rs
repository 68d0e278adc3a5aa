//! A risk server inside the test process on `127.0.0.1:0`, ready when health says so, with a manual clock and
//! (optionally) a rules file in a temporary directory.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use courier_kit::server::{self, ServeError, ServerOptions, ServiceSet};
use courier_proto::risk::v1 as pb;
use courier_proto::risk::v1::risk_service_client::RiskServiceClient;
use courier_risk::{Clock, RiskApi, RiskConfig, RiskEngine};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Two rule sets: v1 with one rule of every kind, v2 that denies anything above 5,000.
pub const RULES: &str = r#"
[rollout]
active = "v1"

[[rule_set]]
version = "v1"
review_at = 500
deny_at = 800

[[rule_set.amount_above]]
id = "amount.large"
amount = 10_000
score = 300

[[rule_set.amount_above]]
id = "amount.huge"
amount = 100_000
score = 300

[[rule_set.amount_above]]
id = "amount.limit"
amount = 1_000_000
deny = true
reason = "amount above the risk limit"

[[rule_set.velocity]]
id = "velocity.burst"
max = 3
window = "60s"
score = 200

[[rule_set.merchant_deny_list]]
id = "merchant.denied"
merchants = ["mch_fraud"]
deny = true

[[rule_set.first_merchant_use]]
id = "merchant.first_use"
score = 10

[[rule_set.new_account]]
id = "account.new"
younger_than = "7days"
score = 40

[[rule_set.drains_available]]
id = "amount.drains"
percent = 90
score = 80

[[rule_set]]
version = "v2"

[[rule_set.amount_above]]
id = "amount.strict"
amount = 5_000
deny = true
"#;

/// A rules file in its own temporary directory.
pub struct RulesFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl RulesFile {
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, text).expect("write rules");
        Self { _dir: dir, path }
    }

    /// Replaces the content atomically (write beside, then rename), as a deployment should: the watcher sees the
    /// old file or the new one, never half of one.
    pub fn write(&self, text: &str) {
        let next = self.path.with_extension("toml.next");
        std::fs::write(&next, text).expect("write rules");
        std::fs::rename(&next, &self.path).expect("replace rules");
    }
}

/// A running RiskService and a channel to it.
pub struct RiskServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub engine: Arc<RiskEngine>,
    /// Manual: tests move time instead of waiting for it.
    pub clock: Clock,
    pub rules: Option<RulesFile>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RiskServer {
    /// The built-in rules.
    pub async fn builtin() -> Self {
        Self::start(RiskConfig { watch_interval: Duration::ZERO, ..RiskConfig::default() }, None).await
    }

    /// `text` from a file, with the watcher off (reloads happen by ReloadRules).
    pub async fn with_rules(text: &str) -> Self {
        Self::with_rules_configured(text, RiskConfig { watch_interval: Duration::ZERO, ..RiskConfig::default() }).await
    }

    /// `text` from a file, with `config` (its `rules_file` is set here).
    pub async fn with_rules_configured(text: &str, config: RiskConfig) -> Self {
        let rules = RulesFile::new(text);
        let config = RiskConfig { rules_file: rules.path.clone(), ..config };
        Self::start(config, Some(rules)).await
    }

    async fn start(config: RiskConfig, rules: Option<RulesFile>) -> Self {
        let clock = Clock::manual();
        let engine = RiskEngine::start(&config, clock.clone()).expect("risk engine starts");
        engine.spawn_watcher();
        let mut services = ServiceSet::default();
        services.describe(courier_proto::FILE_DESCRIPTOR_SET);
        services.add(RiskApi::new(engine.clone()).into_service());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(listener, services, &ServerOptions::default(), async move {
                let _ = signal.await;
            })
            .await
        });
        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        let server = Self { addr, channel, engine, clock, rules, shutdown: Some(shutdown), task: Some(task) };
        server.wait_until_serving().await;
        server
    }

    pub fn client(&self) -> RiskServiceClient<Channel> {
        RiskServiceClient::new(self.channel.clone())
    }

    pub fn rules(&self) -> &RulesFile {
        self.rules.as_ref().expect("started with a rules file")
    }

    /// Graceful shutdown.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self.task.take().expect("running");
        task.await.expect("server task").expect("server ended cleanly");
    }

    /// Health is the readiness signal: the listener is bound before `serve` runs, so calls queue until it does.
    async fn wait_until_serving(&self) {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..500 {
            let request = HealthCheckRequest { service: "courier.risk.v1.RiskService".into() };
            if let Ok(response) = health.check(request).await {
                if response.into_inner().status() == ServingStatus::Serving {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("risk server on {} never reported SERVING", self.addr);
    }
}

impl Drop for RiskServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A Score request for 100 (minor units of USD) at `shop`.
pub fn request(account_id: &str) -> pb::ScoreRequest {
    pb::ScoreRequest {
        account_id: account_id.into(),
        merchant_id: "shop".into(),
        amount: 100,
        currency: "USD".into(),
        account_created_at: None,
        available_amount: None,
    }
}

/// What a Score said, in a shape that is easy to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub score: i32,
    pub decision: pb::RiskDecision,
    pub rules: Vec<String>,
    pub version: String,
}

pub async fn score(client: &mut RiskServiceClient<Channel>, request: pb::ScoreRequest) -> Outcome {
    let response = client.score(request).await.expect("Score").into_inner();
    Outcome {
        score: response.score,
        decision: response.decision(),
        rules: response.reasons.iter().map(|r| r.rule_id.clone()).collect(),
        version: response.rule_set_version,
    }
}

/// The fields a BadRequest names, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status.get_details_bad_request().expect("BadRequest").field_violations.into_iter().map(|v| v.field).collect()
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().expect("ErrorInfo").reason
}

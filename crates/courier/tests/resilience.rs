//! The three services as separate processes over loopback, with faults injected by configuration: risk slow, risk
//! flapping, risk replica killed under load, users down. In each, every Authorize answers within its deadline, the
//! decision follows the policy (RISK when risk answers, the stand-in policy otherwise), a retry never places a
//! second hold, and `courier ledger check` passes.

use std::path::Path;
use std::time::{Duration, Instant};

use courier_proto::payments::v1 as pb;
use courier_tests::bearer::AuthChannel;
use courier_tests::payments::authorize_request;
use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const SCORE: &str = "/courier.risk.v1.RiskService/Score";
/// What a caller gives each Authorize; every answer must come inside it (plus scheduling slack on a loaded box).
const BUDGET: Duration = Duration::from_millis(1_000);
const SLACK: Duration = Duration::from_millis(250);

/// No velocity rule (these tests send bursts on purpose); one deny-listed merchant to see risk decide.
const RULES: &str = r#"
[rollout]
active = "resilience-1"

[[rule_set]]
version = "resilience-1"

[[rule_set.merchant_deny_list]]
id = "merchant.denied"
merchants = ["mch_known_fraud"]
deny = true
"#;

struct Stack {
    dir: tempfile::TempDir,
    users: Option<CourierProcess>,
    risks: Vec<CourierProcess>,
    payments: CourierProcess,
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// users, `risk_replicas` risk servers (with `risk_faults`, a TOML table body for Score), and payments using them.
fn stack(risk_replicas: usize, risk_faults: &str, payments_extra: &str) -> Stack {
    stack_with_env(risk_replicas, risk_faults, payments_extra, &[])
}

/// [`stack`] with extra environment variables for payments.
fn stack_with_env(risk_replicas: usize, risk_faults: &str, payments_extra: &str, env: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let users = CourierProcess::start(BIN, &["serve", "users", "--listen", "127.0.0.1:0", "--data-dir", &root]);
    let rules = write(dir.path(), "rules.toml", RULES);
    let risk_config = format!(
        "[risk]\nrules_file = {rules:?}\n{}",
        if risk_faults.is_empty() { String::new() } else { format!("[server.faults.{SCORE:?}]\n{risk_faults}\n") }
    );
    let risk_config = write(dir.path(), "risk.toml", &risk_config);
    let risks: Vec<CourierProcess> = (0..risk_replicas)
        .map(|_| CourierProcess::start(BIN, &["serve", "risk", "--listen", "127.0.0.1:0", "--config", &risk_config]))
        .collect();
    let risk_urls: Vec<String> = risks.iter().map(|r| format!("http://{}", r.addr)).collect();
    let payments_config = write(
        dir.path(),
        "payments.toml",
        &format!("[payments]\nrisk_timeout = \"50ms\"\nusers_timeout = \"200ms\"\n{payments_extra}\n"),
    );
    let payments = CourierProcess::start_with_env(
        BIN,
        &[
            "serve",
            "payments",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &root,
            "--config",
            &payments_config,
            "--users-url",
            &format!("http://{}", users.addr),
            "--risk-url",
            &risk_urls.join(","),
        ],
        env,
    );
    Stack { dir, users: Some(users), risks, payments }
}

impl Stack {
    /// An ACTIVE user's USD account with `funds`.
    async fn account(&self, funds: i64) -> String {
        courier_tests::process::funded_account(self.users.as_ref().unwrap(), &self.payments, funds).await
    }

    fn ledger_check(&self) {
        courier_tests::process::ledger_check(BIN, &["--data-dir", self.dir.path().to_str().unwrap()]);
    }
}

/// One Authorize with the caller's budget; asserts it answered in time and returns the authorization.
async fn authorize_in_time(channel: &AuthChannel, request: pb::AuthorizeRequest) -> pb::Authorization {
    let mut client = pb::payment_service_client::PaymentServiceClient::new(channel.clone());
    let mut call = tonic::Request::new(request);
    call.set_timeout(BUDGET);
    let started = Instant::now();
    let answer = client.authorize(call).await.expect("an answer, not an error");
    let took = started.elapsed();
    assert!(took < BUDGET + SLACK, "answered after {took:?}");
    answer.into_inner().authorization.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_then_dead_risk_service_is_stood_in_for_within_the_deadline() {
    // Score takes 300 ms; payments gives it 50 ms.
    let stack = stack(1, "delay = \"300ms\"", "");
    let account = stack.account(1_000_000).await;
    for _ in 0..5 {
        let authorization = authorize_in_time(&stack.payments.channel, authorize_request(&account, 100)).await;
        assert_eq!((authorization.response_code.as_str(), authorization.decided_by()), ("00", pb::Decider::StandIn));
    }
    // Above the stand-in limit per authorization (10,000 by default): 91, still decided by the stand-in.
    let big = authorize_in_time(&stack.payments.channel, authorize_request(&account, 10_001)).await;
    assert_eq!((big.response_code.as_str(), big.decided_by()), ("91", pb::Decider::StandIn));

    // Risk gone altogether: the same policy, as fast (the breaker soon answers locally).
    let mut stack = stack;
    stack.risks.remove(0).kill();
    for _ in 0..20 {
        let authorization = authorize_in_time(&stack.payments.channel, authorize_request(&account, 100)).await;
        assert_eq!((authorization.response_code.as_str(), authorization.decided_by()), ("00", pb::Decider::StandIn));
    }
    stack.ledger_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_risk_service_mixes_risk_and_stand_in_and_retries_place_no_second_hold() {
    let stack = stack(1, "error = \"UNAVAILABLE\"\nerror_probability = 0.5", "");
    let account = stack.account(1_000_000).await;
    let mut deciders = Vec::new();
    for _ in 0..40 {
        let request = authorize_request(&account, 10);
        let first = authorize_in_time(&stack.payments.channel, request.clone()).await;
        // A retry with the same key returns the stored answer, whatever risk does meanwhile.
        let again = authorize_in_time(&stack.payments.channel, request).await;
        assert_eq!(again, first);
        deciders.push(first.decided_by());
    }
    assert!(deciders.contains(&pb::Decider::Risk) && deciders.contains(&pb::Decider::StandIn), "{deciders:?}");
    let account_now = stack
        .payments
        .payments()
        .get_account(pb::GetAccountRequest { account_id: account.clone() })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(account_now.held_amount, 40 * 10, "one hold per key");
    stack.ledger_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_replica_killed_under_load_is_routed_around() {
    let mut stack = stack(2, "", "");
    let account = stack.account(10_000_000).await;
    // Risk decides while both replicas run: a deny-listed merchant declines 59.
    let mut denied = authorize_request(&account, 10);
    denied.merchant_id = "mch_known_fraud".into();
    let denied = authorize_in_time(&stack.payments.channel, denied).await;
    assert_eq!((denied.response_code.as_str(), denied.decided_by()), ("59", pb::Decider::Risk));

    let load = (0..4).map(|_| {
        let (channel, account) = (stack.payments.channel.clone(), account.clone());
        tokio::spawn(async move {
            let mut deciders = Vec::new();
            for _ in 0..30 {
                deciders.push(authorize_in_time(&channel, authorize_request(&account, 10)).await.decided_by());
            }
            deciders
        })
    });
    let load: Vec<_> = load.collect();
    stack.risks.remove(0).kill();
    let deciders: Vec<Vec<pb::Decider>> = futures::future::try_join_all(load).await.unwrap();
    assert_eq!(deciders.iter().map(Vec::len).sum::<usize>(), 120, "every call answered");
    // After the kill settles, the surviving replica decides.
    let mut last = Vec::new();
    for _ in 0..10 {
        last.push(authorize_in_time(&stack.payments.channel, authorize_request(&account, 10)).await.decided_by());
    }
    assert!(last.iter().filter(|d| **d == pb::Decider::Risk).count() >= 8, "{last:?}");
    stack.ledger_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_down_declines_91_after_the_holder_cache_and_never_before() {
    // A recently known holder is served from the cache for holder_stale_if_error past its TTL while users fails.
    let env = [("COURIER_PAYMENTS__HOLDER_STALE_IF_ERROR", "1s")];
    let mut stack = stack_with_env(1, "", "holder_cache_ttl = \"2s\"", &env);
    let before_open = Instant::now();
    let account = stack.account(1_000_000).await;
    let approved = authorize_in_time(&stack.payments.channel, authorize_request(&account, 10)).await;
    assert_eq!(approved.response_code, "00");
    stack.users.take().unwrap().kill();
    // A blip: the holder's status is still fresh in the cache, so nothing declines for it.
    let during_blip = authorize_in_time(&stack.payments.channel, authorize_request(&account, 10)).await;
    assert_eq!(during_blip.response_code, "00");
    // Past the cache, with UserService gone: fail closed, 91, within the deadline.
    let mut declined = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let answer = authorize_in_time(&stack.payments.channel, authorize_request(&account, 10)).await;
        if answer.response_code == "91" {
            declined = Some(answer);
            break;
        }
        assert_eq!(answer.response_code, "00", "until the cache expires the holder stands");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let declined = declined.expect("declined 91 once the cache expired");
    let stale_for = before_open.elapsed();
    assert!(
        stale_for >= Duration::from_secs(3),
        "declined after {stale_for:?}, before holder_cache_ttl + stale-if-error"
    );
    assert_eq!(declined.decline_reason(), pb::DeclineReason::IssuerUnavailable);
    stack.ledger_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_expiring_at_any_step_leave_exactly_one_outcome_per_key() {
    // Risk is slow, so short budgets run out during the risk call, the stand-in, the ledger queue or the commit.
    let stack = stack(1, "delay = \"40ms\"", "");
    let account = stack.account(1_000_000).await;
    let mut client = stack.payments.payments();
    let mut keys = 0;
    for budget_ms in [1_u64, 3, 8, 15, 25, 40, 60, 90] {
        let request = authorize_request(&account, 7);
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(Duration::from_millis(budget_ms));
        match client.authorize(call).await {
            Ok(answer) => assert_eq!(answer.into_inner().authorization.unwrap().response_code, "00"),
            Err(status) => assert!(
                matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
                "a {budget_ms} ms budget ended with {status:?}"
            ),
        }
        // Whatever happened, the retry with the same key settles it: the committed one, or the only one.
        let retried = authorize_in_time(&stack.payments.channel, request.clone()).await;
        assert_eq!(authorize_in_time(&stack.payments.channel, request).await, retried);
        keys += 1;
    }
    let account_now = client.get_account(pb::GetAccountRequest { account_id: account }).await.unwrap();
    assert_eq!(account_now.into_inner().account.unwrap().held_amount, keys * 7, "exactly one hold per key");
    stack.ledger_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_never_skips_risk_scoring() {
    let stack = stack(1, "", "");
    let account = stack.account(1_000_000).await;
    let mut client = stack.payments.payments();
    let (mut refused, mut keys) = (0, Vec::new());
    for budget_ms in 1..=20_u64 {
        for _ in 0..3 {
            let request = authorize_request(&account, 7);
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(Duration::from_millis(budget_ms));
            match client.authorize(call).await {
                Ok(answer) => {
                    let authorization = answer.into_inner().authorization.unwrap();
                    assert_eq!(
                        authorization.decided_by(),
                        pb::Decider::Risk,
                        "a {budget_ms} ms budget against a healthy risk: {authorization:?}"
                    );
                }
                Err(status) => {
                    assert!(
                        matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
                        "a {budget_ms} ms budget ended with {status:?}"
                    );
                    refused += 1;
                }
            }
            keys.push(request);
        }
    }
    // What the server decided for each key, also those whose answer the client gave up on: never the stand-in.
    for request in keys {
        let authorization = authorize_in_time(&stack.payments.channel, request).await;
        assert_ne!(authorization.decided_by(), pb::Decider::StandIn, "{authorization:?}");
    }
    assert!(refused > 0, "the shortest budgets are refused");
    stack.ledger_check();
}

/// How long after users is healthy again payments may still decline 91: one health re-watch (capped at 1 s)
/// plus the time one Authorize takes on a loaded machine.
const PROBE_INTERVAL: Duration = Duration::from_millis(1_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_restarted_under_load_stops_declining_91_within_a_probe_interval() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    // No stale-if-error and a short holder cache: every call asks users, so the breaker alone is measured.
    let env = [("COURIER_PAYMENTS__HOLDER_STALE_IF_ERROR", "0s")];
    let mut stack = stack_with_env(1, "", "holder_cache_ttl = \"10ms\"", &env);
    let mut accounts = Vec::new();
    for _ in 0..4 {
        accounts.push(stack.account(100_000_000).await);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = accounts
        .iter()
        .map(|account| {
            let (channel, account, stop) = (stack.payments.channel.clone(), account.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let code = authorize_in_time(&channel, authorize_request(&account, 1)).await.response_code;
                    answers.push((started, code));
                }
                answers
            })
        })
        .collect();

    let users = stack.users.take().unwrap();
    let users_addr = users.addr.clone();
    users.kill();
    // Down long enough for the breaker to see many failures.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = stack.dir.path().to_str().unwrap().to_owned();
    let users = CourierProcess::start(BIN, &["serve", "users", "--listen", &users_addr, "--data-dir", &root]);
    let mut health = HealthClient::new(users.channel.clone());
    loop {
        let check = health.check(HealthCheckRequest { service: String::new() }).await;
        if check.is_ok_and(|answer| {
            answer.into_inner().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
        }) {
            break;
        }
    }
    let healthy = Instant::now();
    stack.users = Some(users);
    while healthy.elapsed() < PROBE_INTERVAL * 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<(Instant, String)> = futures::future::try_join_all(load).await.unwrap().concat();
    let declined_while_down = answers.iter().filter(|(at, code)| *at >= down && *at < healthy && code == "91").count();
    let late: Vec<Duration> = answers
        .iter()
        .filter(|(at, code)| *at > healthy + PROBE_INTERVAL && code == "91")
        .map(|(at, _)| at.duration_since(healthy))
        .collect();
    assert!(declined_while_down > 0, "users down, nothing cached: declines 91");
    assert!(
        late.is_empty(),
        "{} declines 91 more than {PROBE_INTERVAL:?} after users was healthy, the first at {:?}",
        late.len(),
        late.first()
    );
    let after = answers.iter().filter(|(at, code)| *at > healthy + PROBE_INTERVAL && code == "00").count();
    assert!(after > 0, "approvals after users is back");
    stack.ledger_check();
}

//! The admin port of a real `courier up` process: Prometheus metrics that move with the calls made, liveness, and
//! readiness that turns 503 while the server drains.

use courier_proto::payments::v1 as pb;
use courier_proto::users::v1 as users;
use courier_tests::http::get;
use courier_tests::metrics::{scrape, value};
use courier_tests::process::CourierProcess;
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const CREATE_USER: &str = "/courier.users.v1.UserService/CreateUser";

fn up(dir: &tempfile::TempDir) -> CourierProcess {
    let data_dir = dir.path().to_str().unwrap();
    CourierProcess::start(
        BIN,
        &["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir],
    )
}

fn create_user(email: &str) -> users::CreateUserRequest {
    users::CreateUserRequest { name: "Ada".into(), email: email.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_code_and_authorizations_by_response_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = up(&dir);
    let admin = server.admin.clone().expect("courier up printed its admin address");
    assert_eq!(get(&admin, "/healthz").await.0, 200);

    let mut users = server.users();
    let mut owner = String::new();
    for i in 0..3 {
        let user = users.create_user(create_user(&format!("ada{i}@example.com"))).await.unwrap().into_inner();
        owner = user.user.unwrap().id;
    }
    let invalid = users.create_user(create_user("nope")).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    // The server has answered calls, so it is past startup: ready.
    assert_eq!(get(&admin, "/readyz").await.0, 200);

    let mut payments = server.payments();
    let open = pb::OpenAccountRequest { owner_user_id: owner, currency: "USD".into(), credit_limit: 0 };
    let account = payments.open_account(open).await.unwrap().into_inner().account.unwrap();
    let credit = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: 1_000,
        currency: "USD".into(),
        idempotency_key: "credit-1".into(),
    };
    payments.credit_account(credit).await.unwrap();
    let authorize = |amount: i64, key: &str| pb::AuthorizeRequest {
        idempotency_key: key.into(),
        account_id: account.id.clone(),
        merchant_id: "m_1".into(),
        amount,
        currency: "USD".into(),
        ..Default::default()
    };
    let approved = payments.authorize(authorize(600, "a-1")).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!(approved.response_code, "00");
    let declined = payments.authorize(authorize(600, "a-2")).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!(declined.response_code, "51");
    // A replay returns the stored answer: it is a call, not a second decision.
    payments.authorize(authorize(600, "a-2")).await.unwrap();

    let samples = scrape(&admin).await;
    let calls = |method: &str, code: &str| {
        value(&samples, "courier_rpc_server_calls_total", &[("method", method), ("code", code)])
    };
    assert_eq!(calls(CREATE_USER, "OK"), 3.0);
    assert_eq!(calls(CREATE_USER, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls("/courier.payments.v1.PaymentService/Authorize", "OK"), 3.0);
    let latency = value(&samples, "courier_rpc_server_duration_seconds_count", &[("method", CREATE_USER)]);
    assert_eq!(latency, 4.0, "every call is timed");
    let slowest =
        value(&samples, "courier_rpc_server_duration_seconds_bucket", &[("method", CREATE_USER), ("le", "+Inf")]);
    assert_eq!(slowest, 4.0);
    assert_eq!(value(&samples, "courier_rpc_server_in_flight", &[("method", CREATE_USER)]), 0.0);

    let authorizations = |decision: &str, code: &str| {
        value(&samples, "courier_payments_authorizations_total", &[("decision", decision), ("code", code)])
    };
    assert_eq!(authorizations("APPROVED", "00"), 1.0);
    assert_eq!(authorizations("DECLINED", "51"), 1.0);
    assert_eq!(value(&samples, "courier_payments_decisions_total", &[("decided_by", "RISK")]), 2.0);
    assert!(value(&samples, "courier_ledger_batch_size_count", &[]) >= 1.0);
    assert!(value(&samples, "courier_ledger_commit_seconds_count", &[]) >= 1.0);
    // Nothing was refused, but the family is there from the start.
    assert_eq!(value(&samples, "courier_server_refused_total", &[]), 0.0);

    assert_eq!(get(&admin, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_the_server_drains() {
    let dir = tempfile::tempdir().unwrap();
    let server = up(&dir);
    let admin = server.admin.clone().expect("courier up printed its admin address");

    // An AuthorizeStream whose request side stays open holds the drain open until it is dropped.
    let (requests, inbound) = futures::channel::mpsc::unbounded::<pb::AuthorizeStreamRequest>();
    requests.unbounded_send(pb::AuthorizeStreamRequest { correlation_id: "c1".into(), request: None }).unwrap();
    let mut answers = server.payments().authorize_stream(inbound).await.unwrap().into_inner();
    answers.next().await.expect("an answer").expect("the stream is open");

    // Health turns NOT_SERVING just after readiness clears, so the watch says when to look.
    let mut health = HealthClient::new(server.channel.clone());
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
    assert_eq!(get(&admin, "/readyz").await.0, 200, "serving: ready");
    let status = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);

    assert_eq!(get(&admin, "/readyz").await.0, 503, "draining: not ready");
    assert_eq!(get(&admin, "/healthz").await.0, 200, "draining: still alive");
    let samples = scrape(&admin).await;
    let in_flight = value(
        &samples,
        "courier_rpc_server_in_flight",
        &[("method", "/courier.payments.v1.PaymentService/AuthorizeStream")],
    );
    assert_eq!(in_flight, 1.0, "an open stream is in flight until its last message");

    drop(requests);
    assert!(answers.next().await.is_none(), "the stream ends once its requests do");
}

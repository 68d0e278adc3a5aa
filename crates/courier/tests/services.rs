//! The production shape: each service in its own process with its own store, payments calling users over gRPC.

use courier_proto::payments::v1 as pb;
use courier_proto::users::v1 as users;
use courier_tests::payments::authorize_request;
use courier_tests::process::CourierProcess;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_payments_alone_asks_a_separate_user_service() {
    let (users_dir, payments_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let users_dir = users_dir.path().to_str().unwrap().to_owned();
    let users_server =
        CourierProcess::start(BIN, &["serve", "users", "--listen", "127.0.0.1:0", "--data-dir", &users_dir]);
    let users_url = format!("http://{}", users_server.addr);
    let payments_dir = payments_dir.path().to_str().unwrap().to_owned();
    let payments_server = CourierProcess::start_with_env(
        BIN,
        &["serve", "payments", "--listen", "127.0.0.1:0", "--data-dir", &payments_dir, "--users-url", &users_url],
        // No stale-if-error either: with it, a users outage would keep serving the last known status.
        &[("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "0s"), ("COURIER_PAYMENTS__HOLDER_STALE_IF_ERROR", "0s")],
    );

    // The payments process serves no UserService of its own.
    let create = users::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() };
    let absent = payments_server.users().create_user(create.clone()).await.unwrap_err();
    assert_eq!(absent.code(), Code::Unimplemented);

    let owner = users_server.users().create_user(create).await.unwrap().into_inner().user.unwrap();
    let mut payments = payments_server.payments();
    let open = pb::OpenAccountRequest { owner_user_id: owner.id.clone(), currency: "USD".into(), credit_limit: 100 };
    let account = payments.open_account(open).await.unwrap().into_inner().account.unwrap();
    assert_eq!(account.available_amount, 100);
    let approved = payments.authorize(authorize_request(&account.id, 60)).await.unwrap().into_inner();
    assert_eq!(approved.authorization.unwrap().response_code, "00");

    // The holder's status is the user service's: suspended there, declined 62 here (this process trusts a status
    // for 0 s, so the change shows at once).
    let suspend = users::UpdateUserStatusRequest { id: owner.id.clone(), status: users::UserStatus::Suspended as i32 };
    users_server.users().update_user_status(suspend).await.unwrap();
    let declined = payments.authorize(authorize_request(&account.id, 1)).await.unwrap().into_inner();
    assert_eq!(declined.authorization.unwrap().response_code, "62");

    // The user service gone: OpenAccount is UNAVAILABLE, Authorize declines 91 (issuer unavailable).
    users_server.kill();
    let declined = payments.authorize(authorize_request(&account.id, 1)).await.unwrap().into_inner();
    assert_eq!(declined.authorization.unwrap().response_code, "91");
    let open = pb::OpenAccountRequest { owner_user_id: owner.id, currency: "USD".into(), credit_limit: 0 };
    assert_eq!(payments.open_account(open).await.unwrap_err().code(), Code::Unavailable);
}

//! The ceiling fixture as a real process: it serves what the authorize and get-user scenarios need from memory,
//! and every other method says plainly that the fixture does not serve it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use courier_proto::payments::v1 as payments;
use courier_proto::users::v1 as users;
use payments::payment_service_client::PaymentServiceClient;
use users::user_service_client::UserServiceClient;

/// The running fixture, killed on drop.
struct Ceiling(Child);

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Ceiling, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ceiling")).stdout(Stdio::piped()).spawn().expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let ceiling = Ceiling(child);
    let line = BufReader::new(stdout).lines().next().expect("a line").expect("utf-8");
    let addr = line.strip_prefix("ceiling: listening on ").expect("the address line").to_owned();
    (ceiling, format!("http://{addr}"))
}

#[tokio::test]
async fn serves_the_setup_and_authorize_from_memory_and_names_what_it_does_not_serve() {
    let (_ceiling, url) = start();
    let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.expect("connect");
    let mut users = UserServiceClient::new(channel.clone());
    let request = users::CreateUserRequest { name: "A".into(), email: "a@example.com".into() };
    let user = users.create_user(request).await.unwrap().into_inner().user.unwrap();
    let got = users.get_user(users::GetUserRequest { id: user.id.clone() }).await.unwrap().into_inner().user;
    assert_eq!(got.as_ref().map(|u| u.email.as_str()), Some("a@example.com"));
    let missing = users.get_user(users::GetUserRequest { id: "usr_nope".into() }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let mut payments = PaymentServiceClient::new(channel);
    let open = payments::OpenAccountRequest { owner_user_id: user.id, currency: "USD".into(), credit_limit: 0 };
    let account = payments.open_account(open).await.unwrap().into_inner().account.unwrap();
    let request = payments::AuthorizeRequest {
        idempotency_key: "k".into(),
        account_id: account.id.clone(),
        merchant_id: "m".into(),
        amount: 5,
        currency: "USD".into(),
        ..Default::default()
    };
    let authorization = payments.authorize(request).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!((authorization.decision, authorization.account_id), (payments::Decision::Approved as i32, account.id));

    let refused = payments
        .get_authorization(payments::GetAuthorizationRequest { authorization_id: authorization.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert!(refused.message().contains("GetAuthorization is not served by the ceiling fixture"), "{refused:?}");
}

#[test]
fn a_bad_command_line_is_refused_with_the_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_ceiling")).arg("--port").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: ceiling [--listen ADDR]"));
}

//! Building blocks for payments scenarios: a funded account in a few calls, requests with fresh keys.

use courier_proto::payments::v1 as pb;
use courier_proto::users::v1 as users;
use tonic::transport::Channel;

use crate::TestServer;

pub type Payments = pb::payment_service_client::PaymentServiceClient<Channel>;

/// A fresh idempotency key.
pub fn key() -> String {
    format!("key-{}", uuid::Uuid::now_v7().simple())
}

/// A new ACTIVE user; returns its id.
pub async fn active_user(server: &TestServer) -> String {
    let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
    let request = users::CreateUserRequest { name: "Holder".into(), email };
    server.users().create_user(request).await.expect("create user").into_inner().user.expect("user").id
}

/// An account in USD with `credit_limit`, credited with `funds` (if any).
pub async fn funded_account(server: &TestServer, funds: i64, credit_limit: i64) -> pb::Account {
    let owner = active_user(server).await;
    let mut payments = server.payments();
    let request = pb::OpenAccountRequest { owner_user_id: owner, currency: "USD".into(), credit_limit };
    let account = payments.open_account(request).await.expect("open account").into_inner().account.expect("account");
    if funds == 0 {
        return account;
    }
    credit(&mut payments, &account.id, funds).await
}

/// Credits `amount` USD with a fresh key; returns the account after.
pub async fn credit(payments: &mut Payments, account_id: &str, amount: i64) -> pb::Account {
    let request = pb::CreditAccountRequest {
        account_id: account_id.into(),
        amount,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    payments.credit_account(request).await.expect("credit").into_inner().account.expect("account")
}

/// An Authorize request for `amount` USD by merchant `m_1`, with a fresh key.
pub fn authorize_request(account_id: &str, amount: i64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        idempotency_key: key(),
        account_id: account_id.into(),
        merchant_id: "m_1".into(),
        amount,
        currency: "USD".into(),
        ..Default::default()
    }
}

/// Authorizes and returns the authorization (approved or declined); panics on an error status.
pub async fn authorize(payments: &mut Payments, request: pb::AuthorizeRequest) -> pb::Authorization {
    payments.authorize(request).await.expect("authorize").into_inner().authorization.expect("authorization")
}

/// Captures `amount` (0: all) with a fresh key.
pub fn capture_request(authorization_id: &str, amount: i64) -> pb::CaptureRequest {
    pb::CaptureRequest { authorization_id: authorization_id.into(), amount, idempotency_key: key() }
}

/// Voids with a fresh key.
pub fn void_request(authorization_id: &str) -> pb::VoidRequest {
    pb::VoidRequest { authorization_id: authorization_id.into(), idempotency_key: key() }
}

/// Fetches the account now.
pub async fn account(payments: &mut Payments, account_id: &str) -> pb::Account {
    let request = pb::GetAccountRequest { account_id: account_id.into() };
    payments.get_account(request).await.expect("get account").into_inner().account.expect("account")
}

/// The ErrorInfo reason of a failed call, asserting its code.
pub fn reason(status: &tonic::Status, code: tonic::Code) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), code, "{status:?}");
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

/// `streams` AuthorizeStream calls of `messages` messages each, all on `client`'s channel at once (one HTTP/2
/// connection when it is one `Channel`), each call with `timeout`. Each message is yielded on its own (a pending
/// poll between messages), so tonic sends one small DATA frame per message, as grpc-go and most clients do,
/// instead of coalescing a ready batch into 32 KiB chunks. Returns what went wrong: a line per stream that was
/// refused, failed, ended early or answered anything but an approval; empty when every message was approved.
pub async fn stream_approvals<C>(
    client: pb::payment_service_client::PaymentServiceClient<C>,
    accounts: &[String],
    streams: usize,
    messages: usize,
    timeout: std::time::Duration,
) -> Vec<String>
where
    C: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use futures::StreamExt;
    let calls = (0..streams).map(|s| {
        let mut payments = client.clone();
        let account = accounts[s % accounts.len()].clone();
        tokio::spawn(async move {
            let requests = futures::stream::iter(0..messages).then(move |m| {
                let request = authorize_request(&account, 1);
                async move {
                    tokio::task::yield_now().await;
                    pb::AuthorizeStreamRequest { correlation_id: format!("s{s}m{m}"), request: Some(request) }
                }
            });
            let mut call = tonic::Request::new(requests);
            call.set_timeout(timeout);
            let mut answers = match payments.authorize_stream(call).await {
                Ok(response) => response.into_inner(),
                Err(status) => return Err(format!("stream {s} refused: {status:?}")),
            };
            let mut approved = 0;
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => match answer.result {
                        Some(pb::authorize_stream_response::Result::Authorization(a))
                            if a.decision() == pb::Decision::Approved =>
                        {
                            approved += 1
                        }
                        other => return Err(format!("stream {s}: {} not approved: {other:?}", answer.correlation_id)),
                    },
                    Ok(None) => break,
                    Err(status) => return Err(format!("stream {s} failed after {approved} answers: {status:?}")),
                }
            }
            if approved == messages {
                Ok(())
            } else {
                Err(format!("stream {s} ended OK after {approved} of {messages} answers"))
            }
        })
    });
    let results = futures::future::join_all(calls).await;
    results.into_iter().filter_map(|r| r.expect("stream task").err()).collect()
}

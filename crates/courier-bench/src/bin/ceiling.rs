//! The transport ceiling: a bare tonic server answering courier's UserService and PaymentService messages from
//! memory with nothing else (no store, no risk, no middleware), so a benchmark run against it measures what the
//! gRPC stack and the load generator themselves cost on this machine. A benchmark fixture, not a service.
//!
//! Serves the calls `courier bench` makes for the authorize and get-user scenarios (CreateUser, GetUser,
//! OpenAccount, CreditAccount, Authorize); every other method answers UNIMPLEMENTED saying so.
//!
//! `ceiling [--listen 127.0.0.1:0]` prints `ceiling: listening on ADDR` once it accepts connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use courier_proto::payments::v1 as payments;
use courier_proto::users::v1 as users;
use payments::payment_service_server::{PaymentService, PaymentServiceServer};
use tonic::{Request, Response, Status, Streaming};
use users::user_service_server::{UserService, UserServiceServer};

/// Users and accounts created by the benchmark's set-up, and a counter for ids.
#[derive(Default)]
struct Memory {
    users: RwLock<HashMap<String, users::User>>,
    next_id: AtomicU64,
}

impl Memory {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{:032x}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn not_served(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method} is not served by the ceiling fixture (it serves CreateUser, GetUser, OpenAccount, CreditAccount \
         and Authorize only)"
    ))
}

type Never<T> = futures::stream::Empty<Result<T, Status>>;

#[tonic::async_trait]
impl UserService for Memory {
    async fn create_user(
        &self,
        request: Request<users::CreateUserRequest>,
    ) -> Result<Response<users::CreateUserResponse>, Status> {
        let request = request.into_inner();
        let user = users::User {
            id: self.id("usr"),
            name: request.name,
            email: request.email,
            status: users::UserStatus::Active as i32,
            ..Default::default()
        };
        self.users.write().expect("users lock").insert(user.id.clone(), user.clone());
        Ok(Response::new(users::CreateUserResponse { user: Some(user) }))
    }

    async fn get_user(
        &self,
        request: Request<users::GetUserRequest>,
    ) -> Result<Response<users::GetUserResponse>, Status> {
        let id = request.into_inner().id;
        match self.users.read().expect("users lock").get(&id) {
            Some(user) => Ok(Response::new(users::GetUserResponse { user: Some(user.clone()) })),
            None => Err(Status::not_found(format!("no user {id}"))),
        }
    }

    type ListUsersStream = Never<users::ListUsersResponse>;

    async fn list_users(&self, _: Request<users::ListUsersRequest>) -> Result<Response<Self::ListUsersStream>, Status> {
        Err(not_served("ListUsers"))
    }

    async fn update_user_status(
        &self,
        _: Request<users::UpdateUserStatusRequest>,
    ) -> Result<Response<users::UpdateUserStatusResponse>, Status> {
        Err(not_served("UpdateUserStatus"))
    }
}

#[tonic::async_trait]
impl PaymentService for Memory {
    async fn open_account(
        &self,
        request: Request<payments::OpenAccountRequest>,
    ) -> Result<Response<payments::OpenAccountResponse>, Status> {
        let request = request.into_inner();
        let account = payments::Account {
            id: self.id("acct"),
            owner_user_id: request.owner_user_id,
            currency: request.currency,
            credit_limit: request.credit_limit,
            status: payments::AccountStatus::Active as i32,
            ..Default::default()
        };
        Ok(Response::new(payments::OpenAccountResponse { account: Some(account) }))
    }

    async fn get_account(
        &self,
        _: Request<payments::GetAccountRequest>,
    ) -> Result<Response<payments::GetAccountResponse>, Status> {
        Err(not_served("GetAccount"))
    }

    async fn credit_account(
        &self,
        request: Request<payments::CreditAccountRequest>,
    ) -> Result<Response<payments::CreditAccountResponse>, Status> {
        let request = request.into_inner();
        let account = payments::Account {
            id: request.account_id,
            currency: request.currency,
            posted_balance: request.amount,
            available_amount: request.amount,
            ..Default::default()
        };
        Ok(Response::new(payments::CreditAccountResponse { account: Some(account), event_sequence: 0 }))
    }

    async fn update_account_status(
        &self,
        _: Request<payments::UpdateAccountStatusRequest>,
    ) -> Result<Response<payments::UpdateAccountStatusResponse>, Status> {
        Err(not_served("UpdateAccountStatus"))
    }

    /// Approves every request: the answer has the shape and size of courier's, and nothing is looked up or kept.
    async fn authorize(
        &self,
        request: Request<payments::AuthorizeRequest>,
    ) -> Result<Response<payments::AuthorizeResponse>, Status> {
        let request = request.into_inner();
        let authorization = payments::Authorization {
            id: self.id("auth"),
            account_id: request.account_id,
            merchant_id: request.merchant_id,
            amount: request.amount,
            currency: request.currency,
            decision: payments::Decision::Approved as i32,
            response_code: "00".into(),
            status: payments::AuthorizationStatus::Held as i32,
            held_amount: request.amount,
            description: request.description,
            metadata: request.metadata,
            ..Default::default()
        };
        Ok(Response::new(payments::AuthorizeResponse { authorization: Some(authorization) }))
    }

    async fn capture(
        &self,
        _: Request<payments::CaptureRequest>,
    ) -> Result<Response<payments::CaptureResponse>, Status> {
        Err(not_served("Capture"))
    }

    async fn void(&self, _: Request<payments::VoidRequest>) -> Result<Response<payments::VoidResponse>, Status> {
        Err(not_served("Void"))
    }

    async fn get_authorization(
        &self,
        _: Request<payments::GetAuthorizationRequest>,
    ) -> Result<Response<payments::GetAuthorizationResponse>, Status> {
        Err(not_served("GetAuthorization"))
    }

    type ListAuthorizationsStream = Never<payments::ListAuthorizationsResponse>;

    async fn list_authorizations(
        &self,
        _: Request<payments::ListAuthorizationsRequest>,
    ) -> Result<Response<Self::ListAuthorizationsStream>, Status> {
        Err(not_served("ListAuthorizations"))
    }

    type AuthorizeStreamStream = Never<payments::AuthorizeStreamResponse>;

    async fn authorize_stream(
        &self,
        _: Request<Streaming<payments::AuthorizeStreamRequest>>,
    ) -> Result<Response<Self::AuthorizeStreamStream>, Status> {
        Err(not_served("AuthorizeStream"))
    }

    async fn batch_capture(
        &self,
        _: Request<Streaming<payments::BatchCaptureRequest>>,
    ) -> Result<Response<payments::BatchCaptureResponse>, Status> {
        Err(not_served("BatchCapture"))
    }

    type WatchEventsStream = Never<payments::WatchEventsResponse>;

    async fn watch_events(
        &self,
        _: Request<payments::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(not_served("WatchEvents"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [] => "127.0.0.1:0".to_owned(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        _ => return Err("usage: ceiling [--listen ADDR]".into()),
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("ceiling: listening on {}", listener.local_addr()?);
    let memory = std::sync::Arc::new(Memory::default());
    tonic::transport::Server::builder()
        .add_service(UserServiceServer::from_arc(memory.clone()))
        .add_service(PaymentServiceServer::from_arc(memory))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

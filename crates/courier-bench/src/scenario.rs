//! What one benchmark call is, and the set-up it needs, done through the public API like any client.

use std::collections::VecDeque;
use std::sync::Mutex;

use courier_proto::payments::v1 as payments;
use courier_proto::users::v1 as users;
use http::Method;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// A workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Authorize spread over this many accounts (each funded far beyond the run).
    Authorize {
        /// Accounts opened for the run; calls go round-robin over them.
        accounts: usize,
    },
    /// Authorize on one account: every call contends for the same row.
    AuthorizeHot,
    /// Authorizations sent as messages on long-lived AuthorizeStream calls (driven by [`crate::stream`], not by
    /// [`Prepared::call`]): many messages in flight per stream, each timed from its send to its answer.
    AuthorizeStream {
        /// Accounts the messages go round-robin over.
        accounts: usize,
        /// Concurrent streams (1 measures what one stream carries).
        streams: usize,
    },
    /// GetUser of one existing user: the read path without the ledger.
    GetUser,
    /// A fixed mix, by call number modulo 10 (see [`MIX`]): 5 Authorize, 2 GetAuthorization, 1 Capture, 2 GetUser.
    Mixed {
        /// Accounts the authorizations go round-robin over.
        accounts: usize,
    },
    /// Opens one connection per `--connections`, makes one GetUser on each and holds them all open for the
    /// duration (driven by [`crate::idle`]): what idle clients cost the server.
    IdleConnections,
}

/// One call of the mixed workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixedCall {
    /// Authorize 1 cent on the next account; an approval is remembered for the calls below.
    Authorize,
    /// GetAuthorization of a recently approved authorization (Authorize when there is none yet).
    GetAuthorization,
    /// Capture a recently approved authorization, each at most once (Authorize when there is none left).
    Capture,
    /// GetUser of the run's user.
    GetUser,
}

/// The mixed workload's proportions: call `n` is `MIX[n % 10]`. Spread out so that every window of calls has the
/// same shape: 50 % Authorize, 20 % GetAuthorization, 10 % Capture, 20 % GetUser.
pub const MIX: [MixedCall; 10] = [
    MixedCall::Authorize,
    MixedCall::GetUser,
    MixedCall::Authorize,
    MixedCall::GetAuthorization,
    MixedCall::Authorize,
    MixedCall::Capture,
    MixedCall::Authorize,
    MixedCall::GetUser,
    MixedCall::Authorize,
    MixedCall::GetAuthorization,
];

/// Held authorizations kept for GetAuthorization and Capture in the mixed workload.
const RECENT: usize = 4_096;

impl Scenario {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Scenario::Authorize { accounts } => format!("authorize({accounts} accounts)"),
            Scenario::AuthorizeHot => "authorize(hot account)".into(),
            Scenario::AuthorizeStream { accounts, streams } => {
                let s = if *streams == 1 { "" } else { "s" };
                format!("authorize-stream({streams} stream{s}, {accounts} accounts)")
            }
            Scenario::GetUser => "get-user".into(),
            Scenario::Mixed { accounts } => {
                format!("mixed(50% authorize, 20% get-authorization, 10% capture, 20% get-user; {accounts} accounts)")
            }
            Scenario::IdleConnections => "idle-connections".into(),
        }
    }

    /// Accounts the scenario needs.
    fn accounts(&self) -> usize {
        match self {
            Scenario::Authorize { accounts }
            | Scenario::AuthorizeStream { accounts, .. }
            | Scenario::Mixed { accounts } => (*accounts).max(1),
            Scenario::AuthorizeHot => 1,
            Scenario::GetUser | Scenario::IdleConnections => 0,
        }
    }

    /// Creates what the calls need (a user, accounts with funds), sending `auth` on every call.
    pub async fn prepare(&self, channel: Channel, auth: Auth) -> Result<Prepared, tonic::Status> {
        let mut user_client = users::user_service_client::UserServiceClient::new(channel.clone());
        let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
        let request = auth.request(users::CreateUserRequest { name: "Bench".into(), email });
        let user = user_client.create_user(request).await?.into_inner().user.unwrap_or_default();
        let wanted = self.accounts();
        let mut client = payments::payment_service_client::PaymentServiceClient::new(channel);
        let mut accounts = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            let open = payments::OpenAccountRequest {
                owner_user_id: user.id.clone(),
                currency: "USD".into(),
                credit_limit: 0,
            };
            let account = client.open_account(auth.request(open)).await?.into_inner().account.unwrap_or_default();
            let credit = payments::CreditAccountRequest {
                account_id: account.id.clone(),
                amount: 1_000_000_000_000_000,
                currency: "USD".into(),
                idempotency_key: format!("bench-fund-{}", account.id),
            };
            client.credit_account(auth.request(credit)).await?;
            accounts.push(account.id);
        }
        Ok(Prepared {
            scenario: self.clone(),
            run: uuid::Uuid::now_v7().simple().to_string(),
            user_id: user.id,
            accounts,
            auth,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        })
    }
}

/// The `authorization: Bearer TOKEN` header sent on every call, when a token is given.
#[derive(Debug, Clone, Default)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    /// No credentials.
    pub fn none() -> Self {
        Self(None)
    }

    /// `Bearer TOKEN`; an error when the token cannot be a header value (control characters, non-ASCII).
    pub fn bearer(token: &str) -> Result<Self, crate::load::BenchError> {
        format!("Bearer {token}").parse().map(|value| Self(Some(value))).map_err(|_| crate::load::BenchError::Token)
    }

    /// The `authorization` header's value, when credentials are sent.
    pub fn header_value(&self) -> Option<&str> {
        self.0.as_ref().and_then(|value| value.to_str().ok())
    }

    /// Wraps `message` in a request carrying the credentials.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }
}

/// A scenario ready to run.
#[derive(Debug)]
pub struct Prepared {
    scenario: Scenario,
    /// Makes idempotency keys unique across runs against one store.
    run: String,
    user_id: String,
    accounts: Vec<String>,
    auth: Auth,
    /// Mixed workload: approved, not yet captured authorizations (newest at the back).
    recent: Mutex<VecDeque<String>>,
}

impl Prepared {
    /// The scenario this was prepared for.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The credentials sent on every call.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Authorize request number `n`: 1 cent on the next account, with a key unique to this run.
    pub fn authorize_request(&self, n: u64) -> payments::AuthorizeRequest {
        let account = &self.accounts[(n % self.accounts.len() as u64) as usize];
        payments::AuthorizeRequest {
            idempotency_key: format!("bench-{}-{n}", self.run),
            account_id: account.clone(),
            merchant_id: "bench".into(),
            amount: 1,
            currency: "USD".into(),
            ..Default::default()
        }
    }

    /// Makes call number `n` on `channel`.
    pub async fn call(&self, channel: &Channel, n: u64) -> Result<(), tonic::Status> {
        match self.scenario {
            Scenario::Authorize { .. } | Scenario::AuthorizeHot | Scenario::AuthorizeStream { .. } => {
                self.authorize(channel, n).await.map(drop)
            }
            Scenario::GetUser | Scenario::IdleConnections => self.get_user(channel).await,
            Scenario::Mixed { .. } => self.mixed(channel, n).await,
        }
    }

    /// Makes call number `n` over REST/JSON: the authorize scenarios as `POST /v1/authorizations`, get-user as
    /// `GET /v1/users/{id}` (the scenarios [`crate::Transport::Rest`] serves).
    pub(crate) async fn call_rest(
        &self,
        connection: &mut crate::rest::Connection,
        n: u64,
    ) -> Result<(), tonic::Status> {
        match self.scenario {
            Scenario::Authorize { .. } | Scenario::AuthorizeHot => {
                let request = self.authorize_request(n);
                // Proto3 JSON: lowerCamelCase names, int64 as a string.
                let body = serde_json::json!({
                    "idempotencyKey": request.idempotency_key,
                    "accountId": request.account_id,
                    "merchantId": request.merchant_id,
                    "amount": request.amount.to_string(),
                    "currency": request.currency,
                });
                connection.call(Method::POST, "/v1/authorizations", Some(body), &self.auth).await.map(drop)
            }
            Scenario::GetUser => {
                let path = format!("/v1/users/{}", self.user_id);
                connection.call(Method::GET, &path, None, &self.auth).await.map(drop)
            }
            _ => Err(tonic::Status::invalid_argument(format!("{} has no REST form here", self.scenario.name()))),
        }
    }

    async fn authorize(&self, channel: &Channel, n: u64) -> Result<payments::Authorization, tonic::Status> {
        let mut client = payments::payment_service_client::PaymentServiceClient::new(channel.clone());
        let request = self.auth.request(self.authorize_request(n));
        Ok(client.authorize(request).await?.into_inner().authorization.unwrap_or_default())
    }

    async fn get_user(&self, channel: &Channel) -> Result<(), tonic::Status> {
        let mut client = users::user_service_client::UserServiceClient::new(channel.clone());
        client.get_user(self.auth.request(users::GetUserRequest { id: self.user_id.clone() })).await.map(drop)
    }

    async fn mixed(&self, channel: &Channel, n: u64) -> Result<(), tonic::Status> {
        let mut client = payments::payment_service_client::PaymentServiceClient::new(channel.clone());
        match MIX[(n % MIX.len() as u64) as usize] {
            MixedCall::GetUser => return self.get_user(channel).await,
            MixedCall::GetAuthorization => {
                let id = self.recent.lock().expect("recent lock").back().cloned();
                if let Some(authorization_id) = id {
                    let request = payments::GetAuthorizationRequest { authorization_id };
                    return client.get_authorization(self.auth.request(request)).await.map(drop);
                }
            }
            MixedCall::Capture => {
                let id = self.recent.lock().expect("recent lock").pop_front();
                if let Some(authorization_id) = id {
                    let idempotency_key = format!("bench-capture-{authorization_id}");
                    let request = payments::CaptureRequest { authorization_id, amount: 0, idempotency_key };
                    return client.capture(self.auth.request(request)).await.map(drop);
                }
            }
            MixedCall::Authorize => {}
        }
        let authorization = self.authorize(channel, n).await?;
        if authorization.decision == payments::Decision::Approved as i32 {
            let mut recent = self.recent.lock().expect("recent lock");
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(authorization.id);
        }
        Ok(())
    }
}

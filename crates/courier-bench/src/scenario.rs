//! What one benchmark call is, and the set-up it needs, done through the public API like any client.

use courier_proto::payments::v1 as payments;
use courier_proto::users::v1 as users;
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
    /// GetUser of one existing user: the read path without the ledger.
    GetUser,
}

impl Scenario {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Scenario::Authorize { accounts } => format!("authorize({accounts} accounts)"),
            Scenario::AuthorizeHot => "authorize(hot account)".into(),
            Scenario::GetUser => "get-user".into(),
        }
    }

    /// Creates what the calls need (a user, accounts with funds).
    pub async fn prepare(&self, channel: Channel) -> Result<Prepared, tonic::Status> {
        let mut user_client = users::user_service_client::UserServiceClient::new(channel.clone());
        let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
        let request = users::CreateUserRequest { name: "Bench".into(), email };
        let user = user_client.create_user(request).await?.into_inner().user.unwrap_or_default();
        let wanted = match self {
            Scenario::Authorize { accounts } => (*accounts).max(1),
            Scenario::AuthorizeHot => 1,
            Scenario::GetUser => 0,
        };
        let mut client = payments::payment_service_client::PaymentServiceClient::new(channel);
        let mut accounts = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            let open = payments::OpenAccountRequest {
                owner_user_id: user.id.clone(),
                currency: "USD".into(),
                credit_limit: 0,
            };
            let account = client.open_account(open).await?.into_inner().account.unwrap_or_default();
            let credit = payments::CreditAccountRequest {
                account_id: account.id.clone(),
                amount: 1_000_000_000_000_000,
                currency: "USD".into(),
                idempotency_key: format!("bench-fund-{}", account.id),
            };
            client.credit_account(credit).await?;
            accounts.push(account.id);
        }
        Ok(Prepared {
            scenario: self.clone(),
            run: uuid::Uuid::now_v7().simple().to_string(),
            user_id: user.id,
            accounts,
        })
    }
}

/// A scenario ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    scenario: Scenario,
    /// Makes idempotency keys unique across runs against one store.
    run: String,
    user_id: String,
    accounts: Vec<String>,
}

impl Prepared {
    /// Makes call number `n` on `channel`.
    pub async fn call(&self, channel: &Channel, n: u64) -> Result<(), tonic::Status> {
        match self.scenario {
            Scenario::Authorize { .. } | Scenario::AuthorizeHot => {
                let account = &self.accounts[(n % self.accounts.len() as u64) as usize];
                let request = payments::AuthorizeRequest {
                    idempotency_key: format!("bench-{}-{n}", self.run),
                    account_id: account.clone(),
                    merchant_id: "bench".into(),
                    amount: 1,
                    currency: "USD".into(),
                    ..Default::default()
                };
                let mut client = payments::payment_service_client::PaymentServiceClient::new(channel.clone());
                client.authorize(request).await.map(drop)
            }
            Scenario::GetUser => {
                let mut client = users::user_service_client::UserServiceClient::new(channel.clone());
                client.get_user(users::GetUserRequest { id: self.user_id.clone() }).await.map(drop)
            }
        }
    }
}

//! Asking RiskService about an authorization, within a sub-deadline, and turning every way it can fail into
//! `Risk::Unavailable` so the configured fallback policy decides (never an error to the caller).

use courier_kit::client::ResilientChannel;
use courier_proto::risk::v1 as risk;

use crate::ledger::{AuthorizeCmd, Risk};

/// The RiskService client of the payment service.
#[derive(Clone)]
pub struct RiskAssessor {
    client: risk::risk_service_client::RiskServiceClient<ResilientChannel>,
}

impl RiskAssessor {
    /// Asks RiskService on `channel`, whose per-call cap is the sub-deadline (see [`risk_channel`]).
    pub fn new(channel: ResilientChannel) -> Self {
        Self { client: risk::risk_service_client::RiskServiceClient::new(channel) }
    }

    /// The verdict for `cmd`; `account_created_at_us` is context for the account-age rules when known.
    pub async fn assess(&self, cmd: &AuthorizeCmd, account_created_at_us: Option<i64>) -> Risk {
        let request = tonic::Request::new(risk::ScoreRequest {
            account_id: cmd.account_id.clone(),
            merchant_id: cmd.merchant_id.clone(),
            amount: cmd.amount,
            currency: cmd.currency.clone(),
            account_created_at: account_created_at_us.map(courier_kit::time::timestamp_from_us),
            available_amount: None,
        });
        match self.client.clone().score(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let deny = response.decision() == risk::RiskDecision::Deny;
                Risk::Assessed { score: response.score, deny }
            }
            Err(error) => {
                tracing::warn!(target: "courier::payments", code = ?error.code(), "risk unavailable; stand-in policy decides");
                Risk::Unavailable
            }
        }
    }
}

/// The channel to RiskService: Score gets at most `timeout` (less when the Authorize has less left) and is never
/// retried (every call counts towards the velocity rules; a second attempt would count twice). `urls` may name
/// several replicas, balanced by the channel. With `tls` (from `[tls] ca`), the URLs must be `https://`.
pub fn risk_channel(
    urls: &[String],
    timeout: std::time::Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
    token: Option<&str>,
) -> Result<ResilientChannel, courier_kit::client::BuildError> {
    ResilientChannel::builder("risk")
        .endpoints(urls.iter().cloned())
        .tls(tls)
        .bearer(token)?
        .max_timeout(timeout)
        .health_check(watch_health(urls))
        .build()
}

/// Health watching picks among replicas; with one endpoint there is nothing to pick, and the open Watch stream
/// would hold that server's graceful drain open until its grace period ends (with `courier up`, its own).
fn watch_health(urls: &[String]) -> bool {
    urls.len() > 1
}

/// The channel to UserService: GetUser is idempotent, so it retries (on UNAVAILABLE, within the deadline).
/// With `tls` (from `[tls] ca`), the URLs must be `https://`; `token` is payments' own bearer token for a
/// UserService with `[auth]`.
pub fn users_channel(
    urls: &[String],
    timeout: std::time::Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
    token: Option<&str>,
) -> Result<ResilientChannel, courier_kit::client::BuildError> {
    ResilientChannel::builder("users")
        .endpoints(urls.iter().cloned())
        .tls(tls)
        .bearer(token)?
        .max_timeout(timeout)
        .method("/courier.users.v1.UserService/GetUser", courier_kit::client::MethodOptions::idempotent())
        .health_check(watch_health(urls))
        .build()
}

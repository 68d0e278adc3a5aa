//! Asking RiskService about an authorization, within a sub-deadline, and turning every way it can fail into
//! `Risk::Unavailable` so the configured fallback policy decides.
//!
//! The fallback decides only when risk was asked and failed: an error, the breaker refusing, or no answer within
//! its own sub-deadline (`risk_timeout`). When the caller's budget is what is short (less than `risk_min_budget`
//! left, or the call to risk cut below `risk_timeout` by the caller's deadline and timing out), the Authorize is
//! refused with DEADLINE_EXCEEDED before any effect: otherwise a caller could skip risk scoring by choosing its
//! deadline.

use std::time::Duration;

use tonic::{Code, Status};

use courier_kit::client::{ResilientChannel, ResilientChannelBuilder};
use courier_proto::risk::v1 as risk;

use crate::ledger::{AuthorizeCmd, Risk};

/// The RiskService client of the payment service.
#[derive(Clone)]
pub struct RiskAssessor {
    client: risk::risk_service_client::RiskServiceClient<ResilientChannel>,
    /// Risk's own sub-deadline (`payments.risk_timeout`).
    timeout: Duration,
    /// The client's reserve: what a call to risk keeps back from the caller's deadline.
    reserve: Duration,
    /// When this RiskService last answered ScoreBatch with UNIMPLEMENTED (one older than ScoreBatch, during a
    /// rolling upgrade): for [`SCORE_BATCH_RECHECK`] after it, batches go straight to one Score per attempt
    /// instead of paying a refused call first.
    score_batch_missing: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long a RiskService that lacks ScoreBatch is asked with Score only, before ScoreBatch is tried again (its
/// upgrade may have finished).
const SCORE_BATCH_RECHECK: Duration = Duration::from_secs(30);

/// The caller's budget was too short to ask risk: refused before any effect.
fn too_short(left: Duration, needed: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "{left:?} left of the deadline, too short to ask RiskService (Authorize needs at least {needed:?}); nothing \
         was applied"
    ))
}

impl RiskAssessor {
    /// Asks RiskService on `channel`, whose per-call cap is the sub-deadline `timeout` (see [`risk_channel`]).
    pub fn new(channel: ResilientChannel, timeout: Duration) -> Self {
        let reserve = channel.reserve();
        let client = risk::risk_service_client::RiskServiceClient::new(channel);
        Self { client, timeout, reserve, score_batch_missing: Default::default() }
    }

    /// Refuses a call whose deadline leaves less than `min_budget` (see the module documentation); checked
    /// before the Authorize does anything.
    pub fn check_budget(min_budget: Duration) -> Result<(), Status> {
        match courier_kit::deadline::remaining() {
            Some(left) if left < min_budget => Err(too_short(left, min_budget)),
            _ => Ok(()),
        }
    }

    /// The verdicts for `attempts` (each an authorization and its account's opening time, context for the
    /// account-age rules when known), in order, with one sub-deadline: one ScoreBatch call with `batch`
    /// (AuthorizeStream), else one Score call per attempt (Authorize has one). An error (DEADLINE_EXCEEDED) when
    /// the caller's deadline, not risk, is what ran out; every other failure is `Risk::Unavailable` for the
    /// attempts it concerns.
    pub async fn assess(&self, attempts: &[(&AuthorizeCmd, Option<i64>)], batch: bool) -> Result<Vec<Risk>, Status> {
        // The sub-deadline this call gets: risk's own, or less when the caller's deadline cuts it.
        let left = courier_kit::deadline::remaining();
        let cut_by_caller = left.is_some_and(|left| left.saturating_sub(self.reserve) < self.timeout);
        if let Some(left) = left.filter(|left| *left <= self.reserve) {
            return Err(too_short(left, self.reserve));
        }
        let scored = match batch {
            _ if attempts.is_empty() => return Ok(vec![]),
            true => self.score_batch(attempts).await,
            false => self.score_one_by_one(attempts).await,
        };
        match scored {
            Ok(verdicts) => Ok(verdicts
                .into_iter()
                .map(|verdict| {
                    verdict.unwrap_or_else(|| {
                        tracing::warn!(target: "courier::payments", "risk refused one attempt of a batch; stand-in policy decides");
                        Risk::Unavailable
                    })
                })
                .collect()),
            // Risk did not get its full sub-deadline and used it up: the caller's short deadline, not risk, failed.
            Err(error) if error.code() == Code::DeadlineExceeded && cut_by_caller => Err(Status::deadline_exceeded(
                "the deadline ran out while RiskService was scoring (it had less than its own timeout); nothing was \
                 applied",
            )),
            Err(error) => {
                tracing::warn!(target: "courier::payments", code = ?error.code(), "risk unavailable; stand-in policy decides");
                Ok(vec![Risk::Unavailable; attempts.len()])
            }
        }
    }

    /// ScoreBatch in calls of at most [`MAX_SCORE_BATCH`] attempts, made at once; `None` for an attempt risk
    /// refused. A RiskService older than ScoreBatch (UNIMPLEMENTED, during a rolling upgrade) is asked with one
    /// Score per attempt instead of standing them all in.
    async fn score_batch(&self, attempts: &[(&AuthorizeCmd, Option<i64>)]) -> Result<Vec<Option<Risk>>, Status> {
        let missing_since = *self.score_batch_missing.lock().expect("not poisoned");
        if missing_since.is_some_and(|since| since.elapsed() < SCORE_BATCH_RECHECK) {
            return self.score_one_by_one(attempts).await;
        }
        let calls = attempts.chunks(MAX_SCORE_BATCH).map(|chunk| {
            let request = risk::ScoreBatchRequest { requests: chunk.iter().map(score_request).collect() };
            let mut client = self.client.clone();
            async move {
                let results = client.score_batch(request).await?.into_inner().results;
                if results.len() != chunk.len() {
                    let message = format!("ScoreBatch answered {} results for {} attempts", results.len(), chunk.len());
                    return Err(Status::internal(message));
                }
                Ok(results
                    .into_iter()
                    .map(|result| match result.result {
                        Some(risk::score_batch_result::Result::Response(response)) => Some(verdict(&response)),
                        _ => None,
                    })
                    .collect::<Vec<_>>())
            }
        });
        match futures::future::try_join_all(calls).await {
            Ok(verdicts) => Ok(verdicts.into_iter().flatten().collect()),
            Err(error) if error.code() == Code::Unimplemented => {
                tracing::info!(target: "courier::payments", "RiskService has no ScoreBatch; asking with Score for {SCORE_BATCH_RECHECK:?}");
                *self.score_batch_missing.lock().expect("not poisoned") = Some(std::time::Instant::now());
                self.score_one_by_one(attempts).await
            }
            Err(error) => Err(error),
        }
    }

    /// One Score call per attempt, made at once.
    async fn score_one_by_one(&self, attempts: &[(&AuthorizeCmd, Option<i64>)]) -> Result<Vec<Option<Risk>>, Status> {
        let calls = attempts.iter().map(|attempt| {
            let mut client = self.client.clone();
            async move { client.score(score_request(attempt)).await.map(|r| Some(verdict(&r.into_inner()))) }
        });
        futures::future::try_join_all(calls).await
    }
}

/// Most attempts one ScoreBatch call carries (RiskService refuses more).
const MAX_SCORE_BATCH: usize = 1_000;

fn score_request((cmd, account_created_at_us): &(&AuthorizeCmd, Option<i64>)) -> risk::ScoreRequest {
    risk::ScoreRequest {
        account_id: cmd.account_id.clone(),
        merchant_id: cmd.merchant_id.clone(),
        amount: cmd.amount,
        currency: cmd.currency.clone(),
        account_created_at: account_created_at_us.map(courier_kit::time::timestamp_from_us),
        available_amount: None,
    }
}

fn verdict(response: &risk::ScoreResponse) -> Risk {
    Risk::Assessed { score: response.score, deny: response.decision() == risk::RiskDecision::Deny }
}

/// Where payments' calls to users or risk go.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// Replicas at these URLs (`https://` with `tls`, from `[tls] ca`), balanced over those whose health says
    /// SERVING.
    Replicas {
        /// One URL per replica.
        urls: Vec<String>,
        /// Outbound TLS.
        tls: Option<tonic::transport::ClientTlsConfig>,
    },
    /// This very process (`courier up`): calls straight into its served stack, which outlast its public drain.
    InProcess(courier_kit::server::InProcess),
    /// This very process through its own listener, for a setup whose services accept payments only by its mTLS
    /// identity (no bearer token, and an in-process call has no certificate). Health is not watched: the
    /// process's own drain must not turn its own calls away.
    OwnListener {
        /// The process's own URL.
        url: String,
        /// Outbound TLS.
        tls: Option<tonic::transport::ClientTlsConfig>,
    },
}

impl Upstream {
    fn aim(self, builder: ResilientChannelBuilder) -> ResilientChannelBuilder {
        match self {
            Self::Replicas { urls, tls } => builder.endpoints(urls).tls(tls),
            Self::InProcess(own) => builder.in_process(own),
            Self::OwnListener { url, tls } => builder.endpoint(url).tls(tls).health_check(false),
        }
    }
}

/// The channel to RiskService: Score gets at most `timeout` (less when the Authorize has less left) and is never
/// retried (every call counts towards the velocity rules; a second attempt would count twice).
pub fn risk_channel(
    upstream: Upstream,
    timeout: std::time::Duration,
    token: Option<&str>,
) -> Result<ResilientChannel, courier_kit::client::BuildError> {
    upstream.aim(ResilientChannel::builder("risk")).bearer(token)?.max_timeout(timeout).build()
}

/// The channel to UserService: GetUser is idempotent, so it retries (on UNAVAILABLE, within the deadline).
/// `token` is payments' own bearer token for a UserService with `[auth]`.
pub fn users_channel(
    upstream: Upstream,
    timeout: std::time::Duration,
    token: Option<&str>,
) -> Result<ResilientChannel, courier_kit::client::BuildError> {
    upstream
        .aim(ResilientChannel::builder("users"))
        .bearer(token)?
        .max_timeout(timeout)
        .method("/courier.users.v1.UserService/GetUser", courier_kit::client::MethodOptions::idempotent())
        .build()
}

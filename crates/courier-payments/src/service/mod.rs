//! The `courier.payments.v1.PaymentService` handlers: validate at the boundary, ask UserService about the holder,
//! hand the operation to the ledger, map the outcome to the wire.

mod streams;
mod tenant;

use std::pin::Pin;
use std::sync::Arc;

use courier_kit::status;
use courier_proto::payments::v1 as pb;
use courier_proto::users::v1::UserStatus;
use futures::Stream;
use tonic::{Code, Request, Response, Status};

use crate::holders::{AccountFacts, Holders};
use crate::ledger::{Holder, Ledger, LedgerError, Risk};
use crate::model::validate;
use crate::risk::RiskAssessor;
use courier_kit::client::ResilientChannel;

/// The ErrorInfo domain of every payments error reason.
pub const ERROR_DOMAIN: &str = "payments.courier.dev";

/// The gRPC face of the payment service.
#[derive(Clone)]
pub struct PaymentsApi {
    ledger: Ledger,
    holders: Arc<Holders>,
    risk: Option<RiskAssessor>,
    /// `streams_in_flight` permits, one per authorization an AuthorizeStream works on (see `streams.rs`).
    stream_work: Arc<tokio::sync::Semaphore>,
}

impl PaymentsApi {
    /// Serves payments from `ledger`, asking UserService on `users` about holders.
    pub fn new(ledger: Ledger, users: ResilientChannel) -> Self {
        let config = ledger.config();
        let holders = Arc::new(Holders::new(users, config.holder_cache_ttl, config.holder_stale_if_error));
        let stream_work = Arc::new(tokio::sync::Semaphore::new(config.streams_in_flight.max(1)));
        Self { ledger, holders, risk: None, stream_work }
    }

    /// Consults RiskService on `channel` for every authorization (without it, risk is not consulted).
    pub fn with_risk(mut self, channel: ResilientChannel) -> Self {
        self.risk = Some(RiskAssessor::new(channel, self.ledger.config().risk_timeout));
        self
    }

    /// The tonic service; the runtime enforces the receive-size limit in front of it.
    pub fn into_service(self) -> pb::payment_service_server::PaymentServiceServer<Self> {
        pb::payment_service_server::PaymentServiceServer::new(self).max_decoding_message_size(usize::MAX)
    }

    /// Validates and decides authorizations: one for the unary call, a batch of AuthorizeStream's messages (`None`
    /// for a message without its request) at once. Each item is decided as it would be alone, in the same steps;
    /// a batch shares the calls: one to risk, one queueing into the ledger's writer. `tenant` is the caller's
    /// merchant when authentication restricts it (see [`tenant`]).
    async fn authorize_many(
        &self,
        requests: &[Option<&pb::AuthorizeRequest>],
        origin: Origin,
        tenant: Option<&str>,
    ) -> Vec<Result<pb::Authorization, Status>> {
        let prefix = origin.field_prefix();
        let mut answers: Vec<Option<Result<pb::Authorization, Status>>> = requests.iter().map(|_| None).collect();
        // (index in `requests`, command) of the items still being decided.
        let mut pending = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let Some(request) = request else {
                let required = tonic_types::FieldViolation::new(prefix.trim_end_matches('.'), "required");
                answers[index] = Some(Err(status::invalid_argument(vec![required])));
                continue;
            };
            match tenant::bind_authorize(request, tenant).and_then(|request| validate::authorize(&request, prefix)) {
                Ok(cmd) => pending.push((index, cmd)),
                Err(error) => answers[index] = Some(Err(error)),
            }
        }
        // A replay (the key was used before) is answered from the store, without asking risk again.
        let stored = pending
            .iter()
            .map(|(_, cmd)| self.ledger.stored_authorization(&cmd.merchant_id, &cmd.idempotency_key, &cmd.fingerprint));
        let stored = futures::future::join_all(stored).await;
        let mut new = Vec::with_capacity(pending.len());
        for ((index, cmd), stored) in pending.into_iter().zip(stored) {
            match stored.map_err(to_status) {
                Ok(None) => new.push((index, cmd)),
                Ok(Some(authorization)) => answers[index] = Some(Ok(authorization)),
                Err(error) => answers[index] = Some(Err(error)),
            }
        }
        // A new authorization is decided with risk, never without it because the caller's deadline is short.
        if let Some(Err(error)) =
            self.risk.as_ref().map(|_| RiskAssessor::check_budget(self.ledger.config().risk_min_budget))
        {
            new.drain(..).for_each(|(index, _)| answers[index] = Some(Err(error.clone())));
        }
        let facts = futures::future::join_all(new.iter().map(|(_, cmd)| self.account_facts(&cmd.account_id))).await;
        let mut known = Vec::with_capacity(new.len());
        for ((index, cmd), facts) in new.into_iter().zip(facts) {
            match facts {
                Ok(facts) => known.push((index, cmd, facts)),
                Err(error) => answers[index] = Some(Err(error)),
            }
        }
        if let Err(error) = self.ask_holders_and_risk(&mut known, origin).await {
            known.drain(..).for_each(|(index, ..)| answers[index] = Some(Err(error.clone())));
        }
        let (indexes, cmds): (Vec<usize>, Vec<_>) = known.into_iter().map(|(index, cmd, _)| (index, cmd)).unzip();
        for (index, decided) in indexes.into_iter().zip(self.ledger.authorize_many(cmds).await) {
            answers[index] = Some(decided.map_err(to_status));
        }
        answers.into_iter().map(|answer| answer.expect("every item was answered")).collect()
    }

    /// Asks UserService about the holders and RiskService about the new authorizations, and writes the answers
    /// into their commands. An error (the deadline ran out before risk answered) concerns them all.
    async fn ask_holders_and_risk(
        &self,
        new: &mut [(usize, crate::ledger::AuthorizeCmd, Option<AccountFacts>)],
        origin: Origin,
    ) -> Result<(), Status> {
        // The holder and the risk are independent questions to two services: ask both at once.
        let holders = futures::future::join_all(new.iter().map(|(_, _, facts)| async move {
            match facts {
                Some(facts) => self.holders.holder(&facts.owner_user_id).await,
                // An unknown account has no holder to ask about: the ledger declines it with 14.
                None => Holder::Active,
            }
        }));
        let risks = async {
            match &self.risk {
                Some(risk) => {
                    let attempts: Vec<_> =
                        new.iter().map(|(_, cmd, facts)| (cmd, facts.as_ref().map(|f| f.created_at_us))).collect();
                    risk.assess(&attempts, origin == Origin::Stream).await
                }
                None => Ok(vec![Risk::NotConsulted; new.len()]),
            }
        };
        let (holders, risks) = tokio::join!(holders, risks);
        for (((_, cmd, _), holder), risk) in new.iter_mut().zip(holders).zip(risks?) {
            (cmd.holder, cmd.risk) = (holder, risk);
        }
        Ok(())
    }

    /// Validates and applies one capture: the unary call and every item of BatchCapture.
    async fn capture_one(
        &self,
        request: &pb::CaptureRequest,
        prefix: &str,
        tenant: Option<&str>,
    ) -> Result<pb::Authorization, Status> {
        let cmd = validate::capture(request, prefix)?;
        tenant::ensure_owned(&self.ledger, &cmd.authorization_id, tenant).await?;
        self.ledger.capture(cmd).await.map_err(to_status)
    }

    /// The account's owner and age, cached; `None` for an account that does not exist.
    async fn account_facts(&self, account_id: &str) -> Result<Option<AccountFacts>, Status> {
        if let Some(facts) = self.holders.account(account_id) {
            return Ok(Some(facts));
        }
        let Some(account) = self.ledger.get_account(account_id).await.map_err(to_status)? else { return Ok(None) };
        let created_at_us = account.created_at.as_ref().map_or(0, courier_kit::time::us_from_timestamp);
        let facts = AccountFacts { owner_user_id: account.owner_user_id, created_at_us };
        self.holders.remember_account(account_id, facts.clone());
        Ok(Some(facts))
    }
}

/// Which call an authorization came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Authorize.
    Unary,
    /// A message of AuthorizeStream: its request is the `request` field, and risk is asked with ScoreBatch.
    Stream,
}

impl Origin {
    /// How field violations name the request's fields.
    fn field_prefix(self) -> &'static str {
        match self {
            Origin::Unary => "",
            Origin::Stream => "request.",
        }
    }
}

/// One place maps ledger outcomes to status codes.
pub(crate) fn to_status(error: LedgerError) -> Status {
    match error {
        LedgerError::NotFound { kind, id } => status::not_found(kind, &id),
        LedgerError::Rejected { reason, message } => {
            status::with_reason(Code::FailedPrecondition, reason, ERROR_DOMAIN, message)
        }
        error @ LedgerError::KeyReused { .. } => {
            status::with_reason(Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED", ERROR_DOMAIN, error.to_string())
        }
        LedgerError::Unavailable(message) => Status::unavailable(message),
        // Not UNAVAILABLE, which promises nothing was applied: the operation may have committed.
        error @ LedgerError::OutcomeUnknown => Status::deadline_exceeded(error.to_string()),
        // A read that could not reach the database changed nothing: retryable, like a batch that did not commit.
        LedgerError::Database(error) if courier_kit::db::is_unreachable(&error) => {
            Status::unavailable(format!("the ledger's database is unreachable: {error}"))
        }
        error @ LedgerError::Database(_) => status::internal("reading the ledger", &error),
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::payment_service_server::PaymentService for PaymentsApi {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::OpenAccountResponse>, Status> {
        let new = validate::open_account(request.get_ref())?;
        match self.holders.lookup(&new.owner_user_id).await {
            Ok(Some(UserStatus::Active)) => {}
            Ok(Some(_)) => {
                let message = "the owner is not ACTIVE in the user service";
                return Err(status::with_reason(Code::FailedPrecondition, "OWNER_NOT_ACTIVE", ERROR_DOMAIN, message));
            }
            Ok(None) => return Err(status::not_found("user", &new.owner_user_id)),
            Err(error) => {
                return Err(Status::unavailable(format!("the user service did not answer: {}", error.message())))
            }
        }
        let account = self.ledger.open_account(new).await.map_err(to_status)?;
        tracing::info!(target: "courier::payments", account_id = %account.id, "account opened");
        Ok(Response::new(pb::OpenAccountResponse { account: Some(account) }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let id = &request.get_ref().account_id;
        validate::account_id_only("account_id", id)?;
        match self.ledger.get_account(id).await.map_err(to_status)? {
            Some(account) => Ok(Response::new(pb::GetAccountResponse { account: Some(account) })),
            None => Err(status::not_found("account", id)),
        }
    }

    async fn credit_account(
        &self,
        request: Request<pb::CreditAccountRequest>,
    ) -> Result<Response<pb::CreditAccountResponse>, Status> {
        let cmd = validate::credit(request.get_ref())?;
        Ok(Response::new(self.ledger.credit(cmd).await.map_err(to_status)?))
    }

    async fn update_account_status(
        &self,
        request: Request<pb::UpdateAccountStatusRequest>,
    ) -> Result<Response<pb::UpdateAccountStatusResponse>, Status> {
        let request = request.into_inner();
        let mut violations = status::FieldViolations::default();
        if !crate::model::is_account_id(&request.account_id) {
            violations.add("account_id", "not an account id (acct_ and 32 hex digits)");
        }
        let new_status = pb::AccountStatus::try_from(request.status).unwrap_or(pb::AccountStatus::Unspecified);
        if new_status == pb::AccountStatus::Unspecified {
            violations.add("status", "one of ACTIVE, FROZEN, CLOSED");
        }
        violations.into_result()?;
        let account = self.ledger.set_status(request.account_id, new_status).await.map_err(to_status)?;
        Ok(Response::new(pb::UpdateAccountStatusResponse { account: Some(account) }))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let tenant = tenant::of(&request);
        let [decided] =
            <[_; 1]>::try_from(self.authorize_many(&[Some(request.get_ref())], Origin::Unary, tenant.as_deref()).await)
                .expect("one answer per request");
        Ok(Response::new(pb::AuthorizeResponse { authorization: Some(decided?) }))
    }

    async fn capture(&self, request: Request<pb::CaptureRequest>) -> Result<Response<pb::CaptureResponse>, Status> {
        let tenant = tenant::of(&request);
        let authorization = self.capture_one(request.get_ref(), "", tenant.as_deref()).await?;
        Ok(Response::new(pb::CaptureResponse { authorization: Some(authorization) }))
    }

    async fn void(&self, request: Request<pb::VoidRequest>) -> Result<Response<pb::VoidResponse>, Status> {
        let cmd = validate::void(request.get_ref())?;
        tenant::ensure_owned(&self.ledger, &cmd.authorization_id, tenant::of(&request).as_deref()).await?;
        let authorization = self.ledger.void(cmd).await.map_err(to_status)?;
        Ok(Response::new(pb::VoidResponse { authorization: Some(authorization) }))
    }

    async fn get_authorization(
        &self,
        request: Request<pb::GetAuthorizationRequest>,
    ) -> Result<Response<pb::GetAuthorizationResponse>, Status> {
        let id = &request.get_ref().authorization_id;
        validate::authorization_id_only("authorization_id", id)?;
        let tenant = tenant::of(&request);
        match self.ledger.get_authorization(id).await.map_err(to_status)? {
            Some(authorization) if tenant.as_ref().is_none_or(|t| *t == authorization.merchant_id) => {
                Ok(Response::new(pb::GetAuthorizationResponse { authorization: Some(authorization) }))
            }
            _ => Err(status::not_found("authorization", id)),
        }
    }

    type ListAuthorizationsStream = Stream_<pb::ListAuthorizationsResponse>;

    async fn list_authorizations(
        &self,
        request: Request<pb::ListAuthorizationsRequest>,
    ) -> Result<Response<Self::ListAuthorizationsStream>, Status> {
        let tenant = tenant::of(&request);
        let mut request = request.into_inner();
        request.merchant_id = tenant::bind(&request.merchant_id, tenant.as_deref())?.into_owned();
        Ok(Response::new(streams::list_authorizations(&self.ledger, request)?))
    }

    type AuthorizeStreamStream = Stream_<pb::AuthorizeStreamResponse>;

    async fn authorize_stream(
        &self,
        request: Request<tonic::Streaming<pb::AuthorizeStreamRequest>>,
    ) -> Result<Response<Self::AuthorizeStreamStream>, Status> {
        let tenant = tenant::of(&request);
        Ok(Response::new(streams::authorize_stream(self.clone(), request.into_inner(), tenant)))
    }

    async fn batch_capture(
        &self,
        request: Request<tonic::Streaming<pb::BatchCaptureRequest>>,
    ) -> Result<Response<pb::BatchCaptureResponse>, Status> {
        let tenant = tenant::of(&request);
        Ok(Response::new(streams::batch_capture(self.clone(), request.into_inner(), tenant).await?))
    }

    type WatchEventsStream = Stream_<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Ok(Response::new(streams::watch_events(&self.ledger, request.into_inner())?))
    }
}

//! The `courier.risk.v1.RiskService` handlers: validate at the boundary, ask the engine, map the outcome to the
//! wire. Score does no I/O and never waits on a rules change; the admin calls are rare and may.

mod validate;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use courier_kit::status;
use courier_kit::time::timestamp_from_us;
use courier_proto::risk::v1 as pb;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::{ReloadError, RiskEngine};
use crate::rollout::RolloutError;

/// The ErrorInfo domain of every risk error reason.
pub const ERROR_DOMAIN: &str = "risk.courier.dev";

/// Most attempts one ScoreBatch takes.
pub const MAX_BATCH: usize = 1_000;

/// The gRPC face of the risk service.
#[derive(Clone, Debug)]
pub struct RiskApi {
    engine: Arc<RiskEngine>,
}

impl RiskApi {
    /// Serves `engine`.
    pub fn new(engine: Arc<RiskEngine>) -> Self {
        Self { engine }
    }

    /// The tonic service; the runtime enforces the receive-size limit in front of it.
    pub fn into_service(self) -> pb::risk_service_server::RiskServiceServer<Self> {
        pb::risk_service_server::RiskServiceServer::new(self).max_decoding_message_size(usize::MAX)
    }
}

fn rollout_failure(error: RolloutError) -> Status {
    match error {
        RolloutError::UnknownVersion(version) => status::not_found("rule_set", &version),
        error @ RolloutError::CandidateIsActive(_) => {
            status::with_reason(Code::FailedPrecondition, "CANDIDATE_IS_ACTIVE", ERROR_DOMAIN, error.to_string())
        }
    }
}

fn reload_failure(engine: &RiskEngine, error: ReloadError) -> Status {
    let reason = match error {
        ReloadError::NoFile => "NO_RULES_FILE",
        ReloadError::Rules(_) => "RULES_INVALID",
    };
    let mut metadata = HashMap::new();
    if let Some(path) = engine.rules_file() {
        metadata.insert("rules_file".to_owned(), path.display().to_string());
    }
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::FailedPrecondition, error.to_string(), details)
}

#[tonic::async_trait]
impl pb::risk_service_server::RiskService for RiskApi {
    async fn score(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        let request = request.into_inner();
        let attempt = validate::score(&request)?;
        let scored = self.engine.score(&attempt);
        Ok(Response::new(wire::score_response(&scored)))
    }

    async fn score_batch(
        &self,
        request: Request<pb::ScoreBatchRequest>,
    ) -> Result<Response<pb::ScoreBatchResponse>, Status> {
        let requests = request.into_inner().requests;
        if requests.is_empty() || requests.len() > MAX_BATCH {
            let mut violations = status::FieldViolations::default();
            violations.add("requests", format!("1 to {MAX_BATCH} attempts (got {})", requests.len()));
            return Err(violations.into_status());
        }
        // In order, one at a time, as that many Score calls would: each attempt is recorded (velocity, first use)
        // before the next is scored.
        let results = requests
            .iter()
            .map(|request| pb::ScoreBatchResult {
                result: Some(match validate::score(request) {
                    Ok(attempt) => {
                        pb::score_batch_result::Result::Response(wire::score_response(&self.engine.score(&attempt)))
                    }
                    Err(error) => pb::score_batch_result::Result::Error(status::to_rpc_status(&error)),
                }),
            })
            .collect();
        Ok(Response::new(pb::ScoreBatchResponse { results }))
    }

    async fn get_rule_set(
        &self,
        request: Request<pb::GetRuleSetRequest>,
    ) -> Result<Response<pb::GetRuleSetResponse>, Status> {
        let request = request.into_inner();
        validate::version_or_empty(&request.version)?;
        let snapshot = self.engine.snapshot();
        let set = if request.version.is_empty() {
            &snapshot.active
        } else {
            snapshot.find(&request.version).ok_or_else(|| status::not_found("rule_set", &request.version))?
        };
        Ok(Response::new(pb::GetRuleSetResponse {
            rule_set: Some(wire::rule_set(set)),
            rollout: Some(wire::rollout(&snapshot)),
            versions: wire::versions(&snapshot),
            rules_file: self.engine.rules_file().map(|path| path.display().to_string()).unwrap_or_default(),
            loaded_at: Some(timestamp_from_us(snapshot.loaded_at_us)),
            last_reload_error: self.engine.last_reload_error().unwrap_or_default(),
        }))
    }

    async fn set_rollout(
        &self,
        request: Request<pb::SetRolloutRequest>,
    ) -> Result<Response<pb::SetRolloutResponse>, Status> {
        let request = request.into_inner();
        let switch = validate::set_rollout(&request)?;
        let (before, after) = self.engine.set_rollout(&request.version, switch).map_err(rollout_failure)?;
        Ok(Response::new(pb::SetRolloutResponse {
            rollout: Some(wire::rollout(&after)),
            previous: Some(wire::rollout(&before)),
        }))
    }

    async fn reload_rules(
        &self,
        _request: Request<pb::ReloadRulesRequest>,
    ) -> Result<Response<pb::ReloadRulesResponse>, Status> {
        // Reading a file blocks; the blocking pool keeps the async workers (and Score) free meanwhile.
        // The call's span goes along, so the reload's log lines carry the call's trace id.
        let (engine, span) = (self.engine.clone(), tracing::Span::current());
        let outcome = tokio::task::spawn_blocking(move || span.in_scope(|| engine.reload()))
            .await
            .map_err(|e| status::internal("reloading the rules", &e))?;
        let snapshot = outcome.map_err(|e| reload_failure(&self.engine, e))?;
        Ok(Response::new(pb::ReloadRulesResponse {
            rollout: Some(wire::rollout(&snapshot)),
            versions: wire::versions(&snapshot),
            loaded_at: Some(timestamp_from_us(snapshot.loaded_at_us)),
        }))
    }

    async fn get_rollout_stats(
        &self,
        _request: Request<pb::GetRolloutStatsRequest>,
    ) -> Result<Response<pb::GetRolloutStatsResponse>, Status> {
        let snapshot = self.engine.snapshot();
        let reading = snapshot.stats.read();
        Ok(Response::new(wire::stats(&snapshot, reading)))
    }
}

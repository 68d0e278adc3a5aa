//! The boundary: every request is checked field by field before it reaches the engine, and every violation is
//! reported at once (`google.rpc.BadRequest`). Score is on the hot path: a good request allocates nothing here.

use courier_kit::status::FieldViolations;
use courier_kit::time::us_from_timestamp;
use courier_proto::risk::v1 as pb;
use tonic::Status;

use crate::engine::Attempt;
use crate::rollout::{CandidateMode, Switch};
use crate::rules::{is_currency_shape, is_merchant_id};

/// `google.protobuf.Timestamp`'s range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Score.
pub fn score(request: &pb::ScoreRequest) -> Result<Attempt<'_>, Status> {
    let mut v = FieldViolations::default();
    id(&mut v, "account_id", &request.account_id);
    id(&mut v, "merchant_id", &request.merchant_id);
    if request.amount <= 0 {
        v.add("amount", "must be more than zero (minor units)");
    }
    if request.currency.is_empty() {
        v.add("currency", "required");
    } else if !is_currency_shape(&request.currency) {
        v.add("currency", "not an ISO 4217 currency code (e.g. USD)");
    }
    if let Some(created) = &request.account_created_at {
        if !(0..1_000_000_000).contains(&created.nanos) {
            v.add("account_created_at", "nanos must be 0 to 999999999");
        } else if !TIMESTAMP_SECONDS.contains(&created.seconds) {
            v.add("account_created_at", "must be between 0001-01-01 and 9999-12-31");
        }
    }
    if request.available_amount.is_some_and(|available| available < 0) {
        v.add("available_amount", "must be zero or more (minor units) when set");
    }
    v.into_result()?;
    Ok(Attempt {
        account_id: &request.account_id,
        merchant_id: &request.merchant_id,
        amount: request.amount,
        currency: &request.currency,
        account_created_at_us: request.account_created_at.as_ref().map(us_from_timestamp),
        available_amount: request.available_amount,
    })
}

/// GetRuleSet: empty (the active set) or a well-formed version.
pub fn version_or_empty(version: &str) -> Result<(), Status> {
    let mut v = FieldViolations::default();
    if !version.is_empty() {
        version_field(&mut v, version);
    }
    v.into_result()
}

/// SetRollout: a version, a mode, and a percent that goes with the mode.
pub fn set_rollout(request: &pb::SetRolloutRequest) -> Result<Switch, Status> {
    let mut v = FieldViolations::default();
    if request.version.is_empty() {
        v.add("version", "required");
    } else {
        version_field(&mut v, &request.version);
    }
    let percent_ok = (0..=100).contains(&request.percent);
    let switch = match pb::RolloutMode::try_from(request.mode) {
        Ok(pb::RolloutMode::Shadow) => Some(Switch::Candidate(CandidateMode::Shadow)),
        Ok(pb::RolloutMode::Percentage) if percent_ok => {
            Some(Switch::Candidate(CandidateMode::Percentage(request.percent as u8)))
        }
        Ok(pb::RolloutMode::Percentage) => {
            v.add("percent", format!("must be 0 to 100, got {}", request.percent));
            None
        }
        Ok(pb::RolloutMode::Enforce) => Some(Switch::Enforce),
        Ok(pb::RolloutMode::Unspecified) | Err(_) => {
            v.add("mode", format!("must be SHADOW, PERCENTAGE or ENFORCE, got {}", request.mode));
            None
        }
    };
    if matches!(switch, Some(Switch::Enforce | Switch::Candidate(CandidateMode::Shadow))) && request.percent != 0 {
        v.add("percent", "goes only with PERCENTAGE; must be 0");
    }
    // Every branch that leaves `switch` empty recorded a violation.
    let Some(switch) = switch else { return Err(v.into_status()) };
    v.into_result()?;
    Ok(switch)
}

fn id(v: &mut FieldViolations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "required");
    } else if !is_merchant_id(value) {
        v.add(field, "1 to 64 of A-Z a-z 0-9 _ -");
    }
}

fn version_field(v: &mut FieldViolations, version: &str) {
    let ok =
        version.len() <= 64 && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        v.add("version", "1 to 64 of A-Z a-z 0-9 . _ -");
    }
}

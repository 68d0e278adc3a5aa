//! The engine's values on the wire.

use std::time::Duration;

use courier_kit::time::timestamp_from_us;
use courier_proto::risk::v1 as pb;

use crate::engine::{Scored, Verdict};
use crate::rollout::{CandidateMode, Snapshot, StatsReading};
use crate::rules::{Condition, Decision, RuleSet};

/// A decision.
pub fn decision(decision: Decision) -> pb::RiskDecision {
    match decision {
        Decision::Allow => pb::RiskDecision::Allow,
        Decision::Review => pb::RiskDecision::Review,
        Decision::Deny => pb::RiskDecision::Deny,
    }
}

/// A Score answer: the reasons are the only allocation-heavy part of a Score, and only the enforced set's are sent.
pub fn score_response(scored: &Scored) -> pb::ScoreResponse {
    let Verdict { set, evaluation } = &scored.enforced;
    let reasons = evaluation
        .fired(set)
        .map(|rule| pb::RiskReason {
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            score: i32::from(rule.effect.score()),
            deny: rule.effect == crate::rules::Effect::Deny,
        })
        .collect();
    pb::ScoreResponse {
        score: i32::from(evaluation.score),
        decision: decision(evaluation.decision) as i32,
        reasons,
        rule_set_version: set.version.clone(),
        decided_by_candidate: scored.decided_by_candidate,
        shadow: scored.shadow.as_ref().map(|shadow| pb::ShadowEvaluation {
            rule_set_version: shadow.set.version.clone(),
            score: i32::from(shadow.evaluation.score),
            decision: decision(shadow.evaluation.decision) as i32,
        }),
    }
}

/// The rollout of a snapshot.
pub fn rollout(snapshot: &Snapshot) -> pb::Rollout {
    let (candidate_version, candidate_mode, percent) = match &snapshot.spec.candidate {
        None => (String::new(), pb::RolloutMode::Unspecified, 0),
        Some((version, CandidateMode::Shadow)) => (version.clone(), pb::RolloutMode::Shadow, 0),
        Some((version, CandidateMode::Percentage(p))) => (version.clone(), pb::RolloutMode::Percentage, i32::from(*p)),
    };
    pb::Rollout {
        active_version: snapshot.spec.active.clone(),
        candidate_version,
        candidate_mode: candidate_mode as i32,
        percent,
        since: Some(timestamp_from_us(snapshot.since_us)),
    }
}

/// The versions of a snapshot, in file order.
pub fn versions(snapshot: &Snapshot) -> Vec<String> {
    snapshot.sets.iter().map(|set| set.version.clone()).collect()
}

/// A rule set, every rule with its condition.
pub fn rule_set(set: &RuleSet) -> pb::RuleSet {
    use pb::rule::Condition as Wire;
    let rules = set
        .rules
        .iter()
        .map(|rule| pb::Rule {
            id: rule.id.clone(),
            description: rule.description.clone(),
            score: i32::from(rule.effect.score()),
            deny: rule.effect == crate::rules::Effect::Deny,
            condition: Some(match &rule.condition {
                Condition::AmountAbove { amount, currency } => Wire::AmountAbove(pb::AmountAboveCondition {
                    amount: *amount,
                    currency: currency.clone().unwrap_or_default(),
                }),
                Condition::Velocity { max, window } => Wire::Velocity(pb::VelocityCondition {
                    max: i32::try_from(*max).unwrap_or(i32::MAX),
                    window: Some(duration(*window)),
                }),
                Condition::MerchantDenyList(merchants) => Wire::MerchantDenyList(pb::MerchantDenyListCondition {
                    merchant_ids: merchants.iter().cloned().collect(),
                }),
                Condition::FirstMerchantUse => Wire::FirstMerchantUse(pb::FirstMerchantUseCondition {}),
                Condition::NewAccount { younger_than } => {
                    Wire::NewAccount(pb::NewAccountCondition { younger_than: Some(duration(*younger_than)) })
                }
                Condition::DrainsAvailable { percent } => {
                    Wire::DrainsAvailable(pb::DrainsAvailableCondition { percent: i32::from(*percent) })
                }
            }),
        })
        .collect();
    pb::RuleSet {
        version: set.version.clone(),
        review_at: i32::from(set.review_at),
        deny_at: i32::from(set.deny_at),
        rules,
    }
}

/// Rollout counters.
pub fn stats(snapshot: &Snapshot, reading: StatsReading) -> pb::GetRolloutStatsResponse {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::GetRolloutStatsResponse {
        rollout: Some(rollout(snapshot)),
        evaluations: count(reading.evaluations),
        decided_by_candidate: count(reading.decided_by_candidate),
        shadow_evaluations: count(reading.shadow_evaluations),
        disagreements: count(reading.disagreements),
        shadow_stricter: count(reading.shadow_stricter),
        shadow_more_lenient: count(reading.shadow_more_lenient),
    }
}

fn duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: duration.subsec_nanos() as i32,
    }
}

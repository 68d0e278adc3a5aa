//! The ledger's metrics: authorization outcomes and the group-commit writer's batches. Outcomes are counted only
//! once their batch committed, so a rolled-back batch (whose callers heard UNAVAILABLE) counts nothing, and a
//! replayed answer (same idempotency key) is not a second decision.

use std::sync::LazyLock;
use std::time::Duration;

use courier_kit::metrics;
use courier_proto::payments::v1 as pb;
use prometheus::{Histogram, IntCounterVec};

use crate::model::response_code;
use pb::DeclineReason;

/// One authorization decided inside a transaction, counted when it commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decided {
    /// `DeclineReason::Unspecified` for an approval.
    pub reason: DeclineReason,
    pub decider: pb::Decider,
}

struct Ledger {
    authorizations: IntCounterVec,
    decisions: IntCounterVec,
    batch_size: Histogram,
    commit_seconds: Histogram,
}

static LEDGER: LazyLock<Ledger> = LazyLock::new(|| Ledger {
    authorizations: metrics::counter_vec(
        "courier_payments_authorizations_total",
        "Authorizations decided and committed, by decision (APPROVED, DECLINED) and ISO 8583 response code.",
        &["decision", "code"],
    ),
    decisions: metrics::counter_vec(
        "courier_payments_decisions_total",
        "Authorizations decided and committed, by who decided (RISK, STAND_IN, or NONE without risk checks).",
        &["decided_by"],
    ),
    batch_size: metrics::histogram(
        "courier_ledger_batch_size",
        "Operations per committed group-commit transaction.",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
    ),
    commit_seconds: metrics::histogram(
        "courier_ledger_commit_seconds",
        "Time to apply and commit one batch, from taking a connection to COMMIT returning (fsync included).",
        metrics::LATENCY_BUCKETS,
    ),
});

/// Records one committed batch of `operations` that took `elapsed`, and the authorizations it decided.
pub(super) fn committed(operations: usize, elapsed: Duration, decided: &[Decided]) {
    let ledger = &*LEDGER;
    ledger.batch_size.observe(operations as f64);
    ledger.commit_seconds.observe(elapsed.as_secs_f64());
    for decided in decided {
        let approved = decided.reason == DeclineReason::Unspecified;
        let decision = if approved { "APPROVED" } else { "DECLINED" };
        ledger.authorizations.with_label_values(&[decision, response_code(decided.reason)]).inc();
        let decider = match decided.decider {
            pb::Decider::Risk => "RISK",
            pb::Decider::StandIn => "STAND_IN",
            _ => "NONE",
        };
        ledger.decisions.with_label_values(&[decider]).inc();
    }
}

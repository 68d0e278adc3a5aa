//! `courier bench --slo`: a load run's SLIs against the objectives of `deploy/prometheus/rules/courier-slo.yml`,
//! measured from the client's side of the same calls (docs/slo.md).

use std::time::Duration;

use serde::Serialize;
use tonic::Code;

/// The availability objective: the share of Authorize calls that end without a server fault.
pub const AVAILABILITY_OBJECTIVE: f64 = 0.999;
/// The latency objective: the share of Authorize calls answered within [`LATENCY_BUDGET`].
pub const LATENCY_OBJECTIVE: f64 = 0.99;
/// The latency SLO's threshold: Authorize's default deadline (`config::default_server_options`).
pub const LATENCY_BUDGET: Duration = Duration::from_millis(250);

/// The codes that spend the availability budget, as the rules' `code=~"..."` matcher lists them; every other code
/// is an answer (a decline is OK; the caller's own errors are the caller's).
fn is_server_fault(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Unknown | Code::DataLoss)
}

/// One SLI of a run against its objective.
#[derive(Debug, Serialize)]
pub struct Sli {
    /// The SLO's name in the rules file.
    pub slo: &'static str,
    pub objective: f64,
    /// Good calls over all calls counted; `None` without any call.
    pub measured: Option<f64>,
    pub good: u64,
    pub total: u64,
    pub met: bool,
}

impl Sli {
    fn new(slo: &'static str, objective: f64, good: u64, total: u64) -> Self {
        let measured = (total > 0).then(|| good as f64 / total as f64);
        Self { slo, objective, measured, good, total, met: measured.is_some_and(|m| m >= objective) }
    }
}

/// The SLIs of `report`. Latency counts answered calls only: a failed call has no latency the bench records, and
/// is already bad for availability.
pub fn measure(report: &courier_bench::Report) -> Vec<Sli> {
    let errors: u64 = report.errors.iter().map(|(_, n)| n).sum();
    // The bench names codes as tonic's Debug does ("Unavailable").
    let faults: u64 = report
        .errors
        .iter()
        .filter(|(name, _)| {
            (0..17).map(Code::from_i32).any(|code| is_server_fault(code) && format!("{code:?}") == *name)
        })
        .map(|(_, n)| n)
        .sum();
    let total = report.ok + errors;
    vec![
        Sli::new("authorize-availability", AVAILABILITY_OBJECTIVE, total - faults, total),
        Sli::new("authorize-latency", LATENCY_OBJECTIVE, report.within(LATENCY_BUDGET), report.ok),
    ]
}

/// A markdown table of `slis`.
pub fn markdown(slis: &[Sli]) -> String {
    let mut out = String::from("| SLO | objective | measured | good / calls | |\n|---|---:|---:|---:|---|\n");
    for sli in slis {
        let measured = sli.measured.map_or("-".to_owned(), |m| format!("{:.3}%", m * 100.0));
        let verdict = if sli.met { "met" } else { "MISSED" };
        out.push_str(&format!(
            "| {} | {}% | {measured} | {} / {} | {verdict} |\n",
            sli.slo,
            sli.objective * 100.0,
            sli.good,
            sli.total
        ));
    }
    out
}

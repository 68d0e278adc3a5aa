//! Latency distribution and throughput of one run.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microsecond latencies, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// `closed` or `open@RATE`.
    pub mode: String,
    /// `grpc` or `rest` (REST/JSON over HTTP/1.1).
    pub transport: String,
    /// Calls that answered OK (declines included: they are answers).
    pub ok: u64,
    /// Calls that failed, by gRPC code name.
    pub errors: Vec<(String, u64)>,
    /// Measured seconds (after warm-up).
    pub seconds: f64,
    /// OK calls per second.
    pub throughput: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest call.
    pub max_us: u64,
    /// CPU time (user + system, µs) the server processes given by `--server-pid` spent in the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us: Option<f64>,
    /// `server_cpu_us` divided by the calls answered OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_per_call_us: Option<f64>,
    /// The percentile curve, (percentile 0 to 100, microseconds), from the histogram's quantile iteration (five
    /// steps per halving of the distance to 100 %): what [`crate::plot`] draws.
    #[serde(skip)]
    pub distribution: Vec<(f64, u64)>,
    /// The answered calls' latencies, for questions the percentiles cannot answer exactly (see [`Report::within`]).
    #[serde(skip)]
    pub latency: Histogram<u64>,
}

impl Report {
    /// Summarises a merged histogram.
    pub fn new(
        scenario: &str,
        mode: String,
        histogram: &Histogram<u64>,
        errors: Vec<(String, u64)>,
        elapsed: Duration,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        let ok = histogram.len();
        Self {
            scenario: scenario.to_owned(),
            mode,
            transport: "grpc".to_owned(),
            ok,
            errors,
            seconds,
            throughput: if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            server_cpu_us: None,
            server_cpu_per_call_us: None,
            distribution: histogram
                .iter_quantiles(5)
                .map(|step| (step.quantile_iterated_to() * 100.0, step.value_iterated_to()))
                .collect(),
            latency: histogram.clone(),
        }
    }

    /// Adds the server's CPU time over the measured window.
    pub fn with_server_cpu(mut self, cpu: Duration) -> Self {
        let micros = cpu.as_secs_f64() * 1e6;
        self.server_cpu_us = Some(micros);
        self.server_cpu_per_call_us = Some(micros / self.ok.max(1) as f64);
        self
    }

    /// How many answered calls took at most `limit`: the latency SLI, exact to the histogram's 3 digits.
    pub fn within(&self, limit: Duration) -> u64 {
        self.latency.count_between(0, limit.as_micros().try_into().unwrap_or(u64::MAX))
    }

    /// One markdown table row: scenario, transport, mode, throughput, p50, p90, p99, p99.9, max (ms), errors,
    /// server CPU per call (µs; `-` when not measured).
    pub fn markdown_row(&self) -> String {
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let errors: u64 = self.errors.iter().map(|(_, n)| n).sum();
        let cpu = self.server_cpu_per_call_us.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
        format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {cpu} |",
            self.scenario,
            self.transport,
            self.mode,
            self.throughput,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            errors
        )
    }

    /// The header matching [`Report::markdown_row`].
    pub fn markdown_header() -> &'static str {
        "| scenario | transport | mode | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU µs/call |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    }
}

//! Driving calls: closed loop for maximum throughput, open loop at a fixed rate without coordinated omission.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::report::{new_histogram, Report};
use crate::scenario::{Prepared, Scenario};

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each caller sends its next call when the last one returned.
    Closed,
    /// Calls are due at `rate` per second; each is timed from when it was due.
    Open {
        /// Calls per second.
        rate: f64,
    },
}

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// HTTP/2 connections to open (callers share them round-robin).
    pub connections: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// Time run before measuring (connections warm, caches filled).
    pub warmup: Duration,
    /// Pacing.
    pub mode: Mode,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target URL is not valid.
    #[error("invalid target {0:?}")]
    Target(String),
    /// Connecting failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The URL.
        target: String,
        /// The transport's error.
        source: tonic::transport::Error,
    },
    /// Set-up calls failed.
    #[error("set-up failed: {0}")]
    Setup(#[from] tonic::Status),
}

/// What one caller measured.
struct CallerResult {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `scenario` against `target` and reports what was measured after the warm-up.
pub async fn run(target: &str, scenario: &Scenario, config: &LoadConfig) -> Result<Report, BenchError> {
    let endpoint = Channel::from_shared(target.to_owned()).map_err(|_| BenchError::Target(target.to_owned()))?;
    let mut channels = Vec::with_capacity(config.connections.max(1));
    for _ in 0..config.connections.max(1) {
        let channel = endpoint
            .clone()
            .connect()
            .await
            .map_err(|source| BenchError::Connect { target: target.to_owned(), source })?;
        channels.push(channel);
    }
    let prepared = Arc::new(scenario.prepare(channels[0].clone()).await?);

    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let next = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..config.concurrency.max(1))
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let (prepared, next, mode) = (prepared.clone(), next.clone(), config.mode);
            tokio::spawn(caller(prepared, channel, next, mode, start, measure_from, end))
        })
        .collect();
    let mut histogram = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for caller in callers {
        let result = caller.await.expect("caller task");
        histogram.add(&result.histogram).expect("same histogram bounds");
        for (code, n) in result.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let mode = match config.mode {
        Mode::Closed => "closed".to_owned(),
        Mode::Open { rate } => format!("open@{rate:.0}/s"),
    };
    Ok(Report::new(&scenario.name(), mode, &histogram, errors.into_iter().collect(), config.duration))
}

async fn caller(
    prepared: Arc<Prepared>,
    channel: Channel,
    next: Arc<AtomicU64>,
    mode: Mode,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> CallerResult {
    let mut result = CallerResult { histogram: new_histogram(), errors: BTreeMap::new() };
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        // When this call is due: now (closed loop), or on the fixed schedule (open loop).
        let due = match mode {
            Mode::Closed => Instant::now(),
            Mode::Open { rate } => start + Duration::from_secs_f64(n as f64 / rate),
        };
        if due >= end {
            return result;
        }
        tokio::time::sleep_until(due).await;
        let outcome = prepared.call(&channel, n).await;
        if due < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                let _ = result.histogram.record(micros.min(60_000_000));
            }
            Err(status) => *result.errors.entry(format!("{:?}", status.code())).or_default() += 1,
        }
    }
}

//! Driving calls: closed loop for maximum throughput, open loop at a fixed rate without coordinated omission.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::live::Live;
use crate::report::{new_histogram, Report};
use crate::scenario::{Auth, Prepared, Scenario};

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

/// How calls reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// gRPC over `connections` HTTP/2 connections shared by the callers.
    #[default]
    Grpc,
    /// REST/JSON over HTTP/1.1, one keep-alive connection per caller ([`crate::rest`]); the authorize scenarios
    /// and get-user only.
    Rest,
}

impl Transport {
    /// Whether `scenario` can run over this transport.
    pub fn serves(self, scenario: &Scenario) -> bool {
        match self {
            Transport::Grpc => true,
            Transport::Rest => {
                matches!(scenario, Scenario::Authorize { .. } | Scenario::AuthorizeHot | Scenario::GetUser)
            }
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Rest => "rest",
        }
    }
}

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// HTTP/2 connections to open (callers share them round-robin).
    pub connections: usize,
    /// Concurrent callers (for AuthorizeStream: messages in flight, shared by the streams).
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// Time run before measuring (connections warm, caches filled).
    pub warmup: Duration,
    /// Pacing.
    pub mode: Mode,
    /// Credentials sent on every call.
    pub auth: Auth,
    /// Updated as calls answer, for a progress display.
    pub live: Option<Arc<Live>>,
    /// How the measured calls travel (set-up always uses gRPC).
    pub transport: Transport,
    /// Server processes whose CPU time over the measured window goes into the report (none: not measured).
    pub server_pids: Vec<u32>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target URL is not valid.
    #[error("invalid target {0:?}")]
    Target(String),
    /// The token cannot be sent as a header.
    #[error("the token must be printable ASCII (it is sent as `authorization: Bearer TOKEN`)")]
    Token,
    /// Connecting failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The URL.
        target: String,
        /// The transport's error.
        source: tonic::transport::Error,
    },
    /// The scenario cannot run over the transport asked for.
    #[error("{scenario} cannot run over {transport}: REST serves the authorize scenarios and get-user")]
    Unsupported {
        /// The scenario's name.
        scenario: String,
        /// The transport's name.
        transport: &'static str,
    },
    /// The server's CPU time cannot be read.
    #[error("server CPU: {0}")]
    ServerCpu(String),
    /// Set-up calls failed.
    #[error("set-up failed: {0}")]
    Setup(#[from] tonic::Status),
}

/// What one caller (or stream) measured.
pub(crate) struct CallerResult {
    pub(crate) histogram: Histogram<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    live: Option<Arc<Live>>,
}

impl CallerResult {
    pub(crate) fn new(live: Option<Arc<Live>>) -> Self {
        Self { histogram: new_histogram(), errors: BTreeMap::new(), live }
    }

    /// An answer to a call due at `due`; counted when due after `measure_from`.
    pub(crate) fn answered(&mut self, due: Instant, measure_from: Instant) {
        let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(live) = &self.live {
            live.ok(micros);
        }
        if due >= measure_from {
            let _ = self.histogram.record(micros);
        }
    }

    /// A failure with `code` of a call due at `due`.
    pub(crate) fn failed(&mut self, code: tonic::Code, due: Instant, measure_from: Instant) {
        if let Some(live) = &self.live {
            live.error();
        }
        if due >= measure_from {
            *self.errors.entry(format!("{code:?}")).or_default() += 1;
        }
    }
}

/// Opens `config.connections` HTTP/2 connections to `target`.
pub(crate) async fn connect(target: &str, connections: usize) -> Result<Vec<Channel>, BenchError> {
    let endpoint = Channel::from_shared(target.to_owned()).map_err(|_| BenchError::Target(target.to_owned()))?;
    let mut channels = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        let channel = endpoint
            .clone()
            .connect()
            .await
            .map_err(|source| BenchError::Connect { target: target.to_owned(), source })?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Runs `scenario` against `target` and reports what was measured after the warm-up.
pub async fn run(target: &str, scenario: &Scenario, config: &LoadConfig) -> Result<Report, BenchError> {
    if *scenario == Scenario::IdleConnections {
        return crate::idle::hold(target, config, |_| {}).await;
    }
    if !config.transport.serves(scenario) {
        return Err(BenchError::Unsupported { scenario: scenario.name(), transport: config.transport.name() });
    }
    let channels = connect(target, config.connections).await?;
    let prepared = Arc::new(scenario.prepare(channels[0].clone(), config.auth.clone()).await?);

    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let server_cpu = crate::server_cpu::Window::spawn(&config.server_pids, measure_from, end);
    let results = if let Scenario::AuthorizeStream { streams, .. } = *scenario {
        crate::stream::drive(prepared, &channels, config, streams, (start, measure_from, end)).await
    } else {
        let next = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..config.concurrency.max(1))
            .map(|i| {
                let connection = match config.transport {
                    Transport::Grpc => Connection::Grpc(channels[i % channels.len()].clone()),
                    Transport::Rest => Connection::Rest(crate::rest::Connection::new(target)?),
                };
                let (prepared, next, mode) = (prepared.clone(), next.clone(), config.mode);
                let result = CallerResult::new(config.live.clone());
                Ok(tokio::spawn(caller(prepared, connection, next, mode, result, (start, measure_from, end))))
            })
            .collect::<Result<_, BenchError>>()?;
        let mut results = Vec::with_capacity(callers.len());
        for caller in callers {
            results.push(caller.await.expect("caller task"));
        }
        results
    };
    let mut report = merge(scenario, config, results);
    if let Some(window) = server_cpu {
        report = report.with_server_cpu(window.finish().await?);
    }
    Ok(report)
}

/// Where a caller sends its calls.
enum Connection {
    Grpc(Channel),
    Rest(crate::rest::Connection),
}

/// One report from what every caller measured.
pub(crate) fn merge(scenario: &Scenario, config: &LoadConfig, results: Vec<CallerResult>) -> Report {
    let mut histogram = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for result in results {
        histogram.add(&result.histogram).expect("same histogram bounds");
        for (code, n) in result.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let mode = match config.mode {
        Mode::Closed => "closed".to_owned(),
        Mode::Open { rate } => format!("open@{rate:.0}/s"),
    };
    let mut report = Report::new(&scenario.name(), mode, &histogram, errors.into_iter().collect(), config.duration);
    report.transport = config.transport.name().to_owned();
    report
}

async fn caller(
    prepared: Arc<Prepared>,
    mut connection: Connection,
    next: Arc<AtomicU64>,
    mode: Mode,
    mut result: CallerResult,
    (start, measure_from, end): (Instant, Instant, Instant),
) -> CallerResult {
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
        // tokio's timer has millisecond ticks: even a sleep until "now" can cost a millisecond, so a call already
        // due (every closed-loop call, a late open-loop one) goes at once.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let answer = match &mut connection {
            Connection::Grpc(channel) => prepared.call(channel, n).await,
            Connection::Rest(connection) => prepared.call_rest(connection, n).await,
        };
        match answer {
            Ok(()) => result.answered(due, measure_from),
            Err(status) => result.failed(status.code(), due, measure_from),
        }
    }
}

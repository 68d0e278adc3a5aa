//! Idle connections: opens one HTTP/2 connection per `connections`, makes one call on each (so the server has
//! accepted and served it, not just queued a TCP handshake), then holds them all open for the duration. What the
//! server spends on clients that are connected and quiet is then read from outside (e.g. its VmRSS).

use std::sync::Arc;

use tokio::time::Instant;

use crate::load::{connect, merge, BenchError, CallerResult, LoadConfig};
use crate::report::Report;
use crate::scenario::Scenario;

/// Opens the connections, calls GetUser once on each, runs `on_open(connections)` and holds them for
/// `config.duration`. The report times the one call per connection.
pub async fn hold(target: &str, config: &LoadConfig, on_open: impl FnOnce(usize)) -> Result<Report, BenchError> {
    let channels = connect(target, config.connections).await?;
    let prepared = Arc::new(Scenario::IdleConnections.prepare(channels[0].clone(), config.auth.clone()).await?);
    let calls: Vec<_> = channels
        .iter()
        .enumerate()
        .map(|(n, channel)| {
            let (prepared, channel) = (prepared.clone(), channel.clone());
            let mut result = CallerResult::new(config.live.clone());
            tokio::spawn(async move {
                let due = Instant::now();
                match prepared.call(&channel, n as u64).await {
                    Ok(()) => result.answered(due, due),
                    Err(status) => result.failed(status.code(), due, due),
                }
                result
            })
        })
        .collect();
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        results.push(call.await.expect("idle call task"));
    }
    on_open(channels.len());
    tokio::time::sleep(config.duration).await;
    drop(channels);
    let mut report = merge(&Scenario::IdleConnections, config, results);
    report.mode = format!("held {:?}", config.duration);
    report.throughput = 0.0;
    Ok(report)
}

//! `courier bench`: load against a running server, closed loop (maximum throughput) or open loop at a fixed rate
//! (latency from the intended send time, so queueing is not hidden), reported as a markdown row or JSON.

use std::time::Duration;

use clap::{Args, ValueEnum};
use courier_bench::{LoadConfig, Mode, Report, Scenario};

/// `courier bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The courier server to load (it must serve users and payments, as `courier up` does).
    #[arg(long, env = "COURIER_SERVER_URL", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// What each call is.
    #[arg(long, value_enum, default_value_t = ScenarioArg::Authorize)]
    scenario: ScenarioArg,
    /// Accounts the authorize scenario spreads over.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Calls per second (open loop); without it, a closed loop sends as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured time, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time run before measuring, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Print the report as JSON instead of a markdown table.
    #[arg(long)]
    json: bool,
}

/// The scenarios as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioArg {
    /// Authorize spread over --accounts accounts.
    Authorize,
    /// Authorize on one account.
    AuthorizeHot,
    /// GetUser of one user.
    GetUser,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenario = match args.scenario {
        ScenarioArg::Authorize => Scenario::Authorize { accounts: args.accounts },
        ScenarioArg::AuthorizeHot => Scenario::AuthorizeHot,
        ScenarioArg::GetUser => Scenario::GetUser,
    };
    let mode = match args.rate {
        Some(rate) if rate > 0.0 => Mode::Open { rate },
        Some(rate) => anyhow::bail!("--rate must be more than 0, got {rate}"),
        None => Mode::Closed,
    };
    let config = LoadConfig {
        connections: args.connections,
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
        mode,
    };
    let report = courier_bench::run(&args.server, &scenario, &config).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}\n{}", Report::markdown_header(), report.markdown_row());
    }
    Ok(())
}

//! A quick run of the load generator as a library against a running `courier up` (`courier bench` is the CLI):
//!
//! `cargo run --release -p courier-bench --example quick -- http://127.0.0.1:50051 [closed|RATE] [seconds]`

use std::time::Duration;

use courier_bench::{run, Auth, LoadConfig, Mode, Report, Scenario, Transport};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mode = match args.get(2).map(String::as_str) {
        None | Some("closed") => Mode::Closed,
        Some(rate) => Mode::Open { rate: rate.parse().expect("a rate in calls per second") },
    };
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let config = LoadConfig {
        connections: 4,
        concurrency: 64,
        duration: Duration::from_secs(seconds),
        warmup: Duration::from_secs(1),
        mode,
        auth: Auth::none(),
        live: None,
        transport: Transport::Grpc,
        server_pids: Vec::new(),
    };
    println!("{}", Report::markdown_header());
    for scenario in [Scenario::GetUser, Scenario::Authorize { accounts: 1_000 }] {
        match run(&target, &scenario, &config).await {
            Ok(report) => println!("{}", report.markdown_row()),
            Err(error) => eprintln!("{}: {error}", scenario.name()),
        }
    }
}

//! Group commit, measured: the same Authorize load against a ledger that commits one operation per transaction
//! (`max_batch = 1`) and one that batches (`max_batch = 256`), side by side in one run, on SQLite with
//! `synchronous = FULL` (an fsync per commit) or on PostgreSQL.
//!
//! `cargo run --release -p courier-tests --example group_commit -- [sqlite|postgres] [callers] [per_caller]`

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use courier_tests::payments::{authorize, authorize_request, funded_account};
use courier_tests::{Backend, TestOptions, TestServer};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(1).map(String::as_str) {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let callers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let per_caller: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);
    println!("{backend:?}, {callers} concurrent callers x {per_caller} authorizations each");
    println!("| max_batch | authorizations/s | mean batch |");
    println!("|---|---|---|");
    let mut rates = Vec::new();
    for max_batch in [1, 256] {
        let mut options = TestOptions::default();
        options.payments.max_batch = max_batch;
        let server = TestServer::start_configured(backend, options).await;
        let account = funded_account(&server, i64::MAX / 2, 0).await;
        let stats = server.ledger.writer_stats();
        let (commits_before, operations_before) = (stats.commits.load(Relaxed), stats.operations.load(Relaxed));
        let started = Instant::now();
        let tasks = (0..callers).map(|_| {
            let (mut payments, id) = (server.payments(), account.id.clone());
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    authorize(&mut payments, authorize_request(&id, 1)).await;
                }
            })
        });
        futures::future::try_join_all(tasks).await.expect("callers");
        let elapsed = started.elapsed();
        let total = (callers * per_caller) as f64;
        let rate = total / elapsed.as_secs_f64();
        let commits = stats.commits.load(Relaxed) - commits_before;
        let operations = stats.operations.load(Relaxed) - operations_before;
        println!("| {max_batch} | {rate:.0} | {:.1} |", operations as f64 / commits.max(1) as f64);
        rates.push(rate);
        server.shutdown().await;
    }
    println!("\ngroup commit speed-up: {:.1}x", rates[1] / rates[0]);
}

//! `courier`: run courier's services and call them from the command line.

mod client;
mod cmd;
mod config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's malloc: a call allocates and frees many small buffers across the runtime's threads
/// (HTTP/2 frames, protobuf messages, SQL rows), which glibc's arenas paid about a tenth of the server's CPU for.
/// Side by side it cut 7 to 9 % of the CPU per call for 8 MiB more resident memory; mimalloc cut a little more
/// but doubled the memory (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// gRPC microservices for payment authorization: run them, and call them.
#[derive(Parser, Debug)]
#[command(name = "courier", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every service in one process (SQLite under ./courier-data): the quickest way to try courier.
    Up(cmd::serve::UpArgs),
    /// Run one service alone, the production shape.
    Serve(cmd::serve::ServeArgs),
    /// Call the user service.
    #[command(subcommand)]
    Users(client::users::UsersCommand),
    /// Open, credit, show and freeze payment accounts (amounts in minor units).
    #[command(subcommand)]
    Accounts(client::accounts::AccountsCommand),
    /// Ask for a hold on an account; a decline is an answer (exit 0), not an error.
    Authorize(client::authorizations::AuthorizeArgs),
    /// Post a held authorization (all of it, or --amount) and release the rest of the hold.
    Capture(client::authorizations::CaptureArgs),
    /// Release a whole hold.
    Void(client::authorizations::VoidArgs),
    /// Show and list authorizations.
    #[command(subcommand)]
    Authorizations(client::authorizations::AuthorizationsCommand),
    /// Watch the ledger's event log.
    #[command(subcommand)]
    Events(client::events::EventsCommand),
    /// Inspect the ledger store directly.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
    /// Local development helpers (certificates for TLS).
    #[command(subcommand)]
    Dev(cmd::dev::DevCommand),
    /// Load a running server and report throughput and latency percentiles.
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => cmd::serve::up(args).await,
            Command::Serve(args) => cmd::serve::serve(args).await,
            Command::Users(command) => client::users::run(command).await,
            Command::Accounts(command) => client::accounts::run(command).await,
            Command::Authorize(args) => client::authorizations::authorize(args).await,
            Command::Capture(args) => client::authorizations::capture(args).await,
            Command::Void(args) => client::authorizations::void(args).await,
            Command::Authorizations(command) => client::authorizations::run(command).await,
            Command::Events(command) => client::events::run(command).await,
            Command::Ledger(command) => cmd::ledger::run(command).await,
            Command::Dev(command) => cmd::dev::run(command),
            Command::Bench(args) => cmd::bench::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

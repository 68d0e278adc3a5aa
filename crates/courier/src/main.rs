//! `courier`: run courier's services and call them from the command line.

mod client;
mod cmd;
mod config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Inspect the ledger store directly.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
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
            Command::Ledger(command) => cmd::ledger::run(command).await,
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

//! `courier ledger check`: verifies every ledger invariant over the whole store and exits non-zero with the first
//! violation.

use anyhow::Context;
use clap::{Args, Subcommand};
use courier_kit::db::DbConfig;

use super::serve::redact_url;
use crate::config::ServeFlags;

/// `courier ledger ...`.
#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Verify money conservation, holds, limits and the event log over the whole store.
    Check(CheckArgs),
}

/// `courier ledger check`: reads the same configuration as the servers, so it finds the same store.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    flags: ServeFlags,
}

/// Runs a ledger command.
pub async fn run(command: LedgerCommand) -> anyhow::Result<()> {
    let LedgerCommand::Check(args) = command;
    let config = args.flags.load()?;
    let url = config.database_url();
    let pool = courier_payments::open_store(&DbConfig::new(&url))
        .await
        .with_context(|| format!("opening the payments store at {}", redact_url(&url)))?;
    match courier_payments::ledger::check(&pool).await.context("reading the ledger")? {
        Ok(summary) => {
            println!(
                "ledger check: ok ({} accounts, {} authorizations, {} events)",
                summary.accounts, summary.authorizations, summary.events
            );
            Ok(())
        }
        Err(violation) => anyhow::bail!("ledger check: violation of {violation}"),
    }
}

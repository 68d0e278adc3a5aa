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
    let shown = redact_url(&url);
    // Read-only: a mistyped --data-dir must not create an empty store that then checks as healthy.
    let pool = courier_kit::db::open_existing(&DbConfig::new(&url)).await.with_context(|| {
        format!("no payments store at {shown}: check --data-dir / --database-url (or COURIER_DATA_DIR / COURIER_DATABASE_URL)")
    })?;
    if !courier_payments::ledger::has_ledger(&pool).await {
        anyhow::bail!(
            "the store at {shown} has no ledger: it was never served by `courier up` or `courier serve payments`"
        );
    }
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

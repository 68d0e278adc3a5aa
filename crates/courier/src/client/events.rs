//! `courier events watch`: the ledger's event log, the backlog first, then live.

use std::io::{ErrorKind, Write};

use clap::Subcommand;
use courier_proto::payments::v1 as pb;
use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use futures::StreamExt;
use serde_json::json;

use super::{describe_status, enum_label, format_time, ClientFlags};

/// The event commands.
#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Print ledger events from a sequence number on, then follow live until Ctrl-C or --limit (amounts in minor
    /// units). --timeout bounds starting the watch, not how long it follows.
    Watch {
        /// First sequence number to print (0 or 1: from the beginning); resume with the last one seen + 1.
        #[arg(long, value_name = "SEQUENCE", default_value_t = 0, allow_negative_numbers = true)]
        from: i64,
        /// Only this account's events (acct_...).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: Option<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// Runs an event command.
pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Watch { from, account, limit, client } = command;
    let mut payments = PaymentServiceClient::new(client.connect().await?);
    let request = pb::WatchEventsRequest { from_sequence: from, account_id: account.unwrap_or_default() };
    let mut stream = payments.watch_events(request).await.map_err(|s| describe_status(&s))?.into_inner();
    if !client.json && !print_line(&table_header())? {
        return Ok(());
    }
    // Ctrl-C is how a follow ends: a clean exit, not an error. One listener for the whole watch, so no signal
    // falls between two events.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0;
    let mut next = None;
    while limit.is_none_or(|limit| printed < limit) {
        let item = tokio::select! {
            item = stream.next() => item,
            signal = &mut ctrl_c => {
                signal.map_err(|e| anyhow::anyhow!("listening for Ctrl-C: {e}"))?;
                return Ok(());
            }
        };
        // A server that shuts down ends its feeds; the watch resumes elsewhere where this one stopped.
        let resume = |error: anyhow::Error| match next {
            Some(next) => anyhow::anyhow!("{error}\n  resume with --from {next}"),
            None => error,
        };
        let Some(item) = item else { return Err(resume(anyhow::anyhow!("the server ended the event stream"))) };
        let Some(event) = item.map_err(|s| resume(describe_status(&s)))?.event else { continue };
        next = Some(event.sequence + 1);
        let line = if client.json { event_json(&event).to_string() } else { table_row(&event) };
        if !print_line(&line)? {
            return Ok(());
        }
        printed += 1;
    }
    Ok(())
}

/// Writes one line and flushes it, so a pipe sees each event as it happens. `false` when the reader went away
/// (`courier events watch | head`): that ends the watch quietly.
fn print_line(line: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(anyhow::anyhow!("writing to stdout: {error}")),
    }
}

fn type_name(kind: i32) -> String {
    enum_label(pb::EventType::try_from(kind).ok().map(|t| t.as_str_name()), "EVENT_TYPE_", kind)
}

/// `null` for the fields an event does not always carry.
fn non_empty(text: &str) -> serde_json::Value {
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        json!(text)
    }
}

fn event_json(event: &pb::Event) -> serde_json::Value {
    json!({
        "sequence": event.sequence,
        "type": type_name(event.r#type),
        "account_id": event.account_id,
        "authorization_id": non_empty(&event.authorization_id),
        "amount": event.amount,
        "currency": event.currency,
        "response_code": non_empty(&event.response_code),
        "occurred_at": format_time(event.occurred_at.as_ref()),
    })
}

/// Fixed-width columns (ids, codes and times have fixed lengths), so a live feed lines up without buffering.
fn table_header() -> String {
    format!(
        "{:>6}  {:<22}  {:<37}  {:<37}  {:>12} {:<3}  {:<4}  {}",
        "SEQ", "TYPE", "ACCOUNT", "AUTHORIZATION", "AMOUNT", "CUR", "CODE", "TIME"
    )
}

fn table_row(event: &pb::Event) -> String {
    let or_dash = |text: &str| if text.is_empty() { "-".to_owned() } else { text.to_owned() };
    format!(
        "{:>6}  {:<22}  {:<37}  {:<37}  {:>12} {:<3}  {:<4}  {}",
        event.sequence,
        type_name(event.r#type),
        event.account_id,
        or_dash(&event.authorization_id),
        event.amount,
        event.currency,
        or_dash(&event.response_code),
        format_time(event.occurred_at.as_ref())
    )
}

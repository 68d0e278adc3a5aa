//! `courier accounts open|credit|show|set-status`.

use clap::{Subcommand, ValueEnum};
use courier_proto::payments::v1 as pb;
use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use serde_json::json;

use super::{describe_status, enum_label, format_time, print_block, ClientFlags, IdempotencyKey};

/// The account commands. Amounts are integers in the currency's minor units (cents for USD).
#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Open an account for an ACTIVE user.
    Open {
        /// The holder's user id (usr_...).
        #[arg(long, value_name = "USER_ID")]
        owner: String,
        /// ISO 4217 code, upper case (e.g. USD).
        #[arg(long)]
        currency: String,
        /// How far available funds may go below zero, in minor units.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = crate::client::minor_units)]
        credit_limit: i64,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Put funds into an account.
    Credit {
        /// The account's id (acct_...).
        account_id: String,
        /// Amount in minor units (1050 is 10.50 USD).
        #[arg(long, allow_negative_numbers = true, value_parser = crate::client::minor_units)]
        amount: i64,
        /// ISO 4217 code; must be the account's.
        #[arg(long)]
        currency: String,
        /// Makes a retry safe; default a new `cli-<UUIDv7>`, printed with the result.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show an account's balances and status.
    Show {
        /// The account's id (acct_...).
        account_id: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Freeze, reactivate or close an account.
    SetStatus {
        /// The account's id (acct_...).
        account_id: String,
        /// The new status.
        status: AccountStatusArg,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// An account status as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccountStatusArg {
    /// Authorizations are decided on funds.
    Active,
    /// Authorizations decline with 57; open holds may still be captured.
    Frozen,
    /// Authorizations decline with 57; no more credits.
    Closed,
}

impl AccountStatusArg {
    fn to_proto(self) -> pb::AccountStatus {
        match self {
            AccountStatusArg::Active => pb::AccountStatus::Active,
            AccountStatusArg::Frozen => pb::AccountStatus::Frozen,
            AccountStatusArg::Closed => pb::AccountStatus::Closed,
        }
    }
}

/// Runs one account command, printing its result to stdout.
pub async fn run(command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Open { owner, currency, credit_limit, client } => {
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let request = pb::OpenAccountRequest { owner_user_id: owner, currency, credit_limit };
            let response = payments.open_account(request).await.map_err(|s| describe_status(&s))?;
            print_account(&client, response.into_inner().account, None)
        }
        AccountsCommand::Credit { account_id, amount, currency, idempotency_key, client } => {
            let key = IdempotencyKey::given_or_new(idempotency_key);
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let request =
                pb::CreditAccountRequest { account_id, amount, currency, idempotency_key: key.as_str().to_owned() };
            let response = payments.credit_account(request).await.map_err(|s| key.describe(&s))?.into_inner();
            let credited = Credited { event_sequence: response.event_sequence, idempotency_key: key.as_str() };
            print_account(&client, response.account, Some(credited))
        }
        AccountsCommand::Show { account_id, client } => {
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let response = payments.get_account(pb::GetAccountRequest { account_id }).await;
            print_account(&client, response.map_err(|s| describe_status(&s))?.into_inner().account, None)
        }
        AccountsCommand::SetStatus { account_id, status, client } => {
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let request = pb::UpdateAccountStatusRequest { account_id, status: status.to_proto() as i32 };
            let response = payments.update_account_status(request).await;
            print_account(&client, response.map_err(|s| describe_status(&s))?.into_inner().account, None)
        }
    }
}

/// What a credit adds to the account it answers with.
struct Credited<'a> {
    event_sequence: i64,
    idempotency_key: &'a str,
}

/// The account as one JSON object, or as a key/value block.
fn print_account(client: &ClientFlags, account: Option<pb::Account>, credited: Option<Credited>) -> anyhow::Result<()> {
    let account = account.ok_or_else(|| anyhow::anyhow!("the server answered without an account"))?;
    if client.json {
        let mut object = account_json(&account);
        if let Some(credited) = credited {
            object["event_sequence"] = json!(credited.event_sequence);
            object["idempotency_key"] = json!(credited.idempotency_key);
        }
        println!("{object}");
        return Ok(());
    }
    let mut rows = vec![
        ("account", account.id),
        ("owner", account.owner_user_id),
        ("status", status_name(account.status)),
        ("currency", account.currency),
        ("posted", account.posted_balance.to_string()),
        ("held", account.held_amount.to_string()),
        ("available", account.available_amount.to_string()),
        ("credit limit", account.credit_limit.to_string()),
        ("created at", format_time(account.created_at.as_ref())),
        ("updated at", format_time(account.updated_at.as_ref())),
    ];
    if let Some(credited) = credited {
        rows.push(("event sequence", credited.event_sequence.to_string()));
        rows.push(("idempotency key", credited.idempotency_key.to_owned()));
    }
    print_block(&rows);
    Ok(())
}

fn status_name(status: i32) -> String {
    let name = pb::AccountStatus::try_from(status).ok().map(|s| s.as_str_name());
    enum_label(name, "ACCOUNT_STATUS_", status)
}

fn account_json(account: &pb::Account) -> serde_json::Value {
    json!({
        "id": account.id,
        "owner_user_id": account.owner_user_id,
        "currency": account.currency,
        "status": status_name(account.status),
        "posted_balance": account.posted_balance,
        "held_amount": account.held_amount,
        "available_amount": account.available_amount,
        "credit_limit": account.credit_limit,
        "created_at": format_time(account.created_at.as_ref()),
        "updated_at": format_time(account.updated_at.as_ref()),
    })
}

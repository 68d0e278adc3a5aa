//! `courier authorize`, `courier capture`, `courier void` and `courier authorizations get|list`: the two phases
//! of a payment and the authorizations they leave.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};
use courier_proto::payments::v1 as pb;
use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use futures::StreamExt;
use serde_json::json;

use super::{describe_status, enum_label, format_time, json_time, print_block, ClientFlags, IdempotencyKey};

/// `courier authorize`: place a hold, or get a decline (a decline is an answer, not an error: exit status 0).
#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// The account to charge (acct_...).
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: String,
    /// Who asks: 1 to 64 of A-Z a-z 0-9 _ -.
    #[arg(long)]
    merchant: String,
    /// Amount in minor units (1050 is 10.50 USD).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::client::minor_units)]
    amount: i64,
    /// ISO 4217 code, upper case (e.g. USD).
    #[arg(long)]
    currency: String,
    /// Free text from the merchant.
    #[arg(long, default_value = "")]
    description: String,
    /// A KEY=VALUE pair from the merchant; repeat for more.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// Makes a retry safe (scoped to the merchant); default a new `cli-<UUIDv7>`, printed with the result.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    client: ClientFlags,
}

/// `courier capture`: post a held authorization and release the rest of its hold.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The authorization's id (auth_...).
    authorization_id: String,
    /// Amount to post, in minor units, up to the held amount [default: the whole hold].
    #[arg(long, default_value_t = 0, hide_default_value = true, allow_negative_numbers = true, value_parser = crate::client::minor_units)]
    amount: i64,
    /// Makes a retry safe (scoped to the merchant); default a new `cli-<UUIDv7>`, printed with the result.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    client: ClientFlags,
}

/// `courier void`: release a whole hold.
#[derive(Args, Debug)]
pub struct VoidArgs {
    /// The authorization's id (auth_...).
    authorization_id: String,
    /// Makes a retry safe (scoped to the merchant); default a new `cli-<UUIDv7>`, printed with the result.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    client: ClientFlags,
}

/// `courier authorizations ...`.
#[derive(Subcommand, Debug)]
pub enum AuthorizationsCommand {
    /// Show one authorization.
    Get {
        /// The authorization's id (auth_...).
        authorization_id: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Stream authorizations in creation order (amounts in minor units).
    List {
        /// Only this account's (acct_...).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: Option<String>,
        /// Only this merchant's.
        #[arg(long)]
        merchant: Option<String>,
        /// Only authorizations in this status.
        #[arg(long)]
        status: Option<AuthorizationStatusArg>,
        /// Stop after this many.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// An authorization status as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuthorizationStatusArg {
    /// Approved; the hold is open.
    Held,
    /// Captured, fully or partially.
    Captured,
    /// Voided.
    Voided,
    /// Expired before capture.
    Expired,
    /// Declined; never held anything.
    Declined,
}

impl AuthorizationStatusArg {
    fn to_proto(self) -> pb::AuthorizationStatus {
        match self {
            AuthorizationStatusArg::Held => pb::AuthorizationStatus::Held,
            AuthorizationStatusArg::Captured => pb::AuthorizationStatus::Captured,
            AuthorizationStatusArg::Voided => pb::AuthorizationStatus::Voided,
            AuthorizationStatusArg::Expired => pb::AuthorizationStatus::Expired,
            AuthorizationStatusArg::Declined => pb::AuthorizationStatus::Declined,
        }
    }
}

/// Runs `courier authorize`.
pub async fn authorize(args: AuthorizeArgs) -> anyhow::Result<()> {
    let mut metadata = BTreeMap::new();
    for (key, value) in args.metadata {
        if metadata.insert(key.clone(), value).is_some() {
            anyhow::bail!("--metadata {key}=... is given twice");
        }
    }
    let key = IdempotencyKey::given_or_new(args.idempotency_key);
    let mut payments = PaymentServiceClient::new(args.client.connect().await?);
    let request = pb::AuthorizeRequest {
        idempotency_key: key.as_str().to_owned(),
        account_id: args.account,
        merchant_id: args.merchant,
        amount: args.amount,
        currency: args.currency,
        description: args.description,
        metadata,
    };
    let response = payments.authorize(request).await.map_err(|s| key.describe(&s))?;
    print_one(&args.client, response.into_inner().authorization, Some(&key))
}

/// Runs `courier capture`.
pub async fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let key = IdempotencyKey::given_or_new(args.idempotency_key);
    let mut payments = PaymentServiceClient::new(args.client.connect().await?);
    let request = pb::CaptureRequest {
        authorization_id: args.authorization_id,
        amount: args.amount,
        idempotency_key: key.as_str().to_owned(),
    };
    let response = payments.capture(request).await.map_err(|s| key.describe(&s))?;
    print_one(&args.client, response.into_inner().authorization, Some(&key))
}

/// Runs `courier void`.
pub async fn void(args: VoidArgs) -> anyhow::Result<()> {
    let key = IdempotencyKey::given_or_new(args.idempotency_key);
    let mut payments = PaymentServiceClient::new(args.client.connect().await?);
    let request = pb::VoidRequest { authorization_id: args.authorization_id, idempotency_key: key.as_str().to_owned() };
    let response = payments.void(request).await.map_err(|s| key.describe(&s))?;
    print_one(&args.client, response.into_inner().authorization, Some(&key))
}

/// Runs `courier authorizations ...`.
pub async fn run(command: AuthorizationsCommand) -> anyhow::Result<()> {
    match command {
        AuthorizationsCommand::Get { authorization_id, client } => {
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let response = payments.get_authorization(pb::GetAuthorizationRequest { authorization_id }).await;
            print_one(&client, response.map_err(|s| describe_status(&s))?.into_inner().authorization, None)
        }
        AuthorizationsCommand::List { account, merchant, status, limit, client } => {
            let mut payments = PaymentServiceClient::new(client.connect().await?);
            let request = pb::ListAuthorizationsRequest {
                account_id: account.unwrap_or_default(),
                merchant_id: merchant.unwrap_or_default(),
                status: status.map_or(pb::AuthorizationStatus::Unspecified, AuthorizationStatusArg::to_proto) as i32,
                created_from: None,
                created_before: None,
            };
            let mut stream = payments.list_authorizations(request).await.map_err(|s| describe_status(&s))?.into_inner();
            if !client.json {
                println!("{}", table_header());
            }
            // Rows are printed as they arrive; dropping the stream at the limit cancels the rest of the listing.
            let mut printed = 0;
            while limit.is_none_or(|limit| printed < limit) {
                let Some(item) = stream.next().await else { break };
                let Some(authorization) = item.map_err(|s| describe_status(&s))?.authorization else { continue };
                if client.json {
                    println!("{}", authorization_json(&authorization));
                } else {
                    println!("{}", table_row(&authorization));
                }
                printed += 1;
            }
            Ok(())
        }
    }
}

/// `KEY=VALUE`, split at the first `=`.
fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// One authorization as a JSON object (with the idempotency key used, for the calls that take one) or as a
/// key/value block.
fn print_one(
    client: &ClientFlags,
    authorization: Option<pb::Authorization>,
    key: Option<&IdempotencyKey>,
) -> anyhow::Result<()> {
    let a = authorization.ok_or_else(|| anyhow::anyhow!("the server answered without an authorization"))?;
    if client.json {
        let mut object = authorization_json(&a);
        if let Some(key) = key {
            object["idempotency_key"] = json!(key.as_str());
        }
        println!("{object}");
        return Ok(());
    }
    let mut rows = vec![
        ("decision", decision_name(a.decision)),
        ("response code", a.response_code.clone()),
        ("decline reason", decline_reason(a.decline_reason).unwrap_or_else(|| "-".into())),
        ("authorization", a.id.clone()),
        ("status", status_name(a.status)),
        ("account", a.account_id.clone()),
        ("merchant", a.merchant_id.clone()),
        ("amount", format!("{} {}", a.amount, a.currency)),
        ("held", a.held_amount.to_string()),
        ("captured", a.captured_amount.to_string()),
        ("available after", a.available_after.to_string()),
        ("created at", format_time(a.created_at.as_ref())),
        ("expires at", or_dash(format_time(a.expires_at.as_ref()))),
        ("resolved at", or_dash(format_time(a.resolved_at.as_ref()))),
    ];
    if !a.description.is_empty() {
        rows.push(("description", a.description.clone()));
    }
    for (name, value) in &a.metadata {
        rows.push(("metadata", format!("{name}={value}")));
    }
    if let Some(key) = key {
        rows.push(("idempotency key", key.as_str().to_owned()));
    }
    print_block(&rows);
    Ok(())
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

fn decision_name(decision: i32) -> String {
    enum_label(pb::Decision::try_from(decision).ok().map(|d| d.as_str_name()), "DECISION_", decision)
}

fn status_name(status: i32) -> String {
    let name = pb::AuthorizationStatus::try_from(status).ok().map(|s| s.as_str_name());
    enum_label(name, "AUTHORIZATION_STATUS_", status)
}

/// The decline reason, `None` for an approval.
fn decline_reason(reason: i32) -> Option<String> {
    let name = pb::DeclineReason::try_from(reason).ok().map(|r| r.as_str_name());
    (reason != pb::DeclineReason::Unspecified as i32).then(|| enum_label(name, "DECLINE_REASON_", reason))
}

fn authorization_json(a: &pb::Authorization) -> serde_json::Value {
    json!({
        "id": a.id,
        "account_id": a.account_id,
        "merchant_id": a.merchant_id,
        "amount": a.amount,
        "currency": a.currency,
        "decision": decision_name(a.decision),
        "response_code": a.response_code,
        "decline_reason": decline_reason(a.decline_reason),
        "status": status_name(a.status),
        "held_amount": a.held_amount,
        "captured_amount": a.captured_amount,
        "available_after": a.available_after,
        "description": a.description,
        "metadata": a.metadata,
        "created_at": format_time(a.created_at.as_ref()),
        "expires_at": json_time(a.expires_at.as_ref()),
        "resolved_at": json_time(a.resolved_at.as_ref()),
    })
}

/// Fixed-width columns (ids, codes and times have fixed lengths), so rows line up without buffering the listing.
fn table_header() -> String {
    format!(
        "{:<37}  {:<8}  {:<4}  {:>12} {:<3}  {:>12}  {:<37}  {:<16}  {}",
        "ID", "STATUS", "CODE", "AMOUNT", "CUR", "CAPTURED", "ACCOUNT", "MERCHANT", "CREATED"
    )
}

fn table_row(a: &pb::Authorization) -> String {
    format!(
        "{:<37}  {:<8}  {:<4}  {:>12} {:<3}  {:>12}  {:<37}  {:<16}  {}",
        a.id,
        status_name(a.status),
        a.response_code,
        a.amount,
        a.currency,
        a.captured_amount,
        a.account_id,
        a.merchant_id,
        format_time(a.created_at.as_ref())
    )
}

//! `courier users create|get|list|set-status`.

use clap::{Subcommand, ValueEnum};
use courier_proto::users::v1 as pb;
use courier_proto::users::v1::user_service_client::UserServiceClient;
use futures::StreamExt;
use serde_json::json;

use super::{describe_status, format_time, ClientFlags};

/// The user commands.
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Register a user.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email address (unique, case-insensitive).
        #[arg(long)]
        email: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show one user.
    Get {
        /// The user's id (usr_...).
        id: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Stream users in creation order.
    List {
        /// Only users with this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// At most this many users.
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue after this resume token (printed by --json listings).
        #[arg(long, default_value = "")]
        after: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Change a user's status.
    SetStatus {
        /// The user's id (usr_...).
        id: String,
        /// The new status.
        status: StatusArg,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// A user status as typed on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StatusArg {
    /// May transact.
    Active,
    /// Barred for now.
    Suspended,
    /// Barred for good.
    Closed,
}

impl StatusArg {
    fn to_proto(self) -> pb::UserStatus {
        match self {
            StatusArg::Active => pb::UserStatus::Active,
            StatusArg::Suspended => pb::UserStatus::Suspended,
            StatusArg::Closed => pb::UserStatus::Closed,
        }
    }
}

/// Runs one user command, printing its result to stdout.
pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, email, client } => {
            let mut users = UserServiceClient::new(client.connect().await?);
            let response = users.create_user(pb::CreateUserRequest { name, email }).await;
            print_one(&client, response.map_err(|s| describe_status(&s))?.into_inner().user)
        }
        UsersCommand::Get { id, client } => {
            let mut users = UserServiceClient::new(client.connect().await?);
            let response = users.get_user(pb::GetUserRequest { id }).await;
            print_one(&client, response.map_err(|s| describe_status(&s))?.into_inner().user)
        }
        UsersCommand::SetStatus { id, status, client } => {
            let mut users = UserServiceClient::new(client.connect().await?);
            let request = pb::UpdateUserStatusRequest { id, status: status.to_proto() as i32 };
            let response = users.update_user_status(request).await;
            print_one(&client, response.map_err(|s| describe_status(&s))?.into_inner().user)
        }
        UsersCommand::List { status, limit, after, client } => {
            let mut users = UserServiceClient::new(client.connect().await?);
            let request = pb::ListUsersRequest {
                status: status.map_or(pb::UserStatus::Unspecified, StatusArg::to_proto) as i32,
                page_size: limit,
                page_token: after,
            };
            let mut stream = users.list_users(request).await.map_err(|s| describe_status(&s))?.into_inner();
            // Rows are printed as they arrive, so a listing of any size runs in constant memory.
            if !client.json {
                println!("{}", table_row("ID", "STATUS", "CREATED", "NAME", "EMAIL"));
            }
            while let Some(item) = stream.next().await {
                let item = item.map_err(|s| describe_status(&s))?;
                let Some(user) = item.user else { continue };
                if client.json {
                    let mut object = user_json(&user);
                    object["resume_token"] = json!(item.resume_token);
                    println!("{object}");
                } else {
                    println!("{}", user_row(&user));
                }
            }
            Ok(())
        }
    }
}

fn print_one(client: &ClientFlags, user: Option<pb::User>) -> anyhow::Result<()> {
    let user = user.ok_or_else(|| anyhow::anyhow!("the server answered without a user"))?;
    if client.json {
        println!("{}", user_json(&user));
    } else {
        println!("{}", table_row("ID", "STATUS", "CREATED", "NAME", "EMAIL"));
        println!("{}", user_row(&user));
    }
    Ok(())
}

fn status_name(status: i32) -> &'static str {
    match pb::UserStatus::try_from(status) {
        Ok(pb::UserStatus::Active) => "ACTIVE",
        Ok(pb::UserStatus::Suspended) => "SUSPENDED",
        Ok(pb::UserStatus::Closed) => "CLOSED",
        Ok(pb::UserStatus::Unspecified) | Err(_) => "UNSPECIFIED",
    }
}

fn user_json(user: &pb::User) -> serde_json::Value {
    json!({
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "status": status_name(user.status),
        "created_at": format_time(user.created_at.as_ref()),
        "updated_at": format_time(user.updated_at.as_ref()),
    })
}

fn user_row(user: &pb::User) -> String {
    table_row(&user.id, status_name(user.status), &format_time(user.created_at.as_ref()), &user.name, &user.email)
}

/// Fixed-width columns (ids and times have fixed lengths), so rows line up without buffering the listing.
fn table_row(id: &str, status: &str, created: &str, name: &str, email: &str) -> String {
    format!("{id:<36}  {status:<9}  {created:<27}  {name:<24}  {email}")
}

//! `courier dev ...`: helpers for running courier locally. `dev certs` writes a local CA and certificates so TLS
//! and mutual TLS can be tried (and tested) without a real PKI; `dev token` signs development bearer tokens.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use courier_kit::tls::dev::{DevCerts, CLIENT_IDENTITY};

/// `courier dev`.
#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Write a local CA, a server certificate (localhost, 127.0.0.1, ::1) and a client certificate
    /// (spiffe://courier/payments), and print how to use them. For development only.
    Certs(CertsArgs),
    /// Print a development bearer token (HS256) signed with a secret file (`[auth] secret_file`).
    Token(TokenArgs),
}

/// `courier dev token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The token's subject: the merchant it acts for (unless --merchant), e.g. merchant_123.
    #[arg(long)]
    subject: String,
    /// Comma-separated scopes, e.g. payments:authorize,payments:capture,payments:read.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// How long it is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
    /// The HS256 secret file (the server's `[auth] secret_file`).
    #[arg(long, value_name = "FILE")]
    secret_file: PathBuf,
    /// `iss` claim (when the server checks `[auth] issuer`).
    #[arg(long)]
    issuer: Option<String>,
    /// `aud` claim (when the server checks `[auth] audience`).
    #[arg(long)]
    audience: Option<String>,
    /// The merchant the token acts for, when it is not the subject (the `merchant` claim), e.g. a till
    /// `--subject till_7 --merchant coffee_shop`.
    #[arg(long)]
    merchant: Option<String>,
}

/// `courier dev certs`.
#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.pem, server.pem, server.key, client.pem and client.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace certificates already in DIR.
    #[arg(long)]
    force: bool,
}

/// Runs a `courier dev` command.
pub fn run(command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::Certs(args) => certs(&args),
        DevCommand::Token(args) => token(&args),
    }
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let secret = super::auth::read_secret(&args.secret_file)?;
    anyhow::ensure!(secret.len() >= 32, "{}: the secret is shorter than 32 bytes", args.secret_file.display());
    let mut claims = courier_kit::auth::token::TokenClaims::new(&args.subject, &args.scopes, args.ttl);
    claims.iss.clone_from(&args.issuer);
    claims.aud.clone_from(&args.audience);
    claims.merchant.clone_from(&args.merchant);
    println!("{}", courier_kit::auth::token::sign_hs256(&claims, &secret).context("signing")?);
    Ok(())
}

fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    let certs = DevCerts::generate().context("generating certificates")?;
    let files = certs.write(&args.out, args.force).with_context(|| format!("writing to {}", args.out.display()))?;
    let path = |p: &std::path::Path| p.display().to_string();
    let (ca, cert, key) = (path(&files.ca), path(&files.server_cert), path(&files.server_key));
    let (client_cert, client_key) = (path(&files.client_cert), path(&files.client_key));
    println!(
        "\
wrote a development CA and certificates (valid one year; keys are mode 0600; the CA key was not kept):
  {ca}  the CA: trust it
  {cert} / {key}  server: localhost, 127.0.0.1, ::1
  {client_cert} / {client_key}  client: {CLIENT_IDENTITY}

Serve with TLS and require client certificates (mTLS), in a config file passed with --config:

[tls]
cert = \"{cert}\"
key = \"{key}\"
client_ca = \"{ca}\"      # drop this line for TLS without client certificates
ca = \"{ca}\"             # outbound calls (payments -> users, risk) trust this CA
client_cert = \"{client_cert}\"
client_key = \"{client_key}\"

Call it:

courier users list --server https://127.0.0.1:50051 --ca {ca} --cert {client_cert} --key {client_key}"
    );
    Ok(())
}

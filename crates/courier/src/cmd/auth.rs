//! A server process's side of `[auth]`: the startup line, and the token payments presents to users and risk.

use std::time::Duration;

use anyhow::Context;
use courier_kit::auth::token::{sign_hs256, TokenClaims};
use courier_kit::auth::AuthConfig;

use crate::config::ServeConfig;

/// Subject of the token payments signs for itself.
pub const PAYMENTS_SUBJECT: &str = "courier-payments";
/// What payments needs from the other services.
pub const PAYMENTS_SCOPES: [&str; 2] = ["users:read", "risk:score"];
/// Lifetime of payments' self-signed token. It is signed again at every start; a process running longer than
/// this needs a restart (or `service_token_file`).
const SELF_SIGNED_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The bearer token payments sends to UserService and RiskService: `service_token_file`'s, else one signed with
/// `auth.secret_file` (development), else none (plain calls, or mTLS identities).
pub fn service_token(config: &ServeConfig) -> anyhow::Result<Option<String>> {
    if let Some(path) = &config.service_token_file {
        let token = std::fs::read_to_string(path).with_context(|| {
            format!("invalid configuration key `service_token_file`: cannot read {}", path.display())
        })?;
        return Ok(Some(token.trim().to_owned()));
    }
    let Some(path) = &config.auth.secret_file else { return Ok(None) };
    let secret = read_secret(path)?;
    let scopes: Vec<String> = PAYMENTS_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let mut claims = TokenClaims::new(PAYMENTS_SUBJECT, &scopes, SELF_SIGNED_TTL);
    claims.iss.clone_from(&config.auth.issuer);
    claims.aud.clone_from(&config.auth.audience);
    Ok(Some(sign_hs256(&claims, &secret).context("signing payments' own token")?))
}

/// The secret in `path`, trimmed.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read the secret file {}", path.display()))?;
    Ok(text.trim_ascii().to_vec())
}

/// The loopback rule for authentication, like the one for plaintext: without `[auth]`, anyone who can connect
/// may call anything, which is fine where only this host can connect and needs the operator's explicit
/// `--no-auth` anywhere else.
pub fn check_unauthenticated(config: &ServeConfig) -> anyhow::Result<()> {
    if config.auth.is_enabled() || config.no_auth || config.listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve without authentication on {}: it is reachable from other hosts, so anyone could move \
         money. Configure `[auth]` (jwks_file or secret_file, see `courier dev token`), listen on a loopback \
         address, or pass --no-auth (config `no_auth = true`) if something in front authenticates callers",
        config.listen
    )
}

/// `courier up --no-auth`: authentication off, which `up` allows on a loopback address, and elsewhere only with
/// `--allow-insecure` too (two explicit opt-outs for a process that would let anyone move money).
pub fn check_up_without_auth(config: &ServeConfig) -> anyhow::Result<()> {
    if config.auth.is_enabled() || config.allow_insecure || config.listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to run `courier up --no-auth` on {}: it is reachable from other hosts, so anyone could move \
         money. Drop --no-auth (development auth writes a token to the data dir), configure `[auth]`, listen on a \
         loopback address, or pass --allow-insecure as well if something in front authenticates callers",
        config.listen
    )
}

/// `courier up`'s development auth, planned before anything binds and written to the data dir only after the
/// listeners are bound ([`DevAuth::persist`]): an `up` that cannot bind changes nothing on disk, so the token file
/// another `up` (the one holding the port) wrote stays valid.
pub struct DevAuth {
    /// Startup lines.
    pub lines: Vec<String>,
    /// Appended to the startup line's CLI example: `--data-dir DIR` unless the data dir is the CLI's default.
    pub cli_flags: String,
    dir: std::path::PathBuf,
    secret_path: std::path::PathBuf,
    /// A secret made now because the data dir has none yet; written by `persist`.
    new_secret: Option<String>,
    token_path: std::path::PathBuf,
    token: String,
}

/// `courier up`'s authentication when no `[auth]` is configured: a development secret kept in the data dir
/// (created once, mode 0600) turns `[auth]` on, and a token with every scope is written next to it (`token`, mode
/// 0600), where the CLI looks (its `--data-dir`, default ./courier-data). The token is signed afresh at each start;
/// the secret stays, so tokens from earlier starts keep working until they expire. Reads only; see [`DevAuth`].
pub fn dev_auth(config: &mut ServeConfig) -> anyhow::Result<DevAuth> {
    let dir = config.data_dir.clone();
    let secret_path = dir.join(DEV_SECRET_FILE);
    let (secret, new_secret) = if secret_path.exists() {
        (read_secret(&secret_path)?, None)
    } else {
        let secret = courier_kit::auth::token::new_secret();
        (secret.as_bytes().to_vec(), Some(secret))
    };
    config.auth.secret_file = Some(secret_path.clone());
    let scopes: Vec<String> = ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let claims = TokenClaims::new(DEV_SUBJECT, &scopes, DEV_TOKEN_TTL);
    let token = sign_hs256(&claims, &secret).context("signing the development token")?;
    let token_path = dir.join(DEV_TOKEN_FILE);
    let cli_flags = if dir == std::path::Path::new(DEFAULT_DATA_DIR) {
        String::new()
    } else {
        format!(" --data-dir {}", dir.display())
    };
    let lines = vec![
        format!(
            "courier: development auth (no [auth] configured; --no-auth turns it off): token for subject \
             {DEV_SUBJECT}, every scope, 30 days, in {} (secret {})",
            token_path.display(),
            secret_path.display()
        ),
        format!(
            "courier: the CLI reads it from its --data-dir (default ./courier-data); any other client: \
             COURIER_TOKEN=$(cat {}) or `authorization: Bearer <token>`",
            token_path.display()
        ),
    ];
    Ok(DevAuth { lines, cli_flags, dir, secret_path, new_secret, token_path, token })
}

impl DevAuth {
    /// Writes the secret (when new) and the token: called once the listeners are bound, before the keys are read.
    pub fn persist(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating the data dir {}", self.dir.display()))?;
        if let Some(secret) = &self.new_secret {
            write_private(&self.secret_path, secret.as_bytes())?;
        }
        write_private(&self.token_path, self.token.as_bytes())
    }
}

/// The data dir the server and the CLI use when told nothing (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "courier-data";
/// The development token's file name in the data dir.
pub const DEV_TOKEN_FILE: &str = "token";
/// The development secret's file name in the data dir.
const DEV_SECRET_FILE: &str = "dev-secret";
/// Subject (and so merchant) of `courier up`'s development token.
const DEV_SUBJECT: &str = "dev";
const DEV_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Every scope the services declare, and the one that lifts tenant isolation, for the development token.
const ALL_SCOPES: [&str; 11] = [
    "users:read",
    "users:write",
    "accounts:read",
    "accounts:write",
    "payments:authorize",
    "payments:capture",
    "payments:read",
    "events:read",
    "risk:score",
    "risk:admin",
    // Acts for every merchant, so docs/cli.md's `--merchant coffee_shop` and the README's Python
    // `merchant_id="coffee_shop"` work with the development token.
    "merchants:any",
];

/// Creates `path` afresh with `contents`, readable by its owner only.
fn write_private(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The startup line that says who may call.
pub fn describe(auth: &AuthConfig) -> String {
    if !auth.is_enabled() {
        return "courier: authentication OFF (no [auth] table): every caller may call every method".to_owned();
    }
    let tokens = match (&auth.jwks_file, &auth.secret_file) {
        (Some(path), _) => format!("bearer JWTs (EdDSA/ES256/RS256, keys from {})", path.display()),
        (None, Some(_)) => "bearer JWTs (HS256, development secret)".to_owned(),
        (None, None) => "no bearer tokens".to_owned(),
    };
    format!("courier: authentication on: {tokens}, {} mTLS service identities; health open", auth.services.len())
}

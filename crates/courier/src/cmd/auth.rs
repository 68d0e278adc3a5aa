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

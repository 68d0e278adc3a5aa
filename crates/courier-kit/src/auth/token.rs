//! Issuing development tokens (`courier dev token`, `courier up`): HS256 with a shared secret. Production
//! tokens come from an identity provider; courier only verifies them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// What a development token says.
#[derive(Debug, Clone, Serialize)]
pub struct TokenClaims {
    /// The subject (a merchant id such as `merchant_123`, or a service name).
    pub sub: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Issuer, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The merchant the subject acts for when it is not the subject itself (a till or a back-office user acting
    /// for one merchant); the verifier falls back to `sub` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
}

impl TokenClaims {
    /// Claims for `subject` with `scopes`, valid from now for `ttl`.
    pub fn new(subject: &str, scopes: &[String], ttl: Duration) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self {
            sub: subject.to_owned(),
            scope: scopes.join(" "),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl.as_secs()),
            iss: None,
            aud: None,
            merchant: None,
        }
    }
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign_hs256(claims: &TokenClaims, secret: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
}

/// A new random development secret: 32 bytes, hex-encoded (64 characters).
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

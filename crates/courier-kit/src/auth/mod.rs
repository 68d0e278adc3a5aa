//! Who is calling, and may they call this method: the `[auth]` table.
//!
//! A caller proves who it is with a bearer JWT (`authorization: Bearer <token>`), verified against the keys of a
//! JWKS file (EdDSA, ES256, RS256; the file is re-read when it changes) or, for development, an HS256 shared
//! secret. A service may instead present its mTLS client certificate: a URI SAN such as
//! `spiffe://courier/payments`, mapped by `[auth.services]` to scopes. What was proven becomes a [`Principal`]
//! in the request's extensions (`tonic::Request::extensions()`), and the per-method scope tables the services
//! export ([`MethodScopes`]) decide what it may call. A method without a rule is denied.
//!
//! Which merchant a principal acts for is [`Principal::merchant`]: the token's `merchant` claim when it has one,
//! else its subject.

mod cache;
mod keys;
mod peer;
mod rate;
mod scopes;
pub mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use keys::{KeySource, KeysError};
pub use rate::{RateLimitConfig, RateLimiter};
pub use scopes::{MethodScopes, Rule};

/// The `[auth]` table. Empty (the default) means no authentication: every caller may call every method.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A JWKS file (`{"keys": [...]}`) holding the public keys tokens are signed with (EdDSA, ES256 or RS256).
    /// Re-read when it changes; a file that no longer parses is reported and the last good keys stay in use.
    pub jwks_file: Option<PathBuf>,
    /// A file holding an HS256 shared secret (development: `courier up` makes one in its data dir). Exclusive
    /// with `jwks_file`: a key set never mixes shared and public keys, so an HS256 token cannot be checked
    /// against a public key taken as an HMAC secret.
    pub secret_file: Option<PathBuf>,
    /// The `iss` tokens must carry; unset, any.
    pub issuer: Option<String>,
    /// The `aud` tokens must carry; unset, not checked.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// mTLS service identities: a client certificate's URI SAN -> the scopes it grants, e.g.
    /// `"spiffe://courier/payments" = ["users:read", "risk:score"]`.
    pub services: BTreeMap<String, Vec<String>>,
    /// Serve reflection to unauthenticated callers too. Default false: reflection needs a valid token (any
    /// scope). Health is always open.
    pub open_reflection: bool,
    /// Per-subject rate limit (`[auth.rate_limit]`); off by default. Over it, calls get RESOURCE_EXHAUSTED.
    pub rate_limit: RateLimitConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwks_file: None,
            secret_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            services: BTreeMap::new(),
            open_reflection: false,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Whether anything turns authentication on.
    pub fn is_enabled(&self) -> bool {
        self.jwks_file.is_some() || self.secret_file.is_some() || !self.services.is_empty()
    }

    /// The verifier, with its keys read and checked now (so a bad file stops the process before it binds);
    /// `None` when authentication is off.
    pub fn authenticator(&self) -> Result<Option<Arc<Authenticator>>, KeysError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let keys = match (&self.jwks_file, &self.secret_file) {
            (Some(_), Some(_)) => return Err(KeysError::Conflict),
            (Some(path), None) => Some(KeySource::jwks_file(path)?),
            (None, Some(path)) => Some(KeySource::secret_file(path)?),
            (None, None) => None,
        };
        let services = self
            .services
            .iter()
            .map(|(uri, scopes)| (uri.clone(), scopes.iter().cloned().collect::<BTreeSet<_>>()))
            .collect();
        let rate = RateLimiter::new(&self.rate_limit);
        let tokens = cache::TokenCache::new();
        Ok(Some(Arc::new(Authenticator { keys, config: self.clone(), services, rate, tokens })))
    }
}

/// Who a call is made by, as proven by its token or its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`, or the certificate's URI SAN.
    pub subject: String,
    /// What it may do (`payments:authorize`, ...).
    pub scopes: BTreeSet<String>,
    /// The merchant it acts for: the token's `merchant` claim, else its subject; `None` for a service identity
    /// (services act for no merchant of their own).
    pub merchant: Option<String>,
}

impl Principal {
    /// Whether it holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Why a call was not authenticated. The message is short, fixed text: it never echoes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token and no known client certificate.
    #[error("missing bearer token")]
    Missing,
    /// Not `Bearer <jwt>`, or not a JWT.
    #[error("malformed bearer token")]
    Malformed,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token has the wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("token has the wrong audience")]
    WrongAudience,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `alg` is not one these keys accept (`none`, or HS256 against public keys, ...).
    #[error("token algorithm not accepted")]
    Algorithm,
    /// No key matches the token's `kid` and algorithm.
    #[error("no key for this token")]
    UnknownKey,
    /// `sub` (or another required claim) is missing.
    #[error("token lacks a required claim")]
    MissingClaim,
    /// Bearer tokens are not accepted here (only client certificates are configured).
    #[error("bearer tokens are not accepted")]
    TokensOff,
    /// A client certificate whose identity `[auth.services]` does not name.
    #[error("unknown service identity")]
    UnknownService,
}

/// Verifies bearer tokens and client certificates against the `[auth]` configuration.
#[derive(Debug)]
pub struct Authenticator {
    keys: Option<KeySource>,
    config: AuthConfig,
    services: BTreeMap<String, BTreeSet<String>>,
    rate: Option<RateLimiter>,
    tokens: cache::TokenCache,
}

impl Authenticator {
    /// Whether `principal` is within its rate limit now (always, when limiting is off).
    pub fn within_rate(&self, principal: &Principal) -> bool {
        self.rate.as_ref().is_none_or(|rate| rate.allow(&principal.subject))
    }

    /// The principal behind `authorization` (the header's value), if any, else behind the peer's client
    /// certificate chain (leaf first), if any.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        peer_certs: Option<&[tonic::transport::CertificateDer<'static>]>,
    ) -> Result<Principal, AuthError> {
        if let Some(value) = authorization {
            let token = bearer(value).ok_or(AuthError::Malformed)?;
            let keys = self.keys.as_ref().ok_or(AuthError::TokensOff)?;
            let generation = keys.generation();
            if let Some(principal) = self.tokens.get(token, generation) {
                return Ok(principal);
            }
            let (principal, exp) = keys.verify(token, &self.config)?;
            // The verifier accepts a token until `exp` + leeway; so does the cache, and not a second longer.
            self.tokens.insert(token, generation, &principal, exp.saturating_add(self.config.leeway.as_secs()));
            return Ok(principal);
        }
        let leaf = peer_certs.and_then(|chain| chain.first()).ok_or(AuthError::Missing)?;
        let uris = peer::uri_sans(leaf);
        uris.iter()
            .find_map(|uri| {
                self.services.get(uri).map(|scopes| Principal {
                    subject: uri.clone(),
                    scopes: scopes.clone(),
                    merchant: None,
                })
            })
            .ok_or(if uris.is_empty() { AuthError::Missing } else { AuthError::UnknownService })
    }

    /// Whether reflection is open to unauthenticated callers.
    pub fn open_reflection(&self) -> bool {
        self.config.open_reflection
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750), if the value has that shape.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_BYTES).then_some(token)
}

/// Longer headers are refused unparsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_a_bearer_token() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer abc"), Some("abc"));
        assert_eq!(bearer(b"Basic dXNlcjpw"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1)).as_bytes()), None);
    }

    /// The cache hands out a verified principal only while its token is valid: once `exp` (+ leeway) has passed,
    /// the same token is verified again, and refused.
    #[test]
    fn a_cached_token_is_refused_once_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let secret = token::new_secret();
        std::fs::write(dir.path().join("secret"), &secret).unwrap();
        let config = AuthConfig {
            secret_file: Some(dir.path().join("secret")),
            leeway: Duration::ZERO,
            ..AuthConfig::default()
        };
        let authenticator = config.authenticator().unwrap().unwrap();
        let mut claims = token::TokenClaims::new("merchant_1", &["users:read".into()], Duration::from_secs(1));
        claims.nbf = claims.iat - 1;
        let exp = claims.exp;
        let header = format!("Bearer {}", token::sign_hs256(&claims, secret.as_bytes()).unwrap());
        for _ in 0..3 {
            let principal = authenticator.authenticate(Some(header.as_bytes()), None).unwrap();
            assert_eq!(principal.merchant.as_deref(), Some("merchant_1"));
            assert!(principal.has_scope("users:read"));
        }
        assert_eq!(authenticator.tokens.get(header.strip_prefix("Bearer ").unwrap(), 0).unwrap().subject, "merchant_1");
        // The clock has to pass `exp` (whole seconds): at most two seconds.
        while cache_now() <= exp {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(authenticator.authenticate(Some(header.as_bytes()), None), Err(AuthError::Expired));
        // A token that never verified is never cached.
        let forged = format!("{}x", header);
        assert_eq!(authenticator.authenticate(Some(forged.as_bytes()), None), Err(AuthError::BadSignature));
        assert!(authenticator.tokens.get(forged.strip_prefix("Bearer ").unwrap(), 0).is_none());
    }

    fn cache_now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_secret_file_and_a_jwks_file_exclude_each_other() {
        let config = AuthConfig {
            jwks_file: Some("jwks.json".into()),
            secret_file: Some("secret".into()),
            ..AuthConfig::default()
        };
        assert!(matches!(config.authenticator(), Err(KeysError::Conflict)));
        assert!(AuthConfig::default().authenticator().unwrap().is_none(), "no [auth]: off");
    }
}

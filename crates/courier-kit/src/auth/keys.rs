//! The keys tokens are checked against: an HS256 secret, or the public keys of a JWKS file that is re-read
//! when it changes (key rotation without a restart).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthConfig, AuthError, Principal};

/// The algorithms a JWKS key may verify. HS256 is absent on purpose: public keys are never HMAC secrets.
const PUBLIC_ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// How often, at most, the JWKS file's metadata is looked at.
const RELOAD_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Both kinds of key were configured.
    #[error("invalid configuration: `auth.jwks_file` and `auth.secret_file` exclude each other")]
    Conflict,
    /// The file could not be read.
    #[error("invalid configuration key `{key}`: cannot read {path}: {error}")]
    Read {
        /// The configuration key.
        key: &'static str,
        /// The path given.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file does not hold usable keys.
    #[error("invalid configuration key `{key}`: {path}: {reason}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// The path given.
        path: String,
        /// Why (never the key material).
        reason: String,
    },
}

/// The claims courier reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Expiry, seconds since the epoch (required: the verifier refuses a token without it).
    exp: u64,
    /// Space-separated scopes (RFC 9068).
    #[serde(default)]
    scope: String,
    /// The merchant the subject acts for, when it is not the subject itself.
    #[serde(default)]
    merchant: Option<String>,
}

/// One verification key and the algorithm it is for.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Where tokens' keys come from.
pub enum KeySource {
    /// A shared HS256 secret (development).
    Secret(DecodingKey),
    /// The public keys of a JWKS file, re-read when its modification time or size changes.
    Jwks(JwksFile),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("KeySource::Secret(..)"),
            Self::Jwks(file) => write!(f, "KeySource::Jwks({})", file.path.display()),
        }
    }
}

/// A JWKS file and the last good keys read from it.
pub struct JwksFile {
    path: PathBuf,
    keys: RwLock<Arc<Vec<Key>>>,
    /// (when last looked at, the file's (mtime, len) then).
    seen: Mutex<(Instant, Option<(SystemTime, u64)>)>,
    /// Bumped at every reload: tokens verified against older keys are verified again (`super::cache`).
    generation: AtomicU64,
}

impl KeySource {
    /// An HS256 secret from a file (surrounding whitespace ignored); at least 32 bytes.
    pub fn secret_file(path: &Path) -> Result<Self, KeysError> {
        let key = "auth.secret_file";
        let text = std::fs::read(path).map_err(|error| KeysError::Read { key, path: display(path), error })?;
        let secret = text.trim_ascii();
        if secret.len() < 32 {
            return Err(KeysError::Invalid { key, path: display(path), reason: "secret shorter than 32 bytes".into() });
        }
        Ok(Self::Secret(DecodingKey::from_secret(secret)))
    }

    /// The public keys of a JWKS file; at least one usable key.
    pub fn jwks_file(path: &Path) -> Result<Self, KeysError> {
        let stamp = stamp(path);
        let keys = read_jwks(path)?;
        Ok(Self::Jwks(JwksFile {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            seen: Mutex::new((Instant::now(), stamp)),
            generation: AtomicU64::new(0),
        }))
    }

    /// Which key set is in use: changes whenever the keys do (after re-reading the JWKS file if it changed).
    pub(super) fn generation(&self) -> u64 {
        match self {
            Self::Secret(_) => 0,
            Self::Jwks(file) => {
                file.reload_if_changed();
                file.generation.load(Ordering::Acquire)
            }
        }
    }

    /// Verifies `token` and returns its principal and its `exp` (seconds since the epoch).
    pub(super) fn verify(&self, token: &str, config: &AuthConfig) -> Result<(Principal, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            // `alg: none` and unknown algorithms fail to parse as an `Algorithm`.
            ErrorKind::Json(_) => AuthError::Algorithm,
            _ => AuthError::Malformed,
        })?;
        let key = match self {
            Self::Secret(key) if header.alg == Algorithm::HS256 => key.clone(),
            Self::Secret(_) => return Err(AuthError::Algorithm),
            Self::Jwks(file) => {
                if !PUBLIC_ALGORITHMS.contains(&header.alg) {
                    return Err(AuthError::Algorithm);
                }
                let keys = file.current();
                let mut candidates = keys.iter().filter(|k| {
                    k.algorithm == header.alg && (header.kid.is_none() || k.kid.as_deref() == header.kid.as_deref())
                });
                candidates.next().ok_or(AuthError::UnknownKey)?.key.clone()
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| reason(e.kind()))?.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::MissingClaim);
        }
        let merchant = claims.merchant.filter(|m| !m.is_empty()).unwrap_or_else(|| claims.sub.clone());
        let principal = Principal {
            scopes: claims.scope.split_ascii_whitespace().map(str::to_owned).collect(),
            subject: claims.sub,
            merchant: Some(merchant),
        };
        Ok((principal, claims.exp))
    }
}

impl JwksFile {
    /// The keys in use, after re-reading the file if it changed since it was last looked at.
    fn current(&self) -> Arc<Vec<Key>> {
        self.reload_if_changed();
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn reload_if_changed(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.0.elapsed() < RELOAD_CHECK_EVERY {
            return;
        }
        seen.0 = Instant::now();
        let now = stamp(&self.path);
        if now == seen.1 {
            return;
        }
        seen.1 = now;
        match read_jwks(&self.path) {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                self.generation.fetch_add(1, Ordering::Release);
            }
            Err(error) => tracing::warn!(%error, "JWKS file changed but cannot be used; keeping the last good keys"),
        }
    }
}

/// The file's (modification time, size), or `None` when it cannot be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The usable keys of a JWKS file: asymmetric keys only, each with the algorithm its `alg` names or, without
/// one, the algorithm its type implies (OKP -> EdDSA, EC P-256 -> ES256, RSA -> RS256).
fn read_jwks(path: &Path) -> Result<Vec<Key>, KeysError> {
    let key = "auth.jwks_file";
    let text = std::fs::read(path).map_err(|error| KeysError::Read { key, path: display(path), error })?;
    let invalid = |reason: String| KeysError::Invalid { key, path: display(path), reason };
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| invalid(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let implied = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            // Symmetric ("oct") and unknown keys are skipped: an HMAC secret has no place in a public key set.
            _ => continue,
        };
        let algorithm = match jwk.common.key_algorithm {
            Some(named) => match Algorithm::try_from(named) {
                Ok(algorithm) if algorithm == implied => algorithm,
                _ => continue,
            },
            None => implied,
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("unusable key: {e}")))?;
        keys.push(Key { kid: jwk.common.key_id.clone(), algorithm, key: decoding });
    }
    if keys.is_empty() {
        return Err(invalid("no EdDSA, ES256 or RS256 key".into()));
    }
    Ok(keys)
}

/// The short reason for a failed verification.
fn reason(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            AuthError::Algorithm
        }
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        _ => AuthError::Malformed,
    }
}

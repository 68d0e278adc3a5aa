//! Verified bearer tokens, remembered by their SHA-256 until they expire.
//!
//! Every call carries its token, and in `courier up` an Authorize carries three (the merchant's, then the service
//! token on payments' own calls to users and to risk): verifying each signature again costs far more than the
//! call's business logic (an EdDSA or RS256 verification is tens of microseconds). A token proven once stays
//! proven until its `exp` (plus the configured leeway, as the verifier reads it), so the principal it proved is
//! kept under the token's hash and handed out again until then. Not the token itself: the cache never holds a
//! credential. A key set that changes (the JWKS file re-read) starts a new generation, and entries of an older
//! one are verified afresh, so a key removed from the file stops its tokens at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::Principal;

/// Distinct tokens remembered at most; beyond it moka evicts the least useful ones (a flood of distinct valid
/// tokens costs verifications, never memory).
const MAX_TOKENS: u64 = 10_000;
/// An entry is dropped after this long even if its token lives longer, so memory is reclaimed from tokens no
/// longer used; their next call verifies again.
const KEEP_FOR: Duration = Duration::from_secs(300);

/// See the module documentation.
pub(super) struct TokenCache {
    entries: moka::sync::Cache<[u8; 32], Arc<Entry>>,
}

struct Entry {
    principal: Principal,
    /// Seconds since the epoch until which the token verifies (`exp` + leeway).
    valid_until: u64,
    /// The key set's generation it was verified against.
    generation: u64,
}

impl TokenCache {
    pub fn new() -> Self {
        Self { entries: moka::sync::Cache::builder().max_capacity(MAX_TOKENS).time_to_live(KEEP_FOR).build() }
    }

    /// The principal `token` proved against key generation `generation`, if it is still within its validity.
    pub fn get(&self, token: &str, generation: u64) -> Option<Principal> {
        let entry = self.entries.get(&digest(token))?;
        (entry.generation == generation && now_secs() < entry.valid_until).then(|| entry.principal.clone())
    }

    /// Remembers that `token` proved `principal` until `valid_until` (seconds since the epoch).
    pub fn insert(&self, token: &str, generation: u64, principal: &Principal, valid_until: u64) {
        let entry = Entry { principal: principal.clone(), valid_until, generation };
        self.entries.insert(digest(token), Arc::new(entry));
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCache({} tokens)", self.entries.entry_count())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

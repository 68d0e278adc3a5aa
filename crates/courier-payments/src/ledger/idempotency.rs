//! Idempotency keys: their scopes and the one decoding of a stored answer, shared by the writer (inside its
//! transaction) and the service's read before any outbound call ([`super::key_probe`]).

use prost::Message;

use super::LedgerError;

/// Keys of authorizations, captures and voids are the merchant's.
pub(super) fn merchant_scope(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}")
}

/// Keys of credits are the account's.
pub(super) fn account_scope(account_id: &str) -> String {
    format!("account:{account_id}")
}

/// A stored answer replayed for a request with `fingerprint`: the answer when the request is the same one,
/// IDEMPOTENCY_KEY_REUSED when the key was first used with another request.
pub(super) fn decode<M: Message + Default>(
    stored_fingerprint: &str,
    response: &[u8],
    key: &str,
    fingerprint: &str,
) -> Result<M, LedgerError> {
    if stored_fingerprint == fingerprint {
        M::decode(response).map_err(|e| LedgerError::Unavailable(format!("stored answer: {e}")))
    } else {
        Err(LedgerError::KeyReused { key: key.to_owned() })
    }
}

//! Idempotency keys: their scopes and the one lookup of a stored answer, shared by the writer (inside its
//! transaction) and the service's read before any outbound call (on the pool).

use prost::Message;
use sqlx::{Any, Executor};

use super::LedgerError;

/// Keys of authorizations, captures and voids are the merchant's.
pub(super) fn merchant_scope(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}")
}

/// Keys of credits are the account's.
pub(super) fn account_scope(account_id: &str) -> String {
    format!("account:{account_id}")
}

/// The stored answer for (scope, key): `Some(Ok)` to replay it, `Some(Err)` when the key was used with another
/// request, `None` when the key is new.
pub(super) async fn stored_answer<'e, M, E>(
    executor: E,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Result<M, LedgerError>>, sqlx::Error>
where
    M: Message + Default,
    E: Executor<'e, Database = Any>,
{
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT fingerprint, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(stored, response)| decode(&stored, &response, key, fingerprint)))
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

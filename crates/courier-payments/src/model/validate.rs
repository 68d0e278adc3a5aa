//! The boundary: every request is checked field by field before it reaches the ledger, and every violation is
//! reported at once (`google.rpc.BadRequest`), so a caller fixes its request in one round trip.

use courier_kit::status::FieldViolations;
use courier_proto::payments::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Status;

use super::{is_account_id, is_authorization_id, is_currency};
use crate::ledger::{AuthorizeCmd, CaptureCmd, CreditCmd, NewAccount, VoidCmd};

/// Longest idempotency key, in bytes (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most metadata pairs.
pub const MAX_METADATA_PAIRS: usize = 20;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 40;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 500;
/// Longest merchant id.
pub const MAX_MERCHANT_ID_BYTES: usize = 64;

/// OpenAccount: holder id present, currency known, credit limit not negative.
pub fn open_account(request: &pb::OpenAccountRequest) -> Result<NewAccount, Status> {
    let mut v = FieldViolations::default();
    if request.owner_user_id.is_empty() {
        v.add("owner_user_id", "required");
    } else if request.owner_user_id.len() > 64 {
        v.add("owner_user_id", "at most 64 bytes");
    } else {
        no_control_characters(&mut v, "owner_user_id", &request.owner_user_id);
    }
    currency(&mut v, "currency", &request.currency);
    if request.credit_limit < 0 {
        v.add("credit_limit", "must not be negative");
    }
    v.into_result()?;
    Ok(NewAccount {
        owner_user_id: request.owner_user_id.clone(),
        currency: request.currency.clone(),
        credit_limit: request.credit_limit,
    })
}

/// CreditAccount.
pub fn credit(request: &pb::CreditAccountRequest) -> Result<CreditCmd, Status> {
    let mut v = FieldViolations::default();
    account_id(&mut v, "account_id", &request.account_id);
    amount(&mut v, "amount", request.amount);
    currency(&mut v, "currency", &request.currency);
    idempotency_key(&mut v, "idempotency_key", &request.idempotency_key);
    v.into_result()?;
    let canonical = pb::CreditAccountRequest { idempotency_key: String::new(), ..request.clone() };
    Ok(CreditCmd {
        account_id: request.account_id.clone(),
        amount: request.amount,
        currency: request.currency.clone(),
        idempotency_key: request.idempotency_key.clone(),
        fingerprint: fingerprint("credit", &canonical),
    })
}

/// Authorize. `prefix` names the enclosing field on streams (`request.`), empty for the unary call.
pub fn authorize(request: &pb::AuthorizeRequest, prefix: &str) -> Result<AuthorizeCmd, Status> {
    let mut v = FieldViolations::default();
    let field = |name: &str| format!("{prefix}{name}");
    idempotency_key(&mut v, &field("idempotency_key"), &request.idempotency_key);
    account_id(&mut v, &field("account_id"), &request.account_id);
    merchant_id(&mut v, &field("merchant_id"), &request.merchant_id);
    amount(&mut v, &field("amount"), request.amount);
    currency(&mut v, &field("currency"), &request.currency);
    if request.description.chars().count() > MAX_DESCRIPTION_CHARS {
        v.add(field("description"), format!("at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    no_control_characters(&mut v, &field("description"), &request.description);
    if request.metadata.len() > MAX_METADATA_PAIRS {
        v.add(field("metadata"), format!("at most {MAX_METADATA_PAIRS} pairs"));
    }
    for (key, value) in &request.metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            v.add(field(&format!("metadata[{key}]")), format!("keys are 1 to {MAX_METADATA_KEY_BYTES} bytes"));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            v.add(field(&format!("metadata[{key}]")), format!("values are at most {MAX_METADATA_VALUE_BYTES} bytes"));
        }
    }
    v.into_result()?;
    let canonical = pb::AuthorizeRequest { idempotency_key: String::new(), ..request.clone() };
    Ok(AuthorizeCmd {
        idempotency_key: request.idempotency_key.clone(),
        account_id: request.account_id.clone(),
        merchant_id: request.merchant_id.clone(),
        amount: request.amount,
        currency: request.currency.clone(),
        description: request.description.clone(),
        metadata: request.metadata.clone(),
        fingerprint: fingerprint("authorize", &canonical),
        holder: crate::ledger::Holder::Active,
        risk: crate::ledger::Risk::NotConsulted,
    })
}

/// Capture. `prefix` names the enclosing field on streams (`capture.`).
pub fn capture(request: &pb::CaptureRequest, prefix: &str) -> Result<CaptureCmd, Status> {
    let mut v = FieldViolations::default();
    authorization_id(&mut v, &format!("{prefix}authorization_id"), &request.authorization_id);
    if request.amount < 0 {
        v.add(format!("{prefix}amount"), "must not be negative (0 captures the whole hold)");
    }
    idempotency_key(&mut v, &format!("{prefix}idempotency_key"), &request.idempotency_key);
    v.into_result()?;
    let canonical = pb::CaptureRequest { idempotency_key: String::new(), ..request.clone() };
    Ok(CaptureCmd {
        authorization_id: request.authorization_id.clone(),
        amount: request.amount,
        idempotency_key: request.idempotency_key.clone(),
        fingerprint: fingerprint("capture", &canonical),
    })
}

/// Void.
pub fn void(request: &pb::VoidRequest) -> Result<VoidCmd, Status> {
    let mut v = FieldViolations::default();
    authorization_id(&mut v, "authorization_id", &request.authorization_id);
    idempotency_key(&mut v, "idempotency_key", &request.idempotency_key);
    v.into_result()?;
    let canonical = pb::VoidRequest { idempotency_key: String::new(), ..request.clone() };
    Ok(VoidCmd {
        authorization_id: request.authorization_id.clone(),
        idempotency_key: request.idempotency_key.clone(),
        fingerprint: fingerprint("void", &canonical),
    })
}

/// A well-formed account id, for the read calls.
pub fn account_id_only(field: &str, id: &str) -> Result<(), Status> {
    let mut v = FieldViolations::default();
    account_id(&mut v, field, id);
    v.into_result()
}

/// A well-formed authorization id, for the read calls.
pub fn authorization_id_only(field: &str, id: &str) -> Result<(), Status> {
    let mut v = FieldViolations::default();
    authorization_id(&mut v, field, id);
    v.into_result()
}

/// SHA-256 of the operation and the request without its key: the same key with another request is detected
/// whatever field changed. Maps are ordered (`btree_map` in the build), so the encoding is deterministic.
fn fingerprint(operation: &str, canonical: &impl Message) -> String {
    let mut hash = Sha256::new();
    hash.update(operation.as_bytes());
    hash.update([0]);
    hash.update(canonical.encode_to_vec());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn idempotency_key(v: &mut FieldViolations, field: &str, key: &str) {
    if key.is_empty() {
        v.add(field, "required: a retry with the same key returns the first result");
    } else if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        v.add(field, format!("at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"));
    } else {
        no_control_characters(v, field, key);
    }
}

/// Text the ledger stores as it came: no control characters. A NUL in particular is text PostgreSQL cannot hold,
/// and refused there it would fail the whole batch the request shares with others.
fn no_control_characters(v: &mut FieldViolations, field: &str, text: &str) {
    if text.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

fn account_id(v: &mut FieldViolations, field: &str, id: &str) {
    if id.is_empty() {
        v.add(field, "required");
    } else if !is_account_id(id) {
        v.add(field, "not an account id (acct_ and 32 hex digits)");
    }
}

fn authorization_id(v: &mut FieldViolations, field: &str, id: &str) {
    if id.is_empty() {
        v.add(field, "required");
    } else if !is_authorization_id(id) {
        v.add(field, "not an authorization id (auth_ and 32 hex digits)");
    }
}

fn merchant_id(v: &mut FieldViolations, field: &str, id: &str) {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if id.is_empty() {
        v.add(field, "required");
    } else if id.len() > MAX_MERCHANT_ID_BYTES || !id.bytes().all(allowed) {
        v.add(field, format!("1 to {MAX_MERCHANT_ID_BYTES} of A-Z a-z 0-9 _ -"));
    }
}

fn amount(v: &mut FieldViolations, field: &str, amount: i64) {
    if amount <= 0 {
        v.add(field, "must be more than zero (minor units)");
    }
}

fn currency(v: &mut FieldViolations, field: &str, code: &str) {
    if code.is_empty() {
        v.add(field, "required");
    } else if !is_currency(code) {
        v.add(field, "not an ISO 4217 currency code (e.g. USD)");
    }
}

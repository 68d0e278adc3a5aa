//! Tenant isolation: with authentication on, a merchant's token sees and moves only that merchant's
//! authorizations.
//!
//! The merchant comes from the verified principal (`courier_kit::auth::Principal::merchant`: the token's
//! `merchant` claim, else its subject), never from the request body. A body naming another merchant is refused
//! (PERMISSION_DENIED); an empty `merchant_id` means the token's. Another merchant's authorization is answered
//! exactly like one that does not exist (NOT_FOUND), so ids cannot be probed. Nothing is restricted without
//! authentication, for an mTLS service identity (which acts for no merchant), or for a principal holding
//! [`ANY_MERCHANT_SCOPE`] (back office, `courier up --dev-auth`'s token).

use std::borrow::Cow;

use courier_kit::auth::Principal;
use courier_kit::status;
use courier_proto::payments::v1 as pb;
use tonic::{Code, Request, Status};

use super::{to_status, ERROR_DOMAIN};
use crate::ledger::Ledger;

/// The scope that lifts the restriction to one merchant.
pub const ANY_MERCHANT_SCOPE: &str = "merchants:any";

/// The merchant a call is restricted to, if any.
pub(super) fn of<T>(request: &Request<T>) -> Option<String> {
    let principal = request.extensions().get::<Principal>()?;
    if principal.has_scope(ANY_MERCHANT_SCOPE) {
        return None;
    }
    principal.merchant.clone()
}

/// `merchant_id` bound to the caller's merchant: filled in when empty, refused when another.
pub(super) fn bind<'a>(merchant_id: &'a str, tenant: Option<&'a str>) -> Result<Cow<'a, str>, Status> {
    match tenant {
        None => Ok(Cow::Borrowed(merchant_id)),
        Some(tenant) if merchant_id.is_empty() || merchant_id == tenant => Ok(Cow::Borrowed(tenant)),
        Some(_) => Err(status::with_reason(
            Code::PermissionDenied,
            "MERCHANT_MISMATCH",
            ERROR_DOMAIN,
            "merchant_id is not the merchant of the caller's credentials (leave it empty to use theirs)",
        )),
    }
}

/// The AuthorizeRequest with its merchant bound (see [`bind`]).
pub(super) fn bind_authorize<'a>(
    request: &'a pb::AuthorizeRequest,
    tenant: Option<&str>,
) -> Result<Cow<'a, pb::AuthorizeRequest>, Status> {
    let merchant = bind(&request.merchant_id, tenant)?;
    if merchant == request.merchant_id {
        return Ok(Cow::Borrowed(request));
    }
    Ok(Cow::Owned(pb::AuthorizeRequest { merchant_id: merchant.into_owned(), ..request.clone() }))
}

/// NOT_FOUND unless authorization `id` exists and belongs to `tenant` (when there is one). Call it after the id
/// was validated. The merchant of an authorization never changes, so checking before acting is safe.
pub(super) async fn ensure_owned(ledger: &Ledger, id: &str, tenant: Option<&str>) -> Result<(), Status> {
    let Some(tenant) = tenant else { return Ok(()) };
    match ledger.get_authorization(id).await.map_err(to_status)? {
        Some(authorization) if authorization.merchant_id == tenant => Ok(()),
        _ => Err(status::not_found("authorization", id)),
    }
}

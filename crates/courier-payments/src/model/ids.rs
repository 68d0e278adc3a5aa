//! Ids are a type prefix and a UUIDv7 in hex: sortable by creation time, so listings page in id order.

const ACCOUNT: &str = "acct_";
const AUTHORIZATION: &str = "auth_";

/// A new `acct_…` id.
pub fn new_account_id() -> String {
    format!("{ACCOUNT}{}", uuid::Uuid::now_v7().simple())
}

/// A new `auth_…` id.
pub fn new_authorization_id() -> String {
    format!("{AUTHORIZATION}{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of an account id (it may still not exist).
pub fn is_account_id(id: &str) -> bool {
    has_shape(id, ACCOUNT)
}

/// Whether `id` has the shape of an authorization id.
pub fn is_authorization_id(id: &str) -> bool {
    has_shape(id, AUTHORIZATION)
}

fn has_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_shape_and_sort_by_creation() {
        let (a, b) = (new_account_id(), new_account_id());
        assert!(is_account_id(&a) && a < b);
        assert!(is_authorization_id(&new_authorization_id()));
        assert!(!is_account_id("acct_XYZ") && !is_account_id(&new_authorization_id()));
    }
}

//! What the ledger stores and what callers may send: ids, currencies, response codes, the clock, validation.

mod clock;
mod codes;
mod currency;
mod ids;
pub mod validate;

pub use clock::Clock;
pub use codes::response_code;
pub use currency::is_currency;
pub use ids::{is_account_id, is_authorization_id, new_account_id, new_authorization_id};

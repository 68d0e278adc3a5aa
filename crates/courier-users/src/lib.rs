//! courier's user service: who may hold accounts, and whether they may transact.
//!
//! - [`model`]: the user as the service sees it, ids and validation of what callers send.
//! - [`store`]: persistence on SQLite (embedded default) or PostgreSQL, one migration set for both.
//! - [`service`]: the `courier.users.v1.UserService` gRPC handlers.
//! - [`scopes`]: the scope each method needs when authentication is on.

#![warn(missing_docs)]

pub mod model;
pub mod scopes;
pub mod service;
pub mod store;

pub use service::UsersApi;
pub use store::UserStore;

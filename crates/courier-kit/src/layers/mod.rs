//! The tower layers every courier server runs, outermost first: [`call_end`] (the call's span, then at the call's
//! end its RPC metrics and access log line), [`content_type`] (HTTP 415 for a non-gRPC request), [`auth`] (off
//! unless `[auth]` is configured), [`faults`] (off unless configured), [`deadline`], [`concurrency`] (limit,
//! pushback, shedding), [`recv_limit`].
//!
//! They work on `http` requests and responses, below tonic's codegen, so they cover every service alike
//! (health and reflection included) and need no per-handler code. gRPC-Web calls pass them as gRPC: the
//! translation (`crate::server::grpc_web`) sits outside them all.

mod access_log;
pub mod auth;
pub mod call_end;
pub mod concurrency;
pub mod content_type;
pub mod deadline;
pub mod faults;
pub mod observed_body;
pub mod recv_limit;
mod rpc_metrics;

pub use auth::AuthLayer;
pub use call_end::CallEndLayer;
pub use concurrency::{ConcurrencyLimitLayer, OverloadOptions};
pub use content_type::ContentTypeLayer;
pub use deadline::{DeadlineLayer, DeadlineOptions};
pub use faults::{FaultLayer, FaultOptions};
pub use recv_limit::RecvLimitLayer;

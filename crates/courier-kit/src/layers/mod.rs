//! The tower layers every courier server runs, outermost first: [`trace`], [`access_log`], [`rpc_metrics`],
//! [`content_type`] (HTTP 415 for a non-gRPC request), [`auth`] (off unless `[auth]` is configured), [`faults`]
//! (off unless configured), [`deadline`], [`concurrency`] (limit, pushback, shedding), [`recv_limit`].
//!
//! They work on `http` requests and responses, below tonic's codegen, so they cover every service alike
//! (health and reflection included) and need no per-handler code. gRPC-Web calls pass them as gRPC: the
//! translation (`crate::server::grpc_web`) sits outside them all.

pub mod access_log;
pub mod auth;
pub mod concurrency;
pub mod content_type;
pub mod deadline;
pub mod faults;
pub mod observed_body;
pub mod recv_limit;
pub mod rpc_metrics;
pub mod trace;

pub use access_log::AccessLogLayer;
pub use auth::AuthLayer;
pub use concurrency::{ConcurrencyLimitLayer, OverloadOptions};
pub use content_type::ContentTypeLayer;
pub use deadline::{DeadlineLayer, DeadlineOptions};
pub use faults::{FaultLayer, FaultOptions};
pub use recv_limit::RecvLimitLayer;
pub use rpc_metrics::RpcMetricsLayer;
pub use trace::TraceLayer;

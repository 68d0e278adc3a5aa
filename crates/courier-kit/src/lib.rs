//! What every courier service shares, and nothing that knows about users or payments.
//!
//! - [`server`]: one way to run a set of tonic services with health, reflection, limits, keepalive, an access log
//!   and graceful shutdown.
//! - [`layers`]: the seven tower layers that stack runs, outermost first: the call's end (trace span, RPC metrics
//!   and access log from one classification), content type, authentication, fault injection, deadline,
//!   concurrency limit with load shedding, receive-size limit.
//! - [`deadline`]: the deadline of the call being served, readable anywhere in its handler.
//! - [`client`]: the resilient client for service-to-service calls (deadline propagation, retries, circuit
//!   breaking, balancing over healthy replicas).
//! - [`status`]: building rich `tonic::Status` values (`google.rpc.BadRequest`, `ResourceInfo`, `ErrorInfo`) in one
//!   place, so every service answers failures the same way.
//! - [`config`]: layered configuration (defaults < TOML file < `COURIER_*` environment < flags).
//! - [`db`]: opening the SQLite or PostgreSQL pool with durable settings and a service's migrations.
//! - [`clock`]: the system clock, or a manual one tests move.
//! - [`time`]: microseconds in stores, `google.protobuf.Timestamp` on the wire.
//! - [`logging`]: `tracing` set-up, human or JSON.
//! - [`trace`]: a span per RPC continuing the caller's W3C trace, trace ids in log lines, optional OTLP export.
//! - [`tls`]: the `[tls]` table (server certificates, mutual TLS, outbound trust), the loopback rule for
//!   plaintext, and development certificates.
//! - [`auth`]: bearer JWTs and mTLS service identities, per-method scopes (`[auth]`).
//! - [`metrics`]: Prometheus metrics in the process-wide registry; [`admin`] serves them, with liveness and
//!   readiness, on the admin HTTP port.

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod deadline;
pub mod layers;
pub mod logging;
pub mod metrics;
pub mod rest;
pub mod server;
pub mod sqlite_reads;
pub mod status;
pub mod time;
pub mod tls;
pub mod trace;

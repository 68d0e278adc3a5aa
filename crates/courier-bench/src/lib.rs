//! courier's load generator, the engine behind `courier bench`.
//!
//! - [`load`]: closed loop (N callers, each sends when its last call returned: maximum throughput) and open loop
//!   (calls scheduled at a fixed rate; latency is measured from the *intended* send time, so a server that stalls
//!   is charged for the queue it causes instead of the generator politely waiting: no coordinated omission).
//! - [`stream`]: the same on long-lived AuthorizeStream calls, many messages in flight per stream.
//! - [`idle`]: many connections opened, used once and held, to measure what idle clients cost a server.
//! - [`report`]: HDR histograms merged across callers into p50, p90, p99, p99.9, max, and a JSON report;
//!   [`plot`] draws the percentile curve as SVG; [`live`] feeds a progress display while a run goes.
//! - REST/JSON as the other transport (HTTP/1.1 keep-alive, one connection per caller), and the server's CPU
//!   time over the measured window read from /proc (`LoadConfig::server_pids`).
//! - [`scenario`]: what one call is (Authorize spread over accounts or on one hot account, GetUser, a fixed mix),
//!   and the set-up each needs (users, funded accounts) done through the public API like any client.

#![warn(missing_docs)]

pub mod idle;
pub mod live;
pub mod load;
pub mod plot;
pub mod report;
mod rest;
pub mod scenario;
mod server_cpu;
pub mod stream;

pub use live::Live;
pub use load::{run, LoadConfig, Mode, Transport};
pub use report::Report;
pub use scenario::{Auth, Scenario};
pub use server_cpu::cpu_time;

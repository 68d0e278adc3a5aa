//! courier's load generator, the engine behind `courier bench`.
//!
//! - [`load`]: closed loop (N callers, each sends when its last call returned: maximum throughput) and open loop
//!   (calls scheduled at a fixed rate; latency is measured from the *intended* send time, so a server that stalls
//!   is charged for the queue it causes instead of the generator politely waiting: no coordinated omission).
//! - [`report`]: HDR histograms merged across callers into p50, p90, p99, p99.9, max, and a JSON report.
//! - [`scenario`]: what one call is (Authorize spread over accounts or on one hot account, GetUser), and the set-up
//!   each needs (users, funded accounts) done through the public API like any client.

#![warn(missing_docs)]

pub mod load;
pub mod report;
pub mod scenario;

pub use load::{run, LoadConfig, Mode};
pub use report::Report;
pub use scenario::Scenario;

//! The transactional outbox relay: ledger events, written to the `outbox` table in the same transaction as the
//! change they describe (see `courier_payments`' stage), published in sequence order to NATS JetStream or
//! RabbitMQ, and marked published only after the broker confirmed them.
//!
//! - [`config`]: the `[outbox]` table.
//! - [`message`]: an event as the broker sees it (subject, headers, protobuf or JSON body, Celery task).
//! - [`relay`]: the publishing loop, its lock (one relay per database) and its metrics.
//!
//! Delivery is at least once: a relay that dies between the broker's confirm and its own UPDATE publishes those
//! events again after restart, with the same message id (the event's sequence). NATS drops such repeats within its
//! duplicate window; RabbitMQ consumers dedupe by `message_id`.

pub mod config;
pub mod message;
mod metrics;
pub mod relay;
mod sink;

pub use config::{Broker, Format, OutboxConfig};
pub use relay::{start, StartError};

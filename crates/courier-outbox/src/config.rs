//! The `[outbox]` table of the configuration file (and `COURIER_OUTBOX__*`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where events go, and how.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// `none` (the default: nothing is published and no outbox rows are written), `nats` or `rabbitmq`.
    pub broker: Broker,
    /// The broker: `nats://127.0.0.1:4222` or `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The message body: `protobuf` (the contract's `courier.payments.v1.Event`) or `json` (its proto3 JSON).
    pub format: Format,
    /// An unreachable broker at start stops the process (true) or is a warning and a growing backlog (false).
    pub required: bool,
    /// How long published rows stay in the outbox before they are deleted (the events table keeps the events).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Most events published (and confirmed) per round.
    pub batch: usize,
    /// How often an idle relay looks for new rows.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Subjects (NATS) and routing keys (RabbitMQ) are `<subject_prefix>.<event type>`, e.g.
    /// `courier.payments.authorized`.
    pub subject_prefix: String,
    /// NATS: the JetStream stream, created if missing, over `<subject_prefix>.>`.
    pub stream: String,
    /// RabbitMQ: the durable topic exchange events are published to.
    pub exchange: String,
    /// RabbitMQ: the queue Celery task messages go to (Celery's default is `celery`).
    pub celery_queue: String,
    /// RabbitMQ: event type (`captured`, `authorized`, ...) to Celery task name, e.g.
    /// `captured = "courier.tasks.authorization_captured"`. Each such event is also sent as a Celery protocol v2
    /// task message `task(authorization_id, amount, currency)`.
    pub celery: BTreeMap<String, String>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            broker: Broker::None,
            url: String::new(),
            format: Format::Protobuf,
            required: false,
            retention: Duration::from_secs(24 * 3600),
            batch: 256,
            poll_interval: Duration::from_millis(50),
            subject_prefix: "courier.payments".into(),
            stream: "COURIER".into(),
            exchange: "courier.events".into(),
            celery_queue: "celery".into(),
            celery: BTreeMap::new(),
        }
    }
}

impl OutboxConfig {
    /// Whether the ledger should write outbox rows at all.
    pub fn enabled(&self) -> bool {
        self.broker != Broker::None
    }
}

/// The broker kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Broker {
    /// No broker: events are only in the WatchEvents feed.
    None,
    /// NATS JetStream.
    Nats,
    /// RabbitMQ (AMQP 0-9-1).
    Rabbitmq,
}

/// Message bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Binary protobuf, `application/x-protobuf`.
    Protobuf,
    /// Canonical proto3 JSON, `application/json`.
    Json,
}

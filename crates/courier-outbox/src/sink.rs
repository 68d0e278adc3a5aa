//! The brokers: connect, publish a batch, wait for every confirm.

use std::time::Duration;

use async_nats::jetstream;
use courier_proto::payments::v1 as pb;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, ExchangeKind};

use crate::config::{Broker, OutboxConfig};
use crate::message::{self, SCHEMA};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// AMQP delivery mode 2: the broker writes the message to disk (with a durable exchange and queue).
const PERSISTENT: u8 = 2;

/// A connected broker.
pub(crate) enum Sink {
    Nats(jetstream::Context),
    Rabbit { _connection: lapin::Connection, channel: lapin::Channel },
}

pub(crate) type SinkError = Box<dyn std::error::Error + Send + Sync>;

impl Sink {
    /// Checks that `config.url` is a URL of the configured broker's kind (a mistake no retry fixes).
    pub fn check_url(config: &OutboxConfig) -> Result<(), String> {
        let url = config.url.trim();
        let scheme_ok = match config.broker {
            Broker::None => true,
            Broker::Nats => ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| url.starts_with(s)),
            Broker::Rabbitmq => ["amqp://", "amqps://"].iter().any(|s| url.starts_with(s)),
        };
        let parses = match config.broker {
            Broker::None => true,
            Broker::Nats => url.parse::<async_nats::ServerAddr>().is_ok(),
            Broker::Rabbitmq => url.parse::<lapin::uri::AMQPUri>().is_ok(),
        };
        if scheme_ok && parses {
            Ok(())
        } else {
            let example = match config.broker {
                Broker::Rabbitmq => "amqp://guest:guest@127.0.0.1:5672/%2f",
                _ => "nats://127.0.0.1:4222",
            };
            Err(format!("{url:?} is not a {:?} URL (e.g. {example})", config.broker))
        }
    }

    /// Connects and declares what publishing needs: the JetStream stream, or the exchange (and Celery queue) with
    /// publisher confirms on.
    pub async fn connect(config: &OutboxConfig) -> Result<Sink, SinkError> {
        match config.broker {
            Broker::None => Err("no broker configured".into()),
            Broker::Nats => {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(CONNECT_TIMEOUT)
                    .connect(config.url.trim())
                    .await?;
                let context = jetstream::new(client);
                let stream = jetstream::stream::Config {
                    name: config.stream.clone(),
                    subjects: vec![format!("{}.>", config.subject_prefix)],
                    ..Default::default()
                };
                tokio::time::timeout(CONNECT_TIMEOUT, context.get_or_create_stream(stream)).await??;
                Ok(Sink::Nats(context))
            }
            Broker::Rabbitmq => {
                let connect = lapin::Connection::connect(config.url.trim(), lapin::ConnectionProperties::default());
                let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect).await??;
                let channel = connection.create_channel().await?;
                channel.confirm_select(ConfirmSelectOptions::default()).await?;
                let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
                let exchange = ShortString::from(config.exchange.clone());
                channel.exchange_declare(exchange, ExchangeKind::Topic, durable, FieldTable::default()).await?;
                if !config.celery.is_empty() {
                    // Declared as Celery's worker declares it (durable, no arguments), so tasks published before
                    // any worker started wait in it.
                    let queue = ShortString::from(config.celery_queue.clone());
                    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
                    channel.queue_declare(queue, durable, FieldTable::default()).await?;
                }
                Ok(Sink::Rabbit { _connection: connection, channel })
            }
        }
    }

    /// Publishes `events` in order and waits for the broker's confirms; returns how many of them (from the first)
    /// were confirmed, and the error that stopped the rest, if any.
    pub async fn publish(&self, events: &[pb::Event], config: &OutboxConfig) -> (usize, Option<SinkError>) {
        match self {
            Sink::Nats(context) => publish_nats(context, events, config).await,
            Sink::Rabbit { channel, .. } => publish_rabbit(channel, events, config).await,
        }
    }
}

async fn publish_nats(
    context: &jetstream::Context,
    events: &[pb::Event],
    config: &OutboxConfig,
) -> (usize, Option<SinkError>) {
    // Every message goes out before the first ack is awaited: one round trip per batch, not per event.
    let mut acks = Vec::with_capacity(events.len());
    let mut failed = None;
    for event in events {
        let encoded = message::encode(event, config);
        let mut headers = async_nats::HeaderMap::new();
        // JetStream drops a second message with the same id inside the stream's duplicate window.
        headers.insert(async_nats::header::NATS_MESSAGE_ID, encoded.id.as_str());
        headers.insert("Content-Type", encoded.content_type);
        headers.insert("Courier-Schema", SCHEMA);
        match context.publish_with_headers(encoded.subject, headers, encoded.body.into()).await {
            Ok(ack) => acks.push(ack),
            Err(error) => {
                failed = Some(error.into());
                break;
            }
        }
    }
    let mut confirmed = 0;
    for ack in acks {
        match ack.await {
            Ok(_) => confirmed += 1,
            Err(error) => return (confirmed, Some(error.into())),
        }
    }
    (confirmed, failed)
}

async fn publish_rabbit(
    channel: &lapin::Channel,
    events: &[pb::Event],
    config: &OutboxConfig,
) -> (usize, Option<SinkError>) {
    // Per event, the confirms of its messages (the event, and its Celery task when it is mapped to one).
    let mut confirms = Vec::with_capacity(events.len());
    let mut failed = None;
    'events: for event in events {
        let encoded = message::encode(event, config);
        let mut headers = FieldTable::default();
        headers.insert("Courier-Schema".into(), AMQPValue::LongString(SCHEMA.into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(encoded.id.clone().into())
            .with_content_type(encoded.content_type.into())
            .with_headers(headers);
        let exchange = ShortString::from(config.exchange.clone());
        let options = BasicPublishOptions::default();
        let mut mine = Vec::with_capacity(2);
        match channel.basic_publish(exchange, encoded.subject.into(), options, &encoded.body, properties).await {
            Ok(confirm) => mine.push(confirm),
            Err(error) => {
                failed = Some(error.into());
                break 'events;
            }
        }
        if let Some(task) = message::celery_task(event, config) {
            let (properties, body) = celery_message(task);
            let queue = ShortString::from(config.celery_queue.clone());
            match channel.basic_publish("".into(), queue, options, &body, properties).await {
                Ok(confirm) => mine.push(confirm),
                Err(error) => {
                    failed = Some(error.into());
                    break 'events;
                }
            }
        }
        confirms.push(mine);
    }
    let mut confirmed = 0;
    for mine in confirms {
        for confirm in mine {
            match confirm.await {
                Ok(confirmation) if confirmation.is_ack() => {}
                Ok(_) => return (confirmed, Some("the broker refused (nacked) a message".into())),
                Err(error) => return (confirmed, Some(error.into())),
            }
        }
        confirmed += 1;
    }
    (confirmed, failed)
}

/// A Celery protocol v2 message: the task's name and id in the headers, `[args, kwargs, embed]` as the JSON
/// body (https://docs.celeryq.dev/en/stable/internals/protocol.html).
fn celery_message(task: message::CeleryTask) -> (BasicProperties, Vec<u8>) {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut headers = FieldTable::default();
    headers.insert("lang".into(), text("py"));
    headers.insert("task".into(), text(&task.task));
    headers.insert("id".into(), text(&task.id));
    headers.insert("root_id".into(), text(&task.id));
    headers.insert("parent_id".into(), AMQPValue::Void);
    headers.insert("group".into(), AMQPValue::Void);
    headers.insert("shadow".into(), AMQPValue::Void);
    headers.insert("eta".into(), AMQPValue::Void);
    headers.insert("expires".into(), AMQPValue::Void);
    headers.insert("retries".into(), AMQPValue::LongLongInt(0));
    headers.insert("timelimit".into(), AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void, AMQPValue::Void])));
    headers.insert("argsrepr".into(), text(&task.argsrepr));
    headers.insert("kwargsrepr".into(), text(&task.kwargsrepr));
    headers.insert("origin".into(), text("courier"));
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(task.id.clone().into())
        .with_correlation_id(task.id.into())
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_priority(0)
        .with_headers(headers);
    (properties, task.body)
}

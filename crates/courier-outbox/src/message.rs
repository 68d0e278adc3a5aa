//! One event as a broker message: subject, id, content type and body; and a Celery task message for it.

use courier_proto::payments::v1 as pb;
use prost::Message;
use serde_json::json;

use crate::config::{Format, OutboxConfig};

/// The schema name consumers dispatch on (header `Courier-Schema`).
pub const SCHEMA: &str = "courier.payments.v1.Event";

/// An encoded event.
pub struct Encoded {
    /// `<prefix>.<type>`, e.g. `courier.payments.captured`.
    pub subject: String,
    /// The message id: the event's sequence, stable across redeliveries.
    pub id: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The event type's short name: `EVENT_TYPE_CAPTURED` is `captured`.
pub fn type_name(event: &pb::Event) -> String {
    let kind = pb::EventType::try_from(event.r#type).unwrap_or(pb::EventType::Unspecified);
    kind.as_str_name().trim_start_matches("EVENT_TYPE_").to_ascii_lowercase()
}

pub fn encode(event: &pb::Event, config: &OutboxConfig) -> Encoded {
    let subject = format!("{}.{}", config.subject_prefix, type_name(event));
    let (content_type, body) = match config.format {
        Format::Protobuf => ("application/x-protobuf", event.encode_to_vec()),
        Format::Json => ("application/json", to_json(event).to_string().into_bytes()),
    };
    Encoded { subject, id: event.sequence.to_string(), content_type, body }
}

/// The event's canonical proto3 JSON: lowerCamelCase names, enums by name, 64-bit integers as strings, the
/// timestamp in RFC 3339 (defaults included, which the mapping allows, so consumers never miss a key).
pub fn to_json(event: &pb::Event) -> serde_json::Value {
    let kind = pb::EventType::try_from(event.r#type).unwrap_or(pb::EventType::Unspecified);
    let decider = pb::Decider::try_from(event.decided_by).unwrap_or(pb::Decider::Unspecified);
    json!({
        "sequence": event.sequence.to_string(),
        "type": kind.as_str_name(),
        "accountId": event.account_id,
        "authorizationId": event.authorization_id,
        "amount": event.amount.to_string(),
        "currency": event.currency,
        "responseCode": event.response_code,
        "occurredAt": event.occurred_at.as_ref().map(ToString::to_string),
        "decidedBy": decider.as_str_name(),
    })
}

/// A Celery protocol v2 task message for `event`, if its type is mapped to a task.
pub struct CeleryTask {
    /// The task name, e.g. `courier.tasks.authorization_captured`.
    pub task: String,
    /// The task id: stable per event (`courier-<sequence>`), so a redelivered message is recognisably the same.
    pub id: String,
    /// `[args, kwargs, embed]` in JSON.
    pub body: Vec<u8>,
    /// `repr()` of the arguments, which Celery logs.
    pub argsrepr: String,
    pub kwargsrepr: String,
}

pub fn celery_task(event: &pb::Event, config: &OutboxConfig) -> Option<CeleryTask> {
    let task = config.celery.get(&type_name(event))?.clone();
    let id = format!("courier-{}", event.sequence);
    let args = json!([event.authorization_id, event.amount, event.currency]);
    let kwargs = json!({ "sequence": event.sequence, "account_id": event.account_id });
    let embed = json!({ "callbacks": null, "errbacks": null, "chain": null, "chord": null });
    let argsrepr = format!("('{}', {}, '{}')", event.authorization_id, event.amount, event.currency);
    let kwargsrepr = format!("{{'sequence': {}, 'account_id': '{}'}}", event.sequence, event.account_id);
    let body = json!([args, kwargs, embed]).to_string().into_bytes();
    Some(CeleryTask { task, id, body, argsrepr, kwargsrepr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_json_and_celery_tasks() {
        let event = pb::Event {
            sequence: 7,
            r#type: pb::EventType::Captured as i32,
            account_id: "acct_1".into(),
            authorization_id: "auth_1".into(),
            amount: 1250,
            currency: "USD".into(),
            occurred_at: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            ..Default::default()
        };
        let mut config = OutboxConfig { format: Format::Json, ..OutboxConfig::default() };
        let encoded = encode(&event, &config);
        assert_eq!(encoded.subject, "courier.payments.captured");
        assert_eq!(encoded.id, "7");
        let body: serde_json::Value = serde_json::from_slice(&encoded.body).unwrap();
        assert_eq!(body["sequence"], "7");
        assert_eq!(body["type"], "EVENT_TYPE_CAPTURED");
        assert_eq!(body["occurredAt"], "1970-01-01T00:00:00Z");
        assert!(celery_task(&event, &config).is_none());
        config.celery.insert("captured".into(), "courier.tasks.authorization_captured".into());
        let task = celery_task(&event, &config).unwrap();
        assert_eq!(task.id, "courier-7");
        let body: serde_json::Value = serde_json::from_slice(&task.body).unwrap();
        assert_eq!(body[0], json!(["auth_1", 1250, "USD"]));
    }
}

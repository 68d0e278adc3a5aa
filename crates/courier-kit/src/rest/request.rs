//! From an HTTP/JSON request to the gRPC request the layered stack serves: the request message built from the
//! JSON body, the path's variables and the query string (proto3 canonical JSON, through prost-reflect), framed as
//! one length-prefixed gRPC message, with the caller's metadata (`Authorization`, `traceparent`, ...) and
//! deadline (`grpc-timeout`, or `X-Request-Timeout`) carried over.
//!
//! The message is built when the service reads the request body, not before the call ([`grpc_request`]): the
//! JSON body is read by a call that was admitted (it holds its concurrency permit and its deadline runs), and
//! whatever is wrong with the request (not JSON, an unknown field, a wrong type, a body too large) is that
//! call's status, an INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the size) with a BadRequest field violation naming
//! the field: the caller gets a 400 that says what to fix, never a 500, and the access log and the metrics count
//! it under the method like any other answer.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde::de::DeserializeSeed;
use serde_json::{Map, Value};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::routes::{BodyRule, Rpc};
use crate::deadline::grpc_timeout;
use crate::layers::DeadlineOptions;

/// The header that names a money-moving call's idempotency key over HTTP.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// A REST caller's deadline when it does not speak `grpc-timeout`: `250ms`, `2s` or a bare number of milliseconds.
pub(crate) const REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static(grpc_timeout::HEADER);
/// The request message's field the `Idempotency-Key` header fills.
const IDEMPOTENCY_FIELD: &str = "idempotency_key";

/// Headers of the HTTP request that are about HTTP/1.1, the JSON body or its encoding, not gRPC metadata.
const DROPPED: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "accept",
    "accept-encoding",
    "expect",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// The gRPC request for a REST request that matched `rpc` with the path variables `params`: `POST
/// /package.Service/Method` over HTTP/2 with the caller's metadata ([`metadata`], its deadline bounded by
/// `deadlines`) and connection extensions (peer address, TLS certificates), and a body that reads the JSON
/// body (up to `limit` bytes) and yields the framed message only when the service reads it. A mistake in the
/// request is that body's error: tonic answers a request body's `Status` as the call's status.
pub(crate) fn grpc_request(
    rpc: Arc<Rpc>,
    params: Vec<(String, String)>,
    request: Request<Body>,
    limit: usize,
    deadlines: &DeadlineOptions,
) -> Request<Body> {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    let key = parts.headers.get(IDEMPOTENCY_KEY).cloned();
    let (headers, timeout_checked) = metadata(parts.headers, rpc.grpc_path.path(), deadlines);
    let path = rpc.grpc_path.clone();
    let message = async move {
        timeout_checked?;
        message(&rpc, params, query.as_deref(), key.as_ref(), body, limit).await.map(Frame::data)
    };
    let mut grpc = Request::new(Body::new(http_body_util::StreamBody::new(futures::stream::once(message))));
    *grpc.method_mut() = Method::POST;
    *grpc.uri_mut() = path.into();
    *grpc.version_mut() = Version::HTTP_2;
    *grpc.headers_mut() = headers;
    *grpc.extensions_mut() = parts.extensions;
    grpc
}

/// The encoded, framed request message for `rpc` from the HTTP request's body (read up to `limit` bytes), path
/// variables, query string and `Idempotency-Key` header.
async fn message<B>(
    rpc: &Rpc,
    params: Vec<(String, String)>,
    query: Option<&str>,
    key: Option<&HeaderValue>,
    body: B,
    limit: usize,
) -> Result<Bytes, Status>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Status::resource_exhausted(format!("request body larger than {limit} bytes")));
        }
        Err(error) => return Err(Status::cancelled(format!("reading the request body: {error}"))),
    };
    let mut object = match &rpc.body {
        BodyRule::None => Map::new(),
        BodyRule::Whole => body_object(&bytes)?,
        BodyRule::Field(field) => {
            let mut object = Map::new();
            if !bytes.is_empty() {
                object.insert(field.clone(), body_json(&bytes)?);
            }
            object
        }
    };
    for (path, value) in params {
        set_param(&rpc.input, &mut object, &path, &value, ParamSource::Path)?;
    }
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        set_param(&rpc.input, &mut object, &name, &value, ParamSource::Query)?;
    }
    idempotency_key(&rpc.input, &mut object, key)?;
    let message = decode(&rpc.input, Value::Object(object))?;
    Ok(frame(&message.encode_to_vec()))
}

/// The metadata of the gRPC request for `grpc_path`: the HTTP request's headers without the HTTP/1.1 and body
/// ones, gRPC's content type, and the caller's deadline in `grpc-timeout` (from `X-Request-Timeout` when that is
/// what was sent; `grpc-timeout` wins when both are), bounded by the method's default deadline in `deadlines`. An
/// outside HTTP client cannot hold a call (and its concurrency permit) longer than the method would run for a
/// caller that sent no deadline; a method without a default (`0s`) takes the caller's deadline as it is, as gRPC
/// callers' always are. A malformed `grpc-timeout` is left for the deadline layer, which ignores it and applies
/// the default. A malformed `X-Request-Timeout` is dropped and reported in the second value.
pub(crate) fn metadata(
    mut headers: HeaderMap,
    grpc_path: &str,
    deadlines: &DeadlineOptions,
) -> (HeaderMap, Result<(), Status>) {
    for name in DROPPED {
        headers.remove(*name);
    }
    let (request_timeout, checked) = match headers.remove(REQUEST_TIMEOUT) {
        Some(value) => match value.to_str().ok().and_then(parse_timeout) {
            Some(timeout) => (Some(timeout), Ok(())),
            None => (
                None,
                Err(field_violation(
                    Code::InvalidArgument,
                    "X-Request-Timeout",
                    "X-Request-Timeout is a duration such as 250ms or 2s, or a number of milliseconds",
                )),
            ),
        },
        None => (None, Ok(())),
    };
    let (sent, from_header) = match headers.get(GRPC_TIMEOUT) {
        Some(value) => (grpc_timeout::parse(value.as_bytes()).ok(), true),
        None => (request_timeout, false),
    };
    if let Some(sent) = sent {
        let bounded = deadlines.default_for(grpc_path).map_or(sent, |default| sent.min(default));
        if bounded < sent || !from_header {
            headers.insert(GRPC_TIMEOUT, grpc_timeout::encode(bounded));
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    (headers, checked)
}

/// `250ms`, `2s`, `1m`, or a bare number of milliseconds.
fn parse_timeout(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(millis) => Some(std::time::Duration::from_millis(millis)),
        Err(_) => humantime::parse_duration(value).ok(),
    }
}

/// One uncompressed length-prefixed gRPC message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).expect("bounded by the body limit"));
    framed.put_slice(message);
    framed.freeze()
}

fn body_json(bytes: &[u8]) -> Result<Value, Status> {
    serde_json::from_slice(bytes).map_err(|error| {
        field_violation(Code::InvalidArgument, "", &format!("the request body is not valid JSON: {error}"))
    })
}

/// The body as a JSON object; an empty body is `{}`.
fn body_object(bytes: &[u8]) -> Result<Map<String, Value>, Status> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match body_json(bytes)? {
        Value::Object(object) => Ok(object),
        _ => Err(field_violation(Code::InvalidArgument, "", "the request body must be a JSON object")),
    }
}

#[derive(Clone, Copy)]
enum ParamSource {
    Path,
    Query,
}

/// Sets the field at `path` (dotted, proto or JSON names) of `object` from a path variable or query parameter.
/// A path variable replaces what the body said; a repeated field's query parameters accumulate.
fn set_param(
    message: &MessageDescriptor,
    object: &mut Map<String, Value>,
    path: &str,
    value: &str,
    source: ParamSource,
) -> Result<(), Status> {
    let unknown = || {
        let what = match source {
            ParamSource::Path => "path variable",
            ParamSource::Query => "query parameter",
        };
        field_violation(Code::InvalidArgument, path, &format!("unknown {what} `{path}`"))
    };
    let mut names = path.split('.').peekable();
    let mut message = message.clone();
    let mut object = object;
    while let Some(name) = names.next() {
        let field = find_field(&message, name).ok_or_else(unknown)?;
        // Whatever the body called it, the field is now under its proto name only.
        let existing = object.remove(field.json_name()).or_else(|| object.remove(field.name()));
        if names.peek().is_none() {
            let value =
                scalar(&field, value).map_err(|reason| field_violation(Code::InvalidArgument, path, &reason))?;
            let value = match (source, existing) {
                (ParamSource::Query, Some(Value::Array(mut values))) if field.is_list() => {
                    values.push(value);
                    Value::Array(values)
                }
                _ if field.is_list() => Value::Array(vec![value]),
                _ => value,
            };
            object.insert(field.name().to_owned(), value);
            return Ok(());
        }
        let Kind::Message(nested) = field.kind() else { return Err(unknown()) };
        if field.is_list() || field.is_map() {
            return Err(unknown());
        }
        let child = match existing {
            Some(Value::Object(child)) => child,
            _ => Map::new(),
        };
        object.insert(field.name().to_owned(), Value::Object(child));
        object = object.get_mut(field.name()).and_then(Value::as_object_mut).expect("just inserted");
        message = nested;
    }
    Err(unknown())
}

/// A field by its proto name or its lowerCamelCase JSON name.
fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message.get_field_by_name(name).or_else(|| message.get_field_by_json_name(name))
}

/// A path or query value as the JSON the field's canonical mapping reads: `true`/`false` for a bool, a string for
/// everything else (numbers, 64-bit integers, enums, timestamps and durations all read from strings).
fn scalar(field: &FieldDescriptor, value: &str) -> Result<Value, String> {
    match field.kind() {
        Kind::Bool => match value {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("`{}` is a bool: true or false, not {value:?}", field.name())),
        },
        Kind::Message(message) if !is_from_string(message.full_name()) => {
            Err(format!("`{}` is a message and cannot be given in the URL", field.name()))
        }
        _ => Ok(Value::String(value.to_owned())),
    }
}

/// Well-known messages whose JSON form is a string.
fn is_from_string(name: &str) -> bool {
    matches!(name, "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask")
        || name.starts_with("google.protobuf.") && name.ends_with("Value") && name != "google.protobuf.Value"
}

/// Fills the `idempotency_key` field from the `Idempotency-Key` header when the body has none; a body that
/// names a different key is refused. Methods without the field ignore the header.
fn idempotency_key(
    message: &MessageDescriptor,
    object: &mut Map<String, Value>,
    header: Option<&HeaderValue>,
) -> Result<(), Status> {
    let Some(header) = header else { return Ok(()) };
    let Some(field) = message.get_field_by_name(IDEMPOTENCY_FIELD) else { return Ok(()) };
    let header = header.to_str().map_err(|_| {
        field_violation(Code::InvalidArgument, IDEMPOTENCY_FIELD, "the Idempotency-Key header is not printable ASCII")
    })?;
    let body = object.get(field.json_name()).or_else(|| object.get(field.name()));
    match body {
        Some(Value::String(key)) if !key.is_empty() && key != header => Err(field_violation(
            Code::InvalidArgument,
            IDEMPOTENCY_FIELD,
            "the Idempotency-Key header and the body's idempotencyKey differ: send one, or the same in both",
        )),
        Some(Value::String(key)) if !key.is_empty() => Ok(()),
        _ => {
            object.remove(field.json_name());
            object.insert(field.name().to_owned(), Value::String(header.to_owned()));
            Ok(())
        }
    }
}

/// The request message from its JSON (canonical proto3 mapping; unknown fields refused), or an
/// INVALID_ARGUMENT naming the field that is wrong.
fn decode(descriptor: &MessageDescriptor, json: Value) -> Result<DynamicMessage, Status> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(json, &mut track);
    descriptor.clone().deserialize(deserializer).map_err(|error| {
        let path = track.path().to_string();
        let error = error.to_string();
        // An unknown field is reported at its parent's path; its own name is in the message.
        if let Some(name) = unknown_field(&error) {
            let field = if path == "." { name.to_owned() } else { format!("{path}.{name}") };
            return field_violation(Code::InvalidArgument, &field, &format!("unknown field `{field}`"));
        }
        let (field, description) =
            if path == "." { (String::new(), error) } else { (path.clone(), format!("{path}: {error}")) };
        field_violation(Code::InvalidArgument, &field, &description)
    })
}

/// The field name in prost-reflect's "unrecognized field name 'name'" (or serde's "unknown field `name`").
fn unknown_field(error: &str) -> Option<&str> {
    let quoted = error.strip_prefix("unrecognized field name ").or_else(|| error.strip_prefix("unknown field "))?;
    quoted.get(1..)?.split(['\'', '`']).next()
}

/// A status with one BadRequest field violation (`field` empty: about the request as a whole).
pub(crate) fn field_violation(code: Code, field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, description);
    Status::with_error_details(code, description, details)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pool() -> prost_reflect::DescriptorPool {
        // A descriptor set of courier-kit's own test fixture would do; the real contracts are in courier-proto,
        // which depends on nothing here, so the tests build a tiny message by hand.
        use prost_types::field_descriptor_proto::{Label, Type};
        use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
        let field = |name: &str, number: i32, ty: Type, label: Label| FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(ty as i32),
            label: Some(label as i32),
            json_name: Some(json_name(name)),
            ..Default::default()
        };
        let message = DescriptorProto {
            name: Some("Req".into()),
            field: vec![
                field("account_id", 1, Type::String, Label::Optional),
                field("amount", 2, Type::Int64, Label::Optional),
                field("idempotency_key", 3, Type::String, Label::Optional),
                field("flag", 4, Type::Bool, Label::Optional),
                field("tags", 5, Type::String, Label::Repeated),
            ],
            ..Default::default()
        };
        let file = FileDescriptorProto {
            name: Some("t.proto".into()),
            package: Some("t".into()),
            message_type: vec![message],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        prost_reflect::DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] }).unwrap()
    }

    fn json_name(name: &str) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    fn build(body: &str, params: &[(&str, &str)], query: &str, key: Option<&str>) -> Result<DynamicMessage, Status> {
        let descriptor = pool().get_message_by_name("t.Req").unwrap();
        let mut object = body_object(body.as_bytes())?;
        for (path, value) in params {
            set_param(&descriptor, &mut object, path, value, ParamSource::Path)?;
        }
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            set_param(&descriptor, &mut object, &name, &value, ParamSource::Query)?;
        }
        let key = key.map(|key| HeaderValue::from_str(key).unwrap());
        idempotency_key(&descriptor, &mut object, key.as_ref())?;
        decode(&descriptor, Value::Object(object))
    }

    fn violation(status: &Status) -> (String, String) {
        let details = status.get_error_details();
        let v = &details.bad_request().expect("a BadRequest").field_violations[0];
        (v.field.clone(), v.description.clone())
    }

    #[test]
    fn body_path_and_query_make_one_message() {
        let message =
            build(r#"{"amount":"12","account_id":"x"}"#, &[("account_id", "acct_1")], "flag=true&tags=a&tags=b", None)
                .unwrap();
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json, serde_json::json!({"accountId": "acct_1", "amount": "12", "flag": true, "tags": ["a", "b"]}));
        // lowerCamelCase and proto names both read; numbers as numbers too.
        assert!(build(r#"{"accountId":"a","amount":5}"#, &[], "", None).is_ok());
    }

    #[test]
    fn mistakes_are_invalid_argument_naming_the_field() {
        let status = build(r#"{"amount":"twelve"}"#, &[], "", None).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violation(&status).0, "amount", "{status:?}");
        let status = build(r#"{"bogus":1}"#, &[], "", None).unwrap_err();
        assert_eq!(violation(&status).0, "bogus", "{status:?}");
        let status = build(r#"{"amount":"#, &[], "", None).unwrap_err();
        assert!(violation(&status).1.contains("not valid JSON"), "{status:?}");
        let status = build("[1]", &[], "", None).unwrap_err();
        assert!(violation(&status).1.contains("JSON object"), "{status:?}");
        let status = build("", &[], "nope=1", None).unwrap_err();
        assert_eq!(violation(&status).0, "nope");
        let status = build("", &[], "flag=yes", None).unwrap_err();
        assert_eq!(violation(&status).0, "flag");
    }

    #[test]
    fn the_idempotency_key_header_fills_the_body_and_must_agree_with_it() {
        let message = build("{}", &[], "", Some("k1")).unwrap();
        assert_eq!(serde_json::to_value(&message).unwrap()["idempotencyKey"], "k1");
        assert!(build(r#"{"idempotencyKey":"k1"}"#, &[], "", Some("k1")).is_ok());
        let status = build(r#"{"idempotency_key":"k2"}"#, &[], "", Some("k1")).unwrap_err();
        assert_eq!(violation(&status).0, "idempotency_key");
    }

    #[test]
    fn request_timeouts_read_as_durations_or_milliseconds() {
        assert_eq!(parse_timeout("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("soon"), None);
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_TIMEOUT, "1500ms".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "3".parse().unwrap());
        let (metadata, checked) = metadata(headers, "/t.S/M", &DeadlineOptions::default());
        assert!(checked.is_ok());
        assert_eq!(metadata[GRPC_TIMEOUT], grpc_timeout::encode(Duration::from_millis(1500)));
        assert_eq!(metadata[header::CONTENT_TYPE], "application/grpc");
        assert!(!metadata.contains_key(header::CONTENT_LENGTH));
        // A malformed one is reported (the call fails with it when its body is read) and sets no deadline.
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_TIMEOUT, "soon".parse().unwrap());
        let (without, checked) = super::metadata(headers, "/t.S/M", &DeadlineOptions::default());
        assert_eq!(checked.unwrap_err().code(), Code::InvalidArgument);
        assert!(!without.contains_key(GRPC_TIMEOUT) && !without.contains_key(REQUEST_TIMEOUT));
    }

    /// The `grpc-timeout` the gRPC request gets for these headers, under a 2 s default for `/t.S/Short` and none
    /// for `/t.S/Feed`.
    fn deadline(path: &str, headers: &[(&'static str, &str)]) -> Option<HeaderValue> {
        let mut deadlines = DeadlineOptions::default();
        deadlines.methods.insert("/t.S/Short".into(), Duration::from_secs(2));
        deadlines.methods.insert("/t.S/Feed".into(), Duration::ZERO);
        let headers = headers.iter().map(|(name, value)| (HeaderName::from_static(name), value.parse().unwrap()));
        let (mut metadata, checked) = metadata(headers.collect(), path, &deadlines);
        assert!(checked.is_ok());
        metadata.remove(GRPC_TIMEOUT)
    }

    fn timeout(duration: Duration) -> Option<HeaderValue> {
        Some(grpc_timeout::encode(duration))
    }

    #[test]
    fn a_callers_deadline_is_bounded_by_the_methods_default() {
        let (hour, two) = (Duration::from_secs(3600), Duration::from_secs(2));
        // Either header, above the default: the default.
        assert_eq!(deadline("/t.S/Short", &[("x-request-timeout", "1h")]), timeout(two));
        assert_eq!(deadline("/t.S/Short", &[("grpc-timeout", "1H")]), timeout(two));
        assert_eq!(deadline("/t.S/Short", &[("grpc-timeout", "1H"), ("x-request-timeout", "1s")]), timeout(two));
        // Below it: as sent. The global default (30 s) bounds the methods without their own.
        assert_eq!(deadline("/t.S/Short", &[("grpc-timeout", "1500m")]), Some(HeaderValue::from_static("1500m")));
        assert_eq!(deadline("/t.S/Short", &[("x-request-timeout", "250ms")]), timeout(Duration::from_millis(250)));
        assert_eq!(deadline("/t.S/Other", &[("x-request-timeout", "1h")]), timeout(Duration::from_secs(30)));
        // No default (0s): no bound. No deadline sent: none added (the deadline layer applies the default).
        assert_eq!(deadline("/t.S/Feed", &[("x-request-timeout", "1h")]), timeout(hour));
        assert_eq!(deadline("/t.S/Short", &[]), None);
        // A malformed grpc-timeout is left for the deadline layer to ignore.
        assert_eq!(deadline("/t.S/Short", &[("grpc-timeout", "soon")]), Some(HeaderValue::from_static("soon")));
    }
}

//! From the gRPC response of the layered stack to the HTTP/JSON one: the response message as canonical proto3
//! JSON (every field present, defaults included, as grpc-gateway's `EmitUnpopulated`), a server stream as
//! newline-delimited JSON written as the messages arrive, and errors as a JSON `google.rpc.Status` with the HTTP
//! status grpc-gateway maps its code to.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::BoxError;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NDJSON: HeaderValue = HeaderValue::from_static("application/x-ndjson");
const PUSHBACK: &str = crate::layers::concurrency::RETRY_PUSHBACK_HEADER;
/// The gRPC status frame header bytes: a compressed-flag byte and a four-byte length.
const FRAME_HEADER: usize = 5;

/// The HTTP status for a gRPC code, as grpc-gateway's `HTTPStatusFromCode` has it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a status code"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// Renders messages and statuses as JSON with the types of one descriptor pool.
#[derive(Clone, Debug)]
pub(crate) struct Json {
    pool: DescriptorPool,
    options: SerializeOptions,
}

impl Json {
    pub fn new(pool: DescriptorPool) -> Self {
        Self { pool, options: SerializeOptions::new().skip_default_fields(false) }
    }

    /// One message, decoded as `descriptor`, as JSON.
    fn message(&self, descriptor: &MessageDescriptor, encoded: Bytes) -> Result<Vec<u8>, Status> {
        let message = DynamicMessage::decode(descriptor.clone(), encoded)
            .map_err(|error| Status::internal(format!("the service answered an undecodable message: {error}")))?;
        let mut out = Vec::with_capacity(128);
        let mut serializer = serde_json::Serializer::new(&mut out);
        message
            .serialize_with_options(&mut serializer, &self.options)
            .map_err(|error| Status::internal(format!("the answer has no JSON form: {error}")))?;
        Ok(out)
    }

    /// `status` as a JSON `google.rpc.Status`: `code` (the number), `message`, and `details`, each with its
    /// `@type` (BadRequest field violations, ErrorInfo, ...).
    pub fn status(&self, status: &Status) -> serde_json::Value {
        let details = self.details(status).unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
        serde_json::json!({ "code": status.code() as i32, "message": status.message(), "details": details })
    }

    /// The details of `status` (its `grpc-status-details-bin`) as JSON, when it has any this pool can describe.
    fn details(&self, status: &Status) -> Option<serde_json::Value> {
        if status.details().is_empty() {
            return None;
        }
        let descriptor = self.pool.get_message_by_name("google.rpc.Status")?;
        let decoded = DynamicMessage::decode(descriptor, status.details()).ok()?;
        let json = decoded.serialize_with_options(serde_json::value::Serializer, &self.options).ok()?;
        json.get("details").cloned()
    }

    /// An error answer: the JSON status with its HTTP status, `Retry-After` from a pushback, and
    /// `WWW-Authenticate` on 401.
    pub fn error(&self, status: &Status, headers: Option<&HeaderMap>) -> Response<Body> {
        let body = serde_json::to_vec(&self.status(status)).expect("JSON values serialize");
        let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
        *response.status_mut() = http_status(status.code());
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, JSON);
        if status.code() == Code::Unauthenticated {
            out.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // In the trailers-only headers, or in the metadata of a status a layer refused with.
        let pushback = headers
            .and_then(|h| h.get(PUSHBACK))
            .or_else(|| status.metadata().as_ref().get(PUSHBACK))
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(millis) = pushback {
            out.insert(header::RETRY_AFTER, HeaderValue::from(millis.div_ceil(1000).max(1)));
        }
        response
    }

    /// The HTTP answer to a unary call: the response message as JSON, or the error.
    pub async fn unary<B>(&self, output: &MessageDescriptor, response: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        if let Some(status) = Status::from_header_map(&parts.headers) {
            // Trailers-only: an error before any message (or an OK without one, which unary calls never are).
            let status =
                if status.code() == Code::Ok { Status::internal("the service sent no message") } else { status };
            return self.error(&status, Some(&parts.headers));
        }
        let collected = match body.collect().await {
            Ok(collected) => collected,
            Err(error) => return self.error(&Status::from_error(error.into()), None),
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        match Status::from_header_map(&trailers) {
            Some(status) if status.code() != Code::Ok => return self.error(&status, Some(&trailers)),
            _ => {}
        }
        let mut frames = BytesMut::from(collected.to_bytes());
        let json = match next_frame(&mut frames) {
            Ok(Some(message)) => self.message(output, message),
            Ok(None) => Err(Status::internal("the service sent no message")),
            Err(status) => Err(status),
        };
        match json {
            Ok(json) => {
                let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(json))));
                copy_headers(&parts.headers, response.headers_mut());
                response.headers_mut().insert(header::CONTENT_TYPE, JSON);
                response
            }
            Err(status) => self.error(&status, None),
        }
    }

    /// The HTTP answer to a server stream: 200 and one JSON message per line as each arrives, a failure after the
    /// first ending it with one `{"error": Status}` line; an error before the stream started is an error answer.
    pub fn stream<B>(&self, output: &MessageDescriptor, response: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let trailers_only = Status::from_header_map(&parts.headers);
        if let Some(status) = trailers_only.as_ref().filter(|s| s.code() != Code::Ok) {
            return self.error(status, Some(&parts.headers));
        }
        let lines = Ndjson {
            inner: body,
            buffered: BytesMut::new(),
            json: self.clone(),
            output: output.clone(),
            done: trailers_only.is_some(),
        };
        let mut response = Response::new(Body::new(lines));
        copy_headers(&parts.headers, response.headers_mut());
        response.headers_mut().insert(header::CONTENT_TYPE, NDJSON);
        response
    }
}

/// The response headers that are not gRPC's own (trace ids and the like).
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !name.as_str().starts_with("grpc-") && name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The next complete length-prefixed message in `buffered`, taken out of it.
fn next_frame(buffered: &mut BytesMut) -> Result<Option<Bytes>, Status> {
    if buffered.len() < FRAME_HEADER {
        return Ok(None);
    }
    let compressed = buffered[0];
    let len = u32::from_be_bytes([buffered[1], buffered[2], buffered[3], buffered[4]]) as usize;
    if compressed != 0 {
        return Err(Status::internal("the service compressed a message though no encoding was offered"));
    }
    if buffered.len() < FRAME_HEADER + len {
        return Ok(None);
    }
    buffered.advance(FRAME_HEADER);
    Ok(Some(buffered.split_to(len).freeze()))
}

pin_project_lite::pin_project! {
    /// A gRPC response body as newline-delimited JSON: only what one read of the inner body brought is held.
    struct Ndjson<B> {
        #[pin]
        inner: B,
        buffered: BytesMut,
        json: Json,
        output: MessageDescriptor,
        done: bool,
    }
}

impl<B> Ndjson<B> {
    fn error_line(json: &Json, status: &Status) -> Bytes {
        let mut line = serde_json::to_vec(&serde_json::json!({ "error": json.status(status) })).expect("JSON");
        line.push(b'\n');
        Bytes::from(line)
    }
}

impl<B> http_body::Body for Ndjson<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let mut lines = Vec::new();
            loop {
                match next_frame(this.buffered).and_then(|m| m.map(|m| this.json.message(this.output, m)).transpose()) {
                    Ok(Some(json)) => {
                        lines.extend_from_slice(&json);
                        lines.push(b'\n');
                    }
                    Ok(None) => break,
                    Err(status) => {
                        *this.done = true;
                        this.buffered.clear();
                        lines.extend_from_slice(&Self::error_line(this.json, &status));
                        break;
                    }
                }
            }
            if !lines.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(lines)))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.buffered.extend_from_slice(&data),
                    Err(frame) => {
                        *this.done = true;
                        let status = frame.trailers_ref().and_then(Status::from_header_map);
                        if let Some(status) = status.filter(|s| s.code() != Code::Ok) {
                            return Poll::Ready(Some(Ok(Frame::data(Self::error_line(this.json, &status)))));
                        }
                    }
                },
                Some(Err(error)) => {
                    *this.done = true;
                    let status = Status::from_error(error.into());
                    return Poll::Ready(Some(Ok(Frame::data(Self::error_line(this.json, &status)))));
                }
                None => *this.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_http_statuses_as_grpc_gateway_maps_them() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, http) in cases {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn frames_are_taken_whole_only() {
        let mut buffered = BytesMut::from(&[0u8, 0, 0, 0, 2, b'a'][..]);
        assert_eq!(next_frame(&mut buffered).unwrap(), None);
        buffered.extend_from_slice(b"b\x00\x00\x00\x00\x00");
        assert_eq!(next_frame(&mut buffered).unwrap().unwrap(), Bytes::from_static(b"ab"));
        assert_eq!(next_frame(&mut buffered).unwrap().unwrap(), Bytes::new());
        assert_eq!(next_frame(&mut buffered).unwrap(), None);
    }
}

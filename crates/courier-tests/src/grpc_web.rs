//! A gRPC-Web client built by hand, as a browser's fetch sends it: the 5-byte framed body (base64 for
//! `application/grpc-web-text`), over a real HTTP/1.1 (or HTTP/2) connection, and the answer's frames and trailer
//! frame taken apart. Used by the gRPC-Web tests (docs/grpc-web.md); the browser test is clients/web.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// `application/grpc-web`: binary frames.
pub const BINARY: &str = "application/grpc-web+proto";
/// `application/grpc-web-text`: the same frames, base64.
pub const TEXT: &str = "application/grpc-web-text";

/// Which HTTP a call goes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1, as a browser without TLS.
    One,
    /// HTTP/2 with prior knowledge, on the same listener as gRPC.
    Two,
}

/// One message as a gRPC(-Web) data frame: flag 0, big-endian length, the encoded message.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("small message").to_be_bytes());
    framed.extend_from_slice(&encoded);
    framed
}

/// What came back for one call.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status (200 for every gRPC outcome; 403 for an origin not allowed, 415 when gRPC-Web is off).
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The data frames' payloads, in order.
    pub messages: Vec<Bytes>,
    /// The trailer frame's fields (lower-case names), or the headers of a trailers-only answer.
    pub trailers: Vec<(String, String)>,
}

impl Answer {
    /// `grpc-status`, from the trailer frame or a trailers-only answer's headers.
    pub fn grpc_status(&self) -> Option<i32> {
        self.trailer("grpc-status").or_else(|| self.header("grpc-status")).and_then(|code| code.parse().ok())
    }

    /// A field of the trailer frame.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.iter().find(|(field, _)| field == name).map(|(_, value)| value.as_str())
    }

    /// A response header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The data frames decoded as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Vec<M> {
        self.messages.iter().map(|message| M::decode(message.clone()).expect("a well-formed message")).collect()
    }
}

/// POSTs `body` (a data frame, or several) to `path` on `addr` as gRPC-Web of `content_type` ([`BINARY`] or
/// [`TEXT`], which this base64-encodes), with `headers` added, and takes the answer apart.
///
/// # Errors
/// When the connection fails or closes without an answer (what a listener that does not speak HTTP/1.1 does).
pub async fn call(
    http: Http,
    addr: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let text = content_type.starts_with(TEXT);
    let body = if text { base64::engine::general_purpose::STANDARD.encode(body).into_bytes() } else { body.to_vec() };
    let mut request = Request::post(path)
        .header("host", addr)
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("a valid request");
    let (parts, body) = send(http, addr, request).await?;
    let mut body = body.to_vec();
    let answered_text = parts
        .headers
        .get("content-type")
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc-web-text"));
    if answered_text {
        body = decode_text(&body)?;
    }
    let (messages, trailers) = split_frames(&body)?;
    Ok(Answer { status: parts.status, headers: parts.headers, messages, trailers })
}

/// A CORS preflight for a gRPC-Web POST to `path` from `origin`, over HTTP/1.1: the status and headers.
///
/// # Errors
/// When the connection fails.
pub async fn preflight(addr: &str, path: &str, origin: &str) -> Result<(StatusCode, HeaderMap), String> {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("host", addr)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-grpc-web,x-user-agent")
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (parts, _) = send(Http::One, addr, request).await?;
    Ok((parts.status, parts.headers))
}

/// A header's value as text, for assertions.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(HeaderValue::to_str).and_then(Result::ok)
}

async fn send(http: Http, addr: &str, request: Request<Full<Bytes>>) -> Result<(http::response::Parts, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let io = TokioIo::new(stream);
    let response = match http {
        Http::One => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Http::Two => {
            let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(connection);
            let (mut parts, body) = request.into_parts();
            parts.uri = format!("http://{addr}{}", parts.uri).parse().expect("a valid URI");
            parts.headers.remove("host");
            sender.send_request(Request::from_parts(parts, body)).await
        }
    };
    let response = response.map_err(|e| format!("no answer: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("reading the body: {e}"))?.to_bytes();
    Ok((parts, body))
}

/// gRPC-Web text: each chunk the server wrote is base64 of its own, padding included, so the body is decoded
/// 4 characters at a time rather than as one string.
fn decode_text(body: &[u8]) -> Result<Vec<u8>, String> {
    if !body.len().is_multiple_of(4) {
        return Err(format!("a grpc-web-text body of {} characters is not base64", body.len()));
    }
    let mut decoded = Vec::with_capacity(body.len() / 4 * 3);
    for quantum in body.chunks(4) {
        base64::engine::general_purpose::STANDARD
            .decode_vec(quantum, &mut decoded)
            .map_err(|e| format!("a grpc-web-text body that is not base64: {e}"))?;
    }
    Ok(decoded)
}

type Frames = (Vec<Bytes>, Vec<(String, String)>);

/// The data frames and the trailer frame (flag 0x80, `name: value\r\n` lines) of a gRPC-Web body.
fn split_frames(mut body: &[u8]) -> Result<Frames, String> {
    let mut messages = Vec::new();
    let mut trailers = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(format!("a truncated frame header: {body:?}"));
        }
        let flag = body[0];
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body.get(5..5 + length).ok_or_else(|| format!("a frame of {length} bytes cut short"))?;
        if flag & 0x80 != 0 {
            let text = std::str::from_utf8(payload).map_err(|e| format!("a trailer frame that is not text: {e}"))?;
            for line in text.split("\r\n").filter(|line| !line.is_empty()) {
                let (name, value) =
                    line.split_once(':').ok_or_else(|| format!("a trailer line without ':' {line:?}"))?;
                trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        } else {
            messages.push(Bytes::copy_from_slice(payload));
        }
        body = &body[5 + length..];
    }
    Ok((messages, trailers))
}

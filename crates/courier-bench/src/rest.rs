//! The REST/JSON transport: the same calls as gRPC, sent as HTTP/1.1 requests with JSON bodies on the routes
//! courier's edge serves (docs/rest.md), one keep-alive connection per caller as an HTTP/1.1 client pool has it,
//! each answer decoded as JSON (what a client does with it), so the two transports are compared call for call.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::load::BenchError;
use crate::scenario::Auth;

/// One HTTP/1.1 keep-alive connection to the server, opened again after a failure.
pub(crate) struct Connection {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// Checks `target` (`http://host:port`); connects on the first call.
    pub(crate) fn new(target: &str) -> Result<Self, BenchError> {
        let uri: http::Uri = target.parse().map_err(|_| BenchError::Target(target.to_owned()))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) => Ok(Self { authority: authority.to_string(), sender: None }),
            _ => Err(BenchError::Target(format!("{target} (the REST transport speaks plain http://host:port)"))),
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, tonic::Status> {
        if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
            let unavailable = |e: std::io::Error| tonic::Status::unavailable(format!("connect: {e}"));
            let stream = TcpStream::connect(&self.authority).await.map_err(unavailable)?;
            stream.set_nodelay(true).map_err(unavailable)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| tonic::Status::unavailable(format!("HTTP/1.1 handshake: {e}")))?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// `method path` with an optional JSON `body`; an answer other than 200 becomes the `google.rpc.Status` its
    /// JSON body carries.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        auth: &Auth,
    ) -> Result<serde_json::Value, tonic::Status> {
        let mut request = Request::builder().method(method).uri(path).header(http::header::HOST, &self.authority);
        if let Some(value) = auth.header_value() {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&json).expect("JSON encodes"))
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).expect("a valid request");
        let sender = self.sender().await?;
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            Ok::<_, hyper::Error>((status, response.into_body().collect().await?.to_bytes()))
        };
        let (status, bytes) = match answer.await {
            Ok(answer) => answer,
            Err(e) => {
                self.sender = None;
                return Err(tonic::Status::unavailable(format!("HTTP/1.1: {e}")));
            }
        };
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| tonic::Status::internal(format!("HTTP {status}: the body is not JSON: {e}")))?;
        if status == StatusCode::OK {
            return Ok(json);
        }
        let code = json["code"].as_i64().and_then(|code| i32::try_from(code).ok()).unwrap_or(2);
        Err(tonic::Status::new(tonic::Code::from_i32(code), json["message"].as_str().unwrap_or_default()))
    }
}

//! Calls from a process to its own services (payments to users and risk in `courier up`) over in-memory
//! connections instead of a socket to its own listener.
//!
//! Through the listener, those calls shared the public drain: once it stopped accepting and sent GOAWAY, an
//! Authorize still in flight could no longer reach the co-located risk (it was stood in) or users. Over a
//! [`Connector`] they reach a second server on the same routes and layers (authentication, deadlines, metrics,
//! access log, fault injection, the same concurrency limit) that [`super::serve`] stops only after the public
//! server has drained. It also skips the kernel: no TCP, no TLS, for a call that never leaves the process.
//!
//! tonic has no in-process transport; its documented way (the `mock` example) is what this is: a
//! `tokio::io::duplex` pair per connection, one end handed to the server's incoming stream, the other returned
//! to the client's connector.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tower::Service;

/// Bytes buffered in each direction of one in-memory connection: four full HTTP/2 DATA frames.
const PIPE_BYTES: usize = 64 * 1024;
/// Connections waiting for the server to take them (a client opens one and reuses it).
const PENDING_CONNECTIONS: usize = 16;

/// The client end: a tonic connector (`Endpoint::connect_with_connector_lazy`) that opens in-memory connections
/// to this process's own server. Cloned into every channel that needs it.
#[derive(Clone, Debug)]
pub struct Connector {
    connections: mpsc::Sender<DuplexStream>,
}

/// The server end: the connections the [`Connector`] opened, as `serve_with_incoming` takes them.
pub(super) struct Incoming {
    connections: mpsc::Receiver<DuplexStream>,
}

/// A connector and the server end it reaches.
pub(super) fn pair() -> (Connector, Incoming) {
    let (tx, rx) = mpsc::channel(PENDING_CONNECTIONS);
    (Connector { connections: tx }, Incoming { connections: rx })
}

impl Service<http::Uri> for Connector {
    type Response = TokioIo<DuplexStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let connections = self.connections.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(PIPE_BYTES);
            connections.send(server).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "this process's own server has stopped")
            })?;
            Ok(TokioIo::new(client))
        })
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<DuplexStream, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|connection| connection.map(Ok))
    }
}

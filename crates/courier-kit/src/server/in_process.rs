//! Calls from a process to its own services (payments to users and risk in `courier up`) as direct calls into
//! the served stack, without a connection.
//!
//! Through the listener, those calls shared the public drain: once it stopped accepting and sent GOAWAY, an
//! Authorize still in flight could no longer reach the co-located risk (it was stood in) or users. And each one
//! paid for HTTP/2 twice (framing, HPACK, flow control, the socket) for a call that never leaves the process.
//! An [`InProcess`] handle calls the same routes through the same layers (authentication, deadlines, metrics,
//! access log, fault injection, one concurrency limit) as `http::Request`s handed to the tower service: the
//! message is still encoded and decoded (the layers and handlers work on gRPC bodies), nothing else is. It
//! works for as long as the process runs, drain included.

use std::sync::{Arc, OnceLock};

use http::{Request, Response};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};

/// The served stack as one callable service.
pub(super) type Stack = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// A handle on this process's own served stack, for [`crate::client::ResilientChannelBuilder::in_process`].
/// Handed out before [`super::serve`] has built the stack (the composition root builds clients first); a call
/// before then is UNAVAILABLE.
#[derive(Clone, Debug, Default)]
pub struct InProcess {
    stack: Arc<OnceLock<Stack>>,
}

impl InProcess {
    /// Calls the stack; errors as a transport's would be (the caller's resilient client maps them).
    pub(crate) async fn call(&self, request: Request<Body>) -> Result<Response<Body>, BoxError> {
        match self.stack.get() {
            Some(stack) => stack.clone().oneshot(request).await,
            None => Ok(tonic::Status::unavailable("this process's own services are not serving yet").into_http()),
        }
    }

    /// Sets the stack the handle calls (once: [`super::serve`] runs once per set of services).
    pub(super) fn install(&self, stack: Stack) {
        let _ = self.stack.set(stack);
    }
}

/// What tonic's server does with a layer's error before it reaches HTTP/2 (its `RecoverError`): a
/// `tonic::Status` becomes that status's response; anything else stays an error, which over HTTP/2 resets the
/// stream and here fails the call like a reset.
pub(super) fn recover<B, E>(result: Result<Response<B>, E>) -> Result<Response<Body>, BoxError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    match result {
        Ok(response) => Ok(response.map(Body::new)),
        Err(error) => match error.into().downcast::<tonic::Status>() {
            Ok(status) => Ok(status.into_http()),
            Err(error) => Err(error),
        },
    }
}

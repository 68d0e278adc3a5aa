//! The bodies of an outbound call: the request, buffered so that a retry can send it again, and the response,
//! which enforces the call's deadline while it streams and reports the call's final status to the breaker and
//! the throttle when it ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::{Code, Status};

use super::balance::EndpointBody;
use super::call::Upstream;
use super::retry::CodeSet;

/// The request body of a call, as the attempts send it.
pub(crate) enum Outgoing {
    /// Complete and small enough to send again.
    Buffered(Bytes),
    /// Sent once: still streaming when the call started, or over the buffer limit.
    Once(Option<Body>),
}

impl Outgoing {
    /// Reads the request body as far as it is ready, up to `limit` bytes. A unary request is encoded before the
    /// call starts, so it is all there; a stream that must wait for its next message, or a request over the
    /// limit, is sent once as it is (gRFC A6: such a call is committed).
    pub(crate) async fn read(mut body: Body, limit: usize) -> Result<Self, Status> {
        let mut chunks = Vec::new();
        let mut size = 0;
        loop {
            let frame = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Pending => Poll::Ready(None),
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
            })
            .await;
            match frame {
                // Not ready: a stream waiting for its caller.
                None => return Ok(Self::Once(Some(Body::new(Prefixed { chunks: chunks.into(), rest: body })))),
                Some(None) => return Ok(Self::Buffered(concat(chunks))),
                Some(Some(Err(status))) => return Err(status),
                Some(Some(Ok(frame))) => {
                    // gRPC requests carry no trailers; anything but data is dropped.
                    if let Ok(data) = frame.into_data() {
                        size += data.len();
                        chunks.push(data);
                        if size > limit {
                            let rest = Prefixed { chunks: chunks.into(), rest: body };
                            return Ok(Self::Once(Some(Body::new(rest))));
                        }
                    }
                }
            }
        }
    }

    /// Whether a retry can send the request again.
    pub(crate) fn is_replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    /// The body for the next attempt.
    pub(crate) fn next_body(&mut self) -> Body {
        match self {
            Self::Buffered(bytes) => Body::new(Full::new(bytes.clone())),
            Self::Once(body) => body.take().unwrap_or_default(),
        }
    }
}

fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            chunks.iter().for_each(|chunk| all.extend_from_slice(chunk));
            all.freeze()
        }
    }
}

pin_project_lite::pin_project! {
    /// What was read while trying to buffer, then the rest of the original body.
    struct Prefixed {
        chunks: VecDeque<Bytes>,
        #[pin]
        rest: Body,
    }
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        match this.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => this.rest.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.rest.is_end_stream()
    }
}

/// Reports how a committed call ended (its status is in the trailers) to the breaker and the throttle.
pub(crate) struct Outcome {
    upstream: Option<Arc<Upstream>>,
    throttle_failures: CodeSet,
}

impl Outcome {
    pub(crate) fn new(upstream: Arc<Upstream>, throttle_failures: CodeSet) -> Self {
        Self { upstream: Some(upstream), throttle_failures }
    }

    fn finish(&mut self, code: Code) {
        if let Some(upstream) = self.upstream.take() {
            upstream.record(code, self.throttle_failures, false);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        // The caller stopped reading before the end: the upstream did accept the call.
        if let Some(upstream) = self.upstream.take() {
            upstream.record_abandoned();
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body the resilient client hands to generated code.
    pub struct ResilientBody {
        #[pin]
        inner: EndpointBody,
        #[pin]
        timer: Option<Sleep>,
        deadline: Instant,
        outcome: Option<Outcome>,
        expired: bool,
    }
}

impl ResilientBody {
    /// `outcome` is `None` when the status was already known from the headers (trailers-only answer).
    pub(crate) fn new(inner: EndpointBody, deadline: Instant, outcome: Option<Outcome>) -> Self {
        Self { inner, timer: None, deadline, outcome, expired: false }
    }
}

impl HttpBody for ResilientBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(outcome)) = (frame.trailers_ref(), this.outcome.as_mut()) {
                    let code = trailers.get("grpc-status").map_or(Code::Unknown, |v| Code::from_bytes(v.as_bytes()));
                    outcome.finish(code);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(outcome) = this.outcome.as_mut() {
                    outcome.finish(Code::Unavailable);
                }
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                // Ended without trailers: a broken answer (tonic reports it as an error).
                if let Some(outcome) = this.outcome.as_mut() {
                    outcome.finish(Code::Internal);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.is_none() {
                    this.timer.set(Some(tokio::time::sleep_until(*this.deadline)));
                }
                ready!(this.timer.as_pin_mut().expect("the timer was just set").poll(cx));
                *this.expired = true;
                if let Some(outcome) = this.outcome.as_mut() {
                    outcome.finish(Code::DeadlineExceeded);
                }
                Poll::Ready(Some(Err(Status::deadline_exceeded("deadline exceeded while the response was streaming"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

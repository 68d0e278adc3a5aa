//! A response body that tells an observer when the call is over.
//!
//! A gRPC call ends when its response body ends (with trailers carrying `grpc-status`), not when the handler
//! returns headers: a server stream can run for minutes after. Layers that must act at the real end (release a
//! concurrency permit, log the final status) wrap the body in [`ObservedBody`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// Something that wants to know how a response body ended. It is dropped exactly once, when the body reaches its
/// end or is itself dropped (client gone), which is where it does its work.
pub trait BodyObserver: Send + 'static {
    /// Called with the trailers, if the body sends any, just before the observer is dropped.
    fn on_trailers(&mut self, _trailers: &HeaderMap) {}
}

impl BodyObserver for () {}

impl<O: BodyObserver> BodyObserver for Option<O> {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(observer) = self {
            observer.on_trailers(trailers);
        }
    }
}

pin_project_lite::pin_project! {
    /// Wraps `B`, handing trailers to `O` and dropping `O` when the body is done.
    pub struct ObservedBody<B, O> {
        #[pin]
        inner: B,
        observer: Option<O>,
    }
}

impl<B, O> ObservedBody<B, O> {
    /// Wraps `inner`; `observer` is dropped when `inner` ends or the wrapper is dropped.
    pub fn new(inner: B, observer: O) -> Self {
        Self { inner, observer: Some(observer) }
    }
}

/// An empty body observed by no one: what a layer's refusal (a trailers-only response) carries.
impl<B: Default, O> Default for ObservedBody<B, O> {
    fn default() -> Self {
        Self { inner: B::default(), observer: None }
    }
}

impl<B, O> Body for ObservedBody<B, O>
where
    B: Body<Data = Bytes>,
    O: BodyObserver,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(observer)) = (frame.trailers_ref(), this.observer.as_mut()) {
                    observer.on_trailers(trailers);
                    *this.observer = None;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => *this.observer = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

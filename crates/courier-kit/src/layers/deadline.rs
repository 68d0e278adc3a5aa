//! Server-side deadlines: every call runs against one, the caller's or the method's default.
//!
//! - The caller's `grpc-timeout` header sets it; without one (or with a malformed one, which is ignored as tonic
//!   ignores it) the method's default from [`DeadlineOptions`] applies.
//! - A caller's budget below the method's minimum is refused at once with DEADLINE_EXCEEDED, before any handler
//!   work: it could not be served in time, and trying only takes capacity from calls that can.
//! - The deadline is put in the request's extensions ([`RequestDeadline`], read by the overload check of
//!   [`super::concurrency`]) and made the task-local [`crate::deadline::current`] around the inner service, so a
//!   handler and the resilient client it calls through see it without passing it by hand.
//! - When it passes before the handler answers, the server answers DEADLINE_EXCEEDED. A caller's deadline also
//!   ends a response stream still running (its trailers say DEADLINE_EXCEEDED), as the gRPC spec has it. A default
//!   deadline bounds only the handler's answer (for a stream, its setup): a caller that sent no deadline for a live
//!   feed such as a health Watch asked for it to run as long as it likes.
//!
//! tonic's own server timeout is one global value for every method and answers CANCELLED; this layer gives
//! per-method defaults and minimums and the spec's code.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::deadline::{self, grpc_timeout};

/// tonic answers CANCELLED at the caller's deadline from a timer that starts a moment before this layer's; this
/// layer's timer fires this much earlier so that the caller hears DEADLINE_EXCEEDED, never CANCELLED.
const TIMER_LEAD: Duration = Duration::from_millis(1);

/// Deadlines of incoming calls, the `[server.deadlines]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineOptions {
    /// Deadline of a call whose caller sent none; `0s` means none. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub default: Duration,
    /// Per full method path (`/courier.payments.v1.PaymentService/Authorize`), a default replacing `default`
    /// (`0s`: none for that method). Default empty.
    #[serde(with = "crate::config::durations")]
    pub methods: BTreeMap<String, Duration>,
    /// A caller's budget below this is refused at once with DEADLINE_EXCEEDED. Default 1 ms.
    #[serde(with = "humantime_serde")]
    pub minimum: Duration,
    /// Per full method path, a minimum replacing `minimum`. Default empty.
    #[serde(with = "crate::config::durations")]
    pub minimums: BTreeMap<String, Duration>,
}

impl Default for DeadlineOptions {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(30),
            methods: BTreeMap::new(),
            minimum: Duration::from_millis(1),
            minimums: BTreeMap::new(),
        }
    }
}

impl DeadlineOptions {
    /// The default deadline of `path`, `None` when it has none.
    pub fn default_for(&self, path: &str) -> Option<Duration> {
        let timeout = if self.methods.is_empty() { None } else { self.methods.get(path).copied() };
        Some(timeout.unwrap_or(self.default)).filter(|timeout| !timeout.is_zero())
    }

    /// The smallest budget `path` accepts from a caller.
    pub fn minimum_for(&self, path: &str) -> Duration {
        let minimum = if self.minimums.is_empty() { None } else { self.minimums.get(path).copied() };
        minimum.unwrap_or(self.minimum)
    }
}

/// The deadline a call runs against, in the request's extensions for the layers inside this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestDeadline {
    /// When the call's time is up.
    pub at: Instant,
    /// `true` when the caller sent it, `false` for the method's default.
    pub from_caller: bool,
}

/// Layer for [`Deadline`].
#[derive(Clone, Debug)]
pub struct DeadlineLayer {
    options: Arc<DeadlineOptions>,
}

impl DeadlineLayer {
    /// Applies `options` to every call.
    pub fn new(options: &DeadlineOptions) -> Self {
        Self { options: Arc::new(options.clone()) }
    }

    /// The options this layer applies, shared (the REST edge bounds its callers' deadlines by the same defaults).
    pub fn options(&self) -> &Arc<DeadlineOptions> {
        &self.options
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner, options: self.options.clone() }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    options: Arc<DeadlineOptions>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<DeadlineBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let now = Instant::now();
        let path = request.uri().path();
        let sent = request.headers().get(grpc_timeout::HEADER).map(|value| grpc_timeout::parse(value.as_bytes()));
        let (timeout, from_caller) = match sent {
            Some(Ok(timeout)) => {
                let minimum = self.options.minimum_for(path);
                if timeout < minimum {
                    return ResponseFuture::Refused { timeout, minimum };
                }
                (Some(timeout), true)
            }
            Some(Err(error)) => {
                tracing::debug!(target: "courier::rpc", method = path, %error, "ignoring the caller's deadline");
                (self.options.default_for(path), false)
            }
            None => (self.options.default_for(path), false),
        };
        // No deadline, or one too far away to represent: nothing to enforce.
        let Some(at) = timeout.and_then(|timeout| now.checked_add(timeout)) else {
            return ResponseFuture::Unbounded { inner: self.inner.call(request) };
        };
        request.extensions_mut().insert(RequestDeadline { at, from_caller });
        let inner = deadline::sync_scope(at, || self.inner.call(request));
        let lead = if from_caller { TIMER_LEAD } else { Duration::ZERO };
        ResponseFuture::Bounded {
            inner: deadline::scope(at, inner),
            timer: tokio::time::sleep_until(at.checked_sub(lead).unwrap_or(at)),
            at,
            from_caller,
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Deadline`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// No deadline applies.
        Unbounded { #[pin] inner: F },
        /// Running against `at`.
        Bounded {
            #[pin] inner: TaskLocalFuture<Instant, F>,
            #[pin] timer: Sleep,
            at: Instant,
            from_caller: bool,
        },
        /// The caller's budget was below the minimum.
        Refused { timeout: Duration, minimum: Duration },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<DeadlineBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Unbounded { inner } => {
                let response = ready!(inner.poll(cx))?;
                Poll::Ready(Ok(response.map(|body| DeadlineBody::new(body, None))))
            }
            ResponseFutureProj::Bounded { inner, timer, at, from_caller } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    let enforce = from_caller.then_some(*at);
                    return Poll::Ready(result.map(|response| response.map(|body| DeadlineBody::new(body, enforce))));
                }
                ready!(timer.poll(cx));
                let status = tonic::Status::deadline_exceeded("deadline exceeded before the server answered");
                Poll::Ready(Ok(status.into_http()))
            }
            ResponseFutureProj::Refused { timeout, minimum } => {
                let status = tonic::Status::deadline_exceeded(format!(
                    "the call's deadline ({timeout:?}) is below the {minimum:?} this method needs; not started"
                ));
                Poll::Ready(Ok(status.into_http()))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body; when the caller set the deadline, it ends the stream with DEADLINE_EXCEEDED at the
    /// deadline and is polled with [`crate::deadline::current`] set.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Option<Sleep>,
        at: Option<Instant>,
        expired: bool,
    }
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, at: Option<Instant>) -> Self {
        Self { inner, timer: None, at, expired: false }
    }
}

impl<B: Default> Default for DeadlineBody<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        let Some(at) = *this.at else { return this.inner.poll_frame(cx) };
        let polled = deadline::sync_scope(at, || this.inner.as_mut().poll_frame(cx));
        if polled.is_ready() {
            return polled;
        }
        // The timer exists only for a stream that had to wait: a unary answer is complete when first polled.
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep_until(at)));
        }
        ready!(this.timer.as_pin_mut().expect("the timer was just set").poll(cx));
        *this.expired = true;
        let mut trailers = HeaderMap::new();
        let status = tonic::Status::deadline_exceeded("deadline exceeded while the response was streaming");
        status.add_header(&mut trailers).expect("a plain status always makes headers");
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // A body that may be cut short with trailers has no exact size.
        if self.at.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_method_defaults_and_minimums_replace_the_global_ones() {
        let mut options = DeadlineOptions::default();
        options.methods.insert("/a.S/Fast".into(), Duration::from_millis(250));
        options.methods.insert("/a.S/Feed".into(), Duration::ZERO);
        options.minimums.insert("/a.S/Fast".into(), Duration::from_millis(5));
        assert_eq!(options.default_for("/a.S/Fast"), Some(Duration::from_millis(250)));
        assert_eq!(options.default_for("/a.S/Feed"), None);
        assert_eq!(options.default_for("/a.S/Other"), Some(Duration::from_secs(30)));
        assert_eq!(options.minimum_for("/a.S/Fast"), Duration::from_millis(5));
        assert_eq!(options.minimum_for("/a.S/Other"), Duration::from_millis(1));
    }
}

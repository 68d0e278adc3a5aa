//! One outbound call: its deadline, the breaker's admission, and the attempts of gRFC A6.
//!
//! The deadline is `min(inbound deadline - reserve, now + max_timeout)` (and any `grpc-timeout` the caller set
//! itself); it covers every attempt and the backoff between them, and each attempt sends what is left of it as
//! `grpc-timeout`. An attempt whose answer comes trailers-only (status in the headers, no message) may be retried;
//! one that got response headers is committed (A6), and its final status, in the trailers, reaches the breaker
//! and the throttle when the body ends ([`super::body::ResilientBody`]).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, Service, ServiceExt};

use super::balance::{Dispatch, Endpoints};
use super::body::{Outcome, Outgoing, ResilientBody};
use super::breaker::{self, Breaker};
use super::metrics::ClientMetrics;
use super::retry::{self, Backoff, CodeSet, Failed, MethodTable, Pushback, Throttle, PREVIOUS_ATTEMPTS_HEADER};
use crate::deadline::grpc_timeout;

/// Everything one upstream's calls share.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub name: String,
    pub reserve: Duration,
    pub methods: MethodTable,
    pub retry_buffer_bytes: usize,
    pub breaker: Option<Arc<Breaker>>,
    pub throttle: Option<Throttle>,
    pub endpoints: Arc<Endpoints>,
    pub metrics: ClientMetrics,
    /// `authorization` sent on every call that has none of its own (see `ResilientChannelBuilder::bearer`).
    pub authorization: Option<HeaderValue>,
}

impl Upstream {
    /// Accounts one attempt's final status.
    pub(crate) fn record(&self, code: Code, throttle_failures: CodeSet, told_to_stop: bool) {
        if let Some(breaker) = &self.breaker {
            breaker.record(!breaker::is_failure(code));
            self.metrics.reject_probability.set(breaker.reject_probability());
        }
        if let Some(throttle) = &self.throttle {
            if code == Code::Ok {
                throttle.success();
            } else if told_to_stop || throttle_failures.contains(code) {
                throttle.failure();
            }
        }
    }

    /// The caller dropped a committed call before its end: the upstream did accept it.
    pub(crate) fn record_abandoned(&self) {
        if let Some(breaker) = &self.breaker {
            breaker.record(true);
        }
    }

    fn fail(&self, code: Code, what: &str) -> BoxError {
        Box::new(Status::new(code, format!("upstream {}: {what}", self.name)))
    }
}

/// The call's deadline, or DEADLINE_EXCEEDED when the inbound call has no time left to give.
fn deadline(
    upstream: &Upstream,
    max_timeout: Duration,
    inbound: Option<Instant>,
    headers: &HeaderMap,
) -> Result<Instant, BoxError> {
    let now = Instant::now();
    let mut budget = max_timeout;
    if let Some(inbound) = inbound {
        let left = inbound.saturating_duration_since(now);
        match left.checked_sub(upstream.reserve).filter(|budget| !budget.is_zero()) {
            Some(left) => budget = budget.min(left),
            None => {
                let what =
                    format!("not called: {left:?} left of the inbound deadline, {:?} reserved", upstream.reserve);
                return Err(upstream.fail(Code::DeadlineExceeded, &what));
            }
        }
    }
    // A timeout the caller set on the request itself (`tonic::Request::set_timeout`) is honoured too.
    if let Some(Ok(own)) = headers.get(grpc_timeout::HEADER).map(|value| grpc_timeout::parse(value.as_bytes())) {
        budget = budget.min(own);
    }
    Ok(now.checked_add(budget).unwrap_or(now))
}

/// Runs one call to completion of its response headers (the body follows in [`ResilientBody`]).
pub(crate) async fn run(
    upstream: Arc<Upstream>,
    mut dispatch: Dispatch,
    mut request: Request<Body>,
    inbound: Option<Instant>,
) -> Result<Response<ResilientBody>, BoxError> {
    if let Some(value) = &upstream.authorization {
        request.headers_mut().entry(http::header::AUTHORIZATION).or_insert_with(|| value.clone());
    }
    let plan = upstream.methods.plan(request.uri().path());
    let deadline = deadline(&upstream, plan.max_timeout, inbound, request.headers())?;
    let (parts, body) = request.into_parts();
    let mut outgoing = match &plan.retry {
        Some(_) => Outgoing::read(body, upstream.retry_buffer_bytes).await?,
        None => Outgoing::Once(Some(body)),
    };
    let retry = plan.retry.as_ref().filter(|_| outgoing.is_replayable());
    let mut backoff = retry.map(Backoff::new);
    let mut parts = Some(parts);
    let mut attempts = 0;
    loop {
        if upstream.endpoints.none_can_serve() {
            upstream.metrics.no_endpoint.inc();
            return Err(upstream.fail(Code::Unavailable, "no endpoint is serving"));
        }
        if upstream.breaker.as_ref().is_some_and(|breaker| !breaker.admit()) {
            upstream.metrics.circuit_open.inc();
            return Err(upstream.fail(Code::Unavailable, "circuit open: recent calls failed, call refused locally"));
        }
        attempts += 1;
        let head = match (&retry, attempts) {
            // More attempts may follow: keep the head to copy again.
            (Some(plan), n) if n < plan.max_attempts => copy(parts.as_ref().expect("kept for retries")),
            _ => parts.take().expect("the last attempt takes the head"),
        };
        let mut request = Request::from_parts(head, outgoing.next_body());
        let headers = request.headers_mut();
        headers.insert(grpc_timeout::HEADER, grpc_timeout::encode(deadline.saturating_duration_since(Instant::now())));
        if attempts > 1 {
            headers.insert(PREVIOUS_ATTEMPTS_HEADER, HeaderValue::from(attempts - 1));
        }

        let sent = tokio::time::timeout_at(deadline, async { dispatch.ready().await?.call(request).await })
            .await
            .unwrap_or_else(|elapsed| Err(elapsed.into()));
        let (code, answer) = match sent {
            // tonic's channel also runs a timer from the `grpc-timeout` header (answering CANCELLED) that can fire
            // in the same tick as this one: any failure once the deadline has passed is the deadline.
            Err(_) if Instant::now() >= deadline => {
                upstream.record(Code::DeadlineExceeded, plan.throttle_failures, false);
                return Err(upstream.fail(Code::DeadlineExceeded, "no answer within the call's deadline"));
            }
            Err(error) => (Code::Unavailable, Err(error)),
            Ok(response) => match response.headers().get("grpc-status") {
                Some(code) => (Code::from_bytes(code.as_bytes()), Ok(response)),
                None => {
                    // Response headers: the call is committed; its status comes with the trailers.
                    let outcome = Outcome::new(upstream.clone(), plan.throttle_failures);
                    return Ok(response.map(|body| ResilientBody::new(body, deadline, Some(outcome))));
                }
            },
        };
        let pushback = answer.as_ref().ok().and_then(|response| Pushback::from_headers(response.headers()));
        upstream.record(code, plan.throttle_failures, pushback == Some(Pushback::Stop));

        let failed = Failed { code, pushback, attempts, time_left: deadline.saturating_duration_since(Instant::now()) };
        let delay = match (retry, backoff.as_mut()) {
            (Some(plan), Some(backoff)) if code != Code::Ok => {
                retry::retry_delay(plan, &failed, backoff, upstream.throttle.as_ref(), &mut rand::thread_rng())
            }
            _ => None,
        };
        match delay {
            Some(delay) => {
                upstream.metrics.retries.inc();
                tokio::time::sleep(delay).await;
            }
            None => {
                return match answer {
                    Ok(response) => Ok(response.map(|body| ResilientBody::new(body, deadline, None))),
                    Err(error) => Err(transport_status(&upstream, error)),
                };
            }
        }
    }
}

/// A copy of a request head for one more attempt.
fn copy(head: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    *request.extensions_mut() = head.extensions.clone();
    request.into_parts().0
}

/// A transport failure as the status the caller sees: tonic's reading of it, UNAVAILABLE when it has none.
fn transport_status(upstream: &Upstream, error: BoxError) -> BoxError {
    match Status::try_from_error(error) {
        Ok(status) if status.code() != Code::Unknown => Box::new(status),
        Ok(status) => upstream.fail(Code::Unavailable, status.message()),
        Err(error) => upstream.fail(Code::Unavailable, &error.to_string()),
    }
}

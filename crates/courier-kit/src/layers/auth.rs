//! Authentication and per-method authorization in front of every service (see [`crate::auth`]).
//!
//! Each call's credentials (bearer token, else mTLS client certificate) are verified and its method's rule
//! applied before any handler runs: no credentials or bad ones answer UNAUTHENTICATED with a short reason, a
//! principal without the method's scope (or a method without a rule) answers PERMISSION_DENIED, one over its
//! rate limit (`[auth.rate_limit]`) RESOURCE_EXHAUSTED. The principal
//! goes into the request's extensions for handlers. Every refusal, and every call of an audited
//! (money-moving) method, writes one line to the `audit` tracing target: subject, method, outcome, code. A
//! refusal's line is written at once; an admitted audited call's when the call ends (its response body ends, see
//! [`super::observed_body`]), with the final gRPC status the handler answered: "allowed" says who got in, the code
//! says whether money moved.
//!
//! Without an [`Authenticator`] (no `[auth]` table) the layer passes every call through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::call_end::CallStatus;
use super::observed_body::{BodyObserver, ObservedBody};
use crate::auth::{Authenticator, MethodScopes, Principal, Rule};

/// Layer for [`Auth`].
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    gate: Option<Arc<Gate>>,
}

#[derive(Debug)]
struct Gate {
    authenticator: Arc<Authenticator>,
    scopes: MethodScopes,
}

impl AuthLayer {
    /// Checks calls with `authenticator` against `scopes`; `None` lets every call through.
    pub fn new(authenticator: Option<Arc<Authenticator>>, scopes: MethodScopes) -> Self {
        Self { gate: authenticator.map(|authenticator| Arc::new(Gate { authenticator, scopes })) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, gate: self.gate.clone() }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    gate: Option<Arc<Gate>>,
}

/// An admitted call: who it proceeds as (`None` for an open method called without valid credentials), and, for an
/// audited method, the audit line it writes when it ends.
struct Admission {
    principal: Option<Principal>,
    audit: Option<AuditRecord>,
}

impl Gate {
    /// The admission of the call, or its refusal.
    fn admit<B>(&self, request: &Request<B>) -> Result<Admission, tonic::Status> {
        let path = request.uri().path();
        let rule = self.scopes.rule(path);
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let peer_certs =
            request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs);
        let peer_certs = peer_certs.as_deref().map(Vec::as_slice);
        // Open methods (health) are never refused: a probe that sends a stale token still gets its answer.
        if rule == Some(Rule::Open) {
            let principal = self.authenticator.authenticate(authorization, peer_certs).ok();
            return Ok(Admission { principal, audit: None });
        }
        let principal = match self.authenticator.authenticate(authorization, peer_certs) {
            Ok(principal) => principal,
            Err(error) => {
                audit(None, path, "unauthenticated", tonic::Code::Unauthenticated, &error.to_string());
                return Err(tonic::Status::unauthenticated(error.to_string()));
            }
        };
        let denied = match rule {
            Some(Rule::Open | Rule::Authenticated) => None,
            Some(Rule::Scope(scope)) if principal.has_scope(scope) => None,
            Some(Rule::Scope(scope)) => Some(format!("missing scope {scope}")),
            None => Some("no access rule for this method".to_owned()),
        };
        if let Some(reason) = denied {
            audit(Some(&principal), path, "denied", tonic::Code::PermissionDenied, &reason);
            return Err(tonic::Status::permission_denied(reason));
        }
        if !self.authenticator.within_rate(&principal) {
            let reason = "rate limit exceeded for this caller";
            audit(Some(&principal), path, "limited", tonic::Code::ResourceExhausted, reason);
            return Err(tonic::Status::resource_exhausted(reason));
        }
        let audit = self.scopes.is_audited(path).then(|| AuditRecord {
            subject: principal.subject.clone(),
            merchant: principal.merchant.clone(),
            method: path.to_owned(),
            status: CallStatus::default(),
        });
        Ok(Admission { principal: Some(principal), audit })
    }
}

/// The audit line of an admitted audited call, written when it is dropped: at the end of the response body, with
/// the final status from the trailers (or from the headers of a trailers-only answer).
pub struct AuditRecord {
    subject: String,
    merchant: Option<String>,
    method: String,
    status: CallStatus,
}

impl BodyObserver for AuditRecord {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.status.trailers(trailers);
    }
}

impl Drop for AuditRecord {
    fn drop(&mut self) {
        // No status at all: the body was dropped mid-call (the client cancelled, the connection went away).
        let reason = if self.status.code().is_some() { "" } else { "the call ended without a status" };
        let code = self.status.final_code();
        let merchant = self.merchant.as_deref().unwrap_or("-");
        tracing::info!(
            target: "audit",
            subject = self.subject.as_str(),
            merchant,
            method = self.method.as_str(),
            outcome = "allowed",
            code = ?code,
            reason
        );
    }
}

/// One audit line of a refusal, with the status it was refused with.
fn audit(principal: Option<&Principal>, method: &str, outcome: &str, code: tonic::Code, reason: &str) {
    let subject = principal.map_or("-", |p| p.subject.as_str());
    let merchant = principal.and_then(|p| p.merchant.as_deref()).unwrap_or("-");
    tracing::info!(target: "audit", subject, merchant, method, outcome, code = ?code, reason);
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Default,
{
    type Response = Response<ObservedBody<B, Option<AuditRecord>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let mut audit = None;
        if let Some(gate) = &self.gate {
            match gate.admit(&request) {
                Ok(admission) => {
                    if let Some(principal) = admission.principal {
                        request.extensions_mut().insert(principal);
                    }
                    audit = admission.audit;
                }
                Err(status) => return ResponseFuture::Refused { response: Some(status.into_http()) },
            }
        }
        ResponseFuture::Admitted { inner: self.inner.call(request), audit }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Auth`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// Passed to the inner service; an audited call's record rides on its response body.
        Admitted { #[pin] inner: F, audit: Option<AuditRecord> },
        /// Refused; the response, taken on first poll.
        Refused { response: Option<Response<ObservedBody<B, Option<AuditRecord>>>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ObservedBody<B, Option<AuditRecord>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Admitted { inner, audit } => {
                let result = std::task::ready!(inner.poll(cx));
                let mut audit = audit.take();
                Poll::Ready(match result {
                    Ok(response) => {
                        // A trailers-only answer (an error before any message) has its status in the headers.
                        if let Some(record) = audit.as_mut() {
                            record.status = CallStatus::from_headers(response.headers());
                        }
                        Ok(response.map(|body| ObservedBody::new(body, audit)))
                    }
                    Err(error) => {
                        if let Some(record) = audit.as_mut() {
                            record.status = CallStatus::FAILED;
                        }
                        Err(error)
                    }
                })
            }
            ResponseFutureProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

//! Building a [`ResilientChannel`] from [`UpstreamOptions`] and a few shortcuts.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{ClientTlsConfig, Endpoint};

use super::balance;
use super::breaker::Breaker;
use super::call::Upstream;
use super::metrics::ClientMetrics;
use super::options::{BreakerOptions, MethodOptions, RetryPolicy, ThrottleOptions, UpstreamOptions};
use super::retry::{MethodTable, Throttle};
use super::ResilientChannel;
use crate::server::InProcess;

/// Keepalive PINGs find a replica that vanished without closing its connection (as the server side does).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No endpoint to call.
    #[error("upstream {0}: no endpoint URL")]
    NoEndpoints(String),
    /// An endpoint URL does not parse.
    #[error("upstream {upstream}: invalid endpoint URL {url:?}: {reason}")]
    InvalidUrl {
        /// The upstream.
        upstream: String,
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is out of range.
    #[error("upstream {upstream}: {key} {reason}")]
    Invalid {
        /// The upstream.
        upstream: String,
        /// The option, as its configuration key.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Builds a [`ResilientChannel`]; see [`ResilientChannel::builder`].
#[derive(Debug, Clone)]
pub struct ResilientChannelBuilder {
    name: String,
    options: UpstreamOptions,
    /// Not part of [`UpstreamOptions`]: it holds certificates, not settings (see [`crate::tls::TlsConfig`]).
    tls: Option<ClientTlsConfig>,
    /// Sent as `authorization: Bearer <token>` on every call (a service's own token).
    bearer: Option<http::HeaderValue>,
    /// Calls go to this process's own server instead of `options.urls`.
    in_process: Option<InProcess>,
}

impl ResilientChannelBuilder {
    pub(super) fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), options: UpstreamOptions::default(), tls: None, bearer: None, in_process: None }
    }

    /// Replaces every option (endpoint URLs included) with `options`.
    pub fn options(mut self, options: UpstreamOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a replica (`http://host:port`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.options.urls.push(url.into());
        self
    }

    /// Adds replicas.
    pub fn endpoints<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.options.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Time kept back from the inbound deadline (`reserve`).
    pub fn reserve(mut self, reserve: Duration) -> Self {
        self.options.reserve = reserve;
        self
    }

    /// The longest deadline of an outbound call (`max_timeout`).
    pub fn max_timeout(mut self, max_timeout: Duration) -> Self {
        self.options.max_timeout = max_timeout;
        self
    }

    /// Describes one method (full path) or a whole service (`/pkg.Service/`).
    pub fn method(mut self, path: impl Into<String>, method: MethodOptions) -> Self {
        self.options.methods.insert(path.into(), method);
        self
    }

    /// The retry policy of idempotent methods without their own.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// Retry throttling.
    pub fn throttle(mut self, throttle: ThrottleOptions) -> Self {
        self.options.throttle = throttle;
        self
    }

    /// The circuit breaker.
    pub fn breaker(mut self, breaker: BreakerOptions) -> Self {
        self.options.breaker = breaker;
        self
    }

    /// Calls every replica over TLS (mutual when `tls` has an identity); the URLs must then be `https://`, and
    /// without it they must be `http://`, so a configuration cannot fall back to plaintext by a typo.
    pub fn tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Sends `authorization: Bearer <token>` on every call that carries no `authorization` of its own (a
    /// service's own token for servers with `[auth]`). The value is marked sensitive, so it is never logged.
    pub fn bearer(mut self, token: Option<&str>) -> Result<Self, BuildError> {
        self.bearer = match token {
            Some(token) => {
                let mut value = http::HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    BuildError::Invalid { upstream: self.name.clone(), key: "token", reason: "not a header value" }
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(self)
    }

    /// Calls this process's own services (see [`crate::server::ServiceSet::in_process`]) instead of replicas at
    /// URLs: straight into the served stack, no connection, no TLS, no balancing and no health watching (the
    /// process's own drain must not turn its own calls away). Deadlines, retries and the breaker still apply.
    pub fn in_process(mut self, own: InProcess) -> Self {
        self.in_process = Some(own);
        self
    }

    /// Whether to follow the replicas' health (on by default).
    pub fn health_check(mut self, enabled: bool) -> Self {
        self.options.health_check = enabled;
        self
    }

    /// Checks the options and starts the channel (its balancer and health watchers). Must run inside a Tokio
    /// runtime; connections are made lazily.
    pub fn build(self) -> Result<ResilientChannel, BuildError> {
        let Self { name, options, tls, bearer, in_process } = self;
        validate(&name, &options)?;
        if let Some(own) = in_process {
            let dispatch = balance::Dispatch::InProcess(own);
            return Ok(finish(name, &options, bearer, breaker(&options), dispatch, balance::in_process()));
        }
        if options.urls.is_empty() {
            return Err(BuildError::NoEndpoints(name));
        }
        let endpoints = options
            .urls
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared(url.clone()).map_err(|error| BuildError::InvalidUrl {
                    upstream: name.clone(),
                    url: url.clone(),
                    reason: error.to_string(),
                })?;
                let invalid = |reason: &str| BuildError::InvalidUrl {
                    upstream: name.clone(),
                    url: url.clone(),
                    reason: reason.to_owned(),
                };
                // tonic would connect in plaintext to an http:// URL even with TLS configured.
                let endpoint = match (&tls, endpoint.uri().scheme_str()) {
                    (Some(tls), Some("https")) => {
                        endpoint.tls_config(tls.clone()).map_err(|error| invalid(&error.to_string()))?
                    }
                    (Some(_), _) => return Err(invalid("TLS is configured (tls.ca), so it must be https://")),
                    (None, Some("https")) => {
                        return Err(invalid("https:// needs TLS configured: the CA to trust (tls.ca)"))
                    }
                    (None, _) => endpoint,
                };
                Ok(endpoint
                    .connect_timeout(options.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true))
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let channels = endpoints.iter().map(|endpoint| (endpoint.uri().to_string(), endpoint.connect_lazy())).collect();
        let health = options.health_check.then(|| options.health_service.clone());
        let breaker = breaker(&options);
        let (dispatch, endpoints) = balance::start(&name, channels, health, breaker.clone());
        Ok(finish(name, &options, bearer, breaker, dispatch, endpoints))
    }
}

fn breaker(options: &UpstreamOptions) -> Option<Arc<Breaker>> {
    options.breaker.enabled.then(|| Arc::new(Breaker::new(&options.breaker)))
}

fn finish(
    name: String,
    options: &UpstreamOptions,
    bearer: Option<http::HeaderValue>,
    breaker: Option<Arc<Breaker>>,
    dispatch: balance::Dispatch,
    endpoints: Arc<balance::Endpoints>,
) -> ResilientChannel {
    let upstream = Upstream {
        reserve: options.reserve,
        methods: MethodTable::new(options),
        retry_buffer_bytes: options.retry_buffer_bytes,
        breaker,
        throttle: options.throttle.enabled.then(|| Throttle::new(&options.throttle)),
        endpoints,
        metrics: ClientMetrics::new(&name),
        authorization: bearer,
        name,
    };
    ResilientChannel { upstream: Arc::new(upstream), dispatch }
}

fn validate(name: &str, options: &UpstreamOptions) -> Result<(), BuildError> {
    let invalid = |key, reason| Err(BuildError::Invalid { upstream: name.to_owned(), key, reason });
    let policies = std::iter::once(&options.retry).chain(options.methods.values().filter_map(|m| m.retry.as_ref()));
    for policy in policies {
        if policy.max_attempts == 0 {
            return invalid("retry.max_attempts", "must be at least 1");
        }
        if policy.initial_backoff.is_zero() || policy.max_backoff.is_zero() {
            return invalid("retry.initial_backoff / max_backoff", "must be more than zero");
        }
        if !(policy.backoff_multiplier.is_finite() && policy.backoff_multiplier > 0.0) {
            return invalid("retry.backoff_multiplier", "must be more than zero");
        }
    }
    let throttle = &options.throttle;
    if throttle.enabled && !(throttle.max_tokens > 0.0 && throttle.max_tokens <= 1000.0) {
        return invalid("throttle.max_tokens", "must be in (0, 1000]");
    }
    if throttle.enabled && !(throttle.token_ratio >= 0.001 && throttle.token_ratio.is_finite()) {
        return invalid("throttle.token_ratio", "must be at least 0.001");
    }
    let breaker = &options.breaker;
    if breaker.enabled && !(breaker.k.is_finite() && breaker.k > 0.0) {
        return invalid("breaker.k", "must be more than zero");
    }
    if breaker.enabled && (breaker.window.is_zero() || breaker.buckets == 0) {
        return invalid("breaker.window / buckets", "must be more than zero");
    }
    Ok(())
}

//! `courier serve tyk-plugin`: a Tyk gateway's gRPC plugin (its coprocess `Dispatcher` service) whose auth hook
//! verifies the caller's bearer token with courier's own `[auth]` configuration, so the gateway admits exactly the
//! tokens courier's services would, and hands the upstream the subject, merchant and scopes as session metadata.
//!
//! Configure the API in Tyk with `custom_middleware.driver = "grpc"` and `auth_check.name` = the hook name
//! (`[tyk] auth_hook`, `CourierAuth` by default), and `use_keyless: false`, `enable_coprocess_auth: true`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use courier_kit::auth::{AuthError, Authenticator, Principal};
use courier_proto::tyk::coprocess::{self as tyk, dispatcher_server::Dispatcher, HookType};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

/// The `[tyk]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TykConfig {
    /// The hook name Tyk sends for the auth check (the API definition's `auth_check.name`).
    pub auth_hook: String,
    /// Scopes a token must hold, all of them, to pass the gateway. Default `payments:authorize`.
    pub required_scopes: Vec<String>,
}

impl Default for TykConfig {
    fn default() -> Self {
        Self { auth_hook: "CourierAuth".into(), required_scopes: vec!["payments:authorize".into()] }
    }
}

/// The Dispatcher service.
pub struct TykPlugin {
    authenticator: Arc<Authenticator>,
    config: TykConfig,
}

impl TykPlugin {
    pub fn new(authenticator: Arc<Authenticator>, config: TykConfig) -> Self {
        Self { authenticator, config }
    }

    /// The auth hook: the same object back, with the session filled in, or with a 401/403 override.
    fn auth_check(&self, mut object: tyk::Object) -> tyk::Object {
        let request = object.request.get_or_insert_with(Default::default);
        // Tyk canonicalises header names (`Authorization`); a case-insensitive look-up costs nothing.
        let authorization =
            request.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
        let verdict = match authorization {
            None => Err((401, AuthError::Missing.to_string())),
            Some(value) => match self.authenticator.authenticate(Some(value.as_bytes()), None) {
                Err(error) => Err((401, error.to_string())),
                Ok(principal) => match self.missing_scopes(&principal) {
                    missing if !missing.is_empty() => Err((403, format!("token lacks scope {}", missing.join(" ")))),
                    _ => Ok((principal, value)),
                },
            },
        };
        match verdict {
            Ok((principal, value)) => {
                let mut metadata = HashMap::from([
                    ("courier_subject".to_owned(), principal.subject.clone()),
                    ("courier_scopes".to_owned(), principal.scopes.iter().cloned().collect::<Vec<_>>().join(" ")),
                ]);
                if let Some(merchant) = &principal.merchant {
                    metadata.insert("courier_merchant".to_owned(), merchant.clone());
                }
                object.session = Some(tyk::SessionState {
                    metadata,
                    alias: principal.subject.clone(),
                    // Keyed on the token itself, as Tyk's custom auth expects (`metadata["token"]` below).
                    ..Default::default()
                });
                // The bare JWT (authenticate accepted `<scheme> <token>`), so `bearer`/`Bearer` share a session.
                let token = value.split_once(' ').map_or(value.as_str(), |(_, token)| token.trim());
                object.metadata.insert("token".to_owned(), token.to_owned());
            }
            Err((code, message)) => {
                tracing::info!(target: "courier::tyk", code, reason = %message, "gateway auth check refused");
                let mut headers = HashMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
                if code == 401 {
                    headers.insert("WWW-Authenticate".to_owned(), "Bearer error=\"invalid_token\"".to_owned());
                }
                request.return_overrides = Some(tyk::ReturnOverrides {
                    response_code: code,
                    response_error: serde_json::json!({ "error": message }).to_string(),
                    headers,
                    ..Default::default()
                });
            }
        }
        object
    }

    fn missing_scopes(&self, principal: &Principal) -> Vec<String> {
        let held: &BTreeSet<String> = &principal.scopes;
        self.config.required_scopes.iter().filter(|scope| !held.contains(*scope)).cloned().collect()
    }
}

#[tonic::async_trait]
impl Dispatcher for TykPlugin {
    async fn dispatch(&self, request: Request<tyk::Object>) -> Result<Response<tyk::Object>, Status> {
        let object = request.into_inner();
        if object.hook_name == self.config.auth_hook {
            return Ok(Response::new(self.auth_check(object)));
        }
        // Tyk reports a failed Dispatch as a 500 to the client and logs the message: say what is served.
        let kind = HookType::try_from(object.hook_type).map_or("unknown".to_owned(), |t| t.as_str_name().to_owned());
        Err(Status::unimplemented(format!(
            "no hook {:?} (type {kind}) in courier's Tyk plugin: it serves the auth check {:?}",
            object.hook_name, self.config.auth_hook
        )))
    }

    async fn dispatch_event(&self, request: Request<tyk::Event>) -> Result<Response<tyk::EventReply>, Status> {
        // Gateway events (rate limit hits, breaker trips...) go to the log, where courier's own events are.
        tracing::info!(target: "courier::tyk", payload = %request.into_inner().payload, "gateway event");
        Ok(Response::new(tyk::EventReply {}))
    }
}

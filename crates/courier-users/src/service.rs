//! The `courier.users.v1.UserService` handlers: validate, call the store, map the outcome to the wire.

use std::pin::Pin;

use courier_kit::status;
use courier_proto::users::v1 as pb;
use futures::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};

use crate::model::{self, UserId};
use crate::store::{ListFilter, StoreError, UserStore};

/// The gRPC face of the user service.
#[derive(Clone, Debug)]
pub struct UsersApi {
    store: UserStore,
}

impl UsersApi {
    /// Serves users from `store`.
    pub fn new(store: UserStore) -> Self {
        Self { store }
    }

    /// The tonic service, ready to add to a `courier_kit::server::ServiceSet`. The receive-size limit is enforced
    /// in front of every service by the runtime, so tonic's own per-service limit is lifted here.
    pub fn into_service(self) -> pb::user_service_server::UserServiceServer<Self> {
        pb::user_service_server::UserServiceServer::new(self).max_decoding_message_size(usize::MAX)
    }
}

const RESOURCE: &str = "user";
/// The `domain` of this service's ErrorInfo details.
pub const ERROR_DOMAIN: &str = "users.courier.dev";

fn store_failure(context: &str, error: StoreError) -> Status {
    match error {
        StoreError::DuplicateEmail => status::already_exists(RESOURCE, "", "a user with this email already exists"),
        // Every pooled connection busy for the whole acquire wait: load, not a bug, and nothing was done, so the
        // caller may retry (the resilient client does, with backoff).
        StoreError::Database(sqlx::Error::PoolTimedOut) => status::with_reason(
            Code::Unavailable,
            "STORE_BUSY",
            ERROR_DOMAIN,
            "the user store has no free connection; retry with backoff",
        ),
        StoreError::Database(error) if courier_kit::db::is_unreachable(&error) => {
            tracing::warn!(%error, "{context}: the user store is unreachable");
            Status::unavailable("the user store is unreachable; retry with backoff")
        }
        other => status::internal(context, &other),
    }
}

type UserStream = Pin<Box<dyn Stream<Item = Result<pb::ListUsersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::user_service_server::UserService for UsersApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let new = model::validate_new_user(request.into_inner())?;
        let user = self.store.create(new).await.map_err(|e| store_failure("creating user", e))?;
        // Never the full address: logs are kept and read more widely than the store.
        tracing::info!(user_id = %user.id, email = %model::mask_email(&user.email), "user created");
        Ok(Response::new(pb::CreateUserResponse { user: Some(user.to_proto()) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let request = request.into_inner();
        let mut violations = status::FieldViolations::default();
        let Some(id) = violations.check("id", request.id.parse::<UserId>()) else {
            return Err(violations.into_status());
        };
        match self.store.get(id).await.map_err(|e| store_failure("reading user", e))? {
            Some(user) => Ok(Response::new(pb::GetUserResponse { user: Some(user.to_proto()) })),
            None => Err(status::not_found(RESOURCE, &request.id)),
        }
    }

    type ListUsersStream = UserStream;

    async fn list_users(&self, request: Request<pb::ListUsersRequest>) -> Result<Response<UserStream>, Status> {
        let request = request.into_inner();
        // Every field is checked before the first row is read, so a bad request fails as a whole.
        let mut violations = status::FieldViolations::default();
        let status_filter = violations.check("status", model::parse_status_filter(request.status));
        let after = match request.page_token.as_str() {
            "" => Some(None),
            token => violations
                .check("page_token", token.parse::<UserId>().map(Some).map_err(|_| "not a token from this service")),
        };
        let (Some(status_filter), Some(after)) = (status_filter, after) else {
            return Err(violations.into_status());
        };

        let filter = ListFilter {
            status: status_filter,
            after,
            limit: (request.page_size > 0).then_some(u64::from(request.page_size)),
        };
        let stream = self.store.list(filter).map(|item| match item {
            Ok(user) => Ok(pb::ListUsersResponse { resume_token: user.id.to_string(), user: Some(user.to_proto()) }),
            Err(e) => Err(store_failure("listing users", e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn update_user_status(
        &self,
        request: Request<pb::UpdateUserStatusRequest>,
    ) -> Result<Response<pb::UpdateUserStatusResponse>, Status> {
        let request = request.into_inner();
        let mut violations = status::FieldViolations::default();
        let id = violations.check("id", request.id.parse::<UserId>());
        let new_status = violations.check("status", model::parse_status(request.status));
        let (Some(id), Some(new_status)) = (id, new_status) else {
            return Err(violations.into_status());
        };
        match self.store.update_status(id, new_status).await.map_err(|e| store_failure("updating user", e))? {
            Some(user) => {
                tracing::info!(user_id = %user.id, status = ?new_status, "user status changed");
                Ok(Response::new(pb::UpdateUserStatusResponse { user: Some(user.to_proto()) }))
            }
            None => Err(status::not_found(RESOURCE, &request.id)),
        }
    }
}

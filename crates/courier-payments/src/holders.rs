//! What payments knows about account holders, learned from UserService over gRPC like any other client.
//!
//! Authorize needs the holder's status on every call, so answers are cached for `holder_cache_ttl` (a short blip
//! of UserService then declines nothing that was recently fine), and the account → holder mapping, which never
//! changes, is cached too. Both caches are bounded: when full they are cleared, which costs a few lookups, never
//! memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use courier_proto::users::v1 as users;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::ledger::Holder;

/// Entries per cache before it is cleared.
const CACHE_CAPACITY: usize = 100_000;
/// How long one UserService lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The holder directory: UserService plus the caches.
pub struct Holders {
    users: users::user_service_client::UserServiceClient<Channel>,
    ttl: Duration,
    statuses: Mutex<HashMap<String, (bool, Instant)>>,
    owners: Mutex<HashMap<String, String>>,
}

impl Holders {
    /// A directory that asks UserService on `channel`.
    pub fn new(channel: Channel, ttl: Duration) -> Self {
        Self {
            users: users::user_service_client::UserServiceClient::new(channel),
            ttl,
            statuses: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The user's status, asked now (no cache): `None` when the user does not exist.
    pub async fn lookup(&self, user_id: &str) -> Result<Option<users::UserStatus>, Status> {
        let mut request = tonic::Request::new(users::GetUserRequest { id: user_id.to_owned() });
        request.set_timeout(LOOKUP_TIMEOUT);
        match self.users.clone().get_user(request).await {
            Ok(response) => {
                let status = response.into_inner().user.map_or(users::UserStatus::Unspecified, |u| u.status());
                self.remember(user_id, status == users::UserStatus::Active);
                Ok(Some(status))
            }
            // A malformed id is no user we know either.
            Err(error) if matches!(error.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether the holder may transact now, from the cache when it is fresh.
    pub async fn holder(&self, user_id: &str) -> Holder {
        let cached = self.statuses.lock().expect("holder cache").get(user_id).copied();
        if let Some((active, _)) = cached.filter(|(_, at)| at.elapsed() < self.ttl) {
            return if active { Holder::Active } else { Holder::NotActive };
        }
        match self.lookup(user_id).await {
            Ok(Some(users::UserStatus::Active)) => Holder::Active,
            Ok(_) => Holder::NotActive,
            Err(error) => {
                tracing::warn!(target: "courier::payments", code = ?error.code(), "user service lookup failed");
                Holder::Unavailable
            }
        }
    }

    /// The cached owner of an account.
    pub fn owner_of(&self, account_id: &str) -> Option<String> {
        self.owners.lock().expect("owner cache").get(account_id).cloned()
    }

    /// Caches an account's owner (it never changes).
    pub fn remember_owner(&self, account_id: &str, owner: &str) {
        let mut owners = self.owners.lock().expect("owner cache");
        if owners.len() >= CACHE_CAPACITY {
            owners.clear();
        }
        owners.insert(account_id.to_owned(), owner.to_owned());
    }

    fn remember(&self, user_id: &str, active: bool) {
        let mut statuses = self.statuses.lock().expect("holder cache");
        if statuses.len() >= CACHE_CAPACITY {
            statuses.clear();
        }
        statuses.insert(user_id.to_owned(), (active, Instant::now()));
    }
}

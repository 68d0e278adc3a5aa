//! What payments knows about account holders, learned from UserService over gRPC like any other client.
//!
//! Authorize needs the holder's status on every call, so answers are cached for `holder_cache_ttl` (a short blip
//! of UserService then declines nothing that was recently fine), and the account → holder mapping, which never
//! changes, is cached too. While UserService fails, a status learned within `holder_cache_ttl +
//! holder_stale_if_error` is used (stale-if-error, bounded by [`crate::config::MAX_HOLDER_STALE_IF_ERROR`]):
//! an outage of users then declines 91 only for holders not seen recently. Both caches are bounded: when full they are cleared, which costs a few lookups, never
//! memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use courier_kit::client::ResilientChannel;
use courier_proto::users::v1 as users;
use futures::future::{BoxFuture, FutureExt, Shared};
use tonic::{Code, Status};

use crate::ledger::Holder;

/// Entries per cache before it is cleared.
const CACHE_CAPACITY: usize = 100_000;

/// The holder directory: UserService plus the caches.
pub struct Holders {
    users: users::user_service_client::UserServiceClient<ResilientChannel>,
    ttl: Duration,
    stale_if_error: Duration,
    statuses: Mutex<HashMap<String, (bool, Instant)>>,
    accounts: Mutex<HashMap<String, AccountFacts>>,
    in_flight: Mutex<HashMap<String, SharedLookup>>,
}

/// One UserService lookup that every concurrent asker awaits.
type SharedLookup = Shared<BoxFuture<'static, Holder>>;

/// What never changes about an account: who holds it and when it was opened.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    /// The UserService user.
    pub owner_user_id: String,
    /// Microseconds since the epoch.
    pub created_at_us: i64,
}

impl Holders {
    /// A directory that asks UserService on `channel` (which carries the timeouts, retries and breaker).
    pub fn new(channel: ResilientChannel, ttl: Duration, stale_if_error: Duration) -> Self {
        Self {
            users: users::user_service_client::UserServiceClient::new(channel),
            ttl,
            stale_if_error: stale_if_error.min(crate::config::MAX_HOLDER_STALE_IF_ERROR),
            statuses: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The user's status, asked now (no cache): `None` when the user does not exist.
    pub async fn lookup(&self, user_id: &str) -> Result<Option<users::UserStatus>, Status> {
        let request = tonic::Request::new(users::GetUserRequest { id: user_id.to_owned() });
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

    /// Whether the holder may transact now, from the cache when it is fresh. Concurrent misses for one holder
    /// share one lookup (single flight), so a burst on a cold cache sends UserService one call, not hundreds.
    pub async fn holder(&self, user_id: &str) -> Holder {
        let cached = self.statuses.lock().expect("holder cache").get(user_id).copied();
        if let Some((active, _)) = cached.filter(|(_, at)| at.elapsed() < self.ttl) {
            return if active { Holder::Active } else { Holder::NotActive };
        }
        let lookup = {
            let mut in_flight = self.in_flight.lock().expect("lookups in flight");
            in_flight.entry(user_id.to_owned()).or_insert_with(|| self.start_lookup(user_id)).clone()
        };
        let holder = lookup.await;
        self.in_flight.lock().expect("lookups in flight").remove(user_id);
        if holder != Holder::Unavailable {
            self.remember(user_id, holder == Holder::Active);
            return holder;
        }
        match cached.filter(|(_, at)| at.elapsed() < self.ttl + self.stale_if_error) {
            Some((active, _)) => {
                tracing::info!(target: "courier::payments", "user service failed; using the holder's recent status");
                if active {
                    Holder::Active
                } else {
                    Holder::NotActive
                }
            }
            None => holder,
        }
    }

    fn start_lookup(&self, user_id: &str) -> SharedLookup {
        let (mut users, id) = (self.users.clone(), user_id.to_owned());
        async move {
            match users.get_user(users::GetUserRequest { id }).await {
                Ok(response) => match response.into_inner().user.map(|u| u.status()) {
                    Some(users::UserStatus::Active) => Holder::Active,
                    _ => Holder::NotActive,
                },
                Err(error) if matches!(error.code(), Code::NotFound | Code::InvalidArgument) => Holder::NotActive,
                Err(error) => {
                    tracing::warn!(target: "courier::payments", code = ?error.code(), "user service lookup failed");
                    Holder::Unavailable
                }
            }
        }
        .boxed()
        .shared()
    }

    /// The cached facts of an account.
    pub fn account(&self, account_id: &str) -> Option<AccountFacts> {
        self.accounts.lock().expect("account cache").get(account_id).cloned()
    }

    /// Caches an account's facts (they never change).
    pub fn remember_account(&self, account_id: &str, facts: AccountFacts) {
        let mut accounts = self.accounts.lock().expect("account cache");
        if accounts.len() >= CACHE_CAPACITY {
            accounts.clear();
        }
        accounts.insert(account_id.to_owned(), facts);
    }

    fn remember(&self, user_id: &str, active: bool) {
        let mut statuses = self.statuses.lock().expect("holder cache");
        if statuses.len() >= CACHE_CAPACITY {
            statuses.clear();
        }
        statuses.insert(user_id.to_owned(), (active, Instant::now()));
    }
}

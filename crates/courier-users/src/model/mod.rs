//! The user as the service sees it, independent of the wire and of the store.

mod id;
mod mask;
mod validate;

pub use id::{UserId, UserIdError};
pub use mask::mask_email;
pub use validate::{parse_status, parse_status_filter, validate_new_user, NewUser, MAX_NAME_CHARS};

use courier_kit::time::timestamp_from_us;
use courier_proto::users::v1 as pb;

/// A user's standing. The numbers are the proto enum's, which is also how the store keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// May transact.
    Active,
    /// Barred for now.
    Suspended,
    /// Barred for good.
    Closed,
}

impl Status {
    /// The proto enum number.
    pub fn number(self) -> i64 {
        self.to_proto() as i64
    }

    /// The proto enum value.
    pub fn to_proto(self) -> pb::UserStatus {
        match self {
            Status::Active => pb::UserStatus::Active,
            Status::Suspended => pb::UserStatus::Suspended,
            Status::Closed => pb::UserStatus::Closed,
        }
    }

    /// From a proto enum number; `None` for UNSPECIFIED and numbers this version does not know.
    pub fn from_number(number: i64) -> Option<Self> {
        match pb::UserStatus::try_from(i32::try_from(number).ok()?).ok()? {
            pb::UserStatus::Active => Some(Status::Active),
            pb::UserStatus::Suspended => Some(Status::Suspended),
            pb::UserStatus::Closed => Some(Status::Closed),
            pb::UserStatus::Unspecified => None,
        }
    }
}

/// A stored user. Times are microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Server-generated id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Email as given.
    pub email: String,
    /// Current standing.
    pub status: Status,
    /// Creation time.
    pub created_at_us: i64,
    /// Last change.
    pub updated_at_us: i64,
}

impl User {
    /// The wire form.
    pub fn to_proto(&self) -> pb::User {
        pb::User {
            id: self.id.to_string(),
            name: self.name.clone(),
            email: self.email.clone(),
            status: self.status.to_proto() as i32,
            created_at: Some(timestamp_from_us(self.created_at_us)),
            updated_at: Some(timestamp_from_us(self.updated_at_us)),
        }
    }
}

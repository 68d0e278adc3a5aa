//! User ids: `usr_` followed by the 32 lowercase hex digits of a UUIDv7.
//!
//! UUIDv7 starts with a millisecond timestamp and, from one process, is strictly increasing, so ids sort in
//! creation order: ListUsers pages by id and needs no separate time index. The prefix tells at a glance, in logs
//! and support tickets, what kind of thing an id names.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

const PREFIX: &str = "usr_";

/// A well-formed user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Uuid);

/// Why a string is not a user id; the message is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be \"usr_\" followed by 32 lowercase hex digits of a UUIDv7")]
pub struct UserIdError;

impl UserId {
    /// A new id, later than every id this process made before.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl FromStr for UserId {
    type Err = UserIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix(PREFIX).ok_or(UserIdError)?;
        // Only the canonical form, so one user has exactly one id string (and one row key).
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UserIdError);
        }
        let uuid = Uuid::try_parse(hex).map_err(|_| UserIdError)?;
        if uuid.get_version_num() != 7 {
            return Err(UserIdError);
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_sort_by_creation() {
        let ids: Vec<UserId> = (0..1000).map(|_| UserId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        let text = ids[0].to_string();
        assert_eq!(text.parse::<UserId>().unwrap(), ids[0]);
        assert_eq!(text.len(), 36);
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = UserId::generate().to_string();
        for bad in [
            "",
            "123",
            &good[4..],
            &good.to_uppercase(),
            &good.replace("usr_", "acc_"),
            "usr_0190f5a0-c2b8-7cc3-a1b2-c3d4e5f60718",
            "usr_0190f5a0c2b84cc3a1b2c3d4e5f60718", // version 4
            "usr_0190f5a0c2b87cc3a1b2c3d4e5f6071",  // short
        ] {
            assert_eq!(bad.parse::<UserId>(), Err(UserIdError), "{bad}");
        }
    }
}

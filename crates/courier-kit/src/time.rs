//! Stores keep times as microseconds since the Unix epoch (one BIGINT, portable and sortable); the wire uses
//! `google.protobuf.Timestamp`.

/// Microseconds since the epoch as a protobuf timestamp.
pub fn timestamp_from_us(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A protobuf timestamp as microseconds since the epoch, saturating far outside any real date.
pub fn us_from_timestamp(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1_000_000).saturating_add(i64::from(timestamp.nanos) / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_before_the_epoch() {
        for us in [0, 1, 1_700_000_000_123_456, -1, -1_500_000] {
            assert_eq!(us_from_timestamp(&timestamp_from_us(us)), us);
        }
    }
}

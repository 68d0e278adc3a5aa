//! The `grpc-timeout` header: `TimeoutValue TimeoutUnit`, at most 8 ASCII digits followed by one of `H` (hours),
//! `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds), as the gRPC over
//! HTTP/2 spec defines it.

use std::time::Duration;

use http::HeaderValue;

/// The header's name.
pub const HEADER: &str = "grpc-timeout";

/// The most digits the spec allows in a value.
const MAX_DIGITS: usize = 8;

/// A `grpc-timeout` value that does not follow the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed grpc-timeout header (expected 1 to 8 digits and a unit among H M S m u n)")]
pub struct InvalidTimeout;

/// Parses a header value such as `250m` or `3S`.
pub fn parse(value: &[u8]) -> Result<Duration, InvalidTimeout> {
    let (&unit, digits) = value.split_last().ok_or(InvalidTimeout)?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidTimeout);
    }
    // At most 8 digits: no overflow in u64, even in hours.
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(InvalidTimeout),
    })
}

/// Writes `timeout` in the finest unit whose value fits in 8 digits, rounding up (as grpc-go does) so a
/// timeout is never sent as zero unless it is zero.
pub fn encode(timeout: Duration) -> HeaderValue {
    const UNITS: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    const LIMIT: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(value, _)| value <= LIMIT)
        .unwrap_or((LIMIT, b'H'));
    // 8 digits and a unit, formatted on the stack: the header value is the only allocation.
    let mut buf = [0u8; MAX_DIGITS + 1];
    let mut start = MAX_DIGITS;
    let mut rest = value;
    loop {
        start -= 1;
        buf[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    buf[MAX_DIGITS] = unit;
    HeaderValue::from_bytes(&buf[start..]).expect("digits and a unit letter are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("1500u", Duration::from_micros(1500)),
            ("7n", Duration::from_nanos(7)),
            ("0m", Duration::ZERO),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text.as_bytes()), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for text in ["", "m", "10", "10x", "10 m", "-5m", "+5m", "1.5S", "123456789m", "5mm", "S5", "١m"] {
            assert_eq!(parse(text.as_bytes()), Err(InvalidTimeout), "{text:?}");
        }
    }

    #[test]
    fn encodes_in_the_finest_unit_that_fits_and_round_trips() {
        assert_eq!(encode(Duration::from_millis(250)), "250000u");
        assert_eq!(encode(Duration::from_millis(99)), "99000000n");
        assert_eq!(encode(Duration::from_secs(30)), "30000000u");
        assert_eq!(encode(Duration::ZERO), "0n");
        assert_eq!(encode(Duration::from_secs(100_000)), "100000S");
        for timeout in [1, 999, 1_000_001, 123_456_789_012, 3_600_000_000_000_000].map(Duration::from_nanos) {
            let parsed = parse(encode(timeout).as_bytes()).unwrap();
            assert!(parsed >= timeout, "{timeout:?} became {parsed:?}");
            // The next coarser unit is used only when the value has at least 5 digits in it.
            assert!(parsed - timeout <= timeout / 50_000, "{timeout:?} -> {parsed:?}");
        }
    }
}

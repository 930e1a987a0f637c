//! Dates and times as text without the formatting machinery: every line
//! and record carries one (`write!` was a tenth of a human line's cost,
//! humantime and `format!` ~4 % of a JSON record's).
use std::time::{SystemTime, UNIX_EPOCH};

/// Year, month and day of the `days`th day since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, RFC 3339 in UTC with nanoseconds, as
/// humantime's `format_rfc3339_nanos` writes it; None before 1970 or past
/// year 9999, which that one handles.
pub fn rfc3339_nanos(time: SystemTime) -> Option<[u8; 30]> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    if year > 9999 {
        return None;
    }
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    let fields = [
        (0..4, year),
        (5..7, month),
        (8..10, day),
        (11..13, of_day / 3600),
        (14..16, of_day / 60 % 60),
        (17..19, of_day % 60),
        (20..29, u64::from(since.subsec_nanos())),
    ];
    for (range, value) in fields {
        put_digits(&mut text[range], value);
    }
    Some(text)
}

/// `value`'s last `out.len()` decimal digits, zero-padded.
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_416), (2025, 11, 24));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn rfc3339_as_humantime_writes_it() {
        let at = |secs, nanos| UNIX_EPOCH + Duration::new(secs, nanos);
        for time in [at(0, 0), at(951_782_399, 999_999_999), at(1_764_584_538, 123_456_789), at(253_402_300_799, 1)] {
            let ours = rfc3339_nanos(time).expect("in range");
            assert_eq!(std::str::from_utf8(&ours).expect("ASCII"), humantime::format_rfc3339_nanos(time).to_string());
        }
        assert_eq!(rfc3339_nanos(at(253_402_300_800, 0)), None, "year 10000");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH - Duration::from_secs(1)), None);
    }
}

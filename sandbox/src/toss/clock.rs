//! Time as Toss writes it: Korean Standard Time (UTC+9, no daylight saving).
//!
//! Payments carry `2024-02-13T12:18:14+09:00`; webhook envelopes and `DEPOSIT_CALLBACK` carry a
//! local time with microseconds and no offset, `2024-02-13T12:18:14.123000`, as in Toss's samples.
//! Everything is computed from Unix milliseconds so the protocol logic takes `now` as a plain
//! number and tests can choose it.

use std::time::{SystemTime, UNIX_EPOCH};

/// KST is UTC+9 all year.
const KST_OFFSET_MS: i64 = 9 * 60 * 60 * 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970 (it never is in practice).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// `2024-02-13T12:18:14+09:00`: `requestedAt`, `approvedAt`, `canceledAt`, `dueDate`.
pub fn kst_seconds(unix_ms: i64) -> String {
    let t = Kst::from_unix_ms(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+09:00",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `2024-02-13T12:18:14.123+09:00`: the sandbox's own delivery log, where order matters.
pub fn kst_millis(unix_ms: i64) -> String {
    let t = Kst::from_unix_ms(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+09:00",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

/// `2024-02-13T12:18:14.123000`: webhook `createdAt`, local time without an offset.
pub fn kst_local_micros(unix_ms: i64) -> String {
    let t = Kst::from_unix_ms(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

struct Kst {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
}

impl Kst {
    fn from_unix_ms(unix_ms: i64) -> Self {
        let local_ms = unix_ms.saturating_add(KST_OFFSET_MS);
        let days = local_ms.div_euclid(DAY_MS);
        let of_day = local_ms.rem_euclid(DAY_MS);
        let (year, month, day) = nene_domain::time::civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: of_day / 3_600_000,
            minute: of_day / 60_000 % 60,
            second: of_day / 1000 % 60,
            millisecond: of_day % 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-13T03:18:14.123Z.
    const SAMPLE_MS: i64 = 1_707_794_294_123;

    #[test]
    fn a_payment_time_is_written_in_korean_standard_time_with_its_offset() {
        assert_eq!(kst_seconds(SAMPLE_MS), "2024-02-13T12:18:14+09:00");
        assert_eq!(kst_millis(SAMPLE_MS), "2024-02-13T12:18:14.123+09:00");
    }

    #[test]
    fn a_webhook_time_is_local_with_microseconds_and_no_offset() {
        assert_eq!(kst_local_micros(SAMPLE_MS), "2024-02-13T12:18:14.123000");
    }

    #[test]
    fn the_offset_carries_a_late_utc_evening_into_the_next_korean_day_and_year() {
        // 2023-12-31T15:00:00Z is midnight of New Year in Seoul.
        assert_eq!(kst_seconds(1_704_034_800_000), "2024-01-01T00:00:00+09:00");
        // A leap day.
        assert_eq!(kst_seconds(1_709_164_800_000), "2024-02-29T09:00:00+09:00");
        assert_eq!(kst_seconds(0), "1970-01-01T09:00:00+09:00");
    }
}

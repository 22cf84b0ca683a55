//! The sandbox's clock: now, in Unix milliseconds, and instants written as each provider writes
//! them, through the `time` crate's ISO 8601 formats.
//!
//! Toss writes Korean Standard Time ([`KST`]): payments carry `2024-02-13T12:18:14+09:00`, and
//! webhook envelopes and `DEPOSIT_CALLBACK` a local time with microseconds and no offset,
//! `2024-02-13T12:18:14.123000`, as in Toss's samples. Kakao's `connected_at` and the FCM
//! stand-in's delivery log write UTC with a `Z`. Everything takes Unix milliseconds, so the
//! protocol logic takes `now` as a plain number and tests can choose it.

use std::{
    num::NonZero,
    time::{SystemTime, UNIX_EPOCH},
};

use time::{
    OffsetDateTime, UtcOffset,
    format_description::well_known::{
        Iso8601,
        iso8601::{Config, EncodedConfig, FormattedComponents, TimePrecision},
    },
    macros::offset,
};

/// Korean Standard Time: UTC+9 all year, no daylight saving.
pub const KST: UtcOffset = offset!(+9);
pub const UTC: UtcOffset = UtcOffset::UTC;

/// 0001-01-02T00:00:00Z and 9998-12-31T23:59:59.999Z: the instants whose local time has a
/// four-digit year in every offset. Instants outside are written as the nearest of these (the
/// sandbox's clock never gets there).
const UNIX_MS_MIN: i64 = -62_135_510_400_000;
const UNIX_MS_MAX: i64 = 253_370_764_799_999;

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970 (it never is in practice).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// How much of the second an RFC 3339 time writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
}

const SECONDS: EncodedConfig = Config::DEFAULT
    .set_time_precision(TimePrecision::Second {
        decimal_digits: None,
    })
    .encode();
const MILLIS: EncodedConfig = Config::DEFAULT
    .set_time_precision(TimePrecision::Second {
        decimal_digits: NonZero::new(3),
    })
    .encode();
const LOCAL_MICROS: EncodedConfig = Config::DEFAULT
    .set_formatted_components(FormattedComponents::DateTime)
    .set_time_precision(TimePrecision::Second {
        decimal_digits: NonZero::new(6),
    })
    .encode();

/// `unix_ms` as RFC 3339 in `offset`: `2024-02-13T12:18:14+09:00` in [`KST`],
/// `2024-02-13T03:18:14.123Z` in [`UTC`] to the millisecond.
pub fn rfc3339(unix_ms: i64, offset: UtcOffset, precision: Precision) -> String {
    let at = local(unix_ms, offset);
    match precision {
        Precision::Seconds => at.format(&Iso8601::<SECONDS>),
        Precision::Millis => at.format(&Iso8601::<MILLIS>),
    }
    // The instant is clamped to four-digit years, the one thing these formats cannot write.
    .unwrap_or_default()
}

/// `unix_ms` as a local time in `offset`, to the microsecond and without the offset:
/// `2024-02-13T12:18:14.123000`.
pub fn local_micros(unix_ms: i64, offset: UtcOffset) -> String {
    local(unix_ms, offset)
        .format(&Iso8601::<LOCAL_MICROS>)
        .unwrap_or_default()
}

/// `2024-02-13T12:18:14+09:00`: Toss's `requestedAt`, `approvedAt`, `canceledAt`, `dueDate`.
pub fn kst_seconds(unix_ms: i64) -> String {
    rfc3339(unix_ms, KST, Precision::Seconds)
}

/// `2024-02-13T12:18:14.123+09:00`: the Toss sandbox's own delivery log, where order matters.
pub fn kst_millis(unix_ms: i64) -> String {
    rfc3339(unix_ms, KST, Precision::Millis)
}

/// `2024-02-13T12:18:14.123000`: Toss's webhook `createdAt`, local time without an offset.
pub fn kst_local_micros(unix_ms: i64) -> String {
    local_micros(unix_ms, KST)
}

/// `2022-04-11T01:45:28Z`, as Kakao writes `connected_at`.
pub fn utc_seconds(unix_ms: i64) -> String {
    rfc3339(unix_ms, UTC, Precision::Seconds)
}

/// `2024-02-13T03:18:14.123Z`: the FCM stand-in's delivery log.
pub fn utc_millis(unix_ms: i64) -> String {
    rfc3339(unix_ms, UTC, Precision::Millis)
}

fn local(unix_ms: i64, offset: UtcOffset) -> OffsetDateTime {
    let nanos = i128::from(unix_ms.clamp(UNIX_MS_MIN, UNIX_MS_MAX)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
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

    #[test]
    fn a_utc_time_is_written_with_a_z() {
        assert_eq!(utc_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_seconds(SAMPLE_MS), "2024-02-13T03:18:14Z");
        assert_eq!(utc_millis(SAMPLE_MS), "2024-02-13T03:18:14.123Z");
        assert_eq!(utc_millis(1_704_034_799_999), "2023-12-31T14:59:59.999Z");
    }

    #[test]
    fn times_outside_four_digit_years_are_clamped_not_lost() {
        assert_eq!(kst_seconds(-1), "1970-01-01T08:59:59+09:00");
        assert_eq!(utc_seconds(i64::MIN), "0001-01-02T00:00:00Z");
        assert_eq!(utc_millis(i64::MAX), "9998-12-31T23:59:59.999Z");
        assert_eq!(kst_seconds(i64::MAX), "9999-01-01T08:59:59+09:00");
    }
}

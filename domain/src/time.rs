//! RFC 3339 timestamps, as the API writes every time (docs/api.md), to and from unix seconds,
//! through the `time` crate. Years 1970–9999.
//!
//! The `time` crate replaced a hand-written parser and calendar (Hinnant's `days_from_civil`) once
//! measured in the production Worker (`./nene bundle`'s steps: worker-build --release, wasm-opt -Oz,
//! `wrangler deploy --dry-run --env production`; gzip level 6):
//! - as things are (the Worker calls neither function; the core and the tests do): hand-written
//!   1315.2 KiB, gzip 556.4 KiB; `time` the same to within 50 bytes: no cost at all;
//! - with the Worker calling both (a probe export, not kept): hand-written 1317.6 KiB, gzip
//!   557.6 KiB; `time` 1329.0 KiB, gzip 563.3 KiB: 11.6 KiB more, 5.7 KiB after gzip.
//!
//! So the library is kept while the Worker reads and writes no timestamps itself; if it starts to,
//! those 5.7 KiB are the price (the hand-written version is in git history).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Unix seconds of 9999-12-31T23:59:59Z: the last instant RFC 3339's four-digit year can write.
pub const UNIX_SECONDS_MAX: i64 = 253_402_300_799;
/// Longest timestamp we parse (`YYYY-MM-DDTHH:MM:SS.fffffffff+HH:MM` is 35 characters).
pub const RFC3339_LEN_MAX: usize = 40;

/// Unix seconds of an RFC 3339 timestamp (`2026-12-01T06:00:00+09:00`, `…Z`, optional fraction,
/// which is dropped). `None` for anything else.
#[must_use]
pub fn parse_rfc3339(raw: &str) -> Option<i64> {
    let bytes = raw.as_bytes();
    // The `time` crate also takes any separator between date and time (RFC 3339's note allows a
    // space) and a leap second; the API takes neither.
    let strict = bytes.len() <= RFC3339_LEN_MAX
        && matches!(bytes.get(10), Some(b'T' | b't'))
        && bytes.get(17..19) != Some(b"60".as_slice());
    if !strict {
        return None;
    }
    let at = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
    let seconds = at.unix_timestamp();
    (at.year() >= 1970 && (0..=UNIX_SECONDS_MAX).contains(&seconds)).then_some(seconds)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (clamped to 1970–9999).
#[must_use]
pub fn format_rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds.clamp(0, UNIX_SECONDS_MAX))
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        // Every instant of the clamped range has a four-digit year, all that RFC 3339 needs.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_parse_in_every_offset_form() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-29T00:00:00Z"), Some(1_795_910_400));
        assert_eq!(
            parse_rfc3339("2026-11-29T09:00:00+09:00"),
            Some(1_795_910_400)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T19:00:00.123456-05:00"),
            Some(1_795_910_400)
        );
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00Z"), Some(1_709_208_000));
    }

    #[test]
    fn malformed_or_impossible_timestamps_are_refused() {
        for raw in [
            "2026-11-29",
            "2026-11-29 00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T00:00:00",
            "2026-11-29T00:00:00+0900",
            "1969-12-31T23:59:59Z",
            "2026-11-29T00:00:00.Z",
            "2016-12-31T23:59:60Z",
            "1969-12-31T23:00:00-02:00",
            "２０２６-11-29T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(raw), None, "{raw}");
        }
    }

    #[test]
    fn formatting_and_parsing_round_trip() {
        for seconds in [
            0,
            1,
            951_782_400,
            1_795_910_400,
            4_102_444_799,
            UNIX_SECONDS_MAX,
        ] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(seconds)),
                Some(seconds),
                "{seconds}"
            );
        }
        assert_eq!(format_rfc3339(1_795_910_400), "2026-11-29T00:00:00Z");
    }
}

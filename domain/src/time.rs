//! RFC 3339 timestamps, as the API writes every time (docs/api.md), to and from unix seconds —
//! without a date library, so the pure crate stays small for wasm. Proleptic Gregorian calendar,
//! years 1970–9999.

/// Unix seconds of 9999-12-31T23:59:59Z: the last instant RFC 3339's four-digit year can write.
pub const UNIX_SECONDS_MAX: i64 = 253_402_300_799;
/// Longest timestamp we parse (`YYYY-MM-DDTHH:MM:SS.fffffffff+HH:MM` is 35 characters).
pub const RFC3339_LEN_MAX: usize = 40;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month 1–12, day 1–31)` of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(raw: &[u8]) -> Option<i64> {
    raw.iter().try_fold(0_i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Unix seconds of an RFC 3339 timestamp (`2026-12-01T06:00:00+09:00`, `…Z`, optional fraction,
/// which is dropped). `None` for anything else.
#[must_use]
pub fn parse_rfc3339(raw: &str) -> Option<i64> {
    let bytes = raw.as_bytes();
    if bytes.len() < 20 || bytes.len() > RFC3339_LEN_MAX {
        return None;
    }
    let separators = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators {
        return None;
    }
    let (year, month, day) = (
        digits(&bytes[0..4])?,
        digits(&bytes[5..7])?,
        digits(&bytes[8..10])?,
    );
    let (hour, minute, second) = (
        digits(&bytes[11..13])?,
        digits(&bytes[14..16])?,
        digits(&bytes[17..19])?,
    );
    let valid = year >= 1970
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let mut rest = &bytes[19..];
    if rest.first() == Some(&b'.') {
        let fraction = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if fraction == 0 {
            return None;
        }
        rest = &rest[1 + fraction..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 3_600 + minutes * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    (0..=UNIX_SECONDS_MAX).contains(&seconds).then_some(seconds)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (clamped to 1970–9999).
#[must_use]
pub fn format_rfc3339(unix_seconds: i64) -> String {
    let seconds = unix_seconds.clamp(0, UNIX_SECONDS_MAX);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
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

//! A challenge's rules, parsed once: the entry fee, the seats, the calendar, the daily proof window
//! in the challenge's time zone and the house fee.
//!
//! [`RawRules`] is the wire shape of `POST /v1/challenges` (without title, description and
//! category); [`ChallengeRules::parse`] turns it into [`ChallengeRules`], and past that point nothing
//! re-checks. The same type answers the time questions the rest of the system asks — is this proof
//! inside a window ([`ChallengeRules::proof_slot`]), when does a day's window close (reminders), which
//! challenge day is it (the lifecycle scheduler) — and how many approved days count toward the
//! achievement rate ([`ChallengeRules::counted_days`]), so every part answers them the same way.
//!
//! Time is unix seconds read from the server's clock; the challenge's calendar is local to its time
//! zone. Only zones with a fixed UTC offset are offered (see [`TIME_ZONES`]), which makes every local
//! day exactly 86,400 seconds and every question here plain integer arithmetic.

use serde::{Deserialize, Serialize};

use crate::Points;

/// Smallest entry fee: the smallest payment we take (`CHARGE_AMOUNT_MIN`), so one charge can fund
/// the cheapest challenge; below it a stake is too small to motivate anyone.
pub const ENTRY_FEE_POINTS_MIN: i64 = 1_000;
/// Largest entry fee: the top of what the market leader offers (200,000 KRW); above it one lapse
/// costs more than a habit app should ever take from someone.
pub const ENTRY_FEE_POINTS_MAX: i64 = 200_000;
/// Entry fees are round amounts: easy to read in a list, and they keep the per-day refund arithmetic
/// readable for users.
pub const ENTRY_FEE_POINTS_STEP: i64 = 1_000;
const _: () = assert!(ENTRY_FEE_POINTS_MIN > 0 && ENTRY_FEE_POINTS_MIN <= ENTRY_FEE_POINTS_MAX);
const _: () = assert!(ENTRY_FEE_POINTS_MIN % ENTRY_FEE_POINTS_STEP == 0);
const _: () = assert!(ENTRY_FEE_POINTS_MAX % ENTRY_FEE_POINTS_STEP == 0);
// One payment can always buy one seat.
const _: () = assert!(ENTRY_FEE_POINTS_MIN >= crate::payments::CHARGE_AMOUNT_MIN);
const _: () = assert!(ENTRY_FEE_POINTS_MAX <= crate::payments::CHARGE_AMOUNT_MAX);

/// Fewest seats: a pool needs at least two people, one to forfeit and one to win.
pub const CAPACITY_MIN: i64 = 2;
/// Most seats: one `ChallengeRoom` serializes every join and holds the roster in memory; 10,000 keeps
/// its roster and live counts small and a settlement batch short.
pub const CAPACITY_MAX: i64 = 10_000;
/// The fewest participants a challenge may require to run (below it, it is canceled and refunded):
/// as for the capacity, a pool needs two people.
pub const MIN_PARTICIPANTS_MIN: i64 = 2;
const _: () = assert!(MIN_PARTICIPANTS_MIN <= CAPACITY_MIN && CAPACITY_MIN <= CAPACITY_MAX);

/// Earliest instant a rule may name (1970-01-01): keeps every time non-negative.
pub const UNIX_SECONDS_MIN: i64 = 0;
/// Latest instant a rule may name (9999-12-31T23:59:59Z): the last one RFC 3339 can write. With it,
/// every sum of a time and a day offset here stays far inside `i64`.
pub const UNIX_SECONDS_MAX: i64 = 253_402_300_799;
const _: () = assert!(UNIX_SECONDS_MIN < UNIX_SECONDS_MAX);

pub const SECONDS_PER_MINUTE: i64 = 60;
pub const MINUTES_PER_DAY: u32 = 24 * 60;
pub const SECONDS_PER_DAY: i64 = 86_400;
pub const DAYS_PER_WEEK: u32 = 7;
pub const SECONDS_PER_WEEK: i64 = SECONDS_PER_DAY * 7;
const _: () = assert!(SECONDS_PER_DAY == MINUTES_PER_DAY as i64 * SECONDS_PER_MINUTE);
const _: () = assert!(SECONDS_PER_WEEK == SECONDS_PER_DAY * DAYS_PER_WEEK as i64);

/// Shortest challenge: one week, the smallest period a "N days a week" rule can be measured over.
pub const WEEKS_MIN: u32 = 1;
/// Longest challenge: eight weeks. Stakes stay locked in escrow for the whole challenge; longer than
/// two months and most people stop proving (and the market leader's are mostly two weeks).
pub const WEEKS_MAX: u32 = 8;
const _: () = assert!(WEEKS_MIN >= 1 && WEEKS_MIN <= WEEKS_MAX);
// `counted_days` keeps one bit per challenge day in a `u64`.
const _: () = assert!(WEEKS_MAX * DAYS_PER_WEEK <= u64::BITS);

/// Proof days a week: at least one (otherwise there is nothing to prove), at most every day.
pub const PROOF_DAYS_PER_WEEK_MIN: i64 = 1;
pub const PROOF_DAYS_PER_WEEK_MAX: i64 = DAYS_PER_WEEK as i64;
const _: () =
    assert!(PROOF_DAYS_PER_WEEK_MIN >= 1 && PROOF_DAYS_PER_WEEK_MIN <= PROOF_DAYS_PER_WEEK_MAX);

/// Shortest daily proof window: long enough to take and upload a photo on a slow phone connection
/// (the market leader's tightest windows are about an hour; ten minutes is the floor, not the norm).
pub const PROOF_WINDOW_MINUTES_MIN: u32 = 10;
const _: () = assert!(PROOF_WINDOW_MINUTES_MIN > 0 && PROOF_WINDOW_MINUTES_MIN < MINUTES_PER_DAY);

/// A whole in basis points: 10,000 bps = 100%.
pub const BASIS_POINTS_PER_WHOLE: u32 = 10_000;
/// Largest house fee: 30% of the forfeited pool. Above it, the prize for keeping going stops
/// being worth the effort, and the house would profit more from failures than the users can accept.
pub const HOUSE_FEE_BPS_MAX: u32 = 3_000;
const _: () = assert!(HOUSE_FEE_BPS_MAX < BASIS_POINTS_PER_WHOLE);

/// A time zone a challenge may run in, with its fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone {
    name: &'static str,
    utc_offset_seconds: i32,
}

impl TimeZone {
    /// The IANA name, as the API takes it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// Seconds to add to UTC to get local time.
    #[must_use]
    pub const fn utc_offset_seconds(self) -> i32 {
        self.utc_offset_seconds
    }
}

/// The time zones a challenge may run in: zones without daylight saving time only.
///
/// Why a table: the pure crate carries no time-zone database (it would add hundreds of KB to every
/// wasm build and need updates as laws change). A zone with daylight saving time needs one — its
/// local days are sometimes 23 or 25 hours long and its offsets move — whereas in these zones (none
/// has observed DST since 1991) a local day is always 86,400 seconds and the offset is a constant.
/// A later change can add a tz crate and grow this list; the API's `time_zone` stays an IANA name.
pub const TIME_ZONES: [TimeZone; 6] = [
    TimeZone {
        name: "Asia/Seoul",
        utc_offset_seconds: 9 * 3_600,
    },
    TimeZone {
        name: "Asia/Tokyo",
        utc_offset_seconds: 9 * 3_600,
    },
    TimeZone {
        name: "Asia/Singapore",
        utc_offset_seconds: 8 * 3_600,
    },
    TimeZone {
        name: "Asia/Shanghai",
        utc_offset_seconds: 8 * 3_600,
    },
    TimeZone {
        name: "Asia/Kolkata",
        utc_offset_seconds: 5 * 3_600 + 30 * 60,
    },
    TimeZone {
        name: "UTC",
        utc_offset_seconds: 0,
    },
];

/// The time zone of the given IANA name, if a challenge may run in it.
#[must_use]
pub fn time_zone(name: &str) -> Option<TimeZone> {
    TIME_ZONES.iter().find(|zone| zone.name == name).copied()
}

/// What can be wrong with a challenge's rules: one variant per rule, so the API can say which
/// field is wrong ([`RulesError::field`]) and what is allowed (the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error(
        "the entry fee is {ENTRY_FEE_POINTS_MIN}–{ENTRY_FEE_POINTS_MAX} points in steps of {ENTRY_FEE_POINTS_STEP}"
    )]
    EntryFee,
    #[error("the capacity is {CAPACITY_MIN}–{CAPACITY_MAX} participants")]
    Capacity,
    #[error(
        "the minimum number of participants is at least {MIN_PARTICIPANTS_MIN} and at most the capacity"
    )]
    MinParticipants,
    #[error("{field} is a unix time in seconds between 1970-01-01 and 9999-12-31")]
    TimeOutOfRange { field: &'static str },
    #[error("recruitment must end no later than the challenge starts")]
    RecruitEndsAfterStart,
    #[error("the challenge must end after it starts")]
    EndsNotAfterStart,
    #[error(
        "a challenge lasts a whole number of weeks, {WEEKS_MIN}–{WEEKS_MAX} (ends_at − starts_at = 7·k days)"
    )]
    Duration,
    #[error("the challenge starts at midnight in its time zone")]
    StartNotLocalMidnight,
    #[error("proofs are required {PROOF_DAYS_PER_WEEK_MIN}–{PROOF_DAYS_PER_WEEK_MAX} days a week")]
    DaysPerWeek,
    #[error("{field} is a time of day \"HH:MM\" from 00:00 to 23:59 (the window may end at 24:00)")]
    WindowTimeFormat { field: &'static str },
    #[error("the proof window starts before it ends, within one day (it cannot cross midnight)")]
    WindowOrder,
    #[error("the proof window is at least {PROOF_WINDOW_MINUTES_MIN} minutes long")]
    WindowTooShort,
    #[error(
        "the time zone is one of Asia/Seoul, Asia/Tokyo, Asia/Singapore, Asia/Shanghai, Asia/Kolkata, UTC"
    )]
    TimeZone,
    #[error("the house fee is 0–{HOUSE_FEE_BPS_MAX} basis points")]
    HouseFee,
}

impl RulesError {
    /// The request field at fault, as a path into the JSON body of `POST /v1/challenges`.
    #[must_use]
    pub const fn field(&self) -> &'static str {
        match self {
            RulesError::EntryFee => "entry_fee",
            RulesError::Capacity => "capacity",
            RulesError::MinParticipants => "min_participants",
            RulesError::TimeOutOfRange { field } | RulesError::WindowTimeFormat { field } => field,
            RulesError::RecruitEndsAfterStart => "recruit_ends_at",
            RulesError::EndsNotAfterStart | RulesError::Duration => "ends_at",
            RulesError::StartNotLocalMidnight => "starts_at",
            RulesError::DaysPerWeek => "proof.days_per_week",
            RulesError::WindowOrder | RulesError::WindowTooShort => "proof.window_end",
            RulesError::TimeZone => "proof.time_zone",
            RulesError::HouseFee => "house_fee_bps",
        }
    }
}

/// The proof part of [`RawRules`], as the API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawProofRules {
    pub days_per_week: i64,
    /// Local time of day `"HH:MM"` at which the daily window opens (inclusive).
    pub window_start: String,
    /// Local time of day `"HH:MM"` at which it closes (exclusive); `"24:00"` is the end of the day.
    pub window_end: String,
    /// An IANA name from [`TIME_ZONES`].
    pub time_zone: String,
}

/// A challenge's rules as the API receives them in `POST /v1/challenges` (unknown fields such as
/// the title are ignored, so the whole body deserializes into it). Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRules {
    pub entry_fee: i64,
    pub capacity: i64,
    pub min_participants: i64,
    pub recruit_ends_at: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub proof: RawProofRules,
    pub house_fee_bps: i64,
}

/// A challenge's rules, known to be valid. Serialized as [`RawRules`] and parsed again when read
/// back, so a stored copy cannot smuggle in a rule that [`ChallengeRules::parse`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRules", into = "RawRules")]
pub struct ChallengeRules {
    entry_fee: Points,
    capacity: u32,
    min_participants: u32,
    recruit_ends_at: i64,
    starts_at: i64,
    ends_at: i64,
    weeks: u32,
    days_per_week: u32,
    window_start_minutes: u32,
    window_end_minutes: u32,
    time_zone: TimeZone,
    house_fee_bps: u32,
}

/// Where a proof's timestamp falls: the challenge day (0-based, local to the challenge's time zone)
/// and its week (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProofSlot {
    pub day: u32,
    pub week: u32,
}

/// Why a timestamp is not inside a proof window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutsideWindow {
    #[error("the challenge has not started yet")]
    BeforeStart,
    #[error("the challenge has ended")]
    AfterEnd,
    #[error("day {day} of the challenge is outside today's proof window")]
    OutsideDailyWindow { day: u32 },
}

impl ChallengeRules {
    /// Checks every rule of a new challenge, in the order of the request's fields.
    ///
    /// Whether `recruit_ends_at` is still in the future depends on the clock, which this pure crate
    /// does not read: the caller checks it.
    ///
    /// # Errors
    /// The first broken rule, as a [`RulesError`] variant.
    pub fn parse(raw: &RawRules) -> Result<Self, RulesError> {
        let entry_fee_in_range = (ENTRY_FEE_POINTS_MIN..=ENTRY_FEE_POINTS_MAX)
            .contains(&raw.entry_fee)
            && raw.entry_fee % ENTRY_FEE_POINTS_STEP == 0;
        if !entry_fee_in_range {
            return Err(RulesError::EntryFee);
        }
        let entry_fee = Points::new(raw.entry_fee).map_err(|_| RulesError::EntryFee)?;

        if !(CAPACITY_MIN..=CAPACITY_MAX).contains(&raw.capacity) {
            return Err(RulesError::Capacity);
        }
        let capacity = u32::try_from(raw.capacity).map_err(|_| RulesError::Capacity)?;

        if !(MIN_PARTICIPANTS_MIN..=raw.capacity).contains(&raw.min_participants) {
            return Err(RulesError::MinParticipants);
        }
        let min_participants =
            u32::try_from(raw.min_participants).map_err(|_| RulesError::MinParticipants)?;

        for (field, at) in [
            ("recruit_ends_at", raw.recruit_ends_at),
            ("starts_at", raw.starts_at),
            ("ends_at", raw.ends_at),
        ] {
            if !(UNIX_SECONDS_MIN..=UNIX_SECONDS_MAX).contains(&at) {
                return Err(RulesError::TimeOutOfRange { field });
            }
        }
        if raw.recruit_ends_at > raw.starts_at {
            return Err(RulesError::RecruitEndsAfterStart);
        }
        if raw.ends_at <= raw.starts_at {
            return Err(RulesError::EndsNotAfterStart);
        }
        // Both in range and ordered, so the difference is positive and cannot overflow.
        let length_seconds = raw.ends_at - raw.starts_at;
        if length_seconds % SECONDS_PER_WEEK != 0 {
            return Err(RulesError::Duration);
        }
        let weeks = u32::try_from(length_seconds / SECONDS_PER_WEEK)
            .ok()
            .filter(|weeks| (WEEKS_MIN..=WEEKS_MAX).contains(weeks))
            .ok_or(RulesError::Duration)?;

        let zone = time_zone(&raw.proof.time_zone).ok_or(RulesError::TimeZone)?;
        let local_start = raw.starts_at + i64::from(zone.utc_offset_seconds);
        if local_start.rem_euclid(SECONDS_PER_DAY) != 0 {
            return Err(RulesError::StartNotLocalMidnight);
        }

        if !(PROOF_DAYS_PER_WEEK_MIN..=PROOF_DAYS_PER_WEEK_MAX).contains(&raw.proof.days_per_week) {
            return Err(RulesError::DaysPerWeek);
        }
        let days_per_week =
            u32::try_from(raw.proof.days_per_week).map_err(|_| RulesError::DaysPerWeek)?;

        let window_start_minutes = parse_time_of_day(&raw.proof.window_start, false).ok_or(
            RulesError::WindowTimeFormat {
                field: "proof.window_start",
            },
        )?;
        let window_end_minutes =
            parse_time_of_day(&raw.proof.window_end, true).ok_or(RulesError::WindowTimeFormat {
                field: "proof.window_end",
            })?;
        if window_end_minutes <= window_start_minutes {
            return Err(RulesError::WindowOrder);
        }
        if window_end_minutes - window_start_minutes < PROOF_WINDOW_MINUTES_MIN {
            return Err(RulesError::WindowTooShort);
        }

        let house_fee_bps = u32::try_from(raw.house_fee_bps)
            .ok()
            .filter(|bps| *bps <= HOUSE_FEE_BPS_MAX)
            .ok_or(RulesError::HouseFee)?;

        Ok(ChallengeRules {
            entry_fee,
            capacity,
            min_participants,
            recruit_ends_at: raw.recruit_ends_at,
            starts_at: raw.starts_at,
            ends_at: raw.ends_at,
            weeks,
            days_per_week,
            window_start_minutes,
            window_end_minutes,
            time_zone: zone,
            house_fee_bps,
        })
    }

    #[must_use]
    pub const fn entry_fee(&self) -> Points {
        self.entry_fee
    }

    #[must_use]
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    #[must_use]
    pub const fn min_participants(&self) -> u32 {
        self.min_participants
    }

    /// Unix seconds at which recruitment closes (`RECRUITING` → `READY`).
    #[must_use]
    pub const fn recruit_ends_at(&self) -> i64 {
        self.recruit_ends_at
    }

    /// Unix seconds of the local midnight that begins day 0.
    #[must_use]
    pub const fn starts_at(&self) -> i64 {
        self.starts_at
    }

    /// Unix seconds of the local midnight after the last day (exclusive).
    #[must_use]
    pub const fn ends_at(&self) -> i64 {
        self.ends_at
    }

    #[must_use]
    pub const fn weeks(&self) -> u32 {
        self.weeks
    }

    /// Days of the challenge (`weeks × 7`); days are numbered `0..total_days()`.
    #[must_use]
    pub const fn total_days(&self) -> u32 {
        self.weeks * DAYS_PER_WEEK
    }

    #[must_use]
    pub const fn days_per_week(&self) -> u32 {
        self.days_per_week
    }

    /// Proof days needed for 100%: `weeks × days_per_week`.
    #[must_use]
    pub const fn required_days(&self) -> u32 {
        self.weeks * self.days_per_week
    }

    #[must_use]
    pub const fn house_fee_bps(&self) -> u32 {
        self.house_fee_bps
    }

    /// The IANA name of the challenge's time zone.
    #[must_use]
    pub const fn time_zone(&self) -> &str {
        self.time_zone.name
    }

    #[must_use]
    pub const fn utc_offset_seconds(&self) -> i32 {
        self.time_zone.utc_offset_seconds
    }

    /// Minutes after local midnight at which each day's window opens (inclusive).
    #[must_use]
    pub const fn window_start_minutes(&self) -> u32 {
        self.window_start_minutes
    }

    /// Minutes after local midnight at which each day's window closes (exclusive; at most 1,440).
    #[must_use]
    pub const fn window_end_minutes(&self) -> u32 {
        self.window_end_minutes
    }

    /// The challenge day (0-based, local) a timestamp falls on, whatever the time of day; `None`
    /// before the start and from the end on.
    #[must_use]
    pub fn day_of(&self, at_unix_seconds: i64) -> Option<u32> {
        if at_unix_seconds < self.starts_at || at_unix_seconds >= self.ends_at {
            return None;
        }
        // starts_at is a local midnight and every local day is 86,400 s (fixed-offset zones).
        u32::try_from((at_unix_seconds - self.starts_at) / SECONDS_PER_DAY).ok()
    }

    /// The local calendar date of a timestamp in the challenge's time zone, as days since
    /// 1970-01-01 (negative before it): the "day" of a per-day bound such as the reports a
    /// participant may make. Unlike [`Self::day_of`] it is defined before the start and after the
    /// end, so reports during the review window have a day too. Fixed offsets make it one division.
    #[must_use]
    pub fn local_date(&self, at_unix_seconds: i64) -> i64 {
        (at_unix_seconds + i64::from(self.time_zone.utc_offset_seconds)).div_euclid(SECONDS_PER_DAY)
    }

    /// Where a proof submitted at `at_unix_seconds` (the server's clock) counts: its challenge day
    /// and week, if it falls inside the challenge and inside that day's window `[start, end)`.
    ///
    /// # Errors
    /// [`OutsideWindow`] says whether it is before the start, after the end, or outside the day's
    /// window.
    pub fn proof_slot(&self, at_unix_seconds: i64) -> Result<ProofSlot, OutsideWindow> {
        if at_unix_seconds < self.starts_at {
            return Err(OutsideWindow::BeforeStart);
        }
        let day = self
            .day_of(at_unix_seconds)
            .ok_or(OutsideWindow::AfterEnd)?;
        if at_unix_seconds < self.window_opens_at(day)
            || at_unix_seconds >= self.window_closes_at(day)
        {
            return Err(OutsideWindow::OutsideDailyWindow { day });
        }
        Ok(ProofSlot {
            day,
            week: day / DAYS_PER_WEEK,
        })
    }

    /// Unix seconds at which the window of challenge day `day` opens (inclusive).
    #[must_use]
    pub fn window_opens_at(&self, day: u32) -> i64 {
        self.local_day_start(day) + i64::from(self.window_start_minutes) * SECONDS_PER_MINUTE
    }

    /// Unix seconds at which the window of challenge day `day` closes (exclusive): the moment
    /// reminders count down to. For a day past the end it is still the same arithmetic; callers
    /// iterate `0..total_days()`.
    #[must_use]
    pub fn window_closes_at(&self, day: u32) -> i64 {
        self.local_day_start(day) + i64::from(self.window_end_minutes) * SECONDS_PER_MINUTE
    }

    /// Unix seconds of the local midnight that begins challenge day `day`. `starts_at` is at most
    /// year 9999 (about 2.5·10¹¹ s) and `day × 86,400` at most about 3.7·10¹⁴, far inside `i64`.
    fn local_day_start(&self, day: u32) -> i64 {
        self.starts_at + i64::from(day) * SECONDS_PER_DAY
    }

    /// How many of the approved proof days count toward the achievement rate: each day once, days
    /// outside the challenge not at all, and at most `days_per_week` in any week (a participant who
    /// proves every day of a 3-days-a-week challenge is at 100%, not above it).
    ///
    /// `approved_days` are challenge day indexes in any order, duplicates allowed.
    #[must_use]
    pub fn counted_days(&self, approved_days: &[u32]) -> u32 {
        const WEEK_MASK: u64 = (1 << DAYS_PER_WEEK) - 1;
        let total_days = self.total_days();
        let mut approved: u64 = 0;
        for &day in approved_days {
            if day < total_days {
                approved |= 1 << day;
            }
        }
        (0..self.weeks)
            .map(|week| {
                let in_week = (approved >> (week * DAYS_PER_WEEK)) & WEEK_MASK;
                in_week.count_ones().min(self.days_per_week)
            })
            .sum()
    }
}

/// The achievement rate `counted / required` in basis points (0–10,000), rounded down. `counted`
/// above `required` counts as 100%; a `required` of 0 (which no parsed rules have) gives 0.
#[must_use]
pub fn achievement_basis_points(counted: u32, required: u32) -> u32 {
    if required == 0 {
        return 0;
    }
    let counted = u64::from(counted.min(required));
    let basis_points = counted * u64::from(BASIS_POINTS_PER_WHOLE) / u64::from(required);
    u32::try_from(basis_points).unwrap_or(BASIS_POINTS_PER_WHOLE)
}

/// Minutes after midnight of `"HH:MM"` (exactly five characters, 00:00–23:59), or of `"24:00"`
/// when `end_of_day_allowed`.
fn parse_time_of_day(raw: &str, end_of_day_allowed: bool) -> Option<u32> {
    let &[h1, h2, b':', m1, m2] = raw.as_bytes() else {
        return None;
    };
    if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let hours = u32::from(h1 - b'0') * 10 + u32::from(h2 - b'0');
    let minutes = u32::from(m1 - b'0') * 10 + u32::from(m2 - b'0');
    let minute_of_day = hours * 60 + minutes;
    let in_day = hours < 24 && minutes < 60;
    let end_of_day = end_of_day_allowed && minute_of_day == MINUTES_PER_DAY && minutes == 0;
    (in_day || end_of_day).then_some(minute_of_day)
}

fn format_time_of_day(minute_of_day: u32) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

impl TryFrom<RawRules> for ChallengeRules {
    type Error = RulesError;
    fn try_from(raw: RawRules) -> Result<Self, Self::Error> {
        ChallengeRules::parse(&raw)
    }
}

impl From<ChallengeRules> for RawRules {
    fn from(rules: ChallengeRules) -> RawRules {
        RawRules {
            entry_fee: rules.entry_fee.get(),
            capacity: i64::from(rules.capacity),
            min_participants: i64::from(rules.min_participants),
            recruit_ends_at: rules.recruit_ends_at,
            starts_at: rules.starts_at,
            ends_at: rules.ends_at,
            proof: RawProofRules {
                days_per_week: i64::from(rules.days_per_week),
                window_start: format_time_of_day(rules.window_start_minutes),
                window_end: format_time_of_day(rules.window_end_minutes),
                time_zone: rules.time_zone.name.to_owned(),
            },
            house_fee_bps: i64::from(rules.house_fee_bps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 00:00 in Seoul (+09:00), a Monday.
    const SEOUL_MIDNIGHT: i64 = 1_796_569_200;
    /// 2026-12-07 00:00 in Kolkata (+05:30).
    const KOLKATA_MIDNIGHT: i64 = 1_796_581_800;
    const HOUR: i64 = 3_600;
    const MINUTE: i64 = 60;

    /// A two-week, 5-days-a-week "wake up at 6" challenge in Seoul: window 05:00–06:10.
    fn raw() -> RawRules {
        RawRules {
            entry_fee: 10_000,
            capacity: 100,
            min_participants: 5,
            recruit_ends_at: SEOUL_MIDNIGHT - SECONDS_PER_DAY,
            starts_at: SEOUL_MIDNIGHT,
            ends_at: SEOUL_MIDNIGHT + 2 * SECONDS_PER_WEEK,
            proof: RawProofRules {
                days_per_week: 5,
                window_start: "05:00".to_owned(),
                window_end: "06:10".to_owned(),
                time_zone: "Asia/Seoul".to_owned(),
            },
            house_fee_bps: 1_000,
        }
    }

    fn parsed(raw: &RawRules) -> ChallengeRules {
        match ChallengeRules::parse(raw) {
            Ok(rules) => rules,
            Err(error) => panic!("valid rules refused: {error} ({raw:?})"),
        }
    }

    fn with(change: impl FnOnce(&mut RawRules)) -> RawRules {
        let mut raw = raw();
        change(&mut raw);
        raw
    }

    fn error_of(change: impl FnOnce(&mut RawRules)) -> Option<RulesError> {
        ChallengeRules::parse(&with(change)).err()
    }

    #[test]
    fn valid_rules_parse_and_expose_every_value() {
        let rules = parsed(&raw());
        assert_eq!(
            rules.entry_fee(),
            Points::new(10_000).unwrap_or(Points::ZERO)
        );
        assert_eq!(rules.capacity(), 100);
        assert_eq!(rules.min_participants(), 5);
        assert_eq!(rules.recruit_ends_at(), SEOUL_MIDNIGHT - SECONDS_PER_DAY);
        assert_eq!(rules.starts_at(), SEOUL_MIDNIGHT);
        assert_eq!(rules.ends_at(), SEOUL_MIDNIGHT + 14 * SECONDS_PER_DAY);
        assert_eq!(rules.weeks(), 2);
        assert_eq!(rules.total_days(), 14);
        assert_eq!(rules.days_per_week(), 5);
        assert_eq!(rules.required_days(), 10);
        assert_eq!(rules.house_fee_bps(), 1_000);
        assert_eq!(rules.time_zone(), "Asia/Seoul");
        assert_eq!(rules.utc_offset_seconds(), 9 * 3_600);
        assert_eq!(rules.window_start_minutes(), 5 * 60);
        assert_eq!(rules.window_end_minutes(), 6 * 60 + 10);
    }

    #[test]
    fn the_entry_fee_is_one_to_two_hundred_thousand_points_in_steps_of_a_thousand() {
        for fee in [1_000, 2_000, 199_000, 200_000] {
            assert_eq!(error_of(|r| r.entry_fee = fee), None, "{fee}");
        }
        for fee in [
            0,
            999,
            1_001,
            1_500,
            200_001,
            201_000,
            -1_000,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                error_of(|r| r.entry_fee = fee),
                Some(RulesError::EntryFee),
                "{fee}"
            );
        }
    }

    #[test]
    fn the_capacity_is_two_to_ten_thousand() {
        for capacity in [2, 10_000] {
            assert_eq!(
                error_of(|r| {
                    r.capacity = capacity;
                    r.min_participants = 2;
                }),
                None
            );
        }
        for capacity in [1, 0, -5, 10_001, i64::MAX] {
            assert_eq!(
                error_of(|r| r.capacity = capacity),
                Some(RulesError::Capacity),
                "{capacity}"
            );
        }
    }

    #[test]
    fn the_minimum_number_of_participants_is_two_up_to_the_capacity() {
        for min in [2, 100] {
            assert_eq!(error_of(|r| r.min_participants = min), None, "{min}");
        }
        for min in [1, 0, -1, 101] {
            assert_eq!(
                error_of(|r| r.min_participants = min),
                Some(RulesError::MinParticipants),
                "{min}"
            );
        }
    }

    #[test]
    fn recruitment_may_end_exactly_when_the_challenge_starts_but_not_after() {
        assert_eq!(error_of(|r| r.recruit_ends_at = r.starts_at), None);
        assert_eq!(
            error_of(|r| r.recruit_ends_at = r.starts_at + 1),
            Some(RulesError::RecruitEndsAfterStart)
        );
    }

    #[test]
    fn a_challenge_must_end_after_it_starts() {
        assert_eq!(
            error_of(|r| r.ends_at = r.starts_at),
            Some(RulesError::EndsNotAfterStart)
        );
        assert_eq!(
            error_of(|r| r.ends_at = r.starts_at - SECONDS_PER_WEEK),
            Some(RulesError::EndsNotAfterStart)
        );
    }

    #[test]
    fn a_challenge_lasts_one_to_eight_whole_weeks() {
        for weeks in [1, 8] {
            let rules = parsed(&with(|r| {
                r.ends_at = r.starts_at + weeks * SECONDS_PER_WEEK;
            }));
            assert_eq!(i64::from(rules.weeks()), weeks);
        }
        for length in [
            9 * SECONDS_PER_WEEK,
            SECONDS_PER_WEEK + 1,
            SECONDS_PER_WEEK - 1,
            6 * SECONDS_PER_DAY,
            10 * SECONDS_PER_DAY,
            1,
        ] {
            assert_eq!(
                error_of(|r| r.ends_at = r.starts_at + length),
                Some(RulesError::Duration),
                "{length}"
            );
        }
    }

    #[test]
    fn times_outside_1970_to_9999_are_refused_by_name() {
        assert_eq!(
            error_of(|r| r.recruit_ends_at = -1),
            Some(RulesError::TimeOutOfRange {
                field: "recruit_ends_at"
            })
        );
        assert_eq!(
            error_of(|r| r.starts_at = i64::MIN),
            Some(RulesError::TimeOutOfRange { field: "starts_at" })
        );
        assert_eq!(
            error_of(|r| r.ends_at = UNIX_SECONDS_MAX + 1),
            Some(RulesError::TimeOutOfRange { field: "ends_at" })
        );
        assert_eq!(
            error_of(|r| r.ends_at = i64::MAX),
            Some(RulesError::TimeOutOfRange { field: "ends_at" })
        );
    }

    #[test]
    fn a_challenge_starts_at_local_midnight_in_seoul_not_at_utc_midnight() {
        assert_eq!(error_of(|_| {}), None);
        let utc_midnight = SEOUL_MIDNIGHT + 9 * HOUR;
        assert_eq!(
            error_of(|r| {
                r.starts_at = utc_midnight;
                r.ends_at = utc_midnight + SECONDS_PER_WEEK;
            }),
            Some(RulesError::StartNotLocalMidnight)
        );
        assert_eq!(
            error_of(|r| {
                r.starts_at += 1;
                r.ends_at += 1;
            }),
            Some(RulesError::StartNotLocalMidnight)
        );
    }

    #[test]
    fn a_challenge_in_kolkata_starts_at_its_half_hour_offset_midnight() {
        let kolkata = |starts_at: i64| {
            with(|r| {
                r.proof.time_zone = "Asia/Kolkata".to_owned();
                r.recruit_ends_at = starts_at;
                r.starts_at = starts_at;
                r.ends_at = starts_at + SECONDS_PER_WEEK;
            })
        };
        let rules = parsed(&kolkata(KOLKATA_MIDNIGHT));
        assert_eq!(rules.utc_offset_seconds(), 5 * 3_600 + 30 * 60);
        for off_by in [30 * MINUTE, -30 * MINUTE, HOUR, -5 * HOUR] {
            assert_eq!(
                ChallengeRules::parse(&kolkata(KOLKATA_MIDNIGHT + off_by)).err(),
                Some(RulesError::StartNotLocalMidnight),
                "{off_by}"
            );
        }
    }

    #[test]
    fn every_zone_of_the_table_is_accepted_at_its_own_midnight() {
        for zone in TIME_ZONES {
            // 2026-12-07 00:00 UTC, moved to that zone's local midnight.
            let starts_at = SEOUL_MIDNIGHT + 9 * HOUR - i64::from(zone.utc_offset_seconds());
            let rules = parsed(&with(|r| {
                r.proof.time_zone = zone.name().to_owned();
                r.starts_at = starts_at;
                r.recruit_ends_at = starts_at;
                r.ends_at = starts_at + SECONDS_PER_WEEK;
            }));
            assert_eq!(rules.time_zone(), zone.name());
            assert!(
                RulesError::TimeZone.to_string().contains(zone.name()),
                "the message lists {}",
                zone.name()
            );
        }
    }

    #[test]
    fn zones_outside_the_table_are_refused() {
        for zone in [
            "asia/seoul",
            "Asia/Seoul ",
            "KST",
            "+09:00",
            "America/New_York",
            "Europe/London",
            "",
        ] {
            assert_eq!(
                error_of(|r| r.proof.time_zone = zone.to_owned()),
                Some(RulesError::TimeZone),
                "{zone}"
            );
        }
    }

    #[test]
    fn proofs_are_required_one_to_seven_days_a_week() {
        for days in [1, 7] {
            let rules = parsed(&with(|r| r.proof.days_per_week = days));
            assert_eq!(i64::from(rules.required_days()), 2 * days);
        }
        for days in [0, 8, -1] {
            assert_eq!(
                error_of(|r| r.proof.days_per_week = days),
                Some(RulesError::DaysPerWeek),
                "{days}"
            );
        }
    }

    #[test]
    fn window_times_are_exactly_hh_colon_mm() {
        assert_eq!(
            error_of(|r| {
                r.proof.window_start = "00:00".to_owned();
                r.proof.window_end = "23:59".to_owned();
            }),
            None
        );
        for bad in [
            "5:00",
            "05:0",
            "0500",
            "05-00",
            " 05:00",
            "05:00 ",
            "ab:cd",
            "23:60",
            "25:00",
            "24:00",
            "-1:00",
            "05:00:00",
            "",
            "０５:００",
        ] {
            assert_eq!(
                error_of(|r| r.proof.window_start = bad.to_owned()),
                Some(RulesError::WindowTimeFormat {
                    field: "proof.window_start"
                }),
                "{bad}"
            );
        }
        for bad in ["24:01", "24:30", "6:10", "06:10pm"] {
            assert_eq!(
                error_of(|r| r.proof.window_end = bad.to_owned()),
                Some(RulesError::WindowTimeFormat {
                    field: "proof.window_end"
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_window_may_end_at_24_00_to_cover_the_rest_of_the_day() {
        let rules = parsed(&with(|r| {
            r.proof.window_start = "00:00".to_owned();
            r.proof.window_end = "24:00".to_owned();
        }));
        assert_eq!(rules.window_end_minutes(), MINUTES_PER_DAY);
        assert_eq!(rules.window_closes_at(0), SEOUL_MIDNIGHT + SECONDS_PER_DAY);
        assert_eq!(
            rules
                .proof_slot(SEOUL_MIDNIGHT + SECONDS_PER_DAY - 1)
                .map(|s| s.day),
            Ok(0)
        );
        assert_eq!(
            rules
                .proof_slot(SEOUL_MIDNIGHT + SECONDS_PER_DAY)
                .map(|s| s.day),
            Ok(1)
        );
    }

    #[test]
    fn a_window_cannot_cross_midnight_or_be_empty() {
        for (start, end) in [("23:00", "01:00"), ("06:00", "06:00"), ("06:10", "05:00")] {
            assert_eq!(
                error_of(|r| {
                    r.proof.window_start = start.to_owned();
                    r.proof.window_end = end.to_owned();
                }),
                Some(RulesError::WindowOrder),
                "{start}–{end}"
            );
        }
    }

    #[test]
    fn a_window_is_at_least_ten_minutes_long() {
        assert_eq!(error_of(|r| r.proof.window_end = "05:10".to_owned()), None);
        assert_eq!(
            error_of(|r| r.proof.window_end = "05:09".to_owned()),
            Some(RulesError::WindowTooShort)
        );
        assert_eq!(
            error_of(|r| {
                r.proof.window_start = "23:50".to_owned();
                r.proof.window_end = "24:00".to_owned();
            }),
            None
        );
    }

    #[test]
    fn the_house_fee_is_zero_to_three_thousand_basis_points() {
        for bps in [0, 3_000] {
            let rules = parsed(&with(|r| r.house_fee_bps = bps));
            assert_eq!(i64::from(rules.house_fee_bps()), bps);
        }
        for bps in [-1, 3_001, 10_000, i64::MAX] {
            assert_eq!(
                error_of(|r| r.house_fee_bps = bps),
                Some(RulesError::HouseFee),
                "{bps}"
            );
        }
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (RulesError::EntryFee, "entry_fee"),
            (RulesError::Capacity, "capacity"),
            (RulesError::MinParticipants, "min_participants"),
            (
                RulesError::TimeOutOfRange { field: "starts_at" },
                "starts_at",
            ),
            (RulesError::RecruitEndsAfterStart, "recruit_ends_at"),
            (RulesError::EndsNotAfterStart, "ends_at"),
            (RulesError::Duration, "ends_at"),
            (RulesError::StartNotLocalMidnight, "starts_at"),
            (RulesError::DaysPerWeek, "proof.days_per_week"),
            (
                RulesError::WindowTimeFormat {
                    field: "proof.window_start",
                },
                "proof.window_start",
            ),
            (RulesError::WindowOrder, "proof.window_end"),
            (RulesError::WindowTooShort, "proof.window_end"),
            (RulesError::TimeZone, "proof.time_zone"),
            (RulesError::HouseFee, "house_fee_bps"),
        ];
        for (error, field) in cases {
            assert_eq!(error.field(), field, "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn the_request_body_of_post_challenges_deserializes_into_raw_rules() {
        let body = serde_json::json!({
            "title": "6시 기상",
            "description": "매일 아침 6시",
            "category": "habit",
            "entry_fee": 10_000,
            "capacity": 100,
            "min_participants": 5,
            "recruit_ends_at": SEOUL_MIDNIGHT - SECONDS_PER_DAY,
            "starts_at": SEOUL_MIDNIGHT,
            "ends_at": SEOUL_MIDNIGHT + 2 * SECONDS_PER_WEEK,
            "proof": {
                "days_per_week": 5,
                "window_start": "05:00",
                "window_end": "06:10",
                "time_zone": "Asia/Seoul"
            },
            "house_fee_bps": 1_000
        });
        let decoded: Result<RawRules, _> = serde_json::from_value(body);
        assert_eq!(decoded.ok(), Some(raw()));
    }

    #[test]
    fn stored_rules_round_trip_and_broken_stored_rules_do_not_load() {
        let rules = parsed(&with(|r| r.proof.window_end = "24:00".to_owned()));
        let json = serde_json::to_string(&rules).unwrap_or_default();
        let back: Result<ChallengeRules, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(rules));

        let mut broken = serde_json::to_value(raw()).unwrap_or_default();
        broken["house_fee_bps"] = serde_json::json!(9_999);
        assert!(serde_json::from_value::<ChallengeRules>(broken).is_err());
    }

    #[test]
    fn a_proof_counts_from_the_first_second_of_the_window() {
        let rules = parsed(&raw());
        let opens = SEOUL_MIDNIGHT + 5 * HOUR;
        assert_eq!(rules.window_opens_at(0), opens);
        assert_eq!(rules.proof_slot(opens), Ok(ProofSlot { day: 0, week: 0 }));
        assert_eq!(
            rules.proof_slot(opens - 1),
            Err(OutsideWindow::OutsideDailyWindow { day: 0 })
        );
    }

    #[test]
    fn a_proof_at_the_closing_second_of_the_window_is_too_late() {
        let rules = parsed(&raw());
        let closes = SEOUL_MIDNIGHT + 6 * HOUR + 10 * MINUTE;
        assert_eq!(rules.window_closes_at(0), closes);
        assert_eq!(
            rules.proof_slot(closes - 1),
            Ok(ProofSlot { day: 0, week: 0 })
        );
        assert_eq!(
            rules.proof_slot(closes),
            Err(OutsideWindow::OutsideDailyWindow { day: 0 })
        );
    }

    #[test]
    fn proofs_before_the_start_and_from_the_end_on_are_refused() {
        let rules = parsed(&with(|r| {
            r.proof.window_start = "00:00".to_owned();
            r.proof.window_end = "24:00".to_owned();
        }));
        assert_eq!(
            rules.proof_slot(SEOUL_MIDNIGHT - 1),
            Err(OutsideWindow::BeforeStart)
        );
        assert_eq!(
            rules.proof_slot(rules.ends_at() - 1),
            Ok(ProofSlot { day: 13, week: 1 })
        );
        assert_eq!(
            rules.proof_slot(rules.ends_at()),
            Err(OutsideWindow::AfterEnd)
        );
        assert_eq!(rules.proof_slot(i64::MAX), Err(OutsideWindow::AfterEnd));
        assert_eq!(rules.proof_slot(i64::MIN), Err(OutsideWindow::BeforeStart));
    }

    #[test]
    fn the_eighth_day_is_the_first_of_week_two() {
        let rules = parsed(&raw());
        let day_7_window = rules.window_opens_at(7);
        assert_eq!(
            day_7_window,
            SEOUL_MIDNIGHT + 7 * SECONDS_PER_DAY + 5 * HOUR
        );
        assert_eq!(
            rules.proof_slot(day_7_window),
            Ok(ProofSlot { day: 7, week: 1 })
        );
        assert_eq!(
            rules.proof_slot(rules.window_opens_at(6)),
            Ok(ProofSlot { day: 6, week: 0 })
        );
    }

    #[test]
    fn days_follow_the_local_calendar_in_kolkata_not_the_utc_date() {
        let rules = parsed(&with(|r| {
            r.proof.time_zone = "Asia/Kolkata".to_owned();
            r.recruit_ends_at = KOLKATA_MIDNIGHT;
            r.starts_at = KOLKATA_MIDNIGHT;
            r.ends_at = KOLKATA_MIDNIGHT + SECONDS_PER_WEEK;
            r.proof.window_start = "00:00".to_owned();
            r.proof.window_end = "00:30".to_owned();
        }));
        // 00:05 local on day 1 is 18:35 UTC of the calendar day before.
        let local_0005_day_1 = KOLKATA_MIDNIGHT + SECONDS_PER_DAY + 5 * MINUTE;
        assert_eq!(
            local_0005_day_1.rem_euclid(SECONDS_PER_DAY),
            18 * HOUR + 35 * MINUTE
        );
        assert_eq!(
            rules.proof_slot(local_0005_day_1),
            Ok(ProofSlot { day: 1, week: 0 })
        );
        assert_eq!(rules.day_of(local_0005_day_1 - 6 * MINUTE), Some(0));
        assert_eq!(
            rules.window_closes_at(1),
            KOLKATA_MIDNIGHT + SECONDS_PER_DAY + 30 * MINUTE
        );
    }

    #[test]
    fn the_day_of_a_time_ignores_the_window_but_not_the_challenge_bounds() {
        let rules = parsed(&raw());
        assert_eq!(rules.day_of(SEOUL_MIDNIGHT - 1), None);
        assert_eq!(rules.day_of(SEOUL_MIDNIGHT), Some(0));
        assert_eq!(rules.day_of(SEOUL_MIDNIGHT + 23 * HOUR), Some(0));
        assert_eq!(rules.day_of(SEOUL_MIDNIGHT + SECONDS_PER_DAY), Some(1));
        assert_eq!(rules.day_of(rules.ends_at() - 1), Some(13));
        assert_eq!(rules.day_of(rules.ends_at()), None);
    }

    #[test]
    fn the_local_date_turns_at_local_midnight_before_during_and_after_the_challenge() {
        let rules = parsed(&raw());
        // 2026-12-07 is day 20,794 since 1970-01-01.
        let date = 20_794;
        assert_eq!(SEOUL_MIDNIGHT + 9 * HOUR, date * SECONDS_PER_DAY);
        assert_eq!(rules.local_date(SEOUL_MIDNIGHT), date);
        assert_eq!(rules.local_date(SEOUL_MIDNIGHT - 1), date - 1);
        assert_eq!(rules.local_date(SEOUL_MIDNIGHT + SECONDS_PER_DAY - 1), date);
        // After the end (the review window): still a day, 14 after the start.
        assert_eq!(rules.local_date(rules.ends_at() + 23 * HOUR), date + 14);
        // Before 1970 the date is negative, not rounded toward zero.
        assert_eq!(rules.local_date(-9 * HOUR - 1), -1);
    }

    #[test]
    fn at_most_days_per_week_approved_days_count_in_any_week() {
        let rules = parsed(&with(|r| r.proof.days_per_week = 3));
        // Every day of week 0 (7 proofs) and two days of week 1.
        let approved = [0, 1, 2, 3, 4, 5, 6, 8, 12];
        assert_eq!(rules.counted_days(&approved), 3 + 2);
        assert_eq!(rules.required_days(), 6);
        let every_day: Vec<u32> = (0..14).collect();
        assert_eq!(rules.counted_days(&every_day), rules.required_days());
    }

    #[test]
    fn duplicate_unsorted_and_out_of_range_days_are_counted_once_or_not_at_all() {
        let rules = parsed(&raw());
        assert_eq!(rules.counted_days(&[9, 2, 2, 9, 0, 14, 99, u32::MAX]), 3);
        assert_eq!(rules.counted_days(&[]), 0);
    }

    #[test]
    fn an_eight_week_daily_challenge_counts_all_fifty_six_days() {
        let rules = parsed(&with(|r| {
            r.ends_at = r.starts_at + 8 * SECONDS_PER_WEEK;
            r.proof.days_per_week = 7;
        }));
        let every_day: Vec<u32> = (0..56).rev().collect();
        assert_eq!(rules.counted_days(&every_day), 56);
        assert_eq!(rules.required_days(), 56);
    }

    #[test]
    fn the_achievement_rate_is_in_basis_points_rounded_down() {
        assert_eq!(achievement_basis_points(0, 10), 0);
        assert_eq!(achievement_basis_points(10, 10), 10_000);
        assert_eq!(achievement_basis_points(13, 14), 9_285);
        assert_eq!(achievement_basis_points(1, 3), 3_333);
        assert_eq!(achievement_basis_points(2, 3), 6_666);
        assert_eq!(achievement_basis_points(11, 10), 10_000);
        assert_eq!(achievement_basis_points(5, 0), 0);
        assert_eq!(achievement_basis_points(u32::MAX, u32::MAX), 10_000);
    }
}

//! The `ChallengeRoom`'s join logic: a plain state machine over a small storage trait.
//!
//! The room answers what it can without the core — ALREADY_JOINED, CHALLENGE_FULL,
//! CHALLENGE_NOT_RECRUITING — and holds a *pending* seat for every join it forwards, before the
//! call, so two requests interleaving at the call's `await` can never both take the last seat. The
//! core's definite answer confirms the seat or releases it; an indefinite one (timeout, 5xx) keeps
//! it pending, and the room's alarm retries it with the same key until the answer is definite. The
//! core's join is idempotent by `join:{challenge}:{user}`, so a retry can never charge twice.
//!
//! A pending seat is never retried while a call for it may still be running: every call (the
//! first, forwarded by the request, and each retry by the alarm) moves the seat's retry time to
//! at least [`CALL_MS_MAX`] after the call began. And every call carries the session the user
//! joined with, so a session revoked meanwhile is refused by the core on the retry too.

use nene_domain::limits::CORE_TIMEOUT_MS;
use serde::{Deserialize, Serialize};

/// First delay before retrying a join whose outcome is unknown: long enough for a restarting
/// core to come back, short enough that the user sees the outcome within a second or two.
pub const RETRY_DELAY_MS_MIN: i64 = 500;
/// Longest delay between retries: a core outage of hours still gets a retry every minute.
pub const RETRY_DELAY_MS_MAX: i64 = 60_000;
const _: () = assert!(RETRY_DELAY_MS_MIN < RETRY_DELAY_MS_MAX);

/// What a call to the core may take past its own timeout before the room has its verdict in
/// hand: reading the reply, the object's storage writes, the event loop's scheduling. Generous,
/// because retrying a call still in flight is the one thing this bound exists to prevent.
pub const CALL_END_MARGIN_MS: i64 = 1_000;
/// Longest a call of the room to the core can run, from its start until it has certainly ended:
/// the core timeout (after which the call is aborted) plus the margin. A pending seat is retried
/// no sooner than this after a call for it began.
#[allow(clippy::cast_possible_wrap)]
pub const CALL_MS_MAX: i64 = CORE_TIMEOUT_MS as i64 + CALL_END_MARGIN_MS;
const _: () = assert!(CORE_TIMEOUT_MS <= i64::MAX as u64);
const _: () = assert!(CALL_MS_MAX > CORE_TIMEOUT_MS as i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatState {
    /// Forwarded to the core; its outcome is not known yet.
    Pending,
    /// The core seated the user.
    Confirmed,
}

impl SeatState {
    /// The name a room's storage keeps (`seats.state`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SeatState::Pending => "pending",
            SeatState::Confirmed => "confirmed",
        }
    }

    /// Reads a stored name; `None` for anything else.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        [SeatState::Pending, SeatState::Confirmed]
            .into_iter()
            .find(|state| state.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub user: String,
    pub state: SeatState,
    /// Calls made to the core for this seat.
    pub attempts: u32,
    /// When a pending seat is next retried (ms since the epoch).
    pub retry_at_ms: i64,
    /// The access token's id the user joined with: every retry sends it, so the core refuses a
    /// session revoked since. `None` only for seats stored before the room kept it.
    pub session: Option<String>,
}

/// What the room knows of its challenge, synced from the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRules {
    pub capacity: u32,
    pub recruiting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room storage failed: {0}")]
pub struct StoreError(pub String);

/// A room's storage: Durable Object SQLite in production, memory in tests.
pub trait SeatStore {
    /// # Errors
    /// When the store fails.
    fn rules(&self) -> Result<Option<RoomRules>, StoreError>;
    /// # Errors
    /// When the store fails.
    fn set_rules(&mut self, rules: RoomRules) -> Result<(), StoreError>;
    /// # Errors
    /// When the store fails.
    fn seat(&self, user: &str) -> Result<Option<Seat>, StoreError>;
    /// # Errors
    /// When the store fails.
    fn put_seat(&mut self, seat: &Seat) -> Result<(), StoreError>;
    /// # Errors
    /// When the store fails.
    fn remove_seat(&mut self, user: &str) -> Result<(), StoreError>;
    /// Seats held, pending and confirmed.
    ///
    /// # Errors
    /// When the store fails.
    fn seats_held(&self) -> Result<u32, StoreError>;
    /// # Errors
    /// When the store fails.
    fn confirmed(&self) -> Result<u32, StoreError>;
    /// The users of confirmed seats, at most `limit` of them.
    ///
    /// # Errors
    /// When the store fails.
    fn confirmed_users(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Pending seats due for a retry at `now_ms`, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    fn due(&self, now_ms: i64) -> Result<Vec<Seat>, StoreError>;
    /// The earliest retry time of any pending seat.
    ///
    /// # Errors
    /// When the store fails.
    fn next_retry_ms(&self) -> Result<Option<i64>, StoreError>;
}

/// The room's answer to a join request before any call to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    AlreadyJoined,
    /// A join of this user is in flight; its outcome is not known yet (409 REQUEST_IN_PROGRESS).
    InProgress,
    Full,
    NotRecruiting,
    /// The room does not know its challenge yet: fetch the rules from the core, then ask again.
    NeedsRules,
    /// A pending seat is held: forward the join to the core.
    Forward,
}

/// The core's answer to a forwarded join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Joined,
    AlreadyJoined,
    Full,
    NotRecruiting,
    InsufficientPoints,
    NotFound,
    /// The session the user joined with is revoked (signed out, or its refresh family reused).
    Unauthorized,
    /// Timeout, connection failure or 5xx: the join may or may not have happened.
    Unknown,
}

/// What became of a pending seat after the core answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    /// The seat is released; the verdict says why.
    Released(Verdict),
    /// Still pending; retried at this time.
    RetryAt(i64),
}

/// Most participants a sealed roster carries: the largest capacity a challenge may have, so every
/// room can be sealed.
pub const ROSTER_PARTICIPANTS_MAX: usize = 10_000;
const _: () = assert!(ROSTER_PARTICIPANTS_MAX as i64 == nene_domain::rules::CAPACITY_MAX);

/// What a sealed room answers everyone it has not seated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedRefusal {
    Full,
    NotRecruiting,
}

/// A room whose answer to anyone outside `participants` is `refusal` and stays so: no seat is
/// pending (none can be released), and seats are only ever taken during recruitment, so the set
/// cannot change while the room is full, nor at all once recruitment is closed. The only change
/// left is FULL turning into NOT_RECRUITING when recruitment closes. The edge caches it to answer
/// a storm's refusals without the objects (docs/decisions/0006-joins.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRoster {
    pub refusal: SealedRefusal,
    pub participants: Vec<String>,
}

/// The room's answer to `GET /roster` (`protocol::RoomRoute::Roster`): the sealed roster, or `None` while answers may still change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterAnswer {
    pub sealed: Option<SealedRoster>,
}

/// Live counts served by the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCounts {
    pub participants: u32,
    pub pending: u32,
    pub capacity: u32,
}

pub struct JoinRoom<S> {
    pub store: S,
}

fn retry_delay_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (RETRY_DELAY_MS_MIN << doublings).min(RETRY_DELAY_MS_MAX)
}

impl<S: SeatStore> JoinRoom<S> {
    pub fn new(store: S) -> Self {
        JoinRoom { store }
    }

    /// Decides a join request; on `Forward` the pending seat is already stored, with the session
    /// the core will check on this call and on every retry, and its first retry no sooner than
    /// the forwarded call can have ended.
    ///
    /// # Errors
    /// When the store fails (nothing is decided then).
    pub fn admit(
        &mut self,
        user: &str,
        session: Option<&str>,
        now_ms: i64,
    ) -> Result<Admission, StoreError> {
        if let Some(seat) = self.store.seat(user)? {
            return Ok(match seat.state {
                SeatState::Confirmed => Admission::AlreadyJoined,
                SeatState::Pending => Admission::InProgress,
            });
        }
        let Some(rules) = self.store.rules()? else {
            return Ok(Admission::NeedsRules);
        };
        if !rules.recruiting {
            return Ok(Admission::NotRecruiting);
        }
        if self.store.seats_held()? >= rules.capacity {
            return Ok(Admission::Full);
        }
        self.store.put_seat(&Seat {
            user: user.to_owned(),
            state: SeatState::Pending,
            attempts: 1,
            // Not before the call the caller is about to make can have ended: the alarm must
            // never send the same join while the first is still running.
            retry_at_ms: now_ms + CALL_MS_MAX,
            session: session.map(str::to_owned),
        })?;
        Ok(Admission::Forward)
    }

    /// Records the core's answer for `user`'s pending seat. An answer for a seat that is no longer
    /// pending (a duplicate delivery, a retry racing the first reply) changes nothing.
    ///
    /// # Errors
    /// When the store fails.
    pub fn settle(
        &mut self,
        user: &str,
        verdict: Verdict,
        now_ms: i64,
    ) -> Result<Outcome, StoreError> {
        let Some(mut seat) = self.store.seat(user)? else {
            // Released already: the first definite answer won.
            return Ok(Outcome::Released(verdict));
        };
        if seat.state == SeatState::Confirmed {
            return Ok(Outcome::Confirmed);
        }
        match verdict {
            // The user is seated at the core: on a retry after a lost reply, ALREADY_JOINED is
            // the core telling us the first call went through.
            Verdict::Joined | Verdict::AlreadyJoined => {
                seat.state = SeatState::Confirmed;
                self.store.put_seat(&seat)?;
                Ok(Outcome::Confirmed)
            }
            Verdict::Full | Verdict::NotRecruiting => {
                // The core knows better than the room: stop admitting.
                if let Some(mut rules) = self.store.rules()? {
                    if verdict == Verdict::NotRecruiting {
                        rules.recruiting = false;
                    } else {
                        rules.capacity = self.store.confirmed()?;
                    }
                    self.store.set_rules(rules)?;
                }
                self.store.remove_seat(user)?;
                Ok(Outcome::Released(verdict))
            }
            Verdict::InsufficientPoints | Verdict::NotFound | Verdict::Unauthorized => {
                self.store.remove_seat(user)?;
                Ok(Outcome::Released(verdict))
            }
            Verdict::Unknown => {
                seat.attempts = seat.attempts.saturating_add(1);
                seat.retry_at_ms = now_ms + retry_delay_ms(seat.attempts);
                self.store.put_seat(&seat)?;
                Ok(Outcome::RetryAt(seat.retry_at_ms))
            }
        }
    }

    /// Pending seats due for a retry; the alarm forwards each again with the same key.
    ///
    /// # Errors
    /// When the store fails.
    pub fn due(&self, now_ms: i64) -> Result<Vec<Seat>, StoreError> {
        self.store.due(now_ms)
    }

    /// Takes the pending seats due at `now_ms` for a retry the caller is about to make: each is
    /// stored as not due again before that call can have ended ([`CALL_MS_MAX`]), so nothing (a
    /// second alarm, an alarm set by another join meanwhile) sends the same join while this call
    /// runs. The seats come back with the session to send.
    ///
    /// # Errors
    /// When the store fails.
    pub fn claim_due(&mut self, now_ms: i64) -> Result<Vec<Seat>, StoreError> {
        let due = self.store.due(now_ms)?;
        for seat in &due {
            let mut claimed = seat.clone();
            claimed.retry_at_ms = now_ms + CALL_MS_MAX;
            self.store.put_seat(&claimed)?;
        }
        Ok(due)
    }

    /// When the alarm should next fire, if any seat is pending.
    ///
    /// # Errors
    /// When the store fails.
    pub fn next_alarm_ms(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_retry_ms()
    }

    /// The core closed recruitment (its scheduler's push): stop admitting at once. A room that
    /// never learned its rules learns them from the core on its first join, closed already.
    /// Returns whether the room knew its rules.
    ///
    /// # Errors
    /// When the store fails.
    pub fn close_recruitment(&mut self) -> Result<bool, StoreError> {
        let Some(mut rules) = self.store.rules()? else {
            return Ok(false);
        };
        if rules.recruiting {
            rules.recruiting = false;
            self.store.set_rules(rules)?;
        }
        Ok(true)
    }

    /// # Errors
    /// When the store fails.
    pub fn set_rules(&mut self, rules: RoomRules) -> Result<(), StoreError> {
        self.store.set_rules(rules)
    }

    /// The roster, if the room is sealed (see [`SealedRoster`]).
    ///
    /// # Errors
    /// When the store fails.
    pub fn sealed_roster(&self) -> Result<Option<SealedRoster>, StoreError> {
        let Some(rules) = self.store.rules()? else {
            return Ok(None);
        };
        let confirmed = self.store.confirmed()?;
        if self.store.seats_held()? != confirmed {
            // A pending seat may yet be released and taken by someone else.
            return Ok(None);
        }
        let refusal = if !rules.recruiting {
            SealedRefusal::NotRecruiting
        } else if confirmed >= rules.capacity {
            SealedRefusal::Full
        } else {
            return Ok(None);
        };
        let participants = self.store.confirmed_users(ROSTER_PARTICIPANTS_MAX)?;
        if participants.len() != usize::try_from(confirmed).unwrap_or(usize::MAX) {
            // More than a roster may carry: the room answers everyone itself.
            return Ok(None);
        }
        Ok(Some(SealedRoster {
            refusal,
            participants,
        }))
    }

    /// # Errors
    /// When the store fails.
    pub fn counts(&self) -> Result<Option<LiveCounts>, StoreError> {
        let Some(rules) = self.store.rules()? else {
            return Ok(None);
        };
        let participants = self.store.confirmed()?;
        Ok(Some(LiveCounts {
            participants,
            pending: self.store.seats_held()? - participants,
            capacity: rules.capacity,
        }))
    }
}

/// An in-memory store, for tests and as the reference the SQLite store must behave like.
#[derive(Debug, Clone, Default)]
pub struct MemorySeatStore {
    pub rules: Option<RoomRules>,
    pub seats: std::collections::BTreeMap<String, Seat>,
    /// Fail every write from now on (a storage outage).
    pub fail_writes: bool,
}

impl MemorySeatStore {
    fn write(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            Err(StoreError("injected write failure".into()))
        } else {
            Ok(())
        }
    }
}

impl SeatStore for MemorySeatStore {
    fn rules(&self) -> Result<Option<RoomRules>, StoreError> {
        Ok(self.rules)
    }
    fn set_rules(&mut self, rules: RoomRules) -> Result<(), StoreError> {
        self.write()?;
        self.rules = Some(rules);
        Ok(())
    }
    fn seat(&self, user: &str) -> Result<Option<Seat>, StoreError> {
        Ok(self.seats.get(user).cloned())
    }
    fn put_seat(&mut self, seat: &Seat) -> Result<(), StoreError> {
        self.write()?;
        self.seats.insert(seat.user.clone(), seat.clone());
        Ok(())
    }
    fn remove_seat(&mut self, user: &str) -> Result<(), StoreError> {
        self.write()?;
        self.seats.remove(user);
        Ok(())
    }
    fn seats_held(&self) -> Result<u32, StoreError> {
        Ok(u32::try_from(self.seats.len()).unwrap_or(u32::MAX))
    }
    fn confirmed(&self) -> Result<u32, StoreError> {
        let confirmed = self
            .seats
            .values()
            .filter(|s| s.state == SeatState::Confirmed)
            .count();
        Ok(u32::try_from(confirmed).unwrap_or(u32::MAX))
    }
    fn confirmed_users(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .seats
            .values()
            .filter(|s| s.state == SeatState::Confirmed)
            .take(limit)
            .map(|s| s.user.clone())
            .collect())
    }
    fn due(&self, now_ms: i64) -> Result<Vec<Seat>, StoreError> {
        let mut due: Vec<Seat> = self
            .seats
            .values()
            .filter(|s| s.state == SeatState::Pending && s.retry_at_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|s| s.retry_at_ms);
        Ok(due)
    }
    fn next_retry_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .seats
            .values()
            .filter(|s| s.state == SeatState::Pending)
            .map(|s| s.retry_at_ms)
            .min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const NOW: i64 = 1_790_000_000_000;
    /// The access token id every test user joins with.
    const SESSION: &str = "jti-1";

    fn room(capacity: u32) -> JoinRoom<MemorySeatStore> {
        let mut room = JoinRoom::new(MemorySeatStore::default());
        room.set_rules(RoomRules {
            capacity,
            recruiting: true,
        })
        .unwrap();
        room
    }

    /// A fake core: seats users up to capacity, idempotently, refuses revoked sessions first (as
    /// the real one does, before it locks anything), and can lose replies on demand.
    struct FakeCore {
        capacity: u32,
        seated: BTreeSet<String>,
        charged: Vec<String>,
        broke: BTreeSet<String>,
        revoked: BTreeSet<String>,
        /// The session every call carried, in order.
        sessions_seen: Vec<Option<String>>,
        /// The next calls commit but their reply is lost (the room sees Unknown).
        lose_replies: u32,
        /// The next calls fail before doing anything (5xx).
        fail_calls: u32,
    }

    impl FakeCore {
        fn new(capacity: u32) -> Self {
            FakeCore {
                capacity,
                seated: BTreeSet::new(),
                charged: Vec::new(),
                broke: BTreeSet::new(),
                revoked: BTreeSet::new(),
                sessions_seen: Vec::new(),
                lose_replies: 0,
                fail_calls: 0,
            }
        }
        fn join(&mut self, user: &str) -> Verdict {
            self.join_as(user, Some(SESSION))
        }
        fn join_as(&mut self, user: &str, session: Option<&str>) -> Verdict {
            self.sessions_seen.push(session.map(str::to_owned));
            if self.fail_calls > 0 {
                self.fail_calls -= 1;
                return Verdict::Unknown;
            }
            let verdict = if session.is_some_and(|s| self.revoked.contains(s)) {
                Verdict::Unauthorized
            } else if self.seated.contains(user) {
                Verdict::AlreadyJoined
            } else if self.broke.contains(user) {
                Verdict::InsufficientPoints
            } else if u32::try_from(self.seated.len()).unwrap_or(u32::MAX) >= self.capacity {
                Verdict::Full
            } else {
                self.seated.insert(user.to_owned());
                self.charged.push(user.to_owned());
                Verdict::Joined
            };
            if self.lose_replies > 0 {
                self.lose_replies -= 1;
                return Verdict::Unknown;
            }
            verdict
        }
    }

    fn admit(room: &mut JoinRoom<MemorySeatStore>, user: &str) -> Admission {
        room.admit(user, Some(SESSION), NOW).unwrap()
    }

    fn settle(
        room: &mut JoinRoom<MemorySeatStore>,
        user: &str,
        verdict: Verdict,
        now: i64,
    ) -> Outcome {
        room.settle(user, verdict, now).unwrap()
    }

    /// What the room's alarm does: claim the due seats, call the core with each one's session,
    /// settle.
    fn run_alarm(room: &mut JoinRoom<MemorySeatStore>, core: &mut FakeCore, now: i64) {
        for seat in room.claim_due(now).unwrap() {
            let verdict = core.join_as(&seat.user, seat.session.as_deref());
            settle(room, &seat.user, verdict, now);
        }
    }

    #[test]
    fn interleaved_joins_cannot_take_more_seats_than_there_are() {
        let mut room = room(2);
        // Three requests admitted before any core reply arrives (interleaving at the await).
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        assert_eq!(admit(&mut room, "b"), Admission::Forward);
        assert_eq!(admit(&mut room, "c"), Admission::Full);
        assert_eq!(
            settle(&mut room, "a", Verdict::Joined, NOW),
            Outcome::Confirmed
        );
        assert_eq!(
            settle(&mut room, "b", Verdict::Joined, NOW),
            Outcome::Confirmed
        );
        assert_eq!(admit(&mut room, "a"), Admission::AlreadyJoined);
        let counts = room.counts().unwrap();
        assert_eq!(
            counts,
            Some(LiveCounts {
                participants: 2,
                pending: 0,
                capacity: 2
            })
        );
    }

    #[test]
    fn a_room_told_recruitment_closed_refuses_without_asking_the_core() {
        let mut room = room(10);
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        assert_eq!(room.close_recruitment(), Ok(true));
        assert_eq!(admit(&mut room, "b"), Admission::NotRecruiting);
        // The seat already in flight still gets its answer.
        assert_eq!(
            settle(&mut room, "a", Verdict::Joined, NOW),
            Outcome::Confirmed
        );
        let mut fresh = JoinRoom::new(MemorySeatStore::default());
        assert_eq!(
            fresh.close_recruitment(),
            Ok(false),
            "no rules yet: nothing to close"
        );
    }

    #[test]
    fn a_second_click_while_the_first_is_in_flight_is_in_progress_not_a_second_call() {
        let mut room = room(10);
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        assert_eq!(admit(&mut room, "a"), Admission::InProgress);
    }

    #[test]
    fn a_refusal_by_the_core_releases_the_seat_for_someone_else() {
        let mut room = room(1);
        let mut core = FakeCore::new(1);
        core.broke.insert("poor".into());
        assert_eq!(admit(&mut room, "poor"), Admission::Forward);
        let verdict = core.join("poor");
        assert_eq!(
            settle(&mut room, "poor", verdict, NOW),
            Outcome::Released(Verdict::InsufficientPoints)
        );
        assert_eq!(admit(&mut room, "rich"), Admission::Forward);
        let verdict = core.join("rich");
        assert_eq!(settle(&mut room, "rich", verdict, NOW), Outcome::Confirmed);
    }

    #[test]
    fn a_lost_reply_keeps_the_seat_pending_and_the_retry_confirms_it_without_a_second_charge() {
        let mut room = room(5);
        let mut core = FakeCore::new(5);
        core.lose_replies = 1;
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        let verdict = core.join("a");
        let Outcome::RetryAt(at) = settle(&mut room, "a", verdict, NOW) else {
            panic!("an unknown outcome must keep the seat pending");
        };
        assert_eq!(at, NOW + RETRY_DELAY_MS_MIN * 2);
        // The seat still counts: nobody can take it meanwhile.
        assert_eq!(room.counts().ok().flatten().map(|c| c.pending), Some(1));
        assert_eq!(room.next_alarm_ms().ok().flatten(), Some(at));
        run_alarm(&mut room, &mut core, at);
        assert_eq!(admit(&mut room, "a"), Admission::AlreadyJoined);
        assert_eq!(core.charged, vec!["a".to_owned()], "charged exactly once");
    }

    #[test]
    fn a_core_that_stays_down_is_retried_with_growing_delays_until_it_answers() {
        let mut room = room(5);
        let mut core = FakeCore::new(5);
        core.fail_calls = 4;
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        let mut now = NOW;
        let verdict = core.join("a");
        let mut outcome = settle(&mut room, "a", verdict, now);
        let mut delays = Vec::new();
        while let Outcome::RetryAt(at) = outcome {
            delays.push(at - now);
            now = at;
            let seat = room.claim_due(now).unwrap_or_default().pop().expect("due");
            let verdict = core.join_as(&seat.user, seat.session.as_deref());
            outcome = settle(&mut room, &seat.user, verdict, now);
        }
        assert_eq!(outcome, Outcome::Confirmed);
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000]);
        assert!(retry_delay_ms(40) == RETRY_DELAY_MS_MAX);
    }

    #[test]
    fn a_duplicate_delivery_of_the_core_reply_changes_nothing() {
        let mut room = room(2);
        admit(&mut room, "a");
        assert_eq!(
            settle(&mut room, "a", Verdict::Joined, NOW),
            Outcome::Confirmed
        );
        assert_eq!(
            settle(&mut room, "a", Verdict::Joined, NOW),
            Outcome::Confirmed
        );
        assert_eq!(
            settle(&mut room, "a", Verdict::Full, NOW),
            Outcome::Confirmed
        );
        assert_eq!(
            room.counts().ok().flatten().map(|c| c.participants),
            Some(1)
        );
    }

    #[test]
    fn the_alarm_firing_twice_retries_nothing_twice() {
        let mut room = room(5);
        let mut core = FakeCore::new(5);
        core.lose_replies = 1;
        admit(&mut room, "a");
        let verdict = core.join("a");
        let Outcome::RetryAt(at) = settle(&mut room, "a", verdict, NOW) else {
            panic!()
        };
        run_alarm(&mut room, &mut core, at);
        run_alarm(&mut room, &mut core, at);
        assert_eq!(core.charged.len(), 1);
        assert!(
            room.due(at + RETRY_DELAY_MS_MAX)
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn a_room_restarted_mid_join_finishes_it_from_storage() {
        let mut room = room(3);
        let mut core = FakeCore::new(3);
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        // The object is evicted after storing the pending seat, before the core's reply: the
        // core did seat the user. A new instance starts from the same storage.
        core.join("a");
        let mut restarted = JoinRoom::new(room.store.clone());
        let at = restarted.next_alarm_ms().ok().flatten().expect("an alarm");
        run_alarm(&mut restarted, &mut core, at);
        assert_eq!(admit(&mut restarted, "a"), Admission::AlreadyJoined);
        assert_eq!(core.charged.len(), 1);
    }

    #[test]
    fn the_core_saying_full_or_closed_stops_the_room_admitting() {
        let mut room = room(3);
        admit(&mut room, "a");
        assert_eq!(
            settle(&mut room, "a", Verdict::Full, NOW),
            Outcome::Released(Verdict::Full)
        );
        assert_eq!(admit(&mut room, "b"), Admission::Full);
        let mut room = self::room(3);
        admit(&mut room, "a");
        settle(&mut room, "a", Verdict::NotRecruiting, NOW);
        assert_eq!(admit(&mut room, "b"), Admission::NotRecruiting);
    }

    #[test]
    fn a_room_that_does_not_know_its_challenge_asks_for_the_rules_first() {
        let mut room = JoinRoom::new(MemorySeatStore::default());
        assert_eq!(admit(&mut room, "a"), Admission::NeedsRules);
        assert_eq!(room.counts().ok().flatten(), None);
    }

    #[test]
    fn a_storage_failure_admits_nobody() {
        let mut room = room(3);
        room.store.fail_writes = true;
        assert!(room.admit("a", Some(SESSION), NOW).is_err());
        room.store.fail_writes = false;
        assert_eq!(room.counts().ok().flatten().map(|c| c.pending), Some(0));
    }

    #[test]
    fn two_thousand_applicants_with_random_core_faults_fill_exactly_the_capacity() {
        let mut room = room(100);
        let mut core = FakeCore::new(100);
        let mut rng = 0x4E45_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut now = NOW;
        let mut in_flight: Vec<String> = Vec::new();
        for i in 0..2_000 {
            let user = format!("user-{i}");
            if admit(&mut room, &user) == Admission::Forward {
                in_flight.push(user);
            }
            // Replies arrive in random order, some lost, some for calls that failed.
            while !in_flight.is_empty() && next() % 3 == 0 {
                let index = usize::try_from(next() % in_flight.len() as u64).unwrap_or(0);
                let user = in_flight.swap_remove(index);
                match next() % 10 {
                    0 => core.lose_replies += 1,
                    1 => core.fail_calls += 1,
                    _ => {}
                }
                let verdict = core.join(&user);
                settle(&mut room, &user, verdict, now);
            }
            now += 10;
            if let Some(roster) = room.sealed_roster().unwrap() {
                // Whatever the room says of a sealed roster, it says itself to a newcomer.
                assert_eq!(roster.refusal, SealedRefusal::Full);
                assert_eq!(admit(&mut room, &format!("newcomer-{i}")), Admission::Full);
            }
        }
        for user in in_flight.drain(..) {
            let verdict = core.join(&user);
            settle(&mut room, &user, verdict, now);
        }
        while let Some(at) = room.next_alarm_ms().ok().flatten() {
            now = now.max(at);
            run_alarm(&mut room, &mut core, now);
        }
        assert_eq!(core.seated.len(), 100);
        assert_eq!(core.charged.len(), 100, "one charge per seat");
        let counts = room.counts().ok().flatten().expect("counts");
        assert_eq!((counts.participants, counts.pending), (100, 0));
        let roster = room
            .sealed_roster()
            .ok()
            .flatten()
            .expect("a full room with nothing pending is sealed");
        let seated: BTreeSet<String> = roster.participants.into_iter().collect();
        assert_eq!(
            seated, core.seated,
            "the roster is exactly who the core seated"
        );
    }

    #[test]
    fn a_join_with_a_revoked_session_releases_its_seat() {
        let mut room = room(1);
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        assert_eq!(
            settle(&mut room, "a", Verdict::Unauthorized, NOW),
            Outcome::Released(Verdict::Unauthorized)
        );
        assert_eq!(
            admit(&mut room, "b"),
            Admission::Forward,
            "the seat is free"
        );
    }

    #[test]
    fn a_full_room_is_sealed_only_once_no_seat_is_pending() {
        let mut room = room(2);
        assert_eq!(room.sealed_roster(), Ok(None), "free seats");
        admit(&mut room, "a");
        admit(&mut room, "b");
        assert_eq!(admit(&mut room, "c"), Admission::Full);
        assert_eq!(
            room.sealed_roster(),
            Ok(None),
            "full, but a pending seat may be released"
        );
        settle(&mut room, "a", Verdict::Joined, NOW);
        assert_eq!(room.sealed_roster(), Ok(None));
        settle(&mut room, "b", Verdict::InsufficientPoints, NOW);
        assert_eq!(room.sealed_roster(), Ok(None), "b's seat is free again");
        assert_eq!(admit(&mut room, "c"), Admission::Forward);
        settle(&mut room, "c", Verdict::Joined, NOW);
        assert_eq!(
            room.sealed_roster(),
            Ok(Some(SealedRoster {
                refusal: SealedRefusal::Full,
                participants: vec!["a".into(), "c".into()],
            }))
        );
        assert_eq!(admit(&mut room, "b"), Admission::Full);
        assert_eq!(admit(&mut room, "a"), Admission::AlreadyJoined);
    }

    #[test]
    fn a_closed_room_is_sealed_with_whoever_it_seated() {
        let mut room = room(5);
        admit(&mut room, "a");
        settle(&mut room, "a", Verdict::Joined, NOW);
        admit(&mut room, "b");
        room.close_recruitment().unwrap();
        assert_eq!(room.sealed_roster(), Ok(None), "b is still pending");
        settle(&mut room, "b", Verdict::NotRecruiting, NOW);
        assert_eq!(
            room.sealed_roster(),
            Ok(Some(SealedRoster {
                refusal: SealedRefusal::NotRecruiting,
                participants: vec!["a".into()],
            }))
        );
        assert_eq!(admit(&mut room, "c"), Admission::NotRecruiting);
    }

    #[test]
    fn a_room_that_does_not_know_its_rules_is_not_sealed() {
        let room = JoinRoom::new(MemorySeatStore::default());
        assert_eq!(room.sealed_roster(), Ok(None));
    }

    #[test]
    fn a_pending_seat_is_not_retried_before_its_first_call_can_have_ended() {
        let mut room = room(5);
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        // The forwarded call may run until the core timeout aborts it.
        #[allow(clippy::cast_possible_wrap)]
        let timeout = CORE_TIMEOUT_MS as i64;
        assert_eq!(room.due(NOW + timeout), Ok(Vec::new()));
        let at = room
            .next_alarm_ms()
            .ok()
            .flatten()
            .expect("the seat is pending: an alarm is due");
        assert!(
            at > NOW + timeout,
            "the first retry ({} ms after the call began) must wait out the core timeout ({timeout} ms)",
            at - NOW
        );
        assert_eq!(room.due(at).map(|due| due.len()), Ok(1));
    }

    #[test]
    fn a_seat_the_alarm_is_retrying_is_not_retried_again_while_that_call_runs() {
        let mut room = room(5);
        admit(&mut room, "a");
        let at = NOW + CALL_MS_MAX;
        assert_eq!(room.claim_due(at).map(|due| due.len()), Ok(1));
        #[allow(clippy::cast_possible_wrap)]
        let timeout = CORE_TIMEOUT_MS as i64;
        assert_eq!(
            room.due(at + timeout),
            Ok(Vec::new()),
            "an alarm firing during the retry must not send the join a second time"
        );
    }

    #[test]
    fn every_retry_carries_the_session_the_user_joined_with() {
        let mut room = room(5);
        let mut core = FakeCore::new(5);
        core.lose_replies = 2;
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        let verdict = core.join("a");
        settle(&mut room, "a", verdict, NOW);
        while let Some(at) = room.next_alarm_ms().ok().flatten() {
            run_alarm(&mut room, &mut core, at);
        }
        assert_eq!(admit(&mut room, "a"), Admission::AlreadyJoined);
        assert_eq!(
            core.sessions_seen,
            vec![Some(SESSION.to_owned()); 3],
            "the first call and both retries name the session"
        );
        assert_eq!(core.charged, vec!["a".to_owned()]);
    }

    #[test]
    fn a_session_revoked_before_the_retry_releases_the_seat_and_charges_nothing() {
        let mut room = room(1);
        let mut core = FakeCore::new(1);
        // The first call never reaches the ledger (a 5xx): the seat stays pending.
        core.fail_calls = 1;
        assert_eq!(admit(&mut room, "a"), Admission::Forward);
        let verdict = core.join("a");
        let Outcome::RetryAt(at) = settle(&mut room, "a", verdict, NOW) else {
            panic!("an unknown outcome keeps the seat pending");
        };
        // The user signs out before the alarm retries.
        core.revoked.insert(SESSION.to_owned());
        run_alarm(&mut room, &mut core, at);
        assert!(
            core.charged.is_empty(),
            "a revoked session is never charged"
        );
        assert_eq!(room.counts().ok().flatten().map(|c| c.pending), Some(0));
        assert_eq!(
            room.admit("b", Some("jti-b"), at),
            Ok(Admission::Forward),
            "the seat is free for someone else"
        );
    }
}

//! Sealed rosters of challenge rooms, cached in the isolate: a join storm's refusals answered at
//! the edge, without the user's `Wallet`, the `ChallengeRoom` or the core.
//!
//! A room is *sealed* when its answer to anyone it has not seated can no longer change except
//! from CHALLENGE_FULL to CHALLENGE_NOT_RECRUITING (`nene_durable::join::SealedRoster`). The edge
//! asks a room for its roster after the room refused a join as full or closed, keeps a sealed one
//! for [`ROSTER_CACHE_SECONDS`], and answers a join by someone not on it with the room's own
//! refusal. Someone on it goes the whole way: their wallet replays the first answer to their
//! Idempotency-Key, or the room says ALREADY_JOINED. So a cached answer is always the answer the
//! room would give, at most [`ROSTER_CACHE_SECONDS`] late in saying "closed" instead of "full".
//!
//! Such a refusal does not consult the user's wallet: like a request refused before it runs, it
//! is not remembered under its Idempotency-Key (docs/decisions/0006-joins.md).

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, OnceLock},
};

use nene_domain::ErrorCode;
use nene_durable::join::{SealedRefusal, SealedRoster};

/// How long a sealed roster answers for its room. It bounds how long a closed room is still
/// called full, and how often a busy isolate asks each room again.
pub const ROSTER_CACHE_SECONDS: i64 = 10;
/// After a room answered "not sealed" (or while one request asks), nobody asks it again for this
/// long: during the seconds a room fills, its refusals must not turn into roster calls.
pub const ROSTER_ASK_INTERVAL_SECONDS: i64 = 1;
/// Rooms remembered per isolate; past it the cache starts over (a bound, not an eviction policy).
pub const ROSTER_CACHE_ROOMS_MAX: usize = 256;

#[derive(Debug)]
enum Entry {
    /// Asked at `at`: not sealed then, or the answer is on its way.
    Asked { at: i64 },
    Sealed {
        refusal: SealedRefusal,
        participants: HashSet<String>,
        at: i64,
    },
}

/// What the cache says of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Refuse with this; the room would.
    Refuse(ErrorCode),
    /// Go the whole way.
    Forward,
}

/// The rosters one isolate knows; all times are unix seconds.
#[derive(Debug, Default)]
pub struct RosterCache {
    rooms: HashMap<String, Entry>,
}

/// The isolate's cache. A Workers isolate keeps it across requests; a Spin instance never uses it
/// (no rooms).
pub fn isolate_cache() -> &'static Mutex<RosterCache> {
    static CACHE: OnceLock<Mutex<RosterCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(RosterCache::default()))
}

fn code(refusal: SealedRefusal) -> ErrorCode {
    match refusal {
        SealedRefusal::Full => ErrorCode::ChallengeFull,
        SealedRefusal::NotRecruiting => ErrorCode::ChallengeNotRecruiting,
    }
}

impl RosterCache {
    /// The answer for `user` joining `room` from a fresh sealed roster, if there is one.
    #[must_use]
    pub fn lookup(&self, room: &str, user: &str, now: i64) -> Lookup {
        match self.rooms.get(room) {
            Some(Entry::Sealed {
                refusal,
                participants,
                at,
            }) if now - at < ROSTER_CACHE_SECONDS && !participants.contains(user) => {
                Lookup::Refuse(code(*refusal))
            }
            _ => Lookup::Forward,
        }
    }

    /// Whether a sealed roster of `room` is cached, fresh or not.
    #[must_use]
    pub fn knows_sealed(&self, room: &str) -> bool {
        matches!(self.rooms.get(room), Some(Entry::Sealed { .. }))
    }

    /// Whether the caller should ask `room` for its roster now. If so, the ask is recorded, so that
    /// concurrent requests do not all ask (one asker per room per interval).
    pub fn should_ask(&mut self, room: &str, now: i64) -> bool {
        let recent = match self.rooms.get(room) {
            Some(Entry::Asked { at }) => now - at < ROSTER_ASK_INTERVAL_SECONDS,
            Some(Entry::Sealed { at, .. }) => now - at < ROSTER_CACHE_SECONDS,
            None => false,
        };
        if recent {
            return false;
        }
        if self.rooms.len() >= ROSTER_CACHE_ROOMS_MAX && !self.rooms.contains_key(room) {
            self.rooms.clear();
        }
        if let Some(Entry::Sealed { at, .. }) = self.rooms.get_mut(room) {
            // Keep answering from the old roster while the new one is fetched.
            *at = now - ROSTER_CACHE_SECONDS + ROSTER_ASK_INTERVAL_SECONDS;
        } else {
            self.rooms.insert(room.to_owned(), Entry::Asked { at: now });
        }
        true
    }

    /// Records the room's answer to the roster call.
    pub fn learn(&mut self, room: &str, answer: Option<SealedRoster>, now: i64) {
        let entry = match answer {
            Some(roster) => Entry::Sealed {
                refusal: roster.refusal,
                participants: roster.participants.into_iter().collect(),
                at: now,
            },
            None => Entry::Asked { at: now },
        };
        self.rooms.insert(room.to_owned(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn full_with(participants: &[&str]) -> Option<SealedRoster> {
        Some(SealedRoster {
            refusal: SealedRefusal::Full,
            participants: participants.iter().map(|&p| p.to_owned()).collect(),
        })
    }

    #[test]
    fn an_unknown_room_sends_every_join_the_whole_way() {
        let cache = RosterCache::default();
        assert_eq!(cache.lookup("c1", "u1", NOW), Lookup::Forward);
    }

    #[test]
    fn a_sealed_room_refuses_outsiders_and_forwards_its_participants() {
        let mut cache = RosterCache::default();
        cache.learn("c1", full_with(&["a", "b"]), NOW);
        assert_eq!(
            cache.lookup("c1", "z", NOW),
            Lookup::Refuse(ErrorCode::ChallengeFull)
        );
        assert_eq!(
            cache.lookup("c1", "a", NOW),
            Lookup::Forward,
            "a participant's retry must reach the wallet, which replays the first answer"
        );
        assert_eq!(cache.lookup("c2", "z", NOW), Lookup::Forward);
        cache.learn(
            "c3",
            Some(SealedRoster {
                refusal: SealedRefusal::NotRecruiting,
                participants: Vec::new(),
            }),
            NOW,
        );
        assert_eq!(
            cache.lookup("c3", "z", NOW),
            Lookup::Refuse(ErrorCode::ChallengeNotRecruiting)
        );
    }

    #[test]
    fn a_roster_stops_answering_once_it_is_old() {
        let mut cache = RosterCache::default();
        cache.learn("c1", full_with(&[]), NOW);
        assert_eq!(
            cache.lookup("c1", "z", NOW + ROSTER_CACHE_SECONDS),
            Lookup::Forward
        );
    }

    #[test]
    fn one_request_asks_a_room_and_the_others_do_not_until_the_interval_passes() {
        let mut cache = RosterCache::default();
        assert!(cache.should_ask("c1", NOW));
        assert!(!cache.should_ask("c1", NOW), "the first ask is on its way");
        cache.learn("c1", None, NOW);
        assert!(!cache.should_ask("c1", NOW), "not sealed a moment ago");
        assert!(cache.should_ask("c1", NOW + ROSTER_ASK_INTERVAL_SECONDS));
    }

    #[test]
    fn an_old_roster_keeps_answering_while_one_request_fetches_the_new_one() {
        let mut cache = RosterCache::default();
        cache.learn("c1", full_with(&[]), NOW);
        assert!(!cache.should_ask("c1", NOW + 1), "fresh: nothing to ask");
        let later = NOW + ROSTER_CACHE_SECONDS;
        assert!(cache.should_ask("c1", later));
        assert_eq!(
            cache.lookup("c1", "z", later),
            Lookup::Refuse(ErrorCode::ChallengeFull)
        );
        assert!(!cache.should_ask("c1", later), "one asker");
        cache.learn(
            "c1",
            Some(SealedRoster {
                refusal: SealedRefusal::NotRecruiting,
                participants: Vec::new(),
            }),
            later,
        );
        assert_eq!(
            cache.lookup("c1", "z", later),
            Lookup::Refuse(ErrorCode::ChallengeNotRecruiting)
        );
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_rooms() {
        let mut cache = RosterCache::default();
        for i in 0..ROSTER_CACHE_ROOMS_MAX {
            cache.learn(&format!("c{i}"), full_with(&[]), NOW);
        }
        assert!(cache.should_ask("one-more", NOW));
        assert!(cache.rooms.len() <= ROSTER_CACHE_ROOMS_MAX);
        assert!(!cache.knows_sealed("c0"), "started over");
    }
}

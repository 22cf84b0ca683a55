//! The `Wallet` Durable Object's logic (one per user): client idempotency keys and a balance cache.
//!
//! Every money-moving request of one user passes through that user's wallet object, which runs
//! them one at a time. A request with an `Idempotency-Key` is remembered: the same key and
//! request answers the first response again without doing anything; the same key with another
//! request is `IDEMPOTENCY_KEY_REUSED`; a retry while the first is still running is
//! `REQUEST_IN_PROGRESS`. Only definite answers are remembered: after a timeout the key is free
//! again, and the retry reaches the (idempotent) core, which knows what happened. A key marked in
//! flight whose request cannot still be running (the object was reset between the start and the
//! end of it) stops blocking after [`IN_FLIGHT_MS_MAX`].
//!
//! The cached balance is dropped by every write the object makes, so it never shows a balance
//! from before that write; writes made elsewhere (a charge by Toss) show within
//! [`BALANCE_CACHE_TTL_MS`].

use nene_domain::{idempotency::IdempotencyKey, limits::CORE_TIMEOUT_MS};
use serde::{Deserialize, Serialize};

/// How long a cached balance is served without asking the core. Short: it only spares the core
/// the bursts of a screen refreshing, and bounds how late a charge made elsewhere shows.
pub const BALANCE_CACHE_TTL_MS: i64 = 2_000;
/// How long a remembered response is kept: the API promises at least 24 hours.
pub const REPLY_RETENTION_MS: i64 = 24 * 3_600 * 1_000;

/// Core calls a join makes inside the wallet's turn, one after the other: the room reads its
/// rules from the core on first use, then forwards the join. Each is bounded by the core timeout.
pub const JOIN_CORE_CALLS_MAX: i64 = 2;
/// What a request may take beyond its core calls: the calls between the objects, their storage
/// writes, the event loop's scheduling. Generous: expiring a key whose request still runs is
/// what this bound exists to prevent.
pub const IN_FLIGHT_MARGIN_MS: i64 = 5_000;
/// Longest a money-moving request can run between `begin` and `finish`. A key still marked in
/// flight after that is left over from a wallet that was reset (evicted, crashed, redeployed)
/// while its request ran: the request has certainly ended, and its answer was lost with the
/// object. Such a key no longer answers REQUEST_IN_PROGRESS; the next request with it runs.
#[allow(clippy::cast_possible_wrap)]
pub const IN_FLIGHT_MS_MAX: i64 =
    JOIN_CORE_CALLS_MAX * CORE_TIMEOUT_MS as i64 + IN_FLIGHT_MARGIN_MS;
const _: () = assert!(CORE_TIMEOUT_MS <= i64::MAX as u64);
const _: () = assert!(IN_FLIGHT_MS_MAX > JOIN_CORE_CALLS_MAX * CORE_TIMEOUT_MS as i64);
const _: () = assert!(IN_FLIGHT_MS_MAX < REPLY_RETENTION_MS);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remembered {
    /// The first request with this key is running, since `at_ms` (0 for records written before
    /// the time was kept: they are long past [`IN_FLIGHT_MS_MAX`]).
    InFlight {
        request_hash: String,
        #[serde(default)]
        at_ms: i64,
    },
    /// Its definite response.
    Done {
        request_hash: String,
        status: u16,
        body: String,
        at_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wallet storage failed: {0}")]
pub struct WalletStoreError(pub String);

pub trait WalletStore {
    /// # Errors
    /// When the store fails.
    fn remembered(&self, key: &str) -> Result<Option<Remembered>, WalletStoreError>;
    /// # Errors
    /// When the store fails.
    fn remember(&mut self, key: &str, entry: &Remembered) -> Result<(), WalletStoreError>;
    /// # Errors
    /// When the store fails.
    fn forget(&mut self, key: &str) -> Result<(), WalletStoreError>;
    /// # Errors
    /// When the store fails.
    fn cached_balance(&self) -> Result<Option<(String, i64)>, WalletStoreError>;
    /// # Errors
    /// When the store fails.
    fn set_cached_balance(
        &mut self,
        balance: Option<(String, i64)>,
    ) -> Result<(), WalletStoreError>;
}

/// What to do with an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run it (the key, if any, is now marked in flight).
    Run,
    /// Answer this again.
    Replay {
        status: u16,
        body: String,
    },
    InProgress,
    KeyReused,
}

pub struct WalletLogic<S> {
    pub store: S,
}

/// Whether a response is definite: success or a refusal that a retry would get again. Timeouts
/// and 5xx are not: the retry must be allowed to find out. Nor is 401: the session was refused,
/// not the request, and the same request signed in again must run.
#[must_use]
pub fn is_definite(status: u16) -> bool {
    (200..500).contains(&status) && status != 401
}

impl<S: WalletStore> WalletLogic<S> {
    pub fn new(store: S) -> Self {
        WalletLogic { store }
    }

    /// Starts a money-moving request with an optional Idempotency-Key.
    ///
    /// # Errors
    /// When the store fails.
    pub fn begin(
        &mut self,
        key: Option<&IdempotencyKey>,
        request_hash: &str,
        now_ms: i64,
    ) -> Result<Begin, WalletStoreError> {
        let Some(key) = key.map(IdempotencyKey::as_str) else {
            return Ok(Begin::Run);
        };
        match self.store.remembered(key)? {
            // Within the bound the first request may still be running. Past it, it has certainly
            // ended, and the key falls through to run again below: safe, because the only
            // request behind a key is a join, and the core's join is idempotent by
            // `join:{challenge}:{user}` (a join that went through answers ALREADY_JOINED, never a
            // second charge).
            Some(Remembered::InFlight {
                request_hash: first,
                at_ms,
            }) if now_ms - at_ms < IN_FLIGHT_MS_MAX => Ok(if first == request_hash {
                Begin::InProgress
            } else {
                Begin::KeyReused
            }),
            Some(Remembered::Done {
                request_hash: first,
                status,
                body,
                at_ms,
            }) if now_ms - at_ms < REPLY_RETENTION_MS => Ok(if first == request_hash {
                Begin::Replay { status, body }
            } else {
                Begin::KeyReused
            }),
            _ => {
                self.store.remember(
                    key,
                    &Remembered::InFlight {
                        request_hash: request_hash.to_owned(),
                        at_ms: now_ms,
                    },
                )?;
                Ok(Begin::Run)
            }
        }
    }

    /// Records the response of a request that ran; drops the cached balance (the request may have
    /// moved points).
    ///
    /// # Errors
    /// When the store fails.
    pub fn finish(
        &mut self,
        key: Option<&IdempotencyKey>,
        request_hash: &str,
        status: u16,
        body: &str,
        now_ms: i64,
    ) -> Result<(), WalletStoreError> {
        if self.store.cached_balance()?.is_some() {
            self.store.set_cached_balance(None)?;
        }
        let Some(key) = key.map(IdempotencyKey::as_str) else {
            return Ok(());
        };
        if is_definite(status) {
            self.store.remember(
                key,
                &Remembered::Done {
                    request_hash: request_hash.to_owned(),
                    status,
                    body: body.to_owned(),
                    at_ms: now_ms,
                },
            )
        } else {
            self.store.forget(key)
        }
    }

    /// The cached balance if it is fresh enough to show.
    ///
    /// # Errors
    /// When the store fails.
    pub fn balance(&self, now_ms: i64) -> Result<Option<String>, WalletStoreError> {
        Ok(self
            .store
            .cached_balance()?
            .filter(|(_, at)| now_ms - at < BALANCE_CACHE_TTL_MS)
            .map(|(body, _)| body))
    }

    /// Drops the cached balance: points moved outside this object (a charge, a refund).
    ///
    /// # Errors
    /// When the store fails.
    pub fn forget_balance(&mut self) -> Result<(), WalletStoreError> {
        if self.store.cached_balance()?.is_some() {
            self.store.set_cached_balance(None)?;
        }
        Ok(())
    }

    /// Caches a balance just read from the core.
    ///
    /// # Errors
    /// When the store fails.
    pub fn cache_balance(&mut self, body: &str, now_ms: i64) -> Result<(), WalletStoreError> {
        self.store
            .set_cached_balance(Some((body.to_owned(), now_ms)))
    }
}

/// An in-memory store for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryWalletStore {
    pub replies: std::collections::BTreeMap<String, Remembered>,
    pub balance: Option<(String, i64)>,
}

impl WalletStore for MemoryWalletStore {
    fn remembered(&self, key: &str) -> Result<Option<Remembered>, WalletStoreError> {
        Ok(self.replies.get(key).cloned())
    }
    fn remember(&mut self, key: &str, entry: &Remembered) -> Result<(), WalletStoreError> {
        self.replies.insert(key.to_owned(), entry.clone());
        Ok(())
    }
    fn forget(&mut self, key: &str) -> Result<(), WalletStoreError> {
        self.replies.remove(key);
        Ok(())
    }
    fn cached_balance(&self) -> Result<Option<(String, i64)>, WalletStoreError> {
        Ok(self.balance.clone())
    }
    fn set_cached_balance(
        &mut self,
        balance: Option<(String, i64)>,
    ) -> Result<(), WalletStoreError> {
        self.balance = balance;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse("k").unwrap()
    }

    fn wallet() -> WalletLogic<MemoryWalletStore> {
        WalletLogic::new(MemoryWalletStore::default())
    }

    #[test]
    fn the_same_key_and_request_replays_the_first_response() {
        let mut w = wallet();
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::Run));
        w.finish(Some(&key()), "join:a", 201, "{\"seat\":1}", NOW)
            .unwrap();
        assert_eq!(
            w.begin(Some(&key()), "join:a", NOW + 1),
            Ok(Begin::Replay {
                status: 201,
                body: "{\"seat\":1}".into()
            })
        );
    }

    #[test]
    fn a_refusal_is_remembered_too_because_a_retry_would_get_it_again() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        w.finish(Some(&key()), "join:a", 402, "{}", NOW).ok();
        assert!(matches!(
            w.begin(Some(&key()), "join:a", NOW),
            Ok(Begin::Replay { status: 402, .. })
        ));
    }

    #[test]
    fn the_same_key_with_another_request_is_refused() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        assert_eq!(w.begin(Some(&key()), "join:b", NOW), Ok(Begin::KeyReused));
        w.finish(Some(&key()), "join:a", 201, "{}", NOW).ok();
        assert_eq!(w.begin(Some(&key()), "join:b", NOW), Ok(Begin::KeyReused));
    }

    #[test]
    fn a_retry_while_the_first_runs_is_in_progress() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::InProgress));
    }

    #[test]
    fn an_indefinite_answer_frees_the_key_for_a_retry() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        w.finish(Some(&key()), "join:a", 503, "{}", NOW).ok();
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::Run));
    }

    #[test]
    fn a_refused_session_frees_the_key_for_the_same_request_signed_in_again() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        w.finish(Some(&key()), "join:a", 401, "{}", NOW).ok();
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::Run));
    }

    #[test]
    fn a_remembered_response_expires_after_its_retention() {
        let mut w = wallet();
        w.begin(Some(&key()), "join:a", NOW).ok();
        w.finish(Some(&key()), "join:a", 201, "{}", NOW).ok();
        assert_eq!(
            w.begin(Some(&key()), "join:a", NOW + REPLY_RETENTION_MS),
            Ok(Begin::Run)
        );
    }

    #[test]
    fn a_key_left_in_flight_by_a_reset_wallet_runs_again_once_its_request_has_certainly_ended() {
        let mut w = wallet();
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::Run));
        // The object is reset before `finish`: a new instance starts from the same storage.
        let mut restarted = WalletLogic::new(w.store.clone());
        assert_eq!(
            restarted.begin(Some(&key()), "join:a", NOW + IN_FLIGHT_MS_MAX - 1),
            Ok(Begin::InProgress),
            "within the bound the first request may still be running"
        );
        assert_eq!(
            restarted.begin(Some(&key()), "join:b", NOW + IN_FLIGHT_MS_MAX - 1),
            Ok(Begin::KeyReused)
        );
        assert_eq!(
            restarted.begin(Some(&key()), "join:a", NOW + IN_FLIGHT_MS_MAX),
            Ok(Begin::Run),
            "past the bound the key is no longer stuck"
        );
        // And it is in flight again, for this new request, from now on.
        assert_eq!(
            restarted.begin(Some(&key()), "join:a", NOW + IN_FLIGHT_MS_MAX + 1),
            Ok(Begin::InProgress)
        );
        restarted
            .finish(
                Some(&key()),
                "join:a",
                201,
                "{}",
                NOW + IN_FLIGHT_MS_MAX + 2,
            )
            .unwrap();
        assert!(matches!(
            restarted.begin(Some(&key()), "join:a", NOW + 2 * IN_FLIGHT_MS_MAX),
            Ok(Begin::Replay { status: 201, .. })
        ));
    }

    #[test]
    fn an_in_flight_record_from_before_its_time_was_kept_does_not_block() {
        let stored: Remembered =
            serde_json::from_str(r#"{"InFlight":{"request_hash":"join:a"}}"#).unwrap();
        let mut w = wallet();
        w.store.replies.insert("k".into(), stored);
        assert_eq!(w.begin(Some(&key()), "join:a", NOW), Ok(Begin::Run));
    }

    #[test]
    fn requests_without_a_key_always_run() {
        let mut w = wallet();
        assert_eq!(w.begin(None, "join:a", NOW), Ok(Begin::Run));
        assert_eq!(w.begin(None, "join:a", NOW), Ok(Begin::Run));
    }

    #[test]
    fn points_moved_elsewhere_drop_the_cached_balance() {
        let mut w = WalletLogic::new(MemoryWalletStore::default());
        w.cache_balance("{\"balance\":10000}", NOW).ok();
        assert!(w.forget_balance().is_ok());
        assert_eq!(w.balance(NOW + 1), Ok(None));
    }

    #[test]
    fn a_write_drops_the_cached_balance_and_an_old_cache_is_not_served() {
        let mut w = wallet();
        w.cache_balance("{\"balance\":10000}", NOW).ok();
        assert_eq!(w.balance(NOW + 1), Ok(Some("{\"balance\":10000}".into())));
        w.begin(None, "join:a", NOW).ok();
        w.finish(None, "join:a", 201, "{}", NOW + 2).ok();
        assert_eq!(
            w.balance(NOW + 3),
            Ok(None),
            "never stale after a write it made"
        );
        w.cache_balance("{\"balance\":0}", NOW + 4).ok();
        assert_eq!(w.balance(NOW + 4 + BALANCE_CACHE_TTL_MS), Ok(None));
    }
}

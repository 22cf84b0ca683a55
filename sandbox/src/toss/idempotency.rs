//! Toss's `Idempotency-Key`: the first response to a key is kept and replayed.
//!
//! The scope is (key, secret key, URL path, method); the body is deliberately not compared, as
//! Toss documents. A duplicate arriving while the first request still runs is refused with
//! `IDEMPOTENT_REQUEST_PROCESSING`. Records live 15 days; the store is bounded and drops its
//! oldest record first.
//!
//! Use: [`IdempotencyStore::begin`] before executing, then [`IdempotencyStore::complete`] with the
//! response, or [`IdempotencyStore::abandon`] when the request ended without executing (an
//! injected error, a hang, a client that went away).

use std::collections::{BTreeMap, HashMap};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::error::TossError;

/// Toss's limit on the header.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 300;
/// Toss keeps a key 15 days.
pub const IDEMPOTENCY_TTL_MS: i64 = 15 * 24 * 60 * 60 * 1000;
/// Records kept at most: well above any test run, and with responses of about 2 KB a full store
/// stays near 20 MB.
pub const IDEMPOTENCY_RECORDS_MAX: usize = 10_000;

/// What makes two requests "the same" for Toss.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub key: String,
    pub secret_key: String,
    pub method: String,
    pub path: String,
}

/// A response as it went out, replayable byte for byte (same status, same JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl From<TossError> for StoredResponse {
    fn from(error: TossError) -> Self {
        Self {
            status: error.status,
            body: error.body(),
        }
    }
}

impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Proof that this caller started the request under a scope; needed to complete or abandon it,
/// so a late caller cannot overwrite a newer record under the same scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// First time: execute, then complete or abandon with the ticket.
    Started(Ticket),
    /// Seen and finished: send this again, do not execute.
    Replay(StoredResponse),
    /// Seen and still running.
    InProgress,
}

#[derive(Debug)]
struct Record {
    sequence: u64,
    created_ms: i64,
    response: Option<StoredResponse>,
}

#[derive(Debug, Default)]
pub struct IdempotencyStore {
    records: HashMap<Scope, Record>,
    /// Scopes by age (sequence numbers grow with time), for expiry and eviction.
    by_age: BTreeMap<u64, Scope>,
    next_sequence: u64,
}

impl IdempotencyStore {
    pub fn begin(&mut self, scope: Scope, now_ms: i64) -> Begin {
        self.expire(now_ms);
        if let Some(record) = self.records.get(&scope) {
            return match &record.response {
                Some(response) => Begin::Replay(response.clone()),
                None => Begin::InProgress,
            };
        }
        while self.records.len() >= IDEMPOTENCY_RECORDS_MAX {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.records.remove(&oldest);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.by_age.insert(sequence, scope.clone());
        self.records.insert(
            scope,
            Record {
                sequence,
                created_ms: now_ms,
                response: None,
            },
        );
        Begin::Started(Ticket(sequence))
    }

    /// Keeps the response for replays. A record evicted meanwhile is not recreated.
    pub fn complete(&mut self, scope: &Scope, ticket: Ticket, response: StoredResponse) {
        if let Some(record) = self.records.get_mut(scope)
            && record.sequence == ticket.0
        {
            record.response = Some(response);
        }
    }

    /// Forgets a request that did not execute, so the key can be used again.
    pub fn abandon(&mut self, scope: &Scope, ticket: Ticket) {
        if self
            .records
            .get(scope)
            .is_some_and(|record| record.sequence == ticket.0 && record.response.is_none())
        {
            self.records.remove(scope);
            self.by_age.remove(&ticket.0);
        }
    }

    /// Forgets every record. Sequence numbers keep growing, so a request that began before the
    /// clear cannot complete or abandon a record made after it.
    pub fn clear(&mut self) {
        self.records.clear();
        self.by_age.clear();
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((&sequence, scope)) = self.by_age.first_key_value() {
            let expired = self.records.get(scope).is_none_or(|record| {
                record.sequence != sequence
                    || now_ms.saturating_sub(record.created_ms) >= IDEMPOTENCY_TTL_MS
            });
            if !expired {
                break;
            }
            if let Some((_, scope)) = self.by_age.pop_first()
                && self
                    .records
                    .get(&scope)
                    .is_some_and(|record| record.sequence == sequence)
            {
                self.records.remove(&scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW_MS: i64 = 1_707_794_294_123;

    fn scope(key: &str) -> Scope {
        Scope {
            key: key.to_owned(),
            secret_key: "test_sk_a".to_owned(),
            method: "POST".to_owned(),
            path: "/v1/payments/confirm".to_owned(),
        }
    }

    fn ok(n: i64) -> StoredResponse {
        StoredResponse {
            status: StatusCode::OK,
            body: json!({ "n": n }),
        }
    }

    fn started(store: &mut IdempotencyStore, scope: Scope, now_ms: i64) -> Ticket {
        match store.begin(scope, now_ms) {
            Begin::Started(ticket) => ticket,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn a_replayed_idempotency_key_returns_the_first_response_without_executing_again() {
        let mut store = IdempotencyStore::default();
        let mut executions = 0;
        let mut request = |store: &mut IdempotencyStore| match store.begin(scope("k1"), NOW_MS) {
            Begin::Started(ticket) => {
                executions += 1;
                store.complete(&scope("k1"), ticket, ok(executions));
                ok(executions)
            }
            Begin::Replay(response) => response,
            Begin::InProgress => unreachable!(),
        };
        let first = request(&mut store);
        let second = request(&mut store);
        assert_eq!(first, second);
        assert_eq!(executions, 1);
    }

    #[test]
    fn a_duplicate_while_the_first_is_in_flight_is_told_it_is_processing() {
        let mut store = IdempotencyStore::default();
        let ticket = started(&mut store, scope("k1"), NOW_MS);
        assert_eq!(store.begin(scope("k1"), NOW_MS), Begin::InProgress);
        store.complete(&scope("k1"), ticket, ok(1));
        assert_eq!(store.begin(scope("k1"), NOW_MS), Begin::Replay(ok(1)));
    }

    #[test]
    fn the_same_key_under_another_secret_key_path_or_method_is_another_request() {
        let mut store = IdempotencyStore::default();
        let ticket = started(&mut store, scope("k1"), NOW_MS);
        store.complete(&scope("k1"), ticket, ok(1));
        let others = [
            Scope {
                secret_key: "test_sk_b".to_owned(),
                ..scope("k1")
            },
            Scope {
                path: "/v1/payments/x/cancel".to_owned(),
                ..scope("k1")
            },
            Scope {
                method: "PUT".to_owned(),
                ..scope("k1")
            },
            scope("k2"),
        ];
        for other in others {
            assert!(matches!(store.begin(other, NOW_MS), Begin::Started(_)));
        }
    }

    #[test]
    fn an_abandoned_request_frees_its_key_but_a_completed_one_stays() {
        let mut store = IdempotencyStore::default();
        let ticket = started(&mut store, scope("k1"), NOW_MS);
        store.abandon(&scope("k1"), ticket);
        assert!(store.is_empty());
        let ticket = started(&mut store, scope("k1"), NOW_MS);
        store.complete(&scope("k1"), ticket, ok(1));
        store.abandon(&scope("k1"), ticket);
        assert_eq!(store.begin(scope("k1"), NOW_MS), Begin::Replay(ok(1)));
    }

    #[test]
    fn a_request_begun_before_a_clear_cannot_touch_a_record_made_after_it() {
        let mut store = IdempotencyStore::default();
        let old = started(&mut store, scope("k1"), NOW_MS);
        store.clear();
        let new = started(&mut store, scope("k1"), NOW_MS);
        store.complete(&scope("k1"), old, ok(1));
        store.abandon(&scope("k1"), old);
        assert_eq!(store.begin(scope("k1"), NOW_MS), Begin::InProgress);
        store.complete(&scope("k1"), new, ok(2));
        assert_eq!(store.begin(scope("k1"), NOW_MS), Begin::Replay(ok(2)));
    }

    #[test]
    fn a_record_expires_after_fifteen_days() {
        let mut store = IdempotencyStore::default();
        let ticket = started(&mut store, scope("k1"), NOW_MS);
        store.complete(&scope("k1"), ticket, ok(1));
        assert_eq!(
            store.begin(scope("k1"), NOW_MS + IDEMPOTENCY_TTL_MS - 1),
            Begin::Replay(ok(1))
        );
        assert!(matches!(
            store.begin(scope("k1"), NOW_MS + IDEMPOTENCY_TTL_MS),
            Begin::Started(_)
        ));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn the_oldest_record_is_evicted_when_the_store_is_full() {
        let mut store = IdempotencyStore::default();
        for index in 0..IDEMPOTENCY_RECORDS_MAX {
            let key = format!("k{index}");
            let ticket = started(&mut store, scope(&key), NOW_MS);
            store.complete(&scope(&key), ticket, ok(1));
        }
        assert!(matches!(
            store.begin(scope("new"), NOW_MS),
            Begin::Started(_)
        ));
        assert_eq!(store.len(), IDEMPOTENCY_RECORDS_MAX);
        assert!(matches!(
            store.begin(scope("k0"), NOW_MS),
            Begin::Started(_)
        ));
        assert_eq!(store.begin(scope("k2"), NOW_MS), Begin::Replay(ok(1)));
    }
}

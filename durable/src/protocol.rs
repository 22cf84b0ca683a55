//! The objects' protocol: every path and message between the edge and the Durable Objects, and
//! between a `Wallet` and a `ChallengeRoom`. The edge and the objects both import these types, so
//! a path or field renamed on one side fails to compile on the other. (What the objects send the
//! core is the core's internal API, `nene_domain::internal_api`.)
//!
//! A call is an HTTP request to the object's stub: a method, a path below [`OBJECT_URL_BASE`], a
//! JSON body. Answers are JSON, errors the API's error envelope.
//!
//! `ChallengeRoom`:
//! - `POST /join` [`RoomJoin`] → 201 [`RoomJoined`] — admit, forward to the core holding a pending
//!   seat, settle;
//! - `POST /close` → [`RoomClosed`] — the core closed recruitment;
//! - `GET /counts?challenge=` → [`LiveCounts`] — live counts, syncing the rules from the core on
//!   first use;
//! - `GET /roster` → [`RosterAnswer`] — the sealed roster the edge caches;
//! - `GET|POST /probe` [`ProbeAdd`] → [`ProbeValue`] — the storage probe (dev mode only).
//!
//! `Wallet`:
//! - `POST /join` [`WalletJoin`] → what the room answered, replayed for a repeated key;
//! - `GET /balance?user=` → the core's wallet view, cached;
//! - `POST /balance/forget` → `{}` — drop the cached balance (after a charge or refund).

use nene_domain::{ChallengeId, idempotency::IdempotencyKey, internal_api::Method};
use serde::{Deserialize, Serialize};

pub use crate::join::{LiveCounts, RosterAnswer};

/// The URL every object call is made under: a stub ignores the host, only the path matters.
pub const OBJECT_URL_BASE: &str = "https://object";

/// The query parameter naming the challenge of `GET /counts`.
pub const QUERY_CHALLENGE: &str = "challenge";
/// The query parameter naming the user of `GET /balance`.
pub const QUERY_USER: &str = "user";

/// A call a `ChallengeRoom` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRoute {
    Join,
    Close,
    Counts,
    Roster,
    ReadProbe,
    AddToProbe,
}

/// A call a `Wallet` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletRoute {
    Join,
    Balance,
    ForgetBalance,
}

impl RoomRoute {
    pub const ALL: [RoomRoute; 6] = [
        RoomRoute::Join,
        RoomRoute::Close,
        RoomRoute::Counts,
        RoomRoute::Roster,
        RoomRoute::ReadProbe,
        RoomRoute::AddToProbe,
    ];

    #[must_use]
    pub const fn method(self) -> Method {
        match self {
            RoomRoute::Join | RoomRoute::Close | RoomRoute::AddToProbe => Method::Post,
            RoomRoute::Counts | RoomRoute::Roster | RoomRoute::ReadProbe => Method::Get,
        }
    }

    #[must_use]
    pub const fn path(self) -> &'static str {
        match self {
            RoomRoute::Join => "/join",
            RoomRoute::Close => "/close",
            RoomRoute::Counts => "/counts",
            RoomRoute::Roster => "/roster",
            RoomRoute::ReadProbe | RoomRoute::AddToProbe => "/probe",
        }
    }

    /// The route a request names, if any (the path without its query).
    #[must_use]
    pub fn recognise(method: &str, path: &str) -> Option<Self> {
        recognise(&Self::ALL, method, path, Self::method, Self::path)
    }

    /// `GET /counts?challenge={id}`.
    #[must_use]
    pub fn counts_of(challenge: &ChallengeId) -> String {
        format!("{}?{QUERY_CHALLENGE}={challenge}", RoomRoute::Counts.path())
    }
}

impl WalletRoute {
    pub const ALL: [WalletRoute; 3] = [
        WalletRoute::Join,
        WalletRoute::Balance,
        WalletRoute::ForgetBalance,
    ];

    #[must_use]
    pub const fn method(self) -> Method {
        match self {
            WalletRoute::Join | WalletRoute::ForgetBalance => Method::Post,
            WalletRoute::Balance => Method::Get,
        }
    }

    #[must_use]
    pub const fn path(self) -> &'static str {
        match self {
            WalletRoute::Join => "/join",
            WalletRoute::Balance => "/balance",
            WalletRoute::ForgetBalance => "/balance/forget",
        }
    }

    /// The route a request names, if any (the path without its query).
    #[must_use]
    pub fn recognise(method: &str, path: &str) -> Option<Self> {
        recognise(&Self::ALL, method, path, Self::method, Self::path)
    }

    /// `GET /balance?user={user}`.
    #[must_use]
    pub fn balance_of(user: &str) -> String {
        format!("{}?{QUERY_USER}={user}", WalletRoute::Balance.path())
    }
}

/// The one of `routes` a request's method and path name.
fn recognise<R: Copy>(
    routes: &[R],
    method: &str,
    path: &str,
    method_of: fn(R) -> Method,
    path_of: fn(R) -> &'static str,
) -> Option<R> {
    routes
        .iter()
        .copied()
        .find(|&route| method_of(route).as_str() == method && path_of(route) == path)
}

/// The URL of a call to an object: `path_and_query` below [`OBJECT_URL_BASE`].
#[must_use]
pub fn object_url(path_and_query: &str) -> String {
    format!("{OBJECT_URL_BASE}{path_and_query}")
}

/// Body of the wallet's `POST /join` (from the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletJoin {
    pub challenge: ChallengeId,
    pub user: String,
    /// The client's Idempotency-Key: the wallet answers a repeat with the first answer.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The access token's id, passed on to the room and the core ([`RoomJoin::session`]).
    #[serde(default)]
    pub session: Option<String>,
}

/// Body of the room's `POST /join` (from the user's wallet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomJoin {
    pub challenge: ChallengeId,
    pub user: String,
    /// The access token's id the user joins with; the core refuses a revoked one.
    #[serde(default)]
    pub session: Option<String>,
}

impl From<&WalletJoin> for RoomJoin {
    fn from(call: &WalletJoin) -> Self {
        RoomJoin {
            challenge: call.challenge.clone(),
            user: call.user.clone(),
            session: call.session.clone(),
        }
    }
}

/// The room's answer to a join that took a seat (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomJoined {
    pub challenge: ChallengeId,
    pub user: String,
    pub participants: u32,
    pub capacity: u32,
}

/// The room's answer to `POST /close`: whether it knew its challenge (a room that never learned
/// its rules has nothing to close, and learns them closed from the core later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClosed {
    pub closed: bool,
}

/// Body of the probe's `POST /probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeAdd {
    pub add: i64,
}

/// Body of every probe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeValue {
    pub value: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_recognised_from_its_own_method_and_path_and_no_other() {
        for route in RoomRoute::ALL {
            assert_eq!(
                RoomRoute::recognise(route.method().as_str(), route.path()),
                Some(route)
            );
        }
        for route in WalletRoute::ALL {
            assert_eq!(
                WalletRoute::recognise(route.method().as_str(), route.path()),
                Some(route)
            );
        }
        assert_eq!(RoomRoute::recognise("DELETE", "/probe"), None);
        assert_eq!(RoomRoute::recognise("GET", "/join"), None);
        assert_eq!(WalletRoute::recognise("GET", "/counts"), None);
    }

    #[test]
    fn a_wallet_join_decodes_only_with_a_well_formed_key_and_challenge() {
        let join: Result<WalletJoin, _> = serde_json::from_str(
            r#"{"challenge":"0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d","user":"u1","idempotency_key":"k-1","session":"s"}"#,
        );
        let join = join.map_err(|e| e.to_string());
        assert_eq!(
            join.as_ref().map(|j| RoomJoin::from(j).session),
            Ok(Some("s".to_owned()))
        );
        let bad_key: Result<WalletJoin, _> = serde_json::from_str(
            r#"{"challenge":"0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d","user":"u1","idempotency_key":"a b"}"#,
        );
        assert!(bad_key.is_err());
        let unknown_field: Result<RoomJoin, _> =
            serde_json::from_str(r#"{"challenge":"c","user":"u1","idempotency_key":"k"}"#);
        assert!(unknown_field.is_err());
    }
}

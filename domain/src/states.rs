//! The states things move through, as types: one definition each, read by every part that
//! compares them. The names on the wire (`RECRUITING`) and in Postgres (`recruiting`, the enum
//! types of `core-service/migrations/`) are both derived from the variant, so neither is spelled
//! as a string anywhere else.
//!
//! With the `sqlx` feature (the core's build; never the edge's or the objects'), each is also the
//! Postgres enum of the same name.

use serde::{Deserialize, Serialize};

/// Where a challenge is in its life (docs/design.md, "Challenge lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "challenge_state", rename_all = "snake_case")
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeState {
    /// Open for joins until `recruit_ends_at`.
    Recruiting,
    /// Recruitment closed with enough participants; waiting for `starts_at`.
    Ready,
    InProgress,
    /// Over; proofs under review until `review_ends_at`.
    Ended,
    Settled,
    /// Too few participants, or canceled: every entry fee refunded.
    Canceled,
}

impl ChallengeState {
    pub const ALL: [ChallengeState; 6] = [
        ChallengeState::Recruiting,
        ChallengeState::Ready,
        ChallengeState::InProgress,
        ChallengeState::Ended,
        ChallengeState::Settled,
        ChallengeState::Canceled,
    ];

    /// The API's name (`RECRUITING`, …).
    #[must_use]
    pub const fn api_name(self) -> &'static str {
        match self {
            ChallengeState::Recruiting => "RECRUITING",
            ChallengeState::Ready => "READY",
            ChallengeState::InProgress => "IN_PROGRESS",
            ChallengeState::Ended => "ENDED",
            ChallengeState::Settled => "SETTLED",
            ChallengeState::Canceled => "CANCELED",
        }
    }

    /// Parses the API's name (`RECRUITING`, …).
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.api_name() == raw)
    }
}

/// Where a push notification is (`notifications` in Postgres).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "notification_state", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Waiting for its first send or its next retry.
    Pending,
    Sent,
    /// Given up on (retries exhausted, or a refusal no retry can change).
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_state_parses_from_the_name_it_is_written_with() {
        for state in ChallengeState::ALL {
            let written = serde_json::to_value(state).unwrap_or_default();
            assert_eq!(written, serde_json::Value::from(state.api_name()));
            assert_eq!(ChallengeState::parse(state.api_name()), Some(state));
        }
        assert_eq!(ChallengeState::parse("recruiting"), None);
        assert_eq!(ChallengeState::parse(""), None);
    }
}

//! Distinct id types, parsed once at the boundary.

use serde::{Deserialize, Serialize};

/// Longest challenge id we accept. Ids are UUIDs (36 chars) today; the bound keeps a hostile path
/// segment from becoming a Durable Object name of arbitrary size.
pub const CHALLENGE_ID_LEN_MAX: usize = 64;

/// A challenge's id: 1–64 chars of `[A-Za-z0-9_-]`. It names the challenge's `ChallengeRoom`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChallengeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a challenge id is 1–{CHALLENGE_ID_LEN_MAX} characters of A–Z, a–z, 0–9, '_' or '-'")]
pub struct InvalidId;

impl ChallengeId {
    /// # Errors
    /// [`InvalidId`] for an empty, too long or oddly spelled id.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let well_formed = !raw.is_empty()
            && raw.len() <= CHALLENGE_ID_LEN_MAX
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if well_formed {
            Ok(ChallengeId(raw.to_owned()))
        } else {
            Err(InvalidId)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChallengeId {
    type Error = InvalidId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        ChallengeId::parse(&raw)
    }
}

impl From<ChallengeId> for String {
    fn from(id: ChallengeId) -> String {
        id.0
    }
}

impl std::fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_a_valid_challenge_id() {
        assert!(ChallengeId::parse("0190a5f2-7c3e-7b1a-9d2e-3f4a5b6c7d8e").is_ok());
    }

    #[test]
    fn empty_long_or_punctuated_ids_are_refused() {
        assert_eq!(ChallengeId::parse(""), Err(InvalidId));
        assert_eq!(ChallengeId::parse(&"a".repeat(65)), Err(InvalidId));
        assert_eq!(ChallengeId::parse("../etc"), Err(InvalidId));
        assert_eq!(ChallengeId::parse("방"), Err(InvalidId));
    }
}

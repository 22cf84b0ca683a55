//! The Idempotency-Key rule, written once: what a key is, wherever one arrives or is made.
//!
//! A client sends one in the `Idempotency-Key` header of a money-moving request (docs/api.md,
//! "Idempotency"); the edge parses it, the `Wallet` object remembers the answer under it, and the
//! core's ledger keys every transfer with one of its own (`join:{challenge}:{user}`,
//! `charge:{orderId}`, …). All three hold the same [`IdempotencyKey`], so a key one part accepts is
//! a key every other part accepts.

use serde::{Deserialize, Serialize};

/// Longest key accepted: the API lets clients send up to 255 characters, and the platform's own
/// keys are a prefix and at most two ids.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// The refusal of a malformed key, as the API words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1–255 printable ASCII characters.")]
pub struct InvalidIdempotencyKey;

/// An idempotency key: 1–[`IDEMPOTENCY_KEY_LEN_MAX`] printable ASCII characters (no spaces, no
/// control characters), so it is safe in a header, a log line and a storage key alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// [`InvalidIdempotencyKey`] for an empty, over-long or non-printable key.
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let printable = raw.bytes().all(|b| b.is_ascii_graphic());
        if raw.is_empty() || raw.len() > IDEMPOTENCY_KEY_LEN_MAX || !printable {
            return Err(InvalidIdempotencyKey);
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        IdempotencyKey::parse(&raw)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> String {
        key.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse("bench:0:3:17").is_ok());
        assert!(IdempotencyKey::parse("join:0190a5f2-7c3e:user_1").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("한글").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX + 1)).is_err());
    }

    #[test]
    fn a_malformed_key_in_a_message_fails_to_decode() {
        let ok: Result<IdempotencyKey, _> = serde_json::from_str("\"order-1\"");
        assert_eq!(
            ok.map(String::from).map_err(|e| e.to_string()),
            Ok("order-1".to_owned())
        );
        assert!(serde_json::from_str::<IdempotencyKey>("\"two words\"").is_err());
    }
}

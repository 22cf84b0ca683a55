//! A user's public profile fields, parsed once at the boundary.

use serde::{Deserialize, Serialize};

/// API.md: a nickname is 2–20 characters (Korean counts one per syllable).
pub const NICKNAME_CHARS_MIN: usize = 2;
pub const NICKNAME_CHARS_MAX: usize = 20;
/// API.md: a bio is at most 300 characters.
pub const BIO_CHARS_MAX: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("a nickname is 2–20 letters, digits, '_' or '.', without spaces at the ends")]
    Nickname,
    #[error("a bio is at most 300 characters without control characters")]
    Bio,
}

/// A nickname: 2–20 characters of letters (any script), digits, `_`, `.` and inner spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nickname(String);

impl Nickname {
    /// # Errors
    /// [`ProfileError::Nickname`] outside the rules.
    pub fn parse(raw: &str) -> Result<Self, ProfileError> {
        let chars = raw.chars().count();
        let allowed = raw
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | ' '));
        let trimmed = raw.trim() == raw;
        if (NICKNAME_CHARS_MIN..=NICKNAME_CHARS_MAX).contains(&chars) && allowed && trimmed {
            Ok(Nickname(raw.to_owned()))
        } else {
            Err(ProfileError::Nickname)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Nickname {
    type Error = ProfileError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Nickname::parse(&raw)
    }
}

impl From<Nickname> for String {
    fn from(nickname: Nickname) -> String {
        nickname.0
    }
}

/// A bio: at most 300 characters, line breaks allowed, no other control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bio(String);

impl Bio {
    /// # Errors
    /// [`ProfileError::Bio`] outside the rules.
    pub fn parse(raw: &str) -> Result<Self, ProfileError> {
        let clean = raw.chars().all(|c| !c.is_control() || c == '\n');
        if raw.chars().count() <= BIO_CHARS_MAX && clean {
            Ok(Bio(raw.to_owned()))
        } else {
            Err(ProfileError::Bio)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Bio {
    type Error = ProfileError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Bio::parse(&raw)
    }
}

impl From<Bio> for String {
    fn from(bio: Bio) -> String {
        bio.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_and_latin_nicknames_of_two_to_twenty_characters_are_accepted() {
        for ok in [
            "네네",
            "달리는_사람",
            "runner.kim",
            "아침 달리기 42",
            &"가".repeat(20),
        ] {
            assert!(Nickname::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "",
            " 네네",
            "네네 ",
            &"가".repeat(21),
            "a<b>",
            "tab\there",
        ] {
            assert_eq!(Nickname::parse(bad), Err(ProfileError::Nickname), "{bad}");
        }
    }

    #[test]
    fn a_bio_is_bounded_and_free_of_control_characters_but_may_break_lines() {
        assert!(Bio::parse("").is_ok());
        assert!(Bio::parse("매일 아침 5km\n같이 해요").is_ok());
        assert!(Bio::parse(&"가".repeat(300)).is_ok());
        assert_eq!(Bio::parse(&"가".repeat(301)), Err(ProfileError::Bio));
        assert_eq!(Bio::parse("bell\u{7}"), Err(ProfileError::Bio));
    }
}

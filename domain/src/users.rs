//! A user's public profile fields, parsed once at the boundary.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// `PATCH /v1/me`: a nickname is 2–20 characters (Korean counts one per syllable), counted in the
/// stored (NFC) form, so a syllable typed as two or three jamo counts once.
pub const NICKNAME_CHARS_MIN: usize = 2;
pub const NICKNAME_CHARS_MAX: usize = 20;
/// `PATCH /v1/me`: a bio is at most 300 characters.
pub const BIO_CHARS_MAX: usize = 300;

/// The Hangul fillers: letters by category (Lo), so a rule of "letters and digits" lets them in,
/// yet they render as nothing. A name of fillers looks blank; a filler added to another's name
/// looks like that name but passes the unique index.
pub const HANGUL_FILLERS: [char; 4] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}'];
/// Marks that render as nothing or only alter the look of the character before them (variation
/// selectors, the combining grapheme joiner, Mongolian free variation selectors): a second,
/// unseen spelling of a name.
const INVISIBLE_MARKS: [(char, char); 5] = [
    ('\u{034F}', '\u{034F}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{E0100}', '\u{E01EF}'),
];

/// The nicknames first sign-in gives: this prefix and [`DEFAULT_NICKNAME_DIGITS`] digits. A user
/// may not choose one, so a default name always belongs to a user who never chose a name (and
/// nobody can pass for such a user, or take the next one handed out).
pub const DEFAULT_NICKNAME_PREFIX: &str = "네네";
pub const DEFAULT_NICKNAME_DIGITS: usize = 6;
const DEFAULT_NICKNAME_MODULUS: u128 = 1_000_000;
const _: () = assert!(DEFAULT_NICKNAME_MODULUS == 10_u128.pow(DEFAULT_NICKNAME_DIGITS as u32));
// A default nickname (the prefix's two syllables and the digits) is itself a nickname's length.
const _: () = assert!(
    2 + DEFAULT_NICKNAME_DIGITS >= NICKNAME_CHARS_MIN
        && 2 + DEFAULT_NICKNAME_DIGITS <= NICKNAME_CHARS_MAX
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("a nickname is 2–20 letters, digits, '_' or '.', without spaces at the ends")]
    Nickname,
    #[error("a nickname may not contain filler, invisible, control or text-direction characters")]
    NicknameInvisible,
    #[error("'네네' followed by six digits is reserved for the nicknames given at first sign-in")]
    NicknameReserved,
    #[error("a bio is at most 300 characters without control characters")]
    Bio,
}

/// A default nickname: [`DEFAULT_NICKNAME_PREFIX`] and six digits taken from `random`.
#[must_use]
pub fn default_nickname(random: u128) -> String {
    format!(
        "{DEFAULT_NICKNAME_PREFIX}{:0width$}",
        random % DEFAULT_NICKNAME_MODULUS,
        width = DEFAULT_NICKNAME_DIGITS
    )
}

/// Whether `c` is invisible or steers the text rather than showing: controls (Cc), format
/// characters (Cf: zero-width spaces and joiners, the bidi embeddings, overrides and isolates,
/// word joiners, the byte-order mark, …), the Hangul fillers, and invisible marks.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || c.general_category() == GeneralCategory::Format
        || HANGUL_FILLERS.contains(&c)
        || INVISIBLE_MARKS
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&c))
}

/// Whether `nickname` reads as a default nickname: the prefix and six digits, also when written
/// with compatibility forms (full-width or circled digits) that look the same.
fn looks_like_a_default(nickname: &str) -> bool {
    let folded: String = nickname.nfkc().collect();
    folded
        .strip_prefix(DEFAULT_NICKNAME_PREFIX)
        .is_some_and(|digits| {
            digits.chars().count() == DEFAULT_NICKNAME_DIGITS
                && digits.chars().all(char::is_numeric)
        })
}

/// A nickname a user chose: stored in Unicode NFC (one spelling per name, so the unique index
/// sees a syllable typed as jamo as the same name), 2–20 characters of letters (any script),
/// digits, `_`, `.` and inner spaces; nothing invisible; not of the default-nickname pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nickname(String);

impl Nickname {
    /// # Errors
    /// [`ProfileError::NicknameInvisible`] for an invisible character,
    /// [`ProfileError::NicknameReserved`] for the default-nickname pattern,
    /// [`ProfileError::Nickname`] outside the other rules.
    pub fn parse(raw: &str) -> Result<Self, ProfileError> {
        let normalized: String = raw.nfc().collect();
        if normalized.chars().any(is_invisible) {
            return Err(ProfileError::NicknameInvisible);
        }
        let chars = normalized.chars().count();
        let allowed = normalized
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | ' '));
        let trimmed = normalized.trim() == normalized;
        if !(NICKNAME_CHARS_MIN..=NICKNAME_CHARS_MAX).contains(&chars) || !allowed || !trimmed {
            return Err(ProfileError::Nickname);
        }
        if looks_like_a_default(&normalized) {
            return Err(ProfileError::NicknameReserved);
        }
        Ok(Nickname(normalized))
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
            // Close to the default pattern, but not it.
            "네네12345",
            "네네1234567",
            "네네 123456",
            "나나123456",
        ] {
            assert!(Nickname::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "", " 네네", "네네 ", &"가".repeat(21), "a<b>", "a/b"] {
            assert_eq!(Nickname::parse(bad), Err(ProfileError::Nickname), "{bad}");
        }
    }

    #[test]
    fn a_nickname_is_stored_in_nfc_so_jamo_and_syllables_are_one_name() {
        // 네 typed as its jamo ᄂ + ᅦ, and as the precomposed syllable.
        let decomposed = "\u{1102}\u{1166}\u{1102}\u{1166}달리기";
        let composed = "네네달리기";
        assert_ne!(decomposed, composed);
        let parsed = Nickname::parse(decomposed).unwrap();
        assert_eq!(parsed.as_str(), composed);
        assert_eq!(parsed, Nickname::parse(composed).unwrap());
        // "é" as e + combining acute and precomposed.
        assert_eq!(
            Nickname::parse("caf\u{65}\u{301}").map(|n| n.as_str().to_owned()),
            Ok("caf\u{e9}".to_owned())
        );
    }

    #[test]
    fn the_length_bounds_count_the_normalized_characters() {
        // Twenty syllables typed as forty jamo are twenty characters.
        let jamo_twenty = "\u{1100}\u{1161}".repeat(20);
        assert_eq!(jamo_twenty.chars().count(), 40);
        assert!(Nickname::parse(&jamo_twenty).is_ok());
        let jamo_twenty_one = "\u{1100}\u{1161}".repeat(21);
        assert_eq!(
            Nickname::parse(&jamo_twenty_one),
            Err(ProfileError::Nickname)
        );
        // One syllable typed as two jamo is one character: too short.
        assert_eq!(
            Nickname::parse("\u{1100}\u{1161}"),
            Err(ProfileError::Nickname)
        );
    }

    #[test]
    fn hangul_fillers_are_refused_alone_and_inside_a_name() {
        for filler in HANGUL_FILLERS {
            for name in [
                format!("{filler}{filler}"),
                format!("네네{filler}"),
                format!("달{filler}리기"),
            ] {
                assert_eq!(
                    Nickname::parse(&name),
                    Err(ProfileError::NicknameInvisible),
                    "U+{:04X} in {name:?}",
                    u32::from(filler)
                );
            }
        }
    }

    #[test]
    fn invisible_and_format_characters_are_refused() {
        for invisible in [
            '\u{00AD}', // soft hyphen
            '\u{200B}',
            '\u{200C}',
            '\u{200D}', // zero-width space, non-joiner, joiner
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',  // word joiner, invisible operators
            '\u{FEFF}',  // byte-order mark
            '\u{034F}',  // combining grapheme joiner
            '\u{FE0F}',  // variation selector 16
            '\u{E0041}', // tag letter
        ] {
            let name = format!("달리{invisible}기");
            assert_eq!(
                Nickname::parse(&name),
                Err(ProfileError::NicknameInvisible),
                "U+{:04X}",
                u32::from(invisible)
            );
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for control in [
            '\u{0}', '\u{7}', '\n', '\r', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}',
        ] {
            assert_eq!(
                Nickname::parse(&format!("달리{control}기")),
                Err(ProfileError::NicknameInvisible),
                "U+{:04X}",
                u32::from(control)
            );
        }
    }

    #[test]
    fn bidi_controls_are_refused() {
        for bidi in [
            '\u{200E}', '\u{200F}', // LRM, RLM
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', // embeddings, overrides
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', // isolates
            '\u{061C}', // Arabic letter mark
        ] {
            assert_eq!(
                Nickname::parse(&format!("nene{bidi}kim")),
                Err(ProfileError::NicknameInvisible),
                "U+{:04X}",
                u32::from(bidi)
            );
        }
    }

    #[test]
    fn the_default_nickname_pattern_is_reserved() {
        for reserved in [
            "네네000000",
            "네네123456",
            "네네999999",
            // Full-width and circled digits look the same.
            "네네１２３４５６",
            "네네①②③④⑤⑥",
            // The prefix typed as jamo is still the prefix.
            "\u{1102}\u{1166}\u{1102}\u{1166}123456",
        ] {
            assert_eq!(
                Nickname::parse(reserved),
                Err(ProfileError::NicknameReserved),
                "{reserved}"
            );
        }
        for random in [0, 42, 999_999, u128::MAX] {
            assert_eq!(
                Nickname::parse(&default_nickname(random)),
                Err(ProfileError::NicknameReserved)
            );
        }
    }

    #[test]
    fn default_nicknames_are_the_prefix_and_six_digits() {
        assert_eq!(default_nickname(42), "네네000042");
        assert_eq!(default_nickname(1_234_567), "네네234567");
        let longest = default_nickname(u128::MAX);
        assert_eq!(longest.chars().count(), 2 + DEFAULT_NICKNAME_DIGITS);
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

//! Search text, the same at the edge and in the core: what a query may be, its one normal form (the
//! edge's cache key and the core's parse), and the analyzer that turns text — titles, bios,
//! queries — into the terms an index keeps.
//!
//! Korean writes compounds without spaces, and people write the same compound both ways ("아침운동",
//! "아침 운동"). So Hangul is indexed as overlapping two-syllable bigrams (the CJK approach of
//! Lucene's `CJKBigramFilter` and Elasticsearch's `cjk_bigram`) plus each run as a whole word, and
//! the bigrams run across a plain space between two Hangul runs: both spellings give the same
//! bigrams (아침, 침운, 운동), and any two-syllable query finds its place inside a compound. Latin
//! text is lower-cased and folded (é → e); stemming and typo tolerance belong to the index.
//! Input is NFC-normalized first, so Hangul typed as separate jamo (NFD) becomes its syllables.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest query, in characters.
pub const QUERY_CHARS_MAX: usize = 100;

/// Why a query is refused (422, with this as the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is longer than 100 characters")]
    TooLong,
    #[error("the query contains a control character")]
    ControlCharacter,
}

/// A query in its one normal form: NFC, lower case, runs of white space as one space, trimmed.
/// Two spellings that search the same are the same `SearchText`, so it is the cache key too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchText(String);

impl SearchText {
    /// # Errors
    /// [`QueryError`]: empty (or only spaces), over [`QUERY_CHARS_MAX`] characters after
    /// normalization, or a control character anywhere (a tab or newline included: a search box
    /// does not make them).
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        if raw.chars().any(char::is_control) {
            return Err(QueryError::ControlCharacter);
        }
        let normal: String = raw.nfc().collect::<String>().to_lowercase();
        let normal = normal.split_whitespace().collect::<Vec<_>>().join(" ");
        if normal.is_empty() {
            return Err(QueryError::Empty);
        }
        if normal.chars().count() > QUERY_CHARS_MAX {
            return Err(QueryError::TooLong);
        }
        Ok(SearchText(normal))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a term stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TermKind {
    /// A whole run: a Latin or digit word, or a Hangul run as written.
    Word,
    /// Two adjacent Hangul syllables.
    Bigram,
}

/// One term of analyzed text, at its position (words and bigrams count separately from 0), from
/// byte `from` to byte `to` of the text in NFC (what an index highlights; a bigram across a space
/// spans the space).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub text: String,
    pub kind: TermKind,
    pub position: u32,
    pub from: usize,
    pub to: usize,
}

/// Hangul syllables (U+AC00–U+D7A3): the script bigrams are made of.
fn is_hangul_syllable(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// A character of a Latin (or other alphabetic) or digit word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_hangul_syllable(c)
}

/// `word` lower-cased with its diacritics dropped (é → e, Ä → a).
fn fold(word: &str) -> String {
    word.nfkd()
        .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
        .flat_map(char::to_lowercase)
        .collect()
}

/// The terms of `text`, in order: every word, and every bigram of its Hangul. Offsets are into
/// `text` in NFC.
#[must_use]
pub fn analyze(text: &str) -> Vec<Term> {
    let text: String = text.nfc().collect();
    let mut terms = Vec::new();
    let (mut words, mut bigrams) = (0_u32, 0_u32);
    let mut push = |terms: &mut Vec<Term>, text: String, kind: TermKind, (from, to)| {
        let counter = match kind {
            TermKind::Word => &mut words,
            TermKind::Bigram => &mut bigrams,
        };
        terms.push(Term {
            text,
            kind,
            position: *counter,
            from,
            to,
        });
        *counter = counter.saturating_add(1);
    };
    // The last Hangul syllable seen (and where it began), while only white space has followed
    // it: the first syllable of the next Hangul run pairs with it.
    let mut previous_syllable: Option<(char, usize)> = None;
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_hangul_syllable(c) {
            let mut run = String::new();
            let mut end = start;
            while let Some(&(at, s)) = chars.peek().filter(|(_, s)| is_hangul_syllable(*s)) {
                end = at + s.len_utf8();
                if let Some((before, before_at)) = previous_syllable {
                    push(
                        &mut terms,
                        [before, s].iter().collect(),
                        TermKind::Bigram,
                        (before_at, end),
                    );
                }
                previous_syllable = Some((s, at));
                run.push(s);
                chars.next();
            }
            push(&mut terms, run, TermKind::Word, (start, end));
        } else if is_word_char(c) {
            let mut word = String::new();
            let mut end = start;
            while let Some(&(at, w)) = chars.peek().filter(|(_, w)| is_word_char(*w)) {
                end = at + w.len_utf8();
                word.push(w);
                chars.next();
            }
            push(&mut terms, fold(&word), TermKind::Word, (start, end));
            previous_syllable = None;
        } else {
            if !c.is_whitespace() {
                previous_syllable = None;
            }
            chars.next();
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn of_kind(text: &str, kind: TermKind) -> Vec<String> {
        analyze(text)
            .into_iter()
            .filter(|term| term.kind == kind)
            .map(|term| term.text)
            .collect()
    }

    #[test]
    fn a_compound_and_its_spaced_spelling_give_the_same_bigrams() {
        assert_eq!(
            of_kind("아침운동", TermKind::Bigram),
            ["아침", "침운", "운동"]
        );
        assert_eq!(
            of_kind("아침 운동", TermKind::Bigram),
            ["아침", "침운", "운동"]
        );
        assert_eq!(of_kind("아침운동", TermKind::Word), ["아침운동"]);
        assert_eq!(of_kind("아침 운동", TermKind::Word), ["아침", "운동"]);
    }

    #[test]
    fn a_two_syllable_query_is_a_bigram_inside_a_longer_compound() {
        let title: HashSet<_> = of_kind("매일영어회화챌린지", TermKind::Bigram)
            .into_iter()
            .collect();
        for query in ["영어", "회화", "챌린"] {
            assert!(title.contains(query), "{query}");
        }
    }

    #[test]
    fn every_term_names_where_it_stands_in_the_text() {
        let text = "아침 운동, No Sugar";
        let spans: Vec<(String, &str)> = analyze(text)
            .into_iter()
            .map(|term| (term.text, &text[term.from..term.to]))
            .collect();
        assert_eq!(
            spans,
            [
                ("아침".to_owned(), "아침"),
                ("아침".to_owned(), "아침"),
                ("침운".to_owned(), "침 운"),
                ("운동".to_owned(), "운동"),
                ("운동".to_owned(), "운동"),
                ("no".to_owned(), "No"),
                ("sugar".to_owned(), "Sugar"),
            ]
        );
    }

    #[test]
    fn punctuation_and_latin_break_the_bigrams() {
        assert_eq!(of_kind("독서, 운동", TermKind::Bigram), ["독서", "운동"]);
        assert_eq!(of_kind("독서 abc 운동", TermKind::Bigram), ["독서", "운동"]);
    }

    #[test]
    fn mixed_korean_and_latin_keep_both_and_latin_is_folded() {
        let words = of_kind("No Sugar 챌린지 Café 30일", TermKind::Word);
        assert_eq!(words, ["no", "sugar", "챌린지", "cafe", "30", "일"]);
    }

    #[test]
    fn hangul_typed_as_jamo_is_analyzed_as_its_syllables() {
        let nfd: String = "독서".nfd().collect();
        assert_ne!(nfd, "독서");
        assert_eq!(analyze(&nfd), analyze("독서"));
        assert_eq!(SearchText::parse(&nfd), SearchText::parse("독서"));
    }

    #[test]
    fn a_query_is_normalized_to_one_spelling() {
        let key = |raw: &str| SearchText::parse(raw).map(|text| text.0);
        assert_eq!(key("  아침   운동 "), Ok("아침 운동".to_owned()));
        assert_eq!(key("No SUGAR"), Ok("no sugar".to_owned()));
        assert_eq!(key(""), Err(QueryError::Empty));
        assert_eq!(key("   "), Err(QueryError::Empty));
        assert_eq!(key("a\tb"), Err(QueryError::ControlCharacter));
        assert_eq!(key("a\u{0}b"), Err(QueryError::ControlCharacter));
        assert_eq!(
            key(&"가".repeat(QUERY_CHARS_MAX)).map(|k| k.chars().count()),
            Ok(100)
        );
        assert_eq!(
            key(&"가".repeat(QUERY_CHARS_MAX + 1)),
            Err(QueryError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn removing_the_spaces_between_hangul_never_changes_the_bigrams(
            runs in proptest::collection::vec("[가-힣]{1,6}", 1..5)
        ) {
            let spaced = runs.join(" ");
            let joined = runs.concat();
            prop_assert_eq!(
                of_kind(&spaced, TermKind::Bigram),
                of_kind(&joined, TermKind::Bigram)
            );
        }

        #[test]
        fn analysis_never_panics_and_positions_count_up_per_kind(text in "\\PC{0,64}") {
            let terms = analyze(&text);
            for kind in [TermKind::Word, TermKind::Bigram] {
                let positions: Vec<u32> = terms
                    .iter()
                    .filter(|term| term.kind == kind)
                    .map(|term| term.position)
                    .collect();
                let expected: Vec<u32> = (0..).take(positions.len()).collect();
                prop_assert_eq!(positions, expected);
            }
        }
    }
}

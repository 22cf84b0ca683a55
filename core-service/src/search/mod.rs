//! Search (issue 17, docs/decisions/0017-search.md): challenges and people by what they say, in
//! Korean and English, from an index that is a derived view of Postgres, never the truth.
//!
//! - [`SearchIndex`] is what the core asks of an index; [`tantivy_index::TantivyIndex`] is the
//!   embedded one, on local disk (`SEARCH_INDEX_DIR`) or in memory. A distributed engine can take
//!   its place behind the same trait and the same answers.
//! - [`feed`] keeps it fresh: Postgres triggers write a change row in every transaction that
//!   changes what search shows (`migrations/0013_search_changes.sql`); each replica's indexer reads
//!   the rows after its cursor, re-reads what they name, applies and commits, with the cursor in
//!   the index's own commit. It also rebuilds an index from nothing.
//! - Text is analyzed by `nene_domain::search::analyze` (the edge's cache key and the index agree
//!   on what a query means), with English stemming of Latin words on top.

pub mod feed;
pub mod tantivy_index;

use nene_domain::{ErrorCode, search::SearchText, states::ChallengeState};
use serde::{Deserialize, Serialize};

/// Most items a page may ask for, and the default.
pub const PAGE_LIMIT_MAX: usize = 50;
pub const PAGE_LIMIT_DEFAULT: usize = 20;
/// How deep paging goes (offset plus limit): past the first few hundred results a person
/// refines the query instead, and a deep page costs the index a top-k of its depth.
pub const SEARCH_DEPTH_MAX: usize = 1_000;
/// Suggestions per answer: what an autocomplete list shows.
pub const SUGGEST_LIMIT: usize = 10;
/// Longest prefix indexed for suggestions, in characters (spaces not counted): past this a person
/// is typing a query, not picking a completion.
pub const SUGGEST_PREFIX_CHARS_MAX: usize = 20;
/// A bio snippet's length, in characters.
pub const SNIPPET_CHARS_MAX: usize = 120;

/// What an index is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchType {
    Challenges,
    Users,
    /// The shop's, once it exists; until then an empty list.
    Products,
}

/// A search, parsed: the query in its normal form, the filters (challenges only), the page.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub text: SearchText,
    pub kind: SearchType,
    pub category: Option<String>,
    pub state: Option<ChallengeState>,
    pub fee_min: Option<u64>,
    pub fee_max: Option<u64>,
    /// Unix seconds: challenges starting strictly after.
    pub starts_after: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

impl SearchRequest {
    /// A first page of `kind` for `text`, without filters.
    #[must_use]
    pub fn first_page(text: SearchText, kind: SearchType) -> Self {
        SearchRequest {
            text,
            kind,
            category: None,
            state: None,
            fee_min: None,
            fee_max: None,
            starts_after: None,
            offset: 0,
            limit: PAGE_LIMIT_DEFAULT,
        }
    }
}

/// The query string of a search as the edge forwards it (`internal_api::SEARCH`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<SearchType>,
    pub category: Option<String>,
    pub state: Option<ChallengeState>,
    pub fee_min: Option<u64>,
    pub fee_max: Option<u64>,
    /// RFC 3339.
    pub starts_after: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

impl SearchParams {
    /// # Errors
    /// [`SearchError::Query`] for a bad query, [`SearchError::Invalid`] for a bad filter, cursor
    /// or limit.
    pub fn parse(&self) -> Result<SearchRequest, SearchError> {
        let text = SearchText::parse(self.q.as_deref().unwrap_or_default())?;
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            return Err(SearchError::Invalid("limit must be within 1..=50"));
        }
        let offset = match self.cursor.as_deref() {
            None => 0,
            Some(cursor) => parse_cursor(cursor)?,
        };
        if offset.saturating_add(limit) > SEARCH_DEPTH_MAX {
            return Err(SearchError::Invalid(
                "search pages end at the 1,000th result",
            ));
        }
        if let (Some(min), Some(max)) = (self.fee_min, self.fee_max)
            && min > max
        {
            return Err(SearchError::Invalid("fee_min is above fee_max"));
        }
        let starts_after = self
            .starts_after
            .as_deref()
            .map(|raw| {
                nene_domain::time::parse_rfc3339(raw).ok_or(SearchError::Invalid(
                    "starts_after must be an RFC 3339 time",
                ))
            })
            .transpose()?;
        let category = self
            .category
            .clone()
            .filter(|category| !category.is_empty());
        Ok(SearchRequest {
            text,
            kind: self.kind.unwrap_or(SearchType::Challenges),
            category,
            state: self.state,
            fee_min: self.fee_min,
            fee_max: self.fee_max,
            starts_after,
            offset,
            limit,
        })
    }
}

/// The cursor of the page after `offset`: opaque to clients, the offset to the index.
#[must_use]
pub fn cursor_at(offset: usize) -> String {
    format!("o{offset}")
}

fn parse_cursor(cursor: &str) -> Result<usize, SearchError> {
    cursor
        .strip_prefix('o')
        .and_then(|offset| offset.parse().ok())
        .ok_or(SearchError::Invalid("the cursor is not one this API gave"))
}

/// A text with the query's terms marked: `<b>…</b>` around each, the rest HTML-escaped (the
/// convention of Lucene's and tantivy's snippets).
pub type Highlighted = String;

/// A challenge as search shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeHit {
    pub id: String,
    pub title: String,
    pub title_highlighted: Highlighted,
    pub description: String,
    pub category: String,
    pub state: ChallengeState,
    pub entry_fee: u64,
    /// RFC 3339.
    pub starts_at: Option<String>,
    pub participants: u64,
    pub capacity: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// A person as search shows them: public fields only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserHit {
    pub id: String,
    pub nickname: String,
    pub nickname_highlighted: Highlighted,
    pub bio_snippet: Highlighted,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Hit {
    Challenge(ChallengeHit),
    User(UserHit),
}

/// A page of results, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub items: Vec<Hit>,
    pub next_cursor: Option<String>,
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// `challenge` or `user`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub text: String,
}

/// Suggestions, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
}

/// A challenge's search document, as Postgres holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeDoc {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub state: ChallengeState,
    pub entry_fee: u64,
    pub starts_at: Option<i64>,
    pub participants: u64,
    pub capacity: u64,
    pub created_at: i64,
}

/// A person's search document: public fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDoc {
    pub id: String,
    pub nickname: String,
    pub bio: String,
    pub created_at: i64,
}

/// What the feed knows of an entity now: its document, or that it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Challenge {
        id: String,
        doc: Option<ChallengeDoc>,
    },
    User {
        id: String,
        doc: Option<UserDoc>,
    },
}

/// Where an index is in the change feed: every change of a transaction before `txid`, and of
/// `txid` up to row `id`, is applied. Ordered as the feed is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeedCursor {
    pub txid: i64,
    pub id: i64,
    /// When the last change applied was written (unix seconds): an index whose feed position is
    /// older than the feed's retention may have missed purged rows, and is rebuilt.
    pub at: i64,
}

/// What the core asks of a search index. Synchronous: an embedded index does CPU and file work;
/// the caller runs it on a blocking thread.
pub trait SearchIndex: Send + Sync + 'static {
    /// A page of results for `request`.
    ///
    /// # Errors
    /// [`SearchError::Index`] when the index cannot be read.
    fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError>;

    /// Completions of `text` as a prefix of a title or nickname (or of any of their words).
    ///
    /// # Errors
    /// [`SearchError::Index`] when the index cannot be read.
    fn suggest(&self, text: &SearchText) -> Result<Suggestions, SearchError>;

    /// Where the index is in the change feed; `None` when it must be rebuilt (new, or of an
    /// older schema).
    fn cursor(&self) -> Option<FeedCursor>;

    /// Stages `updates` (each replaces or removes its entity's document); visible after
    /// [`SearchIndex::commit`].
    ///
    /// # Errors
    /// [`SearchError::Index`].
    fn stage(&self, updates: &[Update]) -> Result<(), SearchError>;

    /// Stages the removal of every document (a rebuild's first step).
    ///
    /// # Errors
    /// [`SearchError::Index`].
    fn stage_clear(&self) -> Result<(), SearchError>;

    /// Commits what is staged with the feed position it reflects, durably, and makes it
    /// searchable.
    ///
    /// # Errors
    /// [`SearchError::Index`].
    fn commit(&self, cursor: FeedCursor) -> Result<(), SearchError>;
}

/// Why search failed (one enum for the search layer).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Query(#[from] nene_domain::search::QueryError),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("search index: {0}")]
    Index(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the search index directory {0} holds something that is not a search index")]
    NotAnIndex(String),
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(error: tantivy::TantivyError) -> Self {
        SearchError::Index(error.to_string())
    }
}

impl SearchError {
    /// The API's code: a bad query or filter is the client's (422, with the message); the
    /// rest is ours.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            SearchError::Query(_) | SearchError::Invalid(_) => ErrorCode::ValidationFailed,
            SearchError::Database(sqlx::Error::PoolTimedOut) => ErrorCode::CoreUnavailable,
            SearchError::Index(_) | SearchError::Database(_) | SearchError::NotAnIndex(_) => {
                ErrorCode::Internal
            }
        }
    }
}

/// `text` with the byte ranges `marks` (sorted, possibly overlapping) in `<b>…</b>`, the rest
/// HTML-escaped.
#[must_use]
pub fn highlight(text: &str, marks: &[(usize, usize)]) -> Highlighted {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    let mut sorted = marks.to_vec();
    sorted.sort_unstable();
    for (from, to) in sorted {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    let mut out = String::with_capacity(text.len() + merged.len() * 7);
    let mut at = 0;
    for (from, to) in merged {
        let (Some(before), Some(marked)) = (text.get(at..from), text.get(from..to)) else {
            continue;
        };
        escape_into(&mut out, before);
        out.push_str("<b>");
        escape_into(&mut out, marked);
        out.push_str("</b>");
        at = to;
    }
    escape_into(&mut out, text.get(at..).unwrap_or_default());
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The keys a text is suggested under: from the start of each of its words to the end of the
/// text, spaces dropped (so "아침 운동" completes "아침운" too), lower case, each cut to
/// [`SUGGEST_PREFIX_CHARS_MAX`] characters; every prefix of each is indexed.
#[must_use]
pub fn suggest_keys(text: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization;
    let normal: String = text.nfc().collect::<String>().to_lowercase();
    let words: Vec<&str> = normal.split_whitespace().collect();
    (0..words.len())
        .map(|start| {
            words[start..]
                .concat()
                .chars()
                .take(SUGGEST_PREFIX_CHARS_MAX)
                .collect()
        })
        .collect()
}

/// The key a typed query looks suggestions up by (see [`suggest_keys`]).
#[must_use]
pub fn suggest_key(text: &SearchText) -> String {
    text.as_str()
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(SUGGEST_PREFIX_CHARS_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_marks_the_ranges_and_escapes_the_rest() {
        let text = "아침 <운동>";
        let from = text.find("운동").unwrap_or_default();
        assert_eq!(
            highlight(text, &[(0, 6), (from, from + 6), (3, 6)]),
            "<b>아침</b> &lt;<b>운동</b>&gt;"
        );
        assert_eq!(highlight("a&b", &[]), "a&amp;b");
    }

    #[test]
    fn suggestions_are_keyed_from_every_word_without_spaces() {
        assert_eq!(
            suggest_keys("아침 운동 Club"),
            ["아침운동club", "운동club", "club"]
        );
        let key = suggest_key(&SearchText::parse("아침 운").unwrap_or_else(|_| unreachable!()));
        assert_eq!(key, "아침운");
    }

    #[test]
    fn a_search_is_parsed_with_its_bounds() {
        let params =
            |query: &str| -> SearchParams { serde_urlencoded::from_str(query).unwrap_or_default() };
        let parsed = params("q=%EC%95%84%EC%B9%A8&type=users&limit=5&cursor=o10")
            .parse()
            .ok();
        assert_eq!(
            parsed.as_ref().map(|r| (r.kind, r.offset, r.limit)),
            Some((SearchType::Users, 10, 5))
        );
        for bad in [
            "q=",
            "q=a&limit=0",
            "q=a&limit=51",
            "q=a&cursor=x",
            "q=a&cursor=o990&limit=20",
            "q=a&fee_min=5000&fee_max=1000",
            "q=a&starts_after=tomorrow",
        ] {
            let refused = params(bad).parse();
            assert!(
                matches!(
                    refused.as_ref().map_err(SearchError::code),
                    Err(ErrorCode::ValidationFailed)
                ),
                "{bad}: {refused:?}"
            );
        }
    }
}

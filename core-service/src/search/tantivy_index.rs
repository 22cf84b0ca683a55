//! The embedded search index: tantivy, on local disk (or in memory), one per core replica.
//!
//! One index holds challenges and people (a `kind` field tells them apart). Text fields are
//! analyzed by the domain's analyzer (Hangul bigrams and whole runs, folded Latin words) with
//! English stemming on top; a `suggest` field holds every prefix of each word-start of a title or
//! nickname. The feed position and the schema version ride in each commit's payload.
//!
//! Ranking (docs/decisions/0017-search.md): BM25 relevance (title ×2 over description or bio),
//! times the state's weight (recruiting 1, ready 0.6, in progress 0.5, ended 0.25, settled 0.2,
//! canceled 0.1; people 1), times `1 + ln(1 + participants) / 10`, times
//! `1 + 0.5 × 2^(−age / 30 days)`.

use std::{
    collections::HashMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nene_domain::{
    search::{SearchText, analyze},
    states::ChallengeState,
    time::format_rfc3339,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, SegmentReader,
    TantivyDocument, Term,
    collector::TopDocs,
    query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery},
    schema::{
        FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
        TextOptions, Value,
    },
    tokenizer::{Language, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer},
};

use super::{
    ChallengeHit, FeedCursor, Hit, SNIPPET_CHARS_MAX, SUGGEST_LIMIT, SearchError, SearchIndex,
    SearchPage, SearchRequest, SearchType, Suggestion, Suggestions, Update, UserHit, cursor_at,
    highlight, suggest_key, suggest_keys,
};

/// The index's schema version: an index committed under another is rebuilt at start. Bump it
/// with any change to the fields or the analysis.
pub const SCHEMA_VERSION: u32 = 1;
/// The writer's memory budget (tantivy's minimum is 15 MB per thread): enough to buffer a
/// rebuild's batch of documents before it spills a segment; more only costs the replica RAM.
pub const WRITER_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Latin words this long or longer also match at one edit (a typo); shorter ones would match
/// too many other words.
pub const FUZZY_WORD_CHARS_MIN: usize = 5;

const TOKENIZER_TEXT: &str = "nene";
const TOKENIZER_SUGGEST: &str = "nene_suggest";
const KIND_CHALLENGE: &str = "challenge";
const KIND_USER: &str = "user";
const SECONDS_PER_DAY: f32 = 86_400.0;
/// Recency's half-life, in days.
const RECENCY_HALF_LIFE_DAYS: f32 = 30.0;

/// The domain's analyzer as a tantivy tokenizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeneTokenizer;

pub struct NeneTokenStream {
    tokens: std::vec::IntoIter<Token>,
    current: Token,
}

impl Tokenizer for NeneTokenizer {
    type TokenStream<'a> = NeneTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> NeneTokenStream {
        let tokens: Vec<Token> = analyze(text)
            .into_iter()
            .enumerate()
            .map(|(position, term)| Token {
                offset_from: term.from,
                offset_to: term.to,
                position,
                text: term.text,
                position_length: 1,
            })
            .collect();
        NeneTokenStream {
            tokens: tokens.into_iter(),
            current: Token::default(),
        }
    }
}

impl TokenStream for NeneTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// Every prefix of every suggestion key of a text ([`suggest_keys`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SuggestTokenizer;

impl Tokenizer for SuggestTokenizer {
    type TokenStream<'a> = NeneTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> NeneTokenStream {
        let mut tokens = Vec::new();
        for key in suggest_keys(text) {
            let mut prefix = String::with_capacity(key.len());
            for c in key.chars() {
                prefix.push(c);
                tokens.push(Token {
                    offset_from: 0,
                    offset_to: 0,
                    position: tokens.len(),
                    text: prefix.clone(),
                    position_length: 1,
                });
            }
        }
        NeneTokenStream {
            tokens: tokens.into_iter(),
            current: Token::default(),
        }
    }
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(NeneTokenizer)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The schema's fields.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// `challenge:<id>` or `user:<id>`: what an update replaces.
    key: Field,
    kind: Field,
    id: Field,
    /// A challenge's title, a person's nickname.
    title: Field,
    /// A challenge's description, a person's bio.
    body: Field,
    suggest: Field,
    category: Field,
    state: Field,
    state_rank: Field,
    entry_fee: Field,
    starts_at: Field,
    participants: Field,
    capacity: Field,
    created_at: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER_TEXT)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let suggest = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER_SUGGEST)
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        key: builder.add_text_field("key", STRING),
        kind: builder.add_text_field("kind", STRING | STORED),
        id: builder.add_text_field("id", STRING | STORED),
        title: builder.add_text_field("title", text.clone()),
        body: builder.add_text_field("body", text),
        suggest: builder.add_text_field("suggest", suggest),
        category: builder.add_text_field("category", STRING | STORED),
        state: builder.add_text_field("state", STRING | STORED),
        state_rank: builder.add_u64_field("state_rank", FAST),
        entry_fee: builder.add_u64_field("entry_fee", INDEXED | FAST | STORED),
        starts_at: builder.add_i64_field("starts_at", INDEXED | FAST | STORED),
        participants: builder.add_u64_field("participants", FAST | STORED),
        capacity: builder.add_u64_field("capacity", STORED),
        created_at: builder.add_i64_field("created_at", FAST | STORED),
    };
    (builder.build(), fields)
}

/// A state's rank in the fast field (0 is a person) and its ranking weight.
fn state_rank(state: ChallengeState) -> u64 {
    match state {
        ChallengeState::Recruiting => 1,
        ChallengeState::Ready => 2,
        ChallengeState::InProgress => 3,
        ChallengeState::Ended => 4,
        ChallengeState::Settled => 5,
        ChallengeState::Canceled => 6,
    }
}

fn state_weight(rank: u64) -> f32 {
    match rank {
        2 => 0.6,
        3 => 0.5,
        4 => 0.25,
        5 => 0.2,
        6 => 0.1,
        // A person (0) and a recruiting challenge (1).
        _ => 1.0,
    }
}

fn state_of(api_name: &str) -> Option<ChallengeState> {
    ChallengeState::ALL
        .into_iter()
        .find(|state| state.api_name() == api_name)
}

/// Where the index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexLocation {
    /// In memory: rebuilt at every start (the default for a developer's stack and the tests).
    Memory,
    /// A directory of its own on local disk (`SEARCH_INDEX_DIR`), kept across restarts.
    Disk(PathBuf),
}

/// The embedded index: its writer (one per index, behind a lock) and a reader reloaded at every
/// commit.
pub struct TantivyIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    analyzer: TextAnalyzer,
    cursor: Mutex<Option<FeedCursor>>,
}

/// The payload of every commit.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Payload {
    schema_version: u32,
    cursor: FeedCursor,
}

fn open_index(location: &IndexLocation, schema: Schema) -> Result<Index, SearchError> {
    match location {
        IndexLocation::Memory => Ok(Index::create_in_ram(schema)),
        IndexLocation::Disk(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| SearchError::Index(e.to_string()))?;
            let is_index = dir.join("meta.json").exists();
            if is_index {
                let index = Index::open_in_dir(dir)?;
                if index.schema() == schema && payload(&index).is_some() {
                    return Ok(index);
                }
                // Another schema, or never committed by us: a derived view, so start over.
                drop(index);
                clear_dir(dir)?;
            } else if std::fs::read_dir(dir)
                .map_err(|e| SearchError::Index(e.to_string()))?
                .next()
                .is_some()
            {
                return Err(SearchError::NotAnIndex(dir.display().to_string()));
            }
            Ok(Index::create_in_dir(dir, schema)?)
        }
    }
}

/// Removes an index's files (only called on a directory holding a `meta.json`).
fn clear_dir(dir: &Path) -> Result<(), SearchError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SearchError::Index(e.to_string()))?;
    for entry in entries {
        let path = entry.map_err(|e| SearchError::Index(e.to_string()))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| SearchError::Index(e.to_string()))?;
    }
    Ok(())
}

fn payload(index: &Index) -> Option<Payload> {
    let metas = index.load_metas().ok()?;
    let payload: Payload = serde_json::from_str(metas.payload.as_deref()?).ok()?;
    (payload.schema_version == SCHEMA_VERSION).then_some(payload)
}

impl TantivyIndex {
    /// Opens the index at `location`, or creates an empty one (which [`SearchIndex::cursor`]
    /// reports as needing a rebuild). An index of an older schema is dropped and created anew.
    ///
    /// # Errors
    /// When the directory cannot be used, holds something else, or another process holds the
    /// index's writer.
    pub fn open(location: &IndexLocation) -> Result<TantivyIndex, SearchError> {
        let (schema, fields) = schema();
        let index = open_index(location, schema)?;
        index.tokenizers().register(TOKENIZER_TEXT, text_analyzer());
        index
            .tokenizers()
            .register(TOKENIZER_SUGGEST, TextAnalyzer::from(SuggestTokenizer));
        let cursor = payload(&index).map(|payload| payload.cursor);
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TantivyIndex {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            analyzer: text_analyzer(),
            cursor: Mutex::new(cursor),
        })
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, SearchError> {
        self.writer
            .lock()
            .map_err(|_| SearchError::Index("the writer's lock is poisoned".to_owned()))
    }

    /// The analyzed tokens of `text` (stemmed), with their byte ranges.
    fn tokens(&self, text: &str) -> Vec<Token> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut tokens = Vec::new();
        while stream.advance() {
            tokens.push(stream.token().clone());
        }
        tokens
    }

    fn document(&self, update: &Update) -> Option<TantivyDocument> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        match update {
            Update::Challenge { id, doc: Some(c) } => {
                doc.add_text(f.key, format!("{KIND_CHALLENGE}:{id}"));
                doc.add_text(f.kind, KIND_CHALLENGE);
                doc.add_text(f.id, &c.id);
                doc.add_text(f.title, nfc(&c.title));
                doc.add_text(f.body, nfc(&c.description));
                doc.add_text(f.suggest, &c.title);
                doc.add_text(f.category, &c.category);
                doc.add_text(f.state, c.state.api_name());
                doc.add_u64(f.state_rank, state_rank(c.state));
                doc.add_u64(f.entry_fee, c.entry_fee);
                if let Some(starts_at) = c.starts_at {
                    doc.add_i64(f.starts_at, starts_at);
                }
                doc.add_u64(f.participants, c.participants);
                doc.add_u64(f.capacity, c.capacity);
                doc.add_i64(f.created_at, c.created_at);
            }
            Update::User { id, doc: Some(u) } => {
                doc.add_text(f.key, format!("{KIND_USER}:{id}"));
                doc.add_text(f.kind, KIND_USER);
                doc.add_text(f.id, &u.id);
                doc.add_text(f.title, nfc(&u.nickname));
                doc.add_text(f.body, nfc(&u.bio));
                doc.add_text(f.suggest, &u.nickname);
                doc.add_u64(f.state_rank, 0);
                doc.add_i64(f.created_at, u.created_at);
            }
            Update::Challenge { doc: None, .. } | Update::User { doc: None, .. } => return None,
        }
        Some(doc)
    }

    /// The text query: every term of a Hangul run of one or two syllables and every bigram inside
    /// a run must match (so a two-syllable query finds its place in a compound, and spacing does
    /// not matter); a bigram across a space and a longer whole run only add to the score; every
    /// Latin or digit word must match, at one edit when it is long. Each term counts twice in a
    /// title as in a description or bio.
    fn text_query(&self, text: &SearchText) -> Option<BooleanQuery> {
        let mut clauses: HashMap<String, (Occur, bool)> = HashMap::new();
        for token in self.tokens(text.as_str()) {
            let hangul = token.text.chars().all(is_hangul_syllable);
            let chars = token.text.chars().count();
            let span = token.offset_to.saturating_sub(token.offset_from);
            let occur = if hangul && (chars >= 3 || (chars == 2 && span > 6)) {
                Occur::Should
            } else {
                Occur::Must
            };
            let fuzzy = !hangul && chars >= FUZZY_WORD_CHARS_MIN;
            let entry = clauses.entry(token.text).or_insert((occur, fuzzy));
            if occur == Occur::Must {
                entry.0 = Occur::Must;
            }
        }
        if clauses.is_empty() {
            return None;
        }
        let mut clauses: Vec<(String, (Occur, bool))> = clauses.into_iter().collect();
        clauses.sort_by(|a, b| a.0.cmp(&b.0));
        let queries = clauses
            .into_iter()
            .map(|(term, (occur, fuzzy))| {
                let mut either: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for (field, boost) in [(self.fields.title, 2.0), (self.fields.body, 1.0)] {
                    let term = Term::from_field_text(field, &term);
                    either.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                            boost,
                        )),
                    ));
                    if fuzzy {
                        either.push((
                            Occur::Should,
                            Box::new(BoostQuery::new(
                                Box::new(FuzzyTermQuery::new(term, 1, true)),
                                boost * 0.5,
                            )),
                        ));
                    }
                }
                (occur, Box::new(BooleanQuery::new(either)) as Box<dyn Query>)
            })
            .collect();
        Some(BooleanQuery::new(queries))
    }

    fn filters(&self, request: &SearchRequest, kind: &str) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let term = |field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let mut filters = vec![(Occur::Must, term(f.kind, kind))];
        if request.kind != SearchType::Challenges {
            return filters;
        }
        if let Some(category) = &request.category {
            filters.push((Occur::Must, term(f.category, category)));
        }
        if let Some(state) = request.state {
            filters.push((Occur::Must, term(f.state, state.api_name())));
        }
        if request.fee_min.is_some() || request.fee_max.is_some() {
            let bound = |value: Option<u64>| {
                value.map_or(Bound::Unbounded, |value| {
                    Bound::Included(Term::from_field_u64(f.entry_fee, value))
                })
            };
            filters.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(request.fee_min),
                    bound(request.fee_max),
                )),
            ));
        }
        if let Some(after) = request.starts_after {
            filters.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_i64(f.starts_at, after)),
                    Bound::Unbounded,
                )),
            ));
        }
        filters
    }

    /// The top `limit` documents after `offset` by the blended score.
    fn ranked(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(f32, DocAddress)>, SearchError> {
        let now = now_unix_seconds();
        let collector = TopDocs::with_limit(limit.max(1))
            .and_offset(offset)
            .tweak_score(move |segment: &SegmentReader| {
                let fast = segment.fast_fields();
                let state = fast
                    .u64("state_rank")
                    .ok()
                    .map(|column| column.first_or_default_col(0));
                let participants = fast
                    .u64("participants")
                    .ok()
                    .map(|column| column.first_or_default_col(0));
                let created = fast
                    .i64("created_at")
                    .ok()
                    .map(|column| column.first_or_default_col(now));
                move |doc: tantivy::DocId, relevance: f32| {
                    let rank = state.as_ref().map_or(0, |column| column.get_val(doc));
                    let joined = participants
                        .as_ref()
                        .map_or(0, |column| column.get_val(doc));
                    let created_at = created.as_ref().map_or(now, |column| column.get_val(doc));
                    blend(relevance, rank, joined, now.saturating_sub(created_at))
                }
            });
        Ok(searcher.search(query, &collector)?)
    }

    fn hit(&self, searcher: &Searcher, address: DocAddress, terms: &[String]) -> Option<Hit> {
        let f = &self.fields;
        let doc: TantivyDocument = searcher.doc(address).ok()?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let number = |field| doc.get_first(field).and_then(|value| value.as_u64());
        let title = text(f.title);
        let marked_title = highlight(&title, &self.marks(&title, terms));
        match text(f.kind).as_str() {
            KIND_CHALLENGE => Some(Hit::Challenge(ChallengeHit {
                id: text(f.id),
                title_highlighted: marked_title,
                title,
                description: text(f.body),
                category: text(f.category),
                state: state_of(&text(f.state))?,
                entry_fee: number(f.entry_fee)?,
                starts_at: doc
                    .get_first(f.starts_at)
                    .and_then(|value| value.as_i64())
                    .map(format_rfc3339),
                participants: number(f.participants)?,
                capacity: number(f.capacity)?,
                created_at: format_rfc3339(
                    doc.get_first(f.created_at)
                        .and_then(|value| value.as_i64())?,
                ),
            })),
            KIND_USER => {
                let bio = text(f.body);
                Some(Hit::User(UserHit {
                    id: text(f.id),
                    nickname_highlighted: marked_title,
                    nickname: title,
                    bio_snippet: self.snippet(&bio, terms),
                }))
            }
            _ => None,
        }
    }

    /// The byte ranges of `text`'s tokens that are among `terms`.
    fn marks(&self, text: &str, terms: &[String]) -> Vec<(usize, usize)> {
        self.tokens(text)
            .into_iter()
            .filter(|token| terms.contains(&token.text))
            .map(|token| (token.offset_from, token.offset_to))
            .collect()
    }

    /// Up to [`SNIPPET_CHARS_MAX`] characters of `text` from a little before its first match,
    /// highlighted.
    fn snippet(&self, text: &str, terms: &[String]) -> String {
        let marks = self.marks(text, terms);
        let first = marks.iter().map(|mark| mark.0).min().unwrap_or(0);
        let lead = SNIPPET_CHARS_MAX / 4;
        let start = text[..first]
            .char_indices()
            .rev()
            .nth(lead.saturating_sub(1))
            .map_or(0, |(at, _)| at);
        let end = text[start..]
            .char_indices()
            .nth(SNIPPET_CHARS_MAX)
            .map_or(text.len(), |(at, _)| start + at);
        let window: Vec<(usize, usize)> = marks
            .into_iter()
            .filter(|(from, to)| *from >= start && *to <= end)
            .map(|(from, to)| (from - start, to - start))
            .collect();
        highlight(&text[start..end], &window)
    }
}

fn is_hangul_syllable(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

fn nfc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect()
}

fn now_unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The ranking: relevance × state × popularity × recency (the module's documentation).
#[allow(clippy::cast_precision_loss)]
fn blend(relevance: f32, state_rank: u64, participants: u64, age_seconds: i64) -> f32 {
    let popularity = 1.0 + (participants as f32).ln_1p() / 10.0;
    let age_days = (age_seconds.max(0) as f32) / SECONDS_PER_DAY;
    let recency = 1.0 + 0.5 * (-age_days / RECENCY_HALF_LIFE_DAYS).exp2();
    relevance * state_weight(state_rank) * popularity * recency
}

impl SearchIndex for TantivyIndex {
    fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        let kind = match request.kind {
            SearchType::Challenges => KIND_CHALLENGE,
            SearchType::Users => KIND_USER,
            SearchType::Products => {
                return Ok(SearchPage {
                    items: Vec::new(),
                    next_cursor: None,
                });
            }
        };
        let Some(text_query) = self.text_query(&request.text) else {
            return Ok(SearchPage {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let mut clauses = self.filters(request, kind);
        clauses.push((Occur::Must, Box::new(text_query)));
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        // One more than the page: whether a next page exists.
        let mut ranked = self.ranked(
            &searcher,
            &query,
            request.offset,
            request.limit.saturating_add(1),
        )?;
        let more = ranked.len() > request.limit;
        ranked.truncate(request.limit);
        let terms: Vec<String> = self
            .tokens(request.text.as_str())
            .into_iter()
            .map(|token| token.text)
            .collect();
        let items = ranked
            .into_iter()
            .filter_map(|(_, address)| self.hit(&searcher, address, &terms))
            .collect();
        Ok(SearchPage {
            items,
            next_cursor: more.then(|| cursor_at(request.offset + request.limit)),
        })
    }

    fn suggest(&self, text: &SearchText) -> Result<Suggestions, SearchError> {
        let key = suggest_key(text);
        if key.is_empty() {
            return Ok(Suggestions { items: Vec::new() });
        }
        let query = TermQuery::new(
            Term::from_field_text(self.fields.suggest, &key),
            IndexRecordOption::Basic,
        );
        let searcher = self.reader.searcher();
        let f = &self.fields;
        let items = self
            .ranked(&searcher, &query, 0, SUGGEST_LIMIT)?
            .into_iter()
            .filter_map(|(_, address)| {
                let doc: TantivyDocument = searcher.doc(address).ok()?;
                let get = |field| {
                    doc.get_first(field)
                        .and_then(|value| value.as_str().map(str::to_owned))
                };
                Some(Suggestion {
                    kind: get(f.kind)?,
                    id: get(f.id)?,
                    text: get(f.title)?,
                })
            })
            .collect();
        Ok(Suggestions { items })
    }

    fn cursor(&self) -> Option<FeedCursor> {
        self.cursor.lock().ok().and_then(|cursor| *cursor)
    }

    fn stage(&self, updates: &[Update]) -> Result<(), SearchError> {
        let writer = self.lock_writer()?;
        for update in updates {
            let key = match update {
                Update::Challenge { id, .. } => format!("{KIND_CHALLENGE}:{id}"),
                Update::User { id, .. } => format!("{KIND_USER}:{id}"),
            };
            writer.delete_term(Term::from_field_text(self.fields.key, &key));
            if let Some(doc) = self.document(update) {
                writer.add_document(doc)?;
            }
        }
        Ok(())
    }

    fn stage_clear(&self) -> Result<(), SearchError> {
        self.lock_writer()?.delete_all_documents()?;
        Ok(())
    }

    fn commit(&self, cursor: FeedCursor) -> Result<(), SearchError> {
        let payload = serde_json::to_string(&Payload {
            schema_version: SCHEMA_VERSION,
            cursor,
        })
        .map_err(|e| SearchError::Index(e.to_string()))?;
        {
            let mut writer = self.lock_writer()?;
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        if let Ok(mut current) = self.cursor.lock() {
            *current = Some(cursor);
        }
        Ok(())
    }
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TantivyIndex")
            .field("index", &self.index)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recruiting_challenge_outranks_an_ended_one_of_twice_the_relevance() {
        assert!(blend(1.0, 1, 0, 0) > blend(2.0, 4, 0, 0));
        assert!(blend(1.0, 1, 100, 0) > blend(1.0, 1, 0, 0));
        assert!(blend(1.0, 1, 0, 0) > blend(1.0, 1, 0, 90 * 86_400));
    }

    #[test]
    fn suggest_tokens_are_every_prefix_of_every_word_start() {
        let mut tokenizer = SuggestTokenizer;
        let mut stream = tokenizer.token_stream("독서 모임");
        let mut tokens = Vec::new();
        while stream.advance() {
            tokens.push(stream.token().text.clone());
        }
        assert_eq!(tokens, ["독", "독서", "독서모", "독서모임", "모", "모임"]);
    }
}

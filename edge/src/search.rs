//! Search: `GET /v1/search?q=&type=…` and `GET /v1/search/suggest?q=`. The edge refuses a query
//! the core would refuse (the domain's [`SearchText`] rules: empty, over 100 characters, a control
//! character → 422) before anything is asked; the index and the ranking are the core's.
//!
//! First pages (the text and the type, nothing else) are answered from the host's cache where it
//! has one (the Workers Cache API), keyed by the query in its normal form (NFC, lower case, one
//! space), so "아침  운동" and "아침 운동" are one entry. An entry is served as it is for
//! [`SEARCH_CACHE_FRESH_SECONDS`], then for [`SEARCH_CACHE_STALE_SECONDS`] more while one request
//! per isolate refreshes it after its response has gone (stale-while-revalidate). A hit never asks
//! the core. Deeper pages and filtered searches go to the core every time: they are rarer, and a
//! key per filter would spread the cache thin. Results are the same for every signed-in user, so
//! one entry serves them all; the token is still checked on every request.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{
    Router,
    extract::{Query, RawQuery, rejection::QueryRejection},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::StatusCode;
use nene_domain::{ErrorCode, internal_api, search::SearchText};
use serde::Deserialize;

use crate::{
    auth::User,
    core_client::Core,
    error::ApiError,
    platform::{AnswerCache, AppState, CachedAnswer},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/search/suggest", get(suggest))
}

/// Longest query string forwarded: the text (100 characters, up to 4 bytes each, percent-encoded)
/// and the filters.
const QUERY_LEN_MAX: usize = 2_048;

/// The query text of a search, checked here so that a bad one costs no call to the core.
#[derive(Debug, Deserialize)]
struct Text {
    q: Option<String>,
}

/// The query to forward, once its text is one the core accepts.
fn checked(
    text: Result<Query<Text>, QueryRejection>,
    raw: Option<String>,
) -> Result<(SearchText, String), ApiError> {
    let Query(text) = text.map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let text = SearchText::parse(text.q.as_deref().unwrap_or_default())
        .map_err(|error| ApiError::with_message(ErrorCode::ValidationFailed, error.to_string()))?;
    let raw = raw.unwrap_or_default();
    if raw.len() > QUERY_LEN_MAX {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    Ok((text, raw))
}

/// `GET /v1/search?q=&type=challenges|users|products&category=&state=&fee_min=&fee_max=&starts_after=&cursor=&limit=`.
async fn search(
    core: Core,
    user: User,
    text: Result<Query<Text>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    answer(core, user, Route::Search, text, raw).await
}

/// `GET /v1/search/suggest?q=`.
async fn suggest(
    core: Core,
    user: User,
    text: Result<Query<Text>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    answer(core, user, Route::Suggest, text, raw).await
}

/// How long a cached first page is served as it is.
pub const SEARCH_CACHE_FRESH_SECONDS: i64 = 10;
/// How long after that it is still served while it is refreshed; then the cache drops it.
pub const SEARCH_CACHE_STALE_SECONDS: i64 = 50;
/// The response header that says how a first page was answered: `hit`, `stale` or `miss`. Absent
/// when the search is not a first page or the host has no cache.
pub const HEADER_CACHE: &str = "x-nene-cache";
/// Keys this isolate may be refreshing at once; past it a stale entry is served without a refresh
/// until one finishes.
const REFRESHING_MAX: usize = 256;
/// The cache keys' origin: a name of ours, the same for every host name the Worker answers on.
const CACHE_KEY_ORIGIN: &str = "https://search-cache.nene.internal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Search,
    Suggest,
}

impl Route {
    fn internal(self) -> internal_api::Route {
        match self {
            Route::Search => internal_api::SEARCH,
            Route::Suggest => internal_api::SEARCH_SUGGEST,
        }
    }

    fn public_path(self) -> &'static str {
        match self {
            Route::Search => "/v1/search",
            Route::Suggest => "/v1/search/suggest",
        }
    }
}

/// A first page: the only searches answered from the cache. Its query is the normal form, so the
/// core is asked exactly what the key names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FirstPage {
    /// `q=…` (and `&type=…` for a search), form-encoded from the normal form.
    query: String,
}

impl FirstPage {
    /// The first page `raw` asks for (its text already parsed as `text`), or `None` when it
    /// carries anything but the text (and, for a search, a known type): a cursor, a limit, a
    /// filter, or a parameter twice.
    fn of(route: Route, text: &SearchText, raw: &str) -> Option<FirstPage> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).ok()?;
        let mut seen_text = false;
        let mut kind = None;
        for (name, value) in pairs {
            match (name.as_str(), route) {
                ("q", _) if !seen_text => seen_text = true,
                ("type", Route::Search) if kind.is_none() => {
                    kind = Some(match value.as_str() {
                        "challenges" => "challenges",
                        "users" => "users",
                        "products" => "products",
                        _ => return None,
                    });
                }
                _ => return None,
            }
        }
        let mut fields = vec![("q", text.as_str())];
        if route == Route::Search {
            // The core's default type, written out, so both spellings are one entry.
            fields.push(("type", kind.unwrap_or("challenges")));
        }
        serde_urlencoded::to_string(fields)
            .ok()
            .map(|query| FirstPage { query })
    }

    fn cache_key(&self, route: Route) -> String {
        format!("{CACHE_KEY_ORIGIN}{}?{}", route.public_path(), self.query)
    }
}

/// Both routes: the query checked; a first page from the cache where there is one, anything else
/// from the core with the query as it came.
async fn answer(
    core: Core,
    User(user): User,
    route: Route,
    text: Result<Query<Text>, QueryRejection>,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let (text, raw) = checked(text, raw)?;
    let cache = core.platform().cache.clone();
    let (Some(cache), Some(page)) = (cache, FirstPage::of(route, &text, &raw)) else {
        let call = route.internal().call(&[]).with_query(&raw);
        let (status, body) = core.bytes(&call, Some(&user)).await?;
        return Ok(json_response(status, body, None));
    };
    let key = page.cache_key(route);
    let call = route.internal().call(&[]).with_query(&page.query);
    let now = core.platform().host.now_unix_seconds();
    match cache.get(&key).await {
        Some(entry) if now - entry.stored_at < SEARCH_CACHE_FRESH_SECONDS => {
            Ok(json_response(200, entry.body, Some("hit")))
        }
        Some(entry)
            if now - entry.stored_at < SEARCH_CACHE_FRESH_SECONDS + SEARCH_CACHE_STALE_SECONDS =>
        {
            if claim_refresh(&key) {
                let refresh_cache = Arc::clone(&cache);
                cache.after_response(Box::pin(async move {
                    if let Ok((200, body)) = core.bytes(&call, Some(&user)).await {
                        store(refresh_cache.as_ref(), key.clone(), body, now).await;
                    }
                    release_refresh(&key);
                }));
            }
            Ok(json_response(200, entry.body, Some("stale")))
        }
        _ => {
            let (status, body) = core.bytes(&call, Some(&user)).await?;
            if status == 200 {
                let put_cache = Arc::clone(&cache);
                let stored = body.clone();
                cache.after_response(Box::pin(async move {
                    store(put_cache.as_ref(), key, stored, now).await;
                }));
            }
            Ok(json_response(status, body, Some("miss")))
        }
    }
}

async fn store(cache: &dyn AnswerCache, key: String, body: Bytes, now: i64) {
    let keep = SEARCH_CACHE_FRESH_SECONDS + SEARCH_CACHE_STALE_SECONDS;
    let answer = CachedAnswer {
        body,
        stored_at: now,
    };
    cache
        .put(key, answer, u32::try_from(keep).unwrap_or(u32::MAX))
        .await;
}

/// The core's JSON as the client's answer, saying how the cache answered.
fn json_response(status: u16, body: Bytes, cache: Option<&'static str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(cache) = cache {
        response
            .headers_mut()
            .insert(HEADER_CACHE, http::HeaderValue::from_static(cache));
    }
    response
}

/// The keys this isolate is refreshing.
fn refreshing() -> &'static Mutex<HashSet<String>> {
    static REFRESHING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    REFRESHING.get_or_init(|| Mutex::new(HashSet::new()))
}

/// True when this request should refresh `key`: no other request here is, and the bound allows.
fn claim_refresh(key: &str) -> bool {
    refreshing()
        .lock()
        .is_ok_and(|mut keys| keys.len() < REFRESHING_MAX && keys.insert(key.to_owned()))
}

fn release_refresh(key: &str) {
    if let Ok(mut keys) = refreshing().lock() {
        keys.remove(key);
    }
}

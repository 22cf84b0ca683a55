//! Search: `GET /v1/search?q=&type=…` and `GET /v1/search/suggest?q=`. The edge refuses a query
//! the core would refuse (the domain's [`SearchText`] rules: empty, over 100 characters, a control
//! character → 422) before anything is asked; the index and the ranking are the core's.

use axum::{
    Router,
    extract::{Query, RawQuery, rejection::QueryRejection},
    routing::get,
};
use bytes::Bytes;
use nene_domain::{ErrorCode, internal_api, search::SearchText};
use serde::Deserialize;

use crate::{
    auth::User,
    core_client::{Core, Forwarded},
    error::ApiError,
    platform::AppState,
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
) -> Result<String, ApiError> {
    let Query(text) = text.map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    SearchText::parse(text.q.as_deref().unwrap_or_default())
        .map_err(|error| ApiError::with_message(ErrorCode::ValidationFailed, error.to_string()))?;
    let raw = raw.unwrap_or_default();
    if raw.len() > QUERY_LEN_MAX {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    Ok(raw)
}

/// `GET /v1/search?q=&type=challenges|users|products&category=&state=&fee_min=&fee_max=&starts_after=&cursor=&limit=`.
async fn search(
    core: Core,
    user: User,
    text: Result<Query<Text>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Forwarded, ApiError> {
    forward(core, user, internal_api::SEARCH, text, raw).await
}

/// `GET /v1/search/suggest?q=`.
async fn suggest(
    core: Core,
    user: User,
    text: Result<Query<Text>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Forwarded, ApiError> {
    forward(core, user, internal_api::SEARCH_SUGGEST, text, raw).await
}

/// Both routes: the query checked, then passed to `route` as it came.
async fn forward(
    core: Core,
    User(user): User,
    route: internal_api::Route,
    text: Result<Query<Text>, QueryRejection>,
    raw: Option<String>,
) -> Result<Forwarded, ApiError> {
    let call = route.call(&[]).with_query(&checked(text, raw)?);
    core.forward(call, Some(&user), Bytes::new()).await
}

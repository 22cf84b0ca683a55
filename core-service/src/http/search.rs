//! Search's internal HTTP API: a page of results and the suggestions, from this replica's index.
//! The index is CPU and file work, so it runs on a blocking thread.

use std::sync::Arc;

use axum::{Json, extract::State};
use nene_domain::{ErrorCode, internal_api as api, search::SearchText};
use serde::Deserialize;

use super::{CoreQuery, Mounted, error::CoreApiError};
use crate::{
    AppState,
    search::{SearchError, SearchIndex, SearchPage, SearchParams, Suggestions},
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::SEARCH, search)
        .at(api::SEARCH_SUGGEST, suggest)
}

impl From<SearchError> for CoreApiError {
    fn from(error: SearchError) -> Self {
        match error.code() {
            ErrorCode::ValidationFailed => CoreApiError::Input {
                code: ErrorCode::ValidationFailed,
                message: error.to_string(),
            },
            code => {
                tracing::error!(%error, "search failed");
                CoreApiError::Client(code)
            }
        }
    }
}

/// Runs `work` against the replica's index on a blocking thread; 503 when this replica has none.
async fn with_index<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn SearchIndex) -> Result<T, SearchError> + Send + 'static,
) -> Result<T, CoreApiError> {
    let index = state
        .search
        .clone()
        .ok_or(CoreApiError::Client(ErrorCode::CoreUnavailable))?;
    tokio::task::spawn_blocking(move || work(index.as_ref()))
        .await
        .map_err(|_| CoreApiError::Client(ErrorCode::Internal))?
        .map_err(CoreApiError::from)
}

/// `GET /internal/v1/search?q=&type=&category=&state=&fee_min=&fee_max=&starts_after=&cursor=&limit=`.
async fn search(
    State(state): State<Arc<AppState>>,
    CoreQuery(params): CoreQuery<SearchParams>,
) -> Result<Json<SearchPage>, CoreApiError> {
    let request = params.parse()?;
    with_index(&state, move |index| index.search(&request))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize)]
struct SuggestParams {
    q: Option<String>,
}

/// `GET /internal/v1/search/suggest?q=`.
async fn suggest(
    State(state): State<Arc<AppState>>,
    CoreQuery(params): CoreQuery<SuggestParams>,
) -> Result<Json<Suggestions>, CoreApiError> {
    let text =
        SearchText::parse(params.q.as_deref().unwrap_or_default()).map_err(SearchError::from)?;
    with_index(&state, move |index| index.suggest(&text))
        .await
        .map(Json)
}

//! The user's notifications over the internal API: `GET /internal/v1/notifications?cursor=&limit=`
//! (the edge's `GET /v1/notifications`), newest first.

use std::sync::Arc;

use axum::{
    Json,
    extract::{RawQuery, State},
};
use nene_domain::{ErrorCode, internal_api as api};
use serde::Deserialize;

use super::{Mounted, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    notifications::history::{self, Cursor, NotificationPage, PageLimit},
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted.at(api::NOTIFICATIONS, list)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// The query, parsed: a cursor this API handed out (else 400) and a limit of 1 to 100 (else 422).
fn parse_query(raw: Option<&str>) -> Result<(Option<Cursor>, PageLimit), CoreApiError> {
    let query: ListQuery = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| CoreApiError::Client(ErrorCode::BadRequest))?;
    let cursor = match query.cursor.filter(|cursor| !cursor.is_empty()) {
        None => None,
        Some(cursor) => {
            Some(Cursor::parse(&cursor).ok_or(CoreApiError::Client(ErrorCode::BadRequest))?)
        }
    };
    let limit = match query.limit.filter(|limit| !limit.is_empty()) {
        None => PageLimit::default(),
        Some(limit) => limit
            .parse::<u32>()
            .ok()
            .and_then(PageLimit::new)
            .ok_or(CoreApiError::Client(ErrorCode::ValidationFailed))?,
    };
    Ok((cursor, limit))
}

async fn list(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Json<NotificationPage>, CoreApiError> {
    let (cursor, limit) = parse_query(query.as_deref())?;
    Ok(Json(history::list(&state.db, &user, cursor, limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> Option<ErrorCode> {
        match parse_query(Some(raw)) {
            Err(CoreApiError::Client(code)) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn a_limit_out_of_range_is_422_and_a_foreign_cursor_or_parameter_is_400() {
        assert_eq!(code("limit=101"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("limit=0"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("limit=ten"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("cursor=abc"), Some(ErrorCode::BadRequest));
        assert_eq!(code("page=2"), Some(ErrorCode::BadRequest));
        assert!(parse_query(Some("limit=100&cursor=")).is_ok());
        assert!(parse_query(None).is_ok());
    }
}

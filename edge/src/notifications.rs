//! The user's notifications (docs/design.md §5; paging as docs/api.md, "Paging", says):
//! `GET /v1/notifications?cursor=&limit=`, newest first, answered with
//! `{items: [{id, kind, payload, status, attempts, created_at}], next_cursor}`. The edge
//! authenticates and forwards; the list is the core's.

use axum::{Router, extract::RawQuery, routing::get};
use bytes::Bytes;
use nene_domain::internal_api;

use crate::{auth::User, core_client::Core, error::ApiError, paging, platform::AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(list))
}

/// `GET /v1/notifications?cursor=&limit=`.
async fn list(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let query = paging::core_query(query.as_deref(), paging::HEX_ID_CURSOR)?;
    let call = internal_api::NOTIFICATIONS.call(&[]).with_query(&query);
    let page = core.json(call, Some(&user), Bytes::new()).await?;
    Ok(axum::Json(page))
}

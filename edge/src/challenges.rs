//! Browsing, proofs, reports, appeals, reviews, the reviewers' queue and a participant's standing
//! (docs/design.md §4), and the dev-mode test clock. The core decides everything (windows by the
//! platform's clock, who may do what); the edge authenticates and forwards. Creation, detail and
//! joins live in `router.rs` with the rooms.

use axum::{
    Router,
    extract::{Path, RawQuery},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use http::Method;
use nene_domain::ErrorCode;

use crate::{
    auth::User,
    core_client::{Core, Forwarded, json_body},
    error::{ApiError, ApiJson},
    paging::{HEX_ID_CURSOR, core_path},
    router::{AppState, uuid_segment},
};

pub fn routes(dev_mode: bool) -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/challenges/{id}/proofs", post(submit_proof).get(proofs))
        .route("/v1/challenges/{id}/me", get(me))
        .route("/v1/proofs/{id}/report", post(proof_step))
        .route("/v1/proofs/{id}/appeal", post(proof_step))
        .route("/v1/admin/proofs/{id}/review", post(proof_step))
        .route("/v1/admin/proofs/queue", get(review_queue));
    if dev_mode {
        routes.route("/v1/dev/clock", post(advance_clock))
    } else {
        routes
    }
}

/// Longest query string forwarded (cursor, limit, filters, a search text).
const QUERY_LEN_MAX: usize = 512;

fn query_suffix(query: Option<String>) -> Result<String, ApiError> {
    match query {
        Some(q) if q.len() > QUERY_LEN_MAX => Err(ApiError::new(ErrorCode::BadRequest)),
        Some(q) if !q.is_empty() => Ok(format!("?{q}")),
        _ => Ok(String::new()),
    }
}

/// `GET /v1/challenges?state=&category=&q=&cursor=&limit=`.
pub async fn browse(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Forwarded, ApiError> {
    let path = format!("/internal/v1/challenges{}", query_suffix(query)?);
    core.forward(Method::GET, &path, Some(&user), Bytes::new())
        .await
}

async fn submit_proof(
    core: Core,
    User(user): User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let path = format!("/internal/v1/challenges/{}/proofs", uuid_segment(&id)?);
    core.forward(Method::POST, &path, Some(&user), json_body(&body)?)
        .await
}

async fn proofs(
    core: Core,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Forwarded, ApiError> {
    let path = format!(
        "/internal/v1/challenges/{}/proofs{}",
        uuid_segment(&id)?,
        query_suffix(query)?
    );
    core.forward(Method::GET, &path, Some(&user), Bytes::new())
        .await
}

async fn me(core: Core, User(user): User, Path(id): Path<String>) -> Result<Forwarded, ApiError> {
    let path = format!("/internal/v1/challenges/{}/me", uuid_segment(&id)?);
    core.forward(Method::GET, &path, Some(&user), Bytes::new())
        .await
}

/// `POST /v1/proofs/{id}/report`, `…/appeal` and `POST /v1/admin/proofs/{id}/review`: the same
/// step to the core's matching path, 204 when it is taken.
async fn proof_step(
    core: Core,
    User(user): User,
    Path(id): Path<String>,
    uri: http::Uri,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    uuid_segment(&id)?;
    let path = format!("/internal{}", uri.path());
    core.forward(Method::POST, &path, Some(&user), json_body(&body)?)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/proofs/queue?cursor=&limit=`: the reviewers' queue of open reports and appeals,
/// oldest first. The core decides who is a reviewer; only a cursor and a limit are passed on.
async fn review_queue(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Forwarded, ApiError> {
    let path = core_path(
        "/internal/v1/admin/proofs/queue",
        query.as_deref(),
        HEX_ID_CURSOR,
    )?;
    core.forward(Method::GET, &path, Some(&user), Bytes::new())
        .await
}

/// `POST /v1/dev/clock {advance_seconds}` (dev mode only; no token: the local stack's tool).
async fn advance_clock(
    core: Core,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    core.forward(
        Method::POST,
        "/internal/v1/dev/clock",
        None,
        json_body(&body)?,
    )
    .await
}

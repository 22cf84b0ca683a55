//! Browsing, proofs, reports, appeals, reviews and a participant's standing (API.md
//! "Challenges"), and the dev-mode test clock. The core decides everything (windows by the
//! platform's clock, who may do what); the edge authenticates and forwards. Creation, detail and
//! joins live in `router.rs` with the rooms.

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use nene_domain::ErrorCode;

use crate::{
    auth::User,
    core_client,
    error::{ApiError, ApiJson},
    router::{AppState, RequestId},
};

pub fn routes(dev_mode: bool) -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/challenges/{id}/proofs", post(submit_proof).get(proofs))
        .route("/v1/challenges/{id}/me", get(me))
        .route("/v1/proofs/{id}/report", post(proof_step))
        .route("/v1/proofs/{id}/appeal", post(proof_step))
        .route("/v1/admin/proofs/{id}/review", post(proof_step));
    if dev_mode {
        routes.route("/v1/dev/clock", post(advance_clock))
    } else {
        routes
    }
}

/// Ids in paths are UUIDs: anything else is a 404 before the core is asked.
fn uuid_segment(raw: &str) -> Result<&str, ApiError> {
    let valid = raw.len() == 36 && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::new(ErrorCode::NotFound))
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

fn body_of(value: &serde_json::Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

async fn forward(
    state: &AppState,
    method: http::Method,
    path: &str,
    user: Option<&str>,
    body: Bytes,
    request_id: &str,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let (status, value) =
        core_client::call_json_with_status(state, method, path, user, body, request_id).await?;
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(value),
    ))
}

/// `GET /v1/challenges?state=&category=&q=&cursor=&limit=`.
pub async fn browse(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let path = format!("/internal/v1/challenges{}", query_suffix(query)?);
    forward(
        &state,
        http::Method::GET,
        &path,
        Some(&user),
        Bytes::new(),
        &request_id,
    )
    .await
}

async fn submit_proof(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let path = format!("/internal/v1/challenges/{}/proofs", uuid_segment(&id)?);
    forward(
        &state,
        http::Method::POST,
        &path,
        Some(&user),
        body_of(&body)?,
        &request_id,
    )
    .await
}

async fn proofs(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let path = format!(
        "/internal/v1/challenges/{}/proofs{}",
        uuid_segment(&id)?,
        query_suffix(query)?
    );
    forward(
        &state,
        http::Method::GET,
        &path,
        Some(&user),
        Bytes::new(),
        &request_id,
    )
    .await
}

async fn me(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let path = format!("/internal/v1/challenges/{}/me", uuid_segment(&id)?);
    forward(
        &state,
        http::Method::GET,
        &path,
        Some(&user),
        Bytes::new(),
        &request_id,
    )
    .await
}

/// `POST /v1/proofs/{id}/report`, `…/appeal` and `POST /v1/admin/proofs/{id}/review`: the same
/// step to the core's matching path, 204 when it is taken.
async fn proof_step(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(id): Path<String>,
    uri: http::Uri,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    uuid_segment(&id)?;
    let path = format!("/internal{}", uri.path());
    forward(
        &state,
        http::Method::POST,
        &path,
        Some(&user),
        body_of(&body)?,
        &request_id,
    )
    .await
    .map(|_| StatusCode::NO_CONTENT)
}

/// `POST /v1/dev/clock {advance_seconds}` (dev mode only; no token: the local stack's tool).
async fn advance_clock(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    forward(
        &state,
        http::Method::POST,
        "/internal/v1/dev/clock",
        None,
        body_of(&body)?,
        &request_id,
    )
    .await
}

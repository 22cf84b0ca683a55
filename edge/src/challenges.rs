//! Challenges: creation, browsing, the detail with live seats, proofs, reports, appeals, reviews,
//! the reviewers' queue and a participant's standing (docs/design.md §4), and the dev-mode test
//! clock. The core decides everything (windows by the platform's clock, who may do what); the edge
//! authenticates and forwards. Joins live in `joins.rs` with the rooms.

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use nene_domain::{ErrorCode, internal_api};
use nene_durable::protocol::RoomRoute;

use crate::{
    auth::User,
    core_client::{Core, Forwarded, json_body},
    error::{ApiError, ApiJson},
    input::{challenge_id, uuid_segment},
    objects::call_object,
    paging::{HEX_ID_CURSOR, core_query},
    platform::{AppState, ObjectName},
};

pub fn routes(dev_mode: bool) -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/challenges", post(create).get(browse))
        .route("/v1/challenges/{id}", get(detail))
        .route("/v1/challenges/{id}/proofs", post(submit_proof).get(proofs))
        .route("/v1/challenges/{id}/me", get(me))
        .route("/v1/proofs/{id}/report", post(report))
        .route("/v1/proofs/{id}/appeal", post(appeal))
        .route("/v1/admin/proofs/{id}/review", post(review))
        .route("/v1/admin/proofs/queue", get(review_queue));
    if dev_mode {
        routes.route("/v1/dev/clock", post(advance_clock))
    } else {
        routes
    }
}

/// `POST /v1/challenges`: the core validates the rules and answers 422 outside their bounds.
async fn create(
    core: Core,
    User(user): User,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let call = internal_api::CHALLENGE_CREATE.call(&[]);
    let created: serde_json::Value = core.json(call, Some(&user), json_body(&body)?).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// `GET /v1/challenges/{id}`: the challenge, with live counts from its room where the host has
/// rooms (Workers) and from the core otherwise (Spin).
async fn detail(
    State(state): State<AppState>,
    core: Core,
    User(user): User,
    Path(challenge): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let challenge = challenge_id(&challenge)?;
    let call = internal_api::CHALLENGE_DETAIL.call(&[challenge.as_str()]);
    let mut detail: serde_json::Value = core.json(call, Some(&user), Bytes::new()).await?;
    let mut live = match &state.rooms {
        Some(rooms) => {
            call_object(
                rooms.as_ref(),
                ObjectName::Room(&challenge),
                RoomRoute::Counts.method(),
                &RoomRoute::counts_of(&challenge),
                Bytes::new(),
            )
            .await?
        }
        None => serde_json::json!({
            "participants": detail["participants"],
            "capacity": detail["capacity"],
        }),
    };
    // Seats come from the room; the proof rates from the core's proofs, and only under `live`
    // (moved, not copied: a detail has them nowhere else).
    for rate in ["proof_rate_today", "success_rate"] {
        live[rate] = detail
            .as_object_mut()
            .and_then(|fields| fields.remove(rate))
            .unwrap_or(serde_json::Value::Null);
    }
    detail["live"] = live;
    Ok(axum::Json(detail))
}

/// Longest query string forwarded (cursor, limit, filters, a search text).
const QUERY_LEN_MAX: usize = 512;

/// The query to forward (without its `?`; empty for none), refused past [`QUERY_LEN_MAX`].
fn forwarded_query(query: Option<String>) -> Result<String, ApiError> {
    match query {
        Some(q) if q.len() > QUERY_LEN_MAX => Err(ApiError::new(ErrorCode::BadRequest)),
        Some(q) => Ok(q),
        None => Ok(String::new()),
    }
}

/// `GET /v1/challenges?state=&category=&q=&cursor=&limit=`.
async fn browse(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::CHALLENGE_BROWSE
        .call(&[])
        .with_query(&forwarded_query(query)?);
    core.forward(call, Some(&user), Bytes::new()).await
}

async fn submit_proof(
    core: Core,
    User(user): User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::PROOF_SUBMIT.call(&[uuid_segment(&id)?]);
    core.forward(call, Some(&user), json_body(&body)?).await
}

async fn proofs(
    core: Core,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::PROOF_LIST
        .call(&[uuid_segment(&id)?])
        .with_query(&forwarded_query(query)?);
    core.forward(call, Some(&user), Bytes::new()).await
}

async fn me(core: Core, User(user): User, Path(id): Path<String>) -> Result<Forwarded, ApiError> {
    let call = internal_api::CHALLENGE_STANDING.call(&[uuid_segment(&id)?]);
    core.forward(call, Some(&user), Bytes::new()).await
}

/// `POST /v1/proofs/{id}/report`.
async fn report(
    core: Core,
    user: User,
    Path(id): Path<String>,
    body: ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    proof_step(core, internal_api::PROOF_REPORT, user, &id, body).await
}

/// `POST /v1/proofs/{id}/appeal`.
async fn appeal(
    core: Core,
    user: User,
    Path(id): Path<String>,
    body: ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    proof_step(core, internal_api::PROOF_APPEAL, user, &id, body).await
}

/// `POST /v1/admin/proofs/{id}/review`.
async fn review(
    core: Core,
    user: User,
    Path(id): Path<String>,
    body: ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    proof_step(core, internal_api::PROOF_REVIEW, user, &id, body).await
}

/// A step on a proof: the same step to the core's matching route, 204 when it is taken.
async fn proof_step(
    core: Core,
    route: internal_api::Route,
    User(user): User,
    id: &str,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    let call = route.call(&[uuid_segment(id)?]);
    core.forward(call, Some(&user), json_body(&body)?)
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
    let query = core_query(query.as_deref(), HEX_ID_CURSOR)?;
    let call = internal_api::PROOF_REVIEW_QUEUE
        .call(&[])
        .with_query(&query);
    core.forward(call, Some(&user), Bytes::new()).await
}

/// `POST /v1/dev/clock {advance_seconds}` (dev mode only; no token: the local stack's tool).
async fn advance_clock(
    core: Core,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::DEV_CLOCK.call(&[]);
    core.forward(call, None, json_body(&body)?).await
}

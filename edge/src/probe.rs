//! `GET|POST /v1/dev/rooms/{id}/probe` (dev mode only): the storage probe inside a room
//! (`nene_durable::probe`), which proves a room's storage survives requests and restarts.

use axum::{
    Router,
    extract::{Path, State},
    routing::get,
};
use bytes::Bytes;
use nene_domain::{ChallengeId, ErrorCode, limits::CORE_TIMEOUT_MS};
use nene_durable::protocol::{ProbeAdd, ProbeValue, RoomRoute};

use crate::{
    core_client::json_body,
    error::{ApiError, ApiJson},
    input::object_name,
    objects::object_request,
    platform::{AppState, ObjectName, Platform},
};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/dev/rooms/{challenge_id}/probe",
        get(read_probe).post(add_to_probe),
    )
}

/// `GET /v1/dev/rooms/{id}/probe`: the probe value kept in the room's SQLite.
async fn read_probe(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<axum::Json<ProbeValue>, ApiError> {
    let room = object_name(&room)?;
    call_probe(&state, &room, RoomRoute::ReadProbe, Bytes::new())
        .await
        .map(axum::Json)
}

/// `POST /v1/dev/rooms/{id}/probe {"add": n}`: adds to the probe and returns it.
async fn add_to_probe(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ApiJson(add): ApiJson<ProbeAdd>,
) -> Result<axum::Json<ProbeValue>, ApiError> {
    let room = object_name(&room)?;
    let body = json_body(&add)?;
    call_probe(&state, &room, RoomRoute::AddToProbe, body)
        .await
        .map(axum::Json)
}

/// Sends one probe call to a room. The probe answers its errors as bare statuses
/// (`ProbeError::http_status`), not as the API's envelope.
async fn call_probe(
    state: &Platform,
    room: &ChallengeId,
    route: RoomRoute,
    body: Bytes,
) -> Result<ProbeValue, ApiError> {
    let rooms = state
        .rooms
        .as_ref()
        .ok_or(ApiError::new(ErrorCode::NotFound))?;
    let mut request = object_request(route.method(), route.path(), body);
    // The probe never waits on the core.
    request.timeout_ms = CORE_TIMEOUT_MS;
    let response = rooms
        .send(ObjectName::Room(room), request)
        .await
        .map_err(|_| ApiError::new(ErrorCode::CoreUnavailable))?;
    match response.status {
        200 => {
            serde_json::from_slice(&response.body).map_err(|_| ApiError::new(ErrorCode::Internal))
        }
        404 => Err(ApiError::new(ErrorCode::NotFound)),
        422 => Err(ApiError::new(ErrorCode::ValidationFailed)),
        _ => Err(ApiError::new(ErrorCode::CoreUnavailable)),
    }
}

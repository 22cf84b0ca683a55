//! `GET /v1/health`: the status of every part.

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use nene_domain::{
    health::{CoreHealth, PartStatus, PlatformHealth},
    internal_api,
};

use crate::{core_client::Core, error::ApiError, platform::AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/health", get(health))
}

/// 200 when the edge, the core and the database are up; 503 with the same body when one is down;
/// 503 `CORE_UNAVAILABLE` when the core is unreachable.
async fn health(State(state): State<AppState>, core: Core) -> Result<Response, ApiError> {
    let core: CoreHealth = core
        .json(internal_api::HEALTH.call(&[]), None, Bytes::new())
        .await?;
    let report = PlatformHealth::from_core(state.host.runtime(), &core);
    let status = if report.status == PartStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(report)).into_response())
}

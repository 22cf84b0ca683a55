//! The core's internal HTTP API. Every `/internal/…` route requires the edge's signature;
//! `/healthz` is an unauthenticated liveness check for the container's orchestrator and says
//! nothing about the stores.

mod auth;
mod challenges;
pub mod error;
mod ledger;
mod notifications;
mod payments;
pub mod signature;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
        rejection::JsonRejection,
    },
    http::StatusCode,
    middleware,
    routing::get,
};
use nene_domain::ErrorCode;
use nene_domain::{
    health::{CoreHealth, PartStatus},
    limits::INTERNAL_BODY_BYTES_MAX,
};
use serde::de::DeserializeOwned;

use crate::{AppState, clock, health};

/// Internal path of the health report (the edge's `GET /v1/health` calls it).
pub const PATH_HEALTH: &str = "/internal/v1/health";

pub fn router(state: AppState) -> Router {
    let dev_mode = state.dev_mode;
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(PATH_HEALTH, get(health_report))
        .merge(ledger::routes())
        .merge(auth::routes())
        .merge(challenges::routes(dev_mode))
        .merge(payments::routes(dev_mode))
        .merge(notifications::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Outside the routing, so an unsigned caller learns nothing, not even which paths exist.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            signature::require_edge_signature,
        ))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_BYTES_MAX))
        .layer(middleware::from_fn(error::request_context))
        .with_state(state)
}

async fn health_report(State(state): State<Arc<AppState>>) -> Json<CoreHealth> {
    let (database, redis) = tokio::join!(
        health::probe_database(&state.db),
        health::probe_redis(state.redis.as_ref())
    );
    let platform_time_unix_seconds = if database == PartStatus::Ok {
        clock::platform_now_unix_seconds(&state.db, state.wall_clock.as_ref())
            .await
            .ok()
    } else {
        None
    };
    Json(CoreHealth {
        core: PartStatus::Ok,
        database,
        redis,
        platform_time_unix_seconds,
    })
}

/// `Json<T>` whose rejections are [`error::CoreApiError`]s with the API's codes.
pub struct CoreJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CoreJson<T> {
    type Rejection = error::CoreApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(CoreJson(value)),
            Err(rejection) => Err(error::CoreApiError::Input {
                code: json_rejection_code(&rejection),
                message: rejection.body_text(),
            }),
        }
    }
}

/// `Path<T>` whose rejection is a JSON 404: an id that does not parse (a malformed UUID) names
/// nothing, and the edge hears the API's error, not axum's plain-text 400.
pub struct CorePath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for CorePath<T> {
    type Rejection = error::CoreApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(CorePath(value)),
            Err(_) => Err(error::CoreApiError::Client(ErrorCode::NotFound)),
        }
    }
}

/// `Query<T>` whose rejection is the API's JSON 400 with serde's description of the parameter,
/// not axum's plain-text 400 (which the edge could only report as its own failure).
pub struct CoreQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for CoreQuery<T> {
    type Rejection = error::CoreApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(CoreQuery(value)),
            Err(rejection) => Err(error::CoreApiError::Input {
                code: ErrorCode::BadRequest,
                message: rejection.body_text(),
            }),
        }
    }
}

fn json_rejection_code(rejection: &JsonRejection) -> ErrorCode {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        _ => ErrorCode::InvalidJson,
    }
}

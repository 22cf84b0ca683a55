//! The core's internal HTTP API. Every `/internal/…` route requires the edge's signature;
//! `/healthz` is an unauthenticated liveness check for the container's orchestrator and says
//! nothing about the stores.

pub mod error;
pub mod signature;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    middleware,
    routing::get,
};
use nene_domain::{
    health::{CoreHealth, PartStatus},
    limits::INTERNAL_BODY_BYTES_MAX,
};

use crate::{AppState, clock, health};

/// Internal path of the health report (the edge's `GET /v1/health` calls it).
pub const PATH_HEALTH: &str = "/internal/v1/health";

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(PATH_HEALTH, get(health_report))
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

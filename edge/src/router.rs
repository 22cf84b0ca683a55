//! The one router of the public API, shared by every host: which feature serves which routes, and
//! what runs around every request. The handlers live with their features.

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware::{self},
};
use nene_domain::{ErrorCode, limits::REQUEST_BODY_BYTES_MAX};

use crate::{
    config::EdgeConfig,
    error::ApiError,
    platform::{AppState, Platform},
};

/// What a host serves: the router over the platform `platform` builds from a valid
/// configuration read through `lookup`; or, when the configuration is invalid, a router that
/// answers every request 503 ([`crate::error::misconfigured_response`]) after `log_error` has
/// been given the reason, which names the variable. A Worker or a Spin component has no start-up
/// to fail, so this is how the edge refuses to run wrong: it never serves with a bad
/// configuration.
pub fn configured_router(
    lookup: impl Fn(&str) -> Option<String>,
    platform: impl FnOnce(EdgeConfig) -> Platform,
    log_error: impl FnOnce(&str),
) -> Router {
    match EdgeConfig::from_lookup(lookup) {
        Ok(config) => router(platform(config)),
        Err(error) => {
            log_error(&format!("edge configuration is invalid: {error}"));
            Router::new().fallback(|| async { crate::error::misconfigured_response() })
        }
    }
}

/// Builds the router over `platform`.
pub fn router(platform: Platform) -> Router {
    let state: AppState = Arc::new(platform);
    let dev_mode = state.config.dev_mode;
    let mut routes = Router::new()
        .merge(crate::health::routes())
        .merge(crate::challenges::routes(dev_mode))
        .merge(crate::joins::routes())
        .merge(crate::wallet::routes())
        .merge(crate::payments::routes())
        .merge(crate::login::routes())
        .merge(crate::notifications::routes())
        .merge(crate::search::routes());
    if dev_mode {
        routes = routes.merge(crate::probe::routes());
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(middleware::from_fn(crate::input::refuse_unstorable_input))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::middleware::request_context,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed)
}

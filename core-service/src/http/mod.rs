//! The core's internal HTTP API. Every `/internal/…` route requires the edge's signature;
//! `/healthz` is an unauthenticated liveness check for the container's orchestrator and says
//! nothing about the stores.
//!
//! The internal routes are exactly the constants of [`nene_domain::internal_api`], mounted through
//! [`Mounted`]: the router and the list of what it serves ([`mounted_routes`]) are one thing, and
//! `tests/internal_routes.rs` holds that list to its callers in the edge and the Durable Objects.
//! The ledger's operations have no routes of their own: nothing outside the core may move points
//! except through a flow (a confirmed payment, a join, a settlement); tests call them as functions.

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
    handler::Handler,
    http::StatusCode,
    middleware,
    routing::{MethodFilter, get, on},
};
use nene_domain::ErrorCode;
use nene_domain::{
    health::{CoreHealth, PartStatus},
    internal_api::{self, Audience, Method, Route},
    limits::INTERNAL_BODY_BYTES_MAX,
};
use serde::de::DeserializeOwned;

use crate::{AppState, clock, health};

/// The orchestrator's liveness probe: unsigned, outside `/internal/`, answers "ok" and nothing else.
pub const PATH_LIVENESS: &str = "/healthz";

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    let Mounted { router, .. } = internal_routes(state.dev_mode);
    router
        .route(PATH_LIVENESS, get(|| async { "ok" }))
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

/// The internal routes the router serves, in the order they were mounted: every production route
/// of [`internal_api::ALL`], and its dev-only routes when `dev_mode`.
#[must_use]
pub fn mounted_routes(dev_mode: bool) -> Vec<Route> {
    internal_routes(dev_mode).routes
}

fn internal_routes(dev_mode: bool) -> Mounted {
    let mounted = Mounted {
        router: Router::new(),
        routes: Vec::new(),
        dev_mode,
    }
    .at(internal_api::HEALTH, health_report);
    let mounted = auth::mount(mounted);
    let mounted = ledger::mount(mounted);
    let mounted = challenges::mount(mounted);
    let mounted = payments::mount(mounted);
    notifications::mount(mounted)
}

/// The internal router under construction, with the list of routes mounted on it. Routes are
/// mounted only through [`Mounted::at`], which takes an [`internal_api`] constant: no internal
/// path is written anywhere else in the core, and a dev-only route is skipped outside dev mode.
pub(crate) struct Mounted {
    router: Router<Arc<AppState>>,
    routes: Vec<Route>,
    dev_mode: bool,
}

impl Mounted {
    /// Mounts `handler` for `route`'s method and path (dev-only routes only in dev mode).
    pub(crate) fn at<H, T>(mut self, route: Route, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        if route.audience == Audience::DevOnly && !self.dev_mode {
            return self;
        }
        self.router = self
            .router
            .route(route.path, on(method_filter(route.method), handler));
        self.routes.push(route);
        self
    }
}

fn method_filter(method: Method) -> MethodFilter {
    match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Put => MethodFilter::PUT,
        Method::Patch => MethodFilter::PATCH,
        Method::Delete => MethodFilter::DELETE,
    }
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

//! The core's internal HTTP API. Every `/internal/…` route requires the edge's signature. Two
//! unsigned probes are for the container's orchestrator: `/healthz` (liveness: the process
//! answers; it says nothing about the stores, so a database outage never gets the core restarted)
//! and `/readyz` (readiness: the database answers, the schema is current, the core is not
//! draining; see [`crate::health::readiness`]).
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
mod search;
pub mod server;
pub mod signature;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
        rejection::JsonRejection,
    },
    handler::Handler,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
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
/// The orchestrator's readiness probe: unsigned, outside `/internal/`; send traffic here or not.
pub const PATH_READINESS: &str = "/readyz";
/// What a request refused during the drain tells the caller: try again in a second (on another
/// replica, which is what a load balancer will pick once our readiness has failed).
pub const DRAINING_RETRY_AFTER_SECONDS: &str = "1";

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    let Mounted { router, .. } = internal_routes(state.dev_mode);
    router
        .route(PATH_LIVENESS, get(|| async { "ok" }))
        .route(PATH_READINESS, get(readiness))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Outside the routing, so an unsigned caller learns nothing, not even which paths exist.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            signature::require_edge_signature,
        ))
        // Outside the signature: during the drain nothing is verified or read, only refused.
        .layer(middleware::from_fn_with_state(Arc::clone(&state), admit))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_BYTES_MAX))
        .layer(middleware::from_fn(error::request_context))
        .with_state(state)
}

/// Counts the request as in flight for the drain, or — once the drain has begun — refuses it with
/// 503 `CORE_UNAVAILABLE`, `Retry-After` and `Connection: close`. The probes always pass: the
/// orchestrator must keep hearing "alive" and "not ready" while the process drains.
async fn admit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == PATH_LIVENESS || path == PATH_READINESS {
        return next.run(request).await;
    }
    let Some(in_flight) = state.shutdown.admit() else {
        // The body is read (and dropped) first: a connection closed with unread bytes is reset,
        // and a reset can destroy the answer before the client reads it.
        let _ = axum::body::to_bytes(request.into_body(), INTERNAL_BODY_BYTES_MAX).await;
        let mut refused = error::CoreApiError::Client(ErrorCode::CoreUnavailable).into_response();
        let headers = refused.headers_mut();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(DRAINING_RETRY_AFTER_SECONDS),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return refused;
    };
    let mut response = next.run(request).await;
    drop(in_flight);
    if state.shutdown.is_draining() {
        // The connection is not reused: the next request on it would only be refused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `GET /readyz`: 200 `{"status":"ready"}`, or 503 `{"status":"not_ready","failed":…}` naming the
/// first check that failed (`draining`, `database`, `migrations`) and nothing more.
async fn readiness(State(state): State<Arc<AppState>>) -> Response {
    match health::readiness(&state.probe_db, &state.shutdown).await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(failed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready", "failed": failed.as_str() })),
        )
            .into_response(),
    }
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
    let mounted = search::mount(mounted);
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

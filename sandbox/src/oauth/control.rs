//! The sandbox's OAuth control plane under `/sandbox/oauth/…`: fault rules, counters, reset. Not
//! part of any provider; no authentication. The endpoints and their JSON are listed in the parent
//! module's documentation.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{OAuth, Stats, faults::FaultSpec, grants::Grants};

pub(super) fn routes() -> Router<OAuth> {
    Router::new()
        .route(
            "/sandbox/oauth/faults",
            post(add_fault).get(faults).delete(clear_faults),
        )
        .route("/sandbox/oauth/stats", get(stats))
        .route("/sandbox/oauth/reset", post(reset))
}

fn invalid_request(description: &str) -> Response {
    let body = json!({ "error": "invalid_request", "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn add_fault(State(oauth): State<OAuth>, body: Bytes) -> Response {
    let rule = serde_json::from_slice::<FaultSpec>(&body)
        .map_err(|error| error.to_string())
        .and_then(FaultSpec::into_rule);
    let rule = match rule {
        Ok(rule) => rule,
        Err(problem) => return invalid_request(&problem),
    };
    let mut core = oauth.lock();
    match core.faults.add(rule) {
        Ok(()) => (StatusCode::CREATED, Json(core.faults.to_json())).into_response(),
        Err(problem) => invalid_request(&problem),
    }
}

async fn faults(State(oauth): State<OAuth>) -> Json<Value> {
    Json(oauth.lock().faults.to_json())
}

async fn clear_faults(State(oauth): State<OAuth>) -> StatusCode {
    oauth.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(oauth): State<OAuth>) -> Json<Value> {
    Json(oauth.lock().stats.to_json())
}

/// Forgets codes, tokens, faults and counts.
async fn reset(State(oauth): State<OAuth>) -> StatusCode {
    let mut core = oauth.lock();
    core.grants = Grants::default();
    core.faults.clear();
    core.stats = Stats::default();
    StatusCode::NO_CONTENT
}

//! The sandbox's FCM control plane under `/sandbox/fcm/…`: fault rules, device registration, the
//! delivery log, counters, reset and the test service account. Not part of FCM; no
//! authentication. The endpoints and their JSON are listed in the parent module's documentation.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    Fcm,
    faults::FaultSpec,
    service::{Delivery, DeliveryFilter},
    service_account::{SERVICE_ACCOUNT_JSON, UNREGISTERED_SERVICE_ACCOUNT_JSON},
};

pub(super) fn routes() -> Router<Fcm> {
    Router::new()
        .route(
            "/sandbox/fcm/faults",
            post(add_fault).get(faults).delete(clear_faults),
        )
        .route("/sandbox/fcm/tokens/{token}/unregister", post(unregister))
        .route("/sandbox/fcm/deliveries", get(deliveries))
        .route("/sandbox/fcm/stats", get(stats))
        .route("/sandbox/fcm/reset", post(reset))
        .route("/sandbox/fcm/service-account.json", get(service_account))
        .route(
            "/sandbox/fcm/unregistered-service-account.json",
            get(unregistered_service_account),
        )
}

/// `400` in Google's error shape, without an FCM error code: the control plane is not FCM.
fn invalid_argument(message: &str) -> Response {
    let body = json!({
        "error": { "code": 400, "message": message, "status": "INVALID_ARGUMENT" }
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn add_fault(State(fcm): State<Fcm>, body: Bytes) -> Response {
    let rule = serde_json::from_slice::<FaultSpec>(&body)
        .map_err(|error| error.to_string())
        .and_then(FaultSpec::into_rule);
    let rule = match rule {
        Ok(rule) => rule,
        Err(problem) => return invalid_argument(&problem),
    };
    let mut service = fcm.lock();
    match service.faults.add(rule) {
        Ok(()) => (StatusCode::CREATED, Json(service.faults.to_json())).into_response(),
        Err(problem) => invalid_argument(&problem),
    }
}

async fn faults(State(fcm): State<Fcm>) -> Json<Value> {
    Json(fcm.lock().faults.to_json())
}

async fn clear_faults(State(fcm): State<Fcm>) -> StatusCode {
    fcm.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn unregister(State(fcm): State<Fcm>, Path(token): Path<String>) -> Response {
    if token.is_empty() {
        return invalid_argument("token must not be empty");
    }
    match fcm.lock().unregister(&token) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => invalid_argument(&problem),
    }
}

async fn deliveries(State(fcm): State<Fcm>, RawQuery(query): RawQuery) -> Response {
    let filter = match serde_urlencoded::from_str::<DeliveryFilter>(&query.unwrap_or_default()) {
        Ok(filter) => filter,
        Err(error) => return invalid_argument(&format!("query: {error}")),
    };
    // Copied under the lock, encoded after it: a long log must not stall the senders more than
    // the copy takes.
    let selected = fcm.lock().deliveries.matching(&filter);
    let json: Vec<Value> = selected.iter().map(Delivery::to_json).collect();
    Json(json).into_response()
}

async fn stats(State(fcm): State<Fcm>) -> Json<Value> {
    Json(fcm.lock().stats_json())
}

async fn reset(State(fcm): State<Fcm>) -> StatusCode {
    fcm.lock().reset();
    StatusCode::NO_CONTENT
}

fn json_file(contents: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], contents).into_response()
}

async fn service_account() -> Response {
    json_file(SERVICE_ACCOUNT_JSON)
}

async fn unregistered_service_account() -> Response {
    json_file(UNREGISTERED_SERVICE_ACCOUNT_JSON)
}

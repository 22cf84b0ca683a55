//! Local stand-ins for the external services NeNe Challenge calls, speaking their wire protocols
//! so that pointing a client at the real provider is a change of base URL and keys only.
//!
//! One process serves all of them on one port, each under the path prefix its real host uses:
//! Toss Payments at `/v1/payments/…` (as `api.tosspayments.com`). FCM HTTP v1 and the OAuth
//! providers join under their own prefixes as their issues land.

pub mod toss;

use axum::{Json, Router, routing::get};
use serde_json::json;

/// The whole sandbox.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(toss::router())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "services": ["toss"] }))
}

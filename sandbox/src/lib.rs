//! Local stand-ins for the external services NeNe Challenge calls, speaking their wire protocols
//! so that pointing a client at the real provider is a change of base URL and keys only.
//!
//! One process serves all of them on one port, each under the path prefix its real host uses:
//! Toss Payments at `/v1/payments/…` (as `api.tosspayments.com`), with its control plane at
//! `/sandbox/toss/…` (see [`toss`]); Kakao, Naver and Google login at `/kakao/…`, `/naver/…` and
//! `/google/…`, with their control plane at `/sandbox/oauth/…` (see [`oauth`]); FCM HTTP v1 and
//! the OAuth token endpoint its senders use at `/fcm/…` (as `fcm.googleapis.com` and
//! `oauth2.googleapis.com/token`), with their control plane at `/sandbox/fcm/…` (see [`fcm`]).

pub mod clock;
pub mod faults;
pub mod fcm;
pub mod oauth;
pub mod tls;
pub mod toss;

use axum::{Json, Router, routing::get};
use serde_json::json;

/// The sandbox's configuration; [`SandboxConfig::from_env`] is what the binary uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    pub toss: toss::TossConfig,
}

impl SandboxConfig {
    /// See [`toss::TossConfig::from_env`] for the variables.
    pub fn from_env() -> Self {
        Self {
            toss: toss::TossConfig::from_env(),
        }
    }
}

/// The whole sandbox, configured from the environment.
pub fn router() -> Router {
    router_with(SandboxConfig::from_env())
}

/// The whole sandbox with its own, fresh state.
pub fn router_with(config: SandboxConfig) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(toss::router_with(config.toss))
        .merge(oauth::router())
        .merge(fcm::router())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "services": ["toss", "kakao", "naver", "google", "fcm"] }))
}

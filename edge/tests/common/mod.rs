//! What the edge's in-process tests share: a fake host at a fixed time, the test configuration,
//! a user's access token, and one request through the router.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{body::Body, http::Request};
use bytes::Bytes;
use http_body_util::BodyExt;
use nene_edge::{
    config::EdgeConfig,
    platform::{Host, Platform},
    router::router,
};
use tower::ServiceExt;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";
pub const NOW: i64 = 1_790_000_000;
pub const TOKEN_KEYS: &str = "k1:router-test-token-key-router-test-token-key";

/// A host whose clock stands at [`NOW`] and whose request ids count up from `req-1`.
pub struct FakeHost {
    next_id: AtomicU64,
}

impl Host for FakeHost {
    fn runtime(&self) -> &'static str {
        "test"
    }
    fn now_unix_seconds(&self) -> i64 {
        NOW
    }
    fn random_id(&self) -> String {
        format!("req-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

pub fn fake_host() -> Arc<FakeHost> {
    Arc::new(FakeHost {
        next_id: AtomicU64::new(1),
    })
}

/// The edge's configuration with the test core, secret and token keys; dev mode or not.
pub fn config(dev_mode: bool) -> EdgeConfig {
    EdgeConfig::from_lookup(|name| match name {
        "CORE_URL" => Some("https://core.test/".to_owned()),
        "CORE_SIGNING_SECRET" => Some(SECRET.to_owned()),
        "ACCESS_TOKEN_KEYS" => Some(TOKEN_KEYS.to_owned()),
        "NENE_ENV" => dev_mode.then(|| "dev".to_owned()),
        _ => None,
    })
    .expect("test config is valid")
}

/// The `Authorization` header of `user`, with an access token the edge issued at [`NOW`].
pub fn bearer(user: &str) -> String {
    let token = nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
        .and_then(|keys| keys.issue(user, "j", NOW))
        .unwrap();
    format!("Bearer {token}")
}

/// `request` through the router on `platform`: the status, the `x-request-id` and the body.
pub async fn send(platform: Platform, request: Request<Body>) -> (u16, String, Bytes) {
    let (status, headers, body) = send_for_headers(platform, request).await;
    let request_id = header(&headers, "x-request-id");
    (status, request_id, body)
}

/// [`send`], with every response header.
pub async fn send_for_headers(
    platform: Platform,
    request: Request<Body>,
) -> (u16, http::HeaderMap, Bytes) {
    let response = router(platform)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    (status, headers, body)
}

/// The value of header `name`, or empty when it is absent or not text.
pub fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

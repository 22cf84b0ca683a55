//! What the sandbox's API tests share: the sandbox in process, and one request through it with
//! its answer read as JSON.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code)]

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{HeaderMap, Request, StatusCode},
};
use nene_sandbox::{SandboxConfig, router_with};
use serde_json::Value;
use tower::ServiceExt;

/// Answers here are a payment, a token, a key set, a profile or a short log.
const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The whole sandbox with its default configuration.
pub fn app() -> Router {
    router_with(SandboxConfig::default())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON; null when empty.
    pub json: Value,
}

pub fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).unwrap()
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), RESPONSE_BYTES_MAX)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{error}: {bytes:?}"))
    };
    Answer {
        status,
        headers,
        json,
    }
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Answer {
    send(app, request(method, uri, headers, body)).await
}

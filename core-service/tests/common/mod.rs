//! What several of the core's test files need: the sandbox served in process, a client for its
//! control plane, the sign-in providers pointed at it, and the ledger's invariant check.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code)]

use nene_core::{
    auth::oauth::{Endpoints, Provider, ProviderClient},
    ledger::check_invariants,
};
use nene_domain::Points;
use serde_json::Value;
use sqlx::PgPool;

/// The shared Redis (`REDIS_URL`, or the local default); tests keep to their own key prefix.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Points from a literal amount the test knows is valid.
pub fn p(amount: i64) -> Points {
    Points::new(amount).unwrap()
}

/// Fails the test with the ledger's broken invariants, if any.
pub async fn assert_sound(db: &PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let violations = check_invariants(&mut conn).await.unwrap();
    assert!(violations.is_empty(), "ledger invariants: {violations:#?}");
}

/// The whole sandbox (Toss, FCM, the sign-in providers) on a free loopback port, over plain
/// HTTP, for as long as the test's runtime lives; its base URL.
pub async fn spawn_sandbox() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, nene_sandbox::router()).await;
    });
    format!("http://{address}")
}

/// The test's own calls to the sandbox (its control plane, or what a browser or the Toss widget
/// does there).
pub struct Sandbox {
    pub url: String,
    pub http: reqwest::Client,
}

impl Sandbox {
    /// A POST that must succeed; its JSON answer, or null.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox {path}: {status} {body}");
        body
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Every sign-in provider, pointed at the sandbox at `sandbox`.
pub fn providers_at(sandbox: &str) -> Vec<ProviderClient> {
    Provider::ALL
        .into_iter()
        .map(|provider| ProviderClient {
            provider,
            client_id: format!("nene-test-{}", provider.as_str()),
            client_secret: "test-secret".to_owned(),
            endpoints: Endpoints::of(provider, Some(sandbox)),
        })
        .collect()
}

/// The `Location` of a redirect, or "".
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The query parameter `name` of `url`; the test fails if it is missing.
pub fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    params
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

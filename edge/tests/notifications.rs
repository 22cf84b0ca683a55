//! `GET /v1/notifications` in-process, with a fake host and a fake core: the edge requires the
//! user's access token, asks the core as that user with only the paging parameters, and passes
//! the core's page through.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bearer;

use std::sync::{Arc, Mutex};

use axum::{body::Body, http::Request};
use bytes::Bytes;
use nene_domain::signing::HEADER_USER;
use nene_edge::platform::{BoxFuture, OutboundRequest, OutboundResponse, Platform, Transport};

const PAGE: &str = r#"{"items":[{"id":"0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d","kind":"points_credited","payload":{"points":5000},"status":"sent","attempts":1,"created_at":"2026-01-01T00:00:00.000Z"}],"next_cursor":null}"#;

/// A core that says no token is revoked and answers every other call with [`PAGE`].
#[derive(Default)]
struct FakeCore {
    seen: Mutex<Vec<OutboundRequest>>,
}

impl Transport for FakeCore {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, nene_edge::platform::TransportError>> {
        let body = if request.url.ends_with("/internal/v1/auth/revoked") {
            r#"{"revoked":false}"#
        } else {
            self.seen
                .lock()
                .map(|mut seen| seen.push(request.clone()))
                .ok();
            PAGE
        };
        Box::pin(async move {
            Ok(OutboundResponse {
                status: 200,
                body: Bytes::from_static(body.as_bytes()),
            })
        })
    }
}

fn platform(core: Arc<FakeCore>) -> Platform {
    Platform {
        config: common::config(false),
        host: common::fake_host(),
        transport: core,
        rooms: None,
        cache: None,
        client_address: nene_edge::client_address::ClientAddressRule::Cloudflare,
    }
}

async fn get(core: &Arc<FakeCore>, path: &str, authorization: Option<&str>) -> (u16, Bytes) {
    let mut request = Request::get(path);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = request.body(Body::empty()).unwrap();
    let (status, _, body) = common::send(platform(Arc::clone(core)), request).await;
    (status, body)
}

#[tokio::test]
async fn the_list_is_asked_of_the_core_as_the_user_with_only_the_paging_parameters() {
    let core = Arc::new(FakeCore::default());
    let cursor = "0190f5a27c1e7a4b9c3d1e2f3a4b5c6d";
    let (status, body) = get(
        &core,
        &format!("/v1/notifications?limit=20&cursor={cursor}"),
        Some(&bearer("user_n")),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(page["items"][0]["status"], "sent");
    let seen = core
        .seen
        .lock()
        .map(|seen| seen.clone())
        .unwrap_or_default();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::GET);
    assert!(
        seen[0].url.ends_with(&format!(
            "/internal/v1/notifications?cursor={cursor}&limit=20"
        )),
        "{}",
        seen[0].url
    );
    let user = seen[0]
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(HEADER_USER))
        .map(|(_, value)| value.as_str());
    assert_eq!(user, Some("user_n"));
}

#[tokio::test]
async fn without_a_token_or_with_a_foreign_parameter_nothing_reaches_the_core() {
    let core = Arc::new(FakeCore::default());
    let (status, _) = get(&core, "/v1/notifications", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(
        &core,
        "/v1/notifications?user=someone_else",
        Some(&bearer("user_n")),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        core.seen
            .lock()
            .map(|seen| seen.is_empty())
            .unwrap_or(false)
    );
}

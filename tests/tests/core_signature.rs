//! The running core binary refuses what the edge did not sign, over real HTTP.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    signing::{
        HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_WINDOW_SECONDS, SignedParts, SigningSecret,
    },
};
use nene_e2e::{Core, SIGNING_SECRET, client, scratch_dir};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn signature(path: &str, timestamp: i64, secret: &str) -> String {
    SigningSecret::parse(secret).unwrap().sign(&SignedParts {
        method: "GET",
        path_and_query: path,
        timestamp_unix_seconds: timestamp,
        user: "",
        body: b"",
    })
}

async fn status_and_code(request: reqwest::RequestBuilder) -> (u16, Option<ErrorCode>) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let envelope: Option<ErrorEnvelope> = response.json().await.ok();
    (status, envelope.map(|e| e.error.code))
}

#[tokio::test]
async fn the_core_accepts_a_signed_call_and_refuses_unsigned_stale_or_tampered_ones() {
    let dir = scratch_dir("core_signature");
    let core = Core::start(&dir).await;
    let http = client();
    let url = format!("{}/internal/v1/health", core.url);
    let now = now();

    let signed = http
        .get(&url)
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(
            HEADER_SIGNATURE,
            signature("/internal/v1/health", now, SIGNING_SECRET),
        );
    assert_eq!(status_and_code(signed).await.0, 200);

    let refused = Some(ErrorCode::SignatureInvalid);
    let unsigned = http.get(&url);
    assert_eq!(status_and_code(unsigned).await, (401, refused));

    let stale_time = now - SIGNATURE_WINDOW_SECONDS - 5;
    let stale = http
        .get(&url)
        .header(HEADER_TIMESTAMP, stale_time.to_string())
        .header(
            HEADER_SIGNATURE,
            signature("/internal/v1/health", stale_time, SIGNING_SECRET),
        );
    assert_eq!(status_and_code(stale).await, (401, refused));

    let other_path = http
        .get(format!("{url}?tampered=1"))
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(
            HEADER_SIGNATURE,
            signature("/internal/v1/health", now, SIGNING_SECRET),
        );
    assert_eq!(status_and_code(other_path).await, (401, refused));

    let wrong_secret = http
        .get(&url)
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(
            HEADER_SIGNATURE,
            signature(
                "/internal/v1/health",
                now,
                "another-secret-another-secret-0123456",
            ),
        );
    assert_eq!(status_and_code(wrong_secret).await, (401, refused));
}

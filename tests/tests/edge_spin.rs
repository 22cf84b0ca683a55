//! The same edge router compiled as a Spin component, hosted by wasmtime (the runtime Spin is
//! built on), in front of the real core.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{PartStatus, PlatformHealth},
};
use nene_e2e::{ClientPkce, Core, E2E_REDIRECT_URI, SpinHost, client, scratch_dir};
use nene_edge::config::{
    VAR_ACCESS_TOKEN_KEYS, VAR_CORE_SIGNING_SECRET, VAR_CORE_URL, VAR_ENVIRONMENT,
};

#[tokio::test]
async fn health_through_the_spin_component_reports_every_part() {
    let dir = scratch_dir("health_spin");
    let core = Core::start(&dir).await;
    let edge = SpinHost::start(&core.url, &dir).await;

    let response = client()
        .get(format!("{}/v1/health", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        edge.process.log_tail()
    );
    let report: PlatformHealth = response.json().await.unwrap();
    assert_eq!(report.runtime, "spin");
    assert_eq!(report.status, PartStatus::Ok);
    assert_eq!(report.core, PartStatus::Ok);
    assert_eq!(report.database, PartStatus::Ok);
}

#[tokio::test]
async fn the_spin_component_answers_503_json_when_the_core_is_down() {
    let dir = scratch_dir("spin_core_down");
    let mut core = Core::start(&dir).await;
    let edge = SpinHost::start(&core.url, &dir).await;
    core.process.stop();

    let response = client()
        .get(format!("{}/v1/health", edge.url))
        .send()
        .await
        .expect("the component hung instead of answering");
    assert_eq!(response.status().as_u16(), 503);
    let envelope: ErrorEnvelope = response.json().await.unwrap();
    assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
}

#[tokio::test]
async fn the_spin_component_has_no_room_routes_and_says_so_in_json() {
    let dir = scratch_dir("spin_no_rooms");
    let core = Core::start(&dir).await;
    let edge = SpinHost::start(&core.url, &dir).await;

    let response = client()
        .get(format!("{}/v1/dev/rooms/room-a/probe", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let envelope: ErrorEnvelope = response.json().await.unwrap();
    assert_eq!(envelope.error.code, ErrorCode::NotFound);
}

#[test]
fn spin_toml_runs_the_built_component_in_production_with_no_secret_and_only_the_cores_origin() {
    let root = std::path::PathBuf::from(nene_e2e::required_env("NENE_ROOT"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("spin.toml"))
        .expect("spin.toml")
        .parse()
        .expect("spin.toml is not TOML");
    let component = &manifest["component"]["nene-edge"];
    let source = component["source"].as_str().unwrap_or_default();
    let built = root.join(source);
    assert!(
        built.is_file(),
        "spin.toml's source {} was not built",
        built.display()
    );
    assert_eq!(
        std::fs::read(&built).ok(),
        std::fs::read(nene_e2e::required_env("NENE_SPIN_WASM")).ok(),
        "the tests must host the very component spin.toml names"
    );
    // Production by default, and no secret in the manifest: whatever the environment table holds
    // (nothing today), it is neither dev mode nor a secret nor the core's URL.
    if let Some(environment) = component.get("environment").and_then(|e| e.as_table()) {
        for variable in [
            VAR_CORE_URL,
            VAR_CORE_SIGNING_SECRET,
            VAR_ACCESS_TOKEN_KEYS,
            VAR_ENVIRONMENT,
        ] {
            assert!(
                !environment.contains_key(variable),
                "spin.toml sets {variable}: it must come from the deployment"
            );
        }
    }
    // The one host the component may call is the core's origin, a required variable.
    let origin = &manifest["variables"]["core_origin"];
    assert_eq!(
        origin.get("required").and_then(toml::Value::as_bool),
        Some(true)
    );
    assert!(origin.get("default").is_none(), "no default origin ships");
    let allowed: Vec<&str> = component["allowed_outbound_hosts"]
        .as_array()
        .expect("spin.toml allows no outbound host")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect();
    assert_eq!(allowed, ["{{ core_origin }}"]);
}

#[tokio::test]
async fn the_spin_component_in_production_with_dev_values_answers_503_and_logs_the_variable() {
    let dir = scratch_dir("spin_production_dev_values");
    // No core: a refused configuration never calls it. What spin.toml and `spin up --env` would give it with the dev values and no NENE_ENV.
    let edge = SpinHost::start_with_env(
        &[
            (VAR_CORE_URL, "https://core.example.com"),
            (
                VAR_CORE_SIGNING_SECRET,
                "dev-only-signing-secret-0123456789abcdef",
            ),
            (VAR_ACCESS_TOKEN_KEYS, nene_e2e::TOKEN_KEYS),
        ],
        &dir,
    )
    .await;
    for path in ["/v1/health", "/v1/challenges"] {
        let response = client()
            .get(format!("{}{path}", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let envelope: ErrorEnvelope = response.json().await.unwrap();
        assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
    }
    let log = edge.process.log_tail();
    assert!(
        log.contains("CORE_SIGNING_SECRET"),
        "the component logs the variable it refuses:\n{log}"
    );
}

/// The core's login steps per client address per minute (`nene_core::auth::LOGINS_PER_IP_PER_MINUTE`).
const LOGINS_PER_IP_PER_MINUTE: usize = 30;

#[tokio::test]
async fn a_login_through_the_spin_component_is_counted_by_an_address_the_host_vouches_for() {
    let dir = scratch_dir("spin_login_address");
    let core = Core::start(&dir).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(nene_e2e::REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let query = ClientPkce::new().start_query(E2E_REDIRECT_URI);
    let start = |base: &str, headers: &[(&str, &str)]| {
        let mut request = browser.get(format!("{base}/v1/auth/kakao/start?{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    // `wasmtime serve` adds no spin-client-addr (Spin does), and no proxy header is configured:
    // no address to count by, so the login is refused, whatever the client claims.
    let bare = SpinHost::start(&core.url, &dir).await;
    let response = start(&bare.url, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let envelope: ErrorEnvelope = response.json().await.unwrap();
    assert_eq!(envelope.error.code, ErrorCode::BadRequest);
    assert!(
        envelope.error.message.contains("spin-client-addr"),
        "{}",
        envelope.error.message
    );

    // Behind a proxy that sets X-Real-IP: that address counts, and a client rotating
    // X-Forwarded-For still runs into the limit. Twice the limit and one more: whatever minute
    // boundary falls inside the run, one window sees more than the limit.
    let proxied = SpinHost::start_with_env(
        &[
            ("CORE_URL", &core.url),
            ("CORE_SIGNING_SECRET", nene_e2e::SIGNING_SECRET),
            ("ACCESS_TOKEN_KEYS", nene_e2e::TOKEN_KEYS),
            ("NENE_ENV", "dev"),
            ("TRUSTED_CLIENT_IP_HEADER", "x-real-ip"),
        ],
        &dir,
    )
    .await;
    let mut limited = 0;
    for attempt in 0..=(2 * LOGINS_PER_IP_PER_MINUTE) {
        let forged = format!("198.51.100.{}", attempt % 250);
        let response = start(
            &proxied.url,
            &[("x-real-ip", "203.0.113.7"), ("x-forwarded-for", &forged)],
        )
        .await
        .unwrap();
        match response.status().as_u16() {
            302 => {}
            429 => limited += 1,
            other => panic!("{other}: {}", proxied.process.log_tail()),
        }
    }
    assert!(limited > 0, "rotating X-Forwarded-For dodged the limit");
    // Another client behind the same proxy has its own count.
    let other = start(&proxied.url, &[("x-real-ip", "203.0.113.8")])
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 302);
    // A request that bypassed the proxy (no X-Real-IP) is refused, not counted as the proxy.
    let bypassed = start(&proxied.url, &[]).await.unwrap();
    assert_eq!(bypassed.status().as_u16(), 400);
}

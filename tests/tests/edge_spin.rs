//! The same edge router compiled as a Spin component, hosted by wasmtime (the runtime Spin is
//! built on), in front of the real core.

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
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        edge.process.log_tail()
    );
    let report: PlatformHealth = response.json().await.unwrap_or_else(|e| panic!("{e}"));
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
        .unwrap_or_else(|e| panic!("the component hung instead of answering: {e}"));
    assert_eq!(response.status().as_u16(), 503);
    let envelope: ErrorEnvelope = response.json().await.unwrap_or_else(|e| panic!("{e}"));
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
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 404);
    let envelope: ErrorEnvelope = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envelope.error.code, ErrorCode::NotFound);
}

#[test]
fn spin_toml_runs_the_built_component_with_every_variable_the_edge_reads() {
    let root = std::path::PathBuf::from(nene_e2e::required_env("NENE_ROOT"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("spin.toml"))
        .unwrap_or_else(|e| panic!("spin.toml: {e}"))
        .parse()
        .unwrap_or_else(|e| panic!("spin.toml is not TOML: {e}"));
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
    let environment = component["environment"]
        .as_table()
        .unwrap_or_else(|| panic!("spin.toml has no environment"));
    for variable in [
        VAR_CORE_URL,
        VAR_CORE_SIGNING_SECRET,
        VAR_ACCESS_TOKEN_KEYS,
        VAR_ENVIRONMENT,
    ] {
        assert!(
            environment.contains_key(variable),
            "spin.toml does not set {variable}"
        );
    }
    let core_url = environment[VAR_CORE_URL].as_str().unwrap_or_default();
    let allowed = component["allowed_outbound_hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("spin.toml allows no outbound host"));
    assert!(
        allowed.iter().any(|host| host.as_str() == Some(core_url)),
        "Spin would refuse the call to the core at {core_url}"
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
        .unwrap_or_else(|e| panic!("{e}"));
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
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 400);
    let envelope: ErrorEnvelope = response.json().await.unwrap_or_else(|e| panic!("{e}"));
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
        &core.url,
        &dir,
        &[("TRUSTED_CLIENT_IP_HEADER", "x-real-ip")],
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
        .unwrap_or_else(|e| panic!("{e}"));
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
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other.status().as_u16(), 302);
    // A request that bypassed the proxy (no X-Real-IP) is refused, not counted as the proxy.
    let bypassed = start(&proxied.url, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bypassed.status().as_u16(), 400);
}

//! The same edge router compiled as a Spin component, hosted by wasmtime (the runtime Spin is
//! built on), in front of the real core.

use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{PartStatus, PlatformHealth},
};
use nene_e2e::{Core, SpinHost, client, scratch_dir};
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
fn spin_toml_runs_the_built_component_in_production_with_no_secret_and_only_the_cores_origin() {
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
        .unwrap_or_else(|| panic!("spin.toml allows no outbound host"))
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
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let envelope: ErrorEnvelope = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
    }
    let log = edge.process.log_tail();
    assert!(
        log.contains("CORE_SIGNING_SECRET"),
        "the component logs the variable it refuses:\n{log}"
    );
}

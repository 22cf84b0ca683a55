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

//! The same edge router compiled as a Spin component, hosted by wasmtime (the runtime Spin is
//! built on), in front of the real core.

use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{PartStatus, PlatformHealth},
};
use nene_e2e::{Core, SpinHost, client, scratch_dir};

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

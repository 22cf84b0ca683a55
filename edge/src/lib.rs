//! The public HTTP API of NeNe Challenge, written once and hosted twice.
//!
//! [`router::router`] builds one axum `Router` from a [`platform::Platform`]: the small set of
//! capabilities a host must give (an outbound HTTP transport with timeouts, Durable Object rooms
//! where the host has them, a clock, randomness, configuration). Two thin adapters supply them:
//! `workers` (Cloudflare Workers, compiled for `wasm32-unknown-unknown` by worker-build) and
//! `spin` (a Spin component, compiled for `wasm32-wasip2`). Natively the router is tested with
//! in-memory fakes.

pub mod auth;
pub mod challenges;
pub mod client_address;
pub mod config;
pub mod core_client;
pub mod error;
pub mod health;
mod input;
pub mod joins;
pub mod login;
pub mod middleware;
pub mod notifications;
mod objects;
pub mod paging;
pub mod payments;
pub mod platform;
pub mod probe;
pub mod rosters;
pub mod router;
pub mod search;
pub mod wallet;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod workers;

/// The Durable Object classes must be exported from the Worker's own module.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use nene_durable::workers::{ChallengeRoom, Wallet};

// `#[http_component]` expands to the component's exported C ABI, which is `unsafe` by nature.
#[cfg(target_os = "wasi")]
#[allow(unsafe_code)]
mod spin;

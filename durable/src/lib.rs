//! Durable Objects of NeNe Challenge.
//!
//! Each object is a plain state machine over a small synchronous storage trait (a Durable
//! Object's SQLite calls are synchronous), so the logic runs natively in `cargo test` with an
//! in-memory store. The `#[durable_object]` wrappers in [`workers`] are the only code that knows
//! about the Workers runtime, and they compile only for `wasm32-unknown-unknown`. What the edge
//! and the objects say to each other is [`protocol`].

pub mod join;
pub mod probe;
pub mod protocol;
pub mod single_flight;
pub mod wallet;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod workers;

/// Binding name of the `ChallengeRoom` namespace in `wrangler.toml`.
pub const CHALLENGE_ROOM_BINDING: &str = "CHALLENGE_ROOM";
/// Binding name of the `Wallet` namespace in `wrangler.toml`.
pub const WALLET_BINDING: &str = "WALLET";

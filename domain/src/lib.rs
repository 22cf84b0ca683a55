//! Pure rules and types shared by every part of NeNe Challenge.
//!
//! Nothing here performs I/O or depends on a runtime (`worker`, `spin-sdk`, `sqlx`), so the same
//! code builds for `wasm32` (the edge, the Durable Objects) and natively (the core service), and is
//! tested natively. The one exception is opt-in: the `sqlx` feature, which only the core turns on,
//! maps the state enums of [`states`] to their Postgres types.

pub mod access_token;
pub mod backoff;
pub mod deployment;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod ids;
pub mod internal_api;
pub mod limits;
pub mod lots;
pub mod payments;
pub mod pkce;
pub mod points;
pub mod rules;
pub mod search;
pub mod seeded;
pub mod settings;
pub mod settlement;
pub mod shop;
pub mod signing;
pub mod states;
pub mod text;
pub mod time;
pub mod users;

pub use error::ErrorCode;
pub use ids::ChallengeId;
pub use points::Points;

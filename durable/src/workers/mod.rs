//! The `#[durable_object]` wrappers, one module per object: read the request, run the object's
//! state machine over its SQLite, answer. What they answer is [`crate::protocol`]; what they
//! decide is [`crate::join`], [`crate::wallet`] and [`crate::probe`]. Only this module knows the
//! Workers runtime, and it compiles only for `wasm32-unknown-unknown`.

mod core;
mod room;
mod wallet;

pub use room::ChallengeRoom;
pub use wallet::Wallet;

use nene_domain::{ErrorCode, error::ErrorEnvelope};
use worker::{Headers, Response, SqlStorage};

/// Runs `schema` once per object instance.
fn ensure_schema(
    sql: &SqlStorage,
    ready: &std::cell::Cell<bool>,
    schema: &str,
    upgrades: &[&str],
) -> bool {
    if ready.get() {
        return true;
    }
    if let Err(error) = sql.exec(schema, None) {
        worker::console_error!("schema: {error}");
        return false;
    }
    for upgrade in upgrades {
        if let Err(error) = sql.exec(upgrade, None)
            && !error.to_string().contains("duplicate column")
        {
            worker::console_error!("schema upgrade: {error}");
            return false;
        }
    }
    ready.set(true);
    true
}

fn error_response(code: ErrorCode) -> worker::Result<Response> {
    let envelope = ErrorEnvelope::new(code, code.default_message(), "");
    Ok(Response::from_json(&envelope)?.with_status(code.http_status()))
}

fn now_ms() -> i64 {
    // Date::now is milliseconds since the epoch as f64; it fits i64 exactly.
    #[allow(clippy::cast_possible_truncation)]
    let ms = worker::Date::now().as_millis() as i64;
    ms
}

fn json_response(status: u16, body: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// The value of the query parameter `name` of `request`'s URL; empty when it has none.
fn query_param(request: &worker::Request, name: &str) -> worker::Result<String> {
    Ok(request
        .url()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default())
}

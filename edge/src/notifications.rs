//! The user's notifications (API.md, "Search, shop, notifications, health"):
//! `GET /v1/notifications?cursor=&limit=`, newest first, answered with
//! `{items: [{id, kind, payload, status, attempts, created_at}], next_cursor}`. The edge
//! authenticates and forwards; the list is the core's.

use axum::{Router, extract::RawQuery, routing::get};
use bytes::Bytes;
use nene_domain::ErrorCode;

use crate::{auth::User, core_client::Core, error::ApiError, router::AppState};

/// The core's path for the list.
const CORE_PATH_NOTIFICATIONS: &str = "/internal/v1/notifications";
/// A cursor is 32 hex digits (the core's `Cursor`); anything longer is not one.
const CURSOR_CHARS_MAX: usize = 32;
/// A limit is 1 to 100: three digits at most.
const LIMIT_CHARS_MAX: usize = 3;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(list))
}

/// The core's path and query for the client's query: only `cursor` (hex digits) and `limit`
/// (decimal digits) pass, rebuilt rather than copied, so nothing else reaches the signed call.
/// The core checks their meaning (a cursor it issued, a limit of 1 to 100).
///
/// # Errors
/// `BAD_REQUEST` for any other parameter or a value of the wrong shape.
pub fn core_path(query: Option<&str>) -> Result<String, ApiError> {
    let bad = || ApiError::new(ErrorCode::BadRequest);
    let mut cursor: Option<&str> = None;
    let mut limit: Option<&str> = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (slot, chars_max, digit): (&mut Option<&str>, usize, fn(&u8) -> bool) = match name {
            "cursor" => (&mut cursor, CURSOR_CHARS_MAX, u8::is_ascii_hexdigit),
            "limit" => (&mut limit, LIMIT_CHARS_MAX, u8::is_ascii_digit),
            _ => return Err(bad()),
        };
        if slot.is_some() || value.len() > chars_max || !value.bytes().all(|b| digit(&b)) {
            return Err(bad());
        }
        *slot = Some(value).filter(|value| !value.is_empty());
    }
    let parameters: Vec<String> = [("cursor", cursor), ("limit", limit)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}={value}")))
        .collect();
    Ok(if parameters.is_empty() {
        CORE_PATH_NOTIFICATIONS.to_owned()
    } else {
        format!("{CORE_PATH_NOTIFICATIONS}?{}", parameters.join("&"))
    })
}

/// `GET /v1/notifications?cursor=&limit=`.
async fn list(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let path = core_path(query.as_deref())?;
    let page = core
        .json(http::Method::GET, &path, Some(&user), Bytes::new())
        .await?;
    Ok(axum::Json(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hex_cursor_and_a_numeric_limit_are_forwarded() {
        let cursor = "0190f5a27c1e7a4b9c3d1e2f3a4b5c6d";
        assert_eq!(
            core_path(Some(&format!("limit=50&cursor={cursor}"))).ok(),
            Some(format!(
                "/internal/v1/notifications?cursor={cursor}&limit=50"
            ))
        );
        assert_eq!(
            core_path(None).ok().as_deref(),
            Some("/internal/v1/notifications")
        );
        assert_eq!(
            core_path(Some("cursor=&limit=")).ok().as_deref(),
            Some("/internal/v1/notifications")
        );
        for bad in [
            "user=someone-else",
            "limit=1000",
            "limit=-1",
            "cursor=../../x",
            "cursor=%30",
            "limit=1&limit=2",
        ] {
            assert!(core_path(Some(bad)).is_err(), "{bad}");
        }
    }
}

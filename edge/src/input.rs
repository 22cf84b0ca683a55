//! The public API's guard against input the stores cannot keep, for every route at once: it runs
//! before routing, so a new route cannot forget it.
//!
//! - a NUL character (`%00`) in the path → 404 (no resource has such a name);
//! - a NUL in a query parameter → 422 naming the parameter;
//! - a body over [`REQUEST_BODY_BYTES_MAX`], whatever its content type → 413;
//! - a JSON body (by content type) carrying a NUL anywhere (a value or a key) → 422 naming the
//!   field.
//!
//! Without it, text with a NUL reached Postgres, which refuses it, and the client was told the
//! core was unavailable (503) — on the public webhook route too.
//!
//! Every body is read whole here, before anything answers. An answer given while the body was
//! still unread (a 415 for another media type, a 401, a 405) left the rest of the body on a
//! keep-alive connection, and under `wrangler dev` about one request in a hundred after such an
//! answer on the same connection failed with a 500 "Network connection lost" (schemathesis found
//! it); the bound makes reading it cheap.
//!
//! And the parsers of what a handler reads from a request before anything is asked of the core:
//! ids in paths ([`uuid_segment`], [`challenge_id`]) and the Idempotency-Key header
//! ([`idempotency_key`]).

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use nene_domain::{
    ChallengeId, ErrorCode,
    idempotency::IdempotencyKey,
    limits::REQUEST_BODY_BYTES_MAX,
    text::{contains_encoded_nul, json_nul_field, query_nul_parameter},
};

use crate::error::ApiError;

/// Middleware: refuses unstorable input before any handler (or the router's 404) sees it.
pub(crate) async fn refuse_unstorable_input(request: Request, next: Next) -> Response {
    match checked(request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn checked(request: Request) -> Result<Request, ApiError> {
    // The body first: whatever is answered next, it is never answered over an unread body.
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::new(ErrorCode::PayloadTooLarge));
        }
        // The client went away or sent a broken stream: nothing to read, nothing to answer well.
        Err(_) => return Err(ApiError::new(ErrorCode::BadRequest)),
    };
    if contains_encoded_nul(parts.uri.path()) {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    if let Some(name) = parts.uri.query().and_then(query_nul_parameter) {
        return Err(ApiError::with_message(
            ErrorCode::ValidationFailed,
            format!("the query parameter `{name}` contains a NUL character"),
        ));
    }
    // Bodies of other types are refused by the handlers' extractors (415) or are not text.
    if is_json(&parts.headers)
        && let Some(at) = json_nul_field(&bytes)
    {
        return Err(ApiError::with_message(
            ErrorCode::ValidationFailed,
            at.to_string(),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// `application/json` or any `+json` type, as axum's `Json` extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Length of a UUID's hyphenated text form.
const UUID_TEXT_LEN: usize = 36;

/// A path segment that must name something the core identifies by UUID (a challenge, a proof):
/// the hyphenated form (`8-4-4-4-12` hex digits), else a 404 before anything is asked. Without
/// this, a malformed id reached the core, whose refusal to parse it came back as a 500 (detail)
/// or, through the room's read of its rules, a 503 (join).
///
/// # Errors
/// `NOT_FOUND` for anything else.
pub(crate) fn uuid_segment(raw: &str) -> Result<&str, ApiError> {
    let well_formed = raw.len() == UUID_TEXT_LEN
        && raw.bytes().enumerate().all(|(at, b)| match at {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(raw)
    } else {
        Err(ApiError::new(ErrorCode::NotFound))
    }
}

/// A challenge's id in a public path: a UUID (see [`uuid_segment`]).
///
/// # Errors
/// `NOT_FOUND` for anything else.
pub(crate) fn challenge_id(raw: &str) -> Result<ChallengeId, ApiError> {
    object_name(uuid_segment(raw)?)
}

/// A room's name in a dev probe path: any well-formed object name (the probe is plumbing, not a
/// challenge).
///
/// # Errors
/// `NOT_FOUND` for a name no object can have.
pub(crate) fn object_name(raw: &str) -> Result<ChallengeId, ApiError> {
    ChallengeId::parse(raw).map_err(|_| ApiError::new(ErrorCode::NotFound))
}

/// The request's `Idempotency-Key`, if any ([`IdempotencyKey`] says what a key is).
///
/// # Errors
/// `BAD_REQUEST` for a header that is not a key, with the rule as its message.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(IdempotencyKey::parse)
        .and_then(Result::ok)
        .map(Some)
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::BadRequest,
                nene_domain::idempotency::InvalidIdempotencyKey.to_string(),
            )
        })
}

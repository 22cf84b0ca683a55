//! Verification of the edge's signature on every internal request. The core trusts no user id
//! that did not come through here.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::request::Parts,
    middleware::Next,
    response::Response,
};
use nene_domain::{
    ErrorCode,
    limits::INTERNAL_BODY_BYTES_MAX,
    signing::{
        HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignatureError, SignedParts,
        parse_timestamp,
    },
    text::{contains_encoded_nul, json_nul_field, query_nul_parameter},
};

use super::error::CoreApiError;
use crate::AppState;

/// The caller the edge vouched for, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user, or `None` for an anonymous call (health, login).
    pub user: Option<String>,
}

/// The user the edge signed a request for, as a handler's argument; a request signed for no user
/// is refused with 401 before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = CoreApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .and_then(|caller| caller.user.clone())
            .map(SignedIn)
            .ok_or(CoreApiError::Client(ErrorCode::Unauthorized))
    }
}

/// Every path under this prefix requires the edge's signature.
pub const SIGNED_PATH_PREFIX: &str = "/internal/";

pub async fn require_edge_signature(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, CoreApiError> {
    if !request.uri().path().starts_with(SIGNED_PATH_PREFIX) {
        return Ok(next.run(request).await);
    }
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, INTERNAL_BODY_BYTES_MAX)
        .await
        .map_err(|_| CoreApiError::Client(ErrorCode::PayloadTooLarge))?;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let verdict = (|| {
        let timestamp = parse_timestamp(&header(HEADER_TIMESTAMP).ok_or(SignatureError::Missing)?)?;
        let signature = header(HEADER_SIGNATURE).ok_or(SignatureError::Missing)?;
        let user = header(HEADER_USER).unwrap_or_default();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        state.signing_secret.verify(
            &SignedParts {
                method: parts.method.as_str(),
                path_and_query,
                timestamp_unix_seconds: timestamp,
                user: &user,
                body: &body,
            },
            &signature,
            state.wall_clock.now_unix_seconds(),
        )?;
        Ok::<_, SignatureError>(user)
    })();
    match verdict {
        Ok(user) => {
            refuse_unstorable_text(&parts, &body)?;
            parts.extensions.insert(Caller {
                user: (!user.is_empty()).then_some(user),
            });
            Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
        }
        Err(error) => {
            tracing::warn!(%error, path = %parts.uri.path(), "refused an unsigned or badly signed request");
            Err(CoreApiError::Client(ErrorCode::SignatureInvalid))
        }
    }
}

/// Text Postgres cannot store (a NUL character) is refused here, for every signed route at once,
/// with a 422 naming the field — not found by the database later and answered as its failure.
/// The edge refuses it first; this is the core's own line for any other caller.
fn refuse_unstorable_text(parts: &Parts, body: &[u8]) -> Result<(), CoreApiError> {
    if let Some(name) = parts.uri.query().and_then(query_nul_parameter) {
        return Err(CoreApiError::Input {
            code: ErrorCode::ValidationFailed,
            message: format!("the query parameter `{name}` contains a NUL character"),
        });
    }
    if contains_encoded_nul(parts.uri.path()) {
        return Err(CoreApiError::Client(ErrorCode::NotFound));
    }
    match json_nul_field(body) {
        Some(at) => Err(CoreApiError::Input {
            code: ErrorCode::ValidationFailed,
            message: at.to_string(),
        }),
        None => Ok(()),
    }
}

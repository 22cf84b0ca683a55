//! The edge's error type and its one mapping to HTTP.
//!
//! Handlers return [`ApiError`]. Its `IntoResponse` cannot know the request id, so it leaves the
//! error in the response's extensions; the request-context middleware of the router, which does
//! know it, renders every error as `{"error": {"code", "message", "request_id"}}`.

use axum::{
    Json,
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use nene_domain::{ErrorCode, error::ErrorEnvelope};
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    /// A client-safe message; the code's default when `None`.
    pub message: Option<String>,
}

impl ApiError {
    #[must_use]
    pub const fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: None,
        }
    }

    #[must_use]
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: Some(message.into()),
        }
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Renders the error left by [`ApiError::into_response`], if any, with the request id. An error
/// response that is not JSON — a rejection of axum's own (a raw body over its limit, a path that
/// does not parse) — is rendered as the envelope too, with the code of its status: every error
/// the API sends has the same shape, whichever layer refused the request.
pub(crate) fn render_pending_error(response: &mut Response, request_id: &str) {
    let pending = response.extensions_mut().remove::<ApiError>();
    let Some(error) = pending.or_else(|| bare_error(response)) else {
        return;
    };
    *response.status_mut() = error.status();
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| error.code.default_message().to_owned());
    let envelope = ErrorEnvelope::new(error.code, message, request_id);
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    *response.body_mut() = axum::body::Body::from(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().remove(header::CONTENT_LENGTH);
}

/// An error response without the JSON envelope, as the error it stands for.
fn bare_error(response: &Response) -> Option<ApiError> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    let is_error = status.is_client_error() || status.is_server_error();
    (is_error && !is_json).then(|| ApiError::new(ErrorCode::for_status(status.as_u16())))
}

/// `Json<T>` whose rejections are [`ApiError`]s: malformed JSON → 400 `INVALID_JSON`, a body over
/// the limit → 413 `PAYLOAD_TOO_LARGE`, a wrong content type → 415.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(ErrorCode::UnsupportedMediaType),
        // serde's message names the field and the expected type, which helps a client and
        // leaks nothing of ours.
        _ => ApiError::with_message(ErrorCode::InvalidJson, rejection.body_text()),
    }
}

/// The answer to every request while the host's configuration is invalid: 503 CORE_UNAVAILABLE
/// (the service cannot be reached through this edge; a client retries later), with the reason in
/// the host's log, not in the response. Outside the router there is no request id, so the
/// envelope carries an empty one.
#[must_use]
pub fn misconfigured_response() -> Response {
    let code = ErrorCode::CoreUnavailable;
    let envelope = ErrorEnvelope::new(code, code.default_message(), "");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::to_vec(&envelope).unwrap_or_default(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

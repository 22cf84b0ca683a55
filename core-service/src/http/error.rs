//! The core's error type and its one mapping to HTTP: `{"error": {"code", "message", "request_id"}}`
//! with the edge's request id, so one id names a request in both logs. Internal detail is logged
//! here and never sent.

use axum::{
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use nene_domain::{ErrorCode, error::ErrorEnvelope};

/// Header carrying the request id from the edge.
pub const HEADER_REQUEST_ID: &str = "x-request-id";

/// Longest request id we echo; the edge sends 32 hex chars.
const REQUEST_ID_LEN_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CoreApiError {
    #[error("{0:?}")]
    Client(ErrorCode),
    /// The request's input is wrong, and `message` tells the client how: serde's description of
    /// the field and the shape it expected. It describes the request, nothing of ours.
    #[error("{code:?}: {message}")]
    Input { code: ErrorCode, message: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

impl CoreApiError {
    fn code(&self) -> ErrorCode {
        match self {
            CoreApiError::Client(code) | CoreApiError::Input { code, .. } => *code,
            // Every pooled connection stayed busy for the whole acquire timeout: overload, which
            // passes; the caller may retry (503), unlike a fault of ours.
            CoreApiError::Database(sqlx::Error::PoolTimedOut) => ErrorCode::CoreUnavailable,
            CoreApiError::Database(_) => ErrorCode::Internal,
            CoreApiError::Ledger(error) => error.code(),
        }
    }
}

/// The code (and a message other than the code's default, if any) an error response carries
/// until `request_context` renders it.
#[derive(Debug, Clone)]
struct PendingError(ErrorCode, Option<String>);

impl IntoResponse for CoreApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %self, "request failed");
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match self {
            CoreApiError::Input { message, .. } => Some(message),
            _ => None,
        };
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(PendingError(code, message));
        response
    }
}

pub async fn not_found() -> CoreApiError {
    CoreApiError::Client(ErrorCode::NotFound)
}

pub async fn method_not_allowed() -> CoreApiError {
    CoreApiError::Client(ErrorCode::MethodNotAllowed)
}

/// Takes the edge's request id (or makes one) and renders any error with it.
pub async fn request_context(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(HEADER_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            id.len() <= REQUEST_ID_LEN_MAX
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let mut response = next.run(request).await;
    if let Some(PendingError(code, message)) = response.extensions_mut().remove::<PendingError>() {
        let message = message.as_deref().unwrap_or(code.default_message());
        let envelope = ErrorEnvelope::new(code, message, request_id.as_str());
        *response.body_mut() =
            axum::body::Body::from(serde_json::to_vec(&envelope).unwrap_or_default());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, value);
    }
    response
}

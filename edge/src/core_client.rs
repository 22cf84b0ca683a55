//! Signed calls from the edge to the core service, and [`Core`], the handlers' way to make them.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::StatusCode};
use bytes::Bytes;
use http::request::Parts;
use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    internal_api::{Call, Method},
    limits::CORE_TIMEOUT_MS,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::ApiError,
    middleware::RequestId,
    platform::{OutboundRequest, Platform, TransportError},
};

/// Header that carries the edge's request id to the core, so one id names a request in both logs.
pub const HEADER_REQUEST_ID: &str = "x-request-id";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("the core did not answer: {0}")]
    Unavailable(TransportError),
    #[error("the core failed with status {0}")]
    Failed(u16),
    /// The core's error code and its message.
    #[error("the core refused the request: {0:?}: {1}")]
    Refused(ErrorCode, String),
    #[error("the core answered with an unexpected body: {0}")]
    BadBody(String),
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            // The client can retry: the core is down, slow, or failing.
            CoreError::Unavailable(_) | CoreError::Failed(_) => {
                ApiError::new(ErrorCode::CoreUnavailable)
            }
            // The core refusing our own signature is our misconfiguration, not the client's fault.
            CoreError::Refused(ErrorCode::SignatureInvalid, _) => {
                ApiError::new(ErrorCode::Internal)
            }
            // What is wrong with the client's input: the core's message says which field and how.
            CoreError::Refused(
                code @ (ErrorCode::InvalidJson
                | ErrorCode::ValidationFailed
                | ErrorCode::BadRequest),
                message,
            ) => ApiError::with_message(code, message),
            // A refusal by the core is the client's answer (insufficient points, full, …).
            CoreError::Refused(code, _) => ApiError::new(code),
            CoreError::BadBody(_) => ApiError::new(ErrorCode::Internal),
        }
    }
}

/// An internal route's method as `http` names it.
pub(crate) fn http_method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

/// Builds the signed request for `call` (one of the core's [`nene_domain::internal_api`] routes)
/// with `body`, as `user` (or anonymously).
#[must_use]
pub fn signed_request(
    platform: &Platform,
    call: &Call,
    user: Option<&str>,
    body: Bytes,
    request_id: &str,
) -> OutboundRequest {
    let method = http_method(call.method());
    let path_and_query = call.path_and_query();
    let timestamp = platform.host.now_unix_seconds();
    let user = user.unwrap_or("");
    let signature = platform.config.signing_secret.sign(&SignedParts {
        method: method.as_str(),
        path_and_query,
        timestamp_unix_seconds: timestamp,
        user,
        body: &body,
    });
    let mut headers = vec![
        (HEADER_TIMESTAMP.to_owned(), timestamp.to_string()),
        (HEADER_SIGNATURE.to_owned(), signature),
        (HEADER_REQUEST_ID.to_owned(), request_id.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    if !user.is_empty() {
        headers.push((HEADER_USER.to_owned(), user.to_owned()));
    }
    OutboundRequest {
        method,
        url: format!("{}{path_and_query}", platform.config.core_url),
        headers,
        body,
        timeout_ms: CORE_TIMEOUT_MS,
    }
}

/// Calls the core and decodes a JSON answer.
///
/// # Errors
/// [`CoreError`]: unreachable or timed out, a 5xx, a refusal with the core's error code, or a body
/// that is not the expected JSON.
pub async fn call_json<T: DeserializeOwned>(
    platform: &Platform,
    call: &Call,
    user: Option<&str>,
    body: Bytes,
    request_id: &str,
) -> Result<T, CoreError> {
    let (_, body) = call_for_bytes(platform, call, user, body, request_id).await?;
    decode(&body)
}

/// A successful answer's JSON; a 204's empty body decodes as JSON `null`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CoreError> {
    serde_json::from_slice(if body.is_empty() { b"null" } else { body })
        .map_err(|error| CoreError::BadBody(error.to_string()))
}

/// Calls the core and keeps a successful answer's body as it came.
///
/// # Errors
/// As [`call_json`], except that a success's body is not looked at.
pub async fn call_for_bytes(
    platform: &Platform,
    call: &Call,
    user: Option<&str>,
    body: Bytes,
    request_id: &str,
) -> Result<(u16, Bytes), CoreError> {
    let request = signed_request(platform, call, user, body, request_id);
    let response = platform
        .transport
        .send(request)
        .await
        .map_err(CoreError::Unavailable)?;
    match response.status {
        200..=299 => Ok((response.status, response.body)),
        400..=499 => match serde_json::from_slice::<ErrorEnvelope>(&response.body) {
            Ok(envelope) => Err(CoreError::Refused(
                envelope.error.code,
                envelope.error.message,
            )),
            Err(error) => Err(CoreError::BadBody(error.to_string())),
        },
        // A partner of the core failed (a login provider, Toss): the core's own 502 says so, and
        // the client should hear exactly that. Any other 5xx is the core failing.
        502 => match serde_json::from_slice::<ErrorEnvelope>(&response.body) {
            Ok(envelope) if envelope.error.code.http_status() == 502 => Err(CoreError::Refused(
                envelope.error.code,
                envelope.error.message,
            )),
            _ => Err(CoreError::Failed(502)),
        },
        status => Err(CoreError::Failed(status)),
    }
}

/// The core as a handler calls it: the platform and the request's id are filled in (extracted
/// with the request), so a handler says only what differs: which route (an
/// [`nene_domain::internal_api`] call), as whom, and body.
pub struct Core {
    platform: Arc<Platform>,
    request_id: String,
}

/// A core answer passed to the client as it came: the core's success status and its JSON.
pub type Forwarded = (StatusCode, axum::Json<serde_json::Value>);

impl FromRequestParts<Arc<Platform>> for Core {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        // Set by the request-context middleware on every route; missing only if it was not.
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|RequestId(id)| id.clone())
            .ok_or(ApiError::new(ErrorCode::Internal))?;
        Ok(Core {
            platform: Arc::clone(platform),
            request_id,
        })
    }
}

impl Core {
    /// The core's JSON answer to `call`, as `user` (or anonymously), with `body`.
    ///
    /// # Errors
    /// The client's error for a [`CoreError`].
    pub async fn json<T: DeserializeOwned>(
        &self,
        call: Call,
        user: Option<&str>,
        body: Bytes,
    ) -> Result<T, ApiError> {
        let (_, value) = self.call(&call, user, body).await?;
        Ok(value)
    }

    /// [`Core::json`], keeping the core's success status for the client.
    ///
    /// # Errors
    /// As [`Core::json`].
    pub async fn forward(
        &self,
        call: Call,
        user: Option<&str>,
        body: Bytes,
    ) -> Result<Forwarded, ApiError> {
        let (status, value) = self.call(&call, user, body).await?;
        Ok((
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            axum::Json(value),
        ))
    }

    /// The core's successful answer to `call` as it came: its status and its bytes.
    ///
    /// # Errors
    /// As [`Core::json`].
    pub async fn bytes(&self, call: &Call, user: Option<&str>) -> Result<(u16, Bytes), ApiError> {
        Ok(call_for_bytes(&self.platform, call, user, Bytes::new(), &self.request_id).await?)
    }

    /// The platform the request runs on.
    #[must_use]
    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: &Call,
        user: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, T), ApiError> {
        let platform = &self.platform;
        let request_id = &self.request_id;
        let (status, body) = call_for_bytes(platform, call, user, body, request_id).await?;
        Ok((status, decode(&body)?))
    }
}

/// A request body for the core.
///
/// # Errors
/// `INTERNAL` if `value` does not serialize (it always does for the JSON values handlers build).
pub fn json_body(value: &impl Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

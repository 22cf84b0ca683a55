//! The edge's calls of the Durable Objects (on Workers): one request in the objects' protocol
//! (`nene_durable::protocol`), its answer decoded. Hosts without objects (Spin) never get here:
//! their handlers ask the core, which is correct on its own.

use bytes::Bytes;
use nene_domain::{ErrorCode, error::ErrorEnvelope, internal_api::Method, limits::CORE_TIMEOUT_MS};
use nene_durable::protocol::object_url;

use crate::{
    core_client::http_method,
    error::ApiError,
    platform::{ObjectName, OutboundRequest, OutboundResponse, Rooms},
};

/// Calls a Durable Object and decodes its answer: its JSON on success, its error code otherwise.
///
/// # Errors
/// The object's error code for a 4xx; `CORE_UNAVAILABLE` when it did not answer or failed.
pub(crate) async fn call_object(
    objects: &dyn Rooms,
    object: ObjectName<'_>,
    method: Method,
    path_and_query: &str,
    body: Bytes,
) -> Result<serde_json::Value, ApiError> {
    let response = objects
        .send(object, object_request(method, path_and_query, body))
        .await
        .map_err(|_| ApiError::new(ErrorCode::CoreUnavailable))?;
    object_answer(&response)
}

/// A request in the objects' protocol.
pub(crate) fn object_request(method: Method, path_and_query: &str, body: Bytes) -> OutboundRequest {
    OutboundRequest {
        method: http_method(method),
        url: object_url(path_and_query),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
        // The room may itself wait on the core once (its own bound) before answering.
        timeout_ms: 2 * CORE_TIMEOUT_MS,
    }
}

fn object_answer(response: &OutboundResponse) -> Result<serde_json::Value, ApiError> {
    match response.status {
        200..=299 => {
            serde_json::from_slice(&response.body).map_err(|_| ApiError::new(ErrorCode::Internal))
        }
        400..=499 => Err(serde_json::from_slice::<ErrorEnvelope>(&response.body)
            .map_or(ApiError::new(ErrorCode::Internal), |envelope| {
                ApiError::new(envelope.error.code)
            })),
        _ => Err(ApiError::new(ErrorCode::CoreUnavailable)),
    }
}

//! What runs around every request: its id, and the error body that carries it.

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};

use crate::{core_client::HEADER_REQUEST_ID, error::render_pending_error, platform::AppState};

/// The request id of the current request, set by [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives every request an id, and renders every error with it.
pub(crate) async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = state.host.random_id();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let mut response = next.run(request).await;
    render_pending_error(&mut response, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, value);
    }
    response
}

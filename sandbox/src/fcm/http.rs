//! Google's token endpoint and FCM's `messages:send` over HTTP.
//!
//! A send without faults takes the mutex once, for [`Service::send`](super::service::Service::send);
//! the body is parsed before and the answer written after. An injected latency sleeps outside the
//! lock and takes it a second time; `drop_connection` answers a body that fails at once, so hyper
//! aborts the connection without writing a response.

use std::{io, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    Fcm,
    error::{ErrorCode, FcmError},
    grant::{
        EXPIRES_IN_SECONDS, GOOGLE_TOKEN_URL, TOKEN_PATH, assertion_from_form, verify_assertion,
    },
    message::parse_send_request,
    service::Outcome,
    service_account::Registry,
};
use crate::clock;

/// What Google's APIs write as their JSON content type.
const JSON_UTF8: &str = "application/json; charset=UTF-8";

/// The URLs a client may have addressed the sandbox's token endpoint by: its own base URL, as the
/// `Host` header names it (HTTP/1.1), or the request's authority (HTTP/2 has no `Host`).
fn own_token_urls(headers: &HeaderMap, uri: &Uri) -> Vec<String> {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()))
    else {
        return Vec::new();
    };
    ["http", "https"]
        .into_iter()
        .map(|scheme| format!("{scheme}://{host}{TOKEN_PATH}"))
        .collect()
}

/// `POST /fcm/token`: a service account's assertion for an access token.
pub(super) async fn token(
    State(fcm): State<Fcm>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let registry = match Registry::embedded() {
        Ok(registry) => registry,
        Err(error) => {
            tracing::error!(%error, "the committed service accounts do not parse");
            let body =
                json!({ "error": "internal_failure", "error_description": "Internal error" });
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        }
    };
    let own_urls = own_token_urls(&headers, &uri);
    let audiences: Vec<&str> = std::iter::once(GOOGLE_TOKEN_URL)
        .chain(own_urls.iter().map(String::as_str))
        .collect();
    let now_ms = clock::now_ms();
    let verified = assertion_from_form(&body).and_then(|assertion| {
        verify_assertion(registry, &assertion, &audiences, now_ms.div_euclid(1000))
    });
    let key = match verified {
        Ok(key) => key,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(error.to_json())).into_response(),
    };
    let access_token = fcm.lock().issue_token(key.project_id.as_str(), now_ms);
    let body = json!({
        "access_token": access_token,
        "expires_in": EXPIRES_IN_SECONDS,
        "token_type": "Bearer",
    });
    (
        [(
            header::CACHE_CONTROL,
            "no-cache, no-store, max-age=0, must-revalidate",
        )],
        Json(body),
    )
        .into_response()
}

/// The token of `Authorization: Bearer <token>`; `Some("")` for a header of another scheme (an
/// unknown token), `None` without the header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    Some(token)
}

/// `POST /fcm/v1/projects/{project_id}/messages:send`.
pub(super) async fn send(
    State(fcm): State<Fcm>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = parse_send_request(&body);
    let bearer = bearer(&headers);
    let outcome = fcm
        .lock()
        .send(bearer, &project_id, request, clock::now_ms(), true);
    let outcome = match outcome {
        Outcome::Delayed { ms, request } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            fcm.lock()
                .send(bearer, &project_id, Ok(request), clock::now_ms(), false)
        }
        decided => decided,
    };
    match outcome {
        Outcome::Sent(name) => {
            let mut response = Response::new(Body::from(format!("{{\"name\":\"{name}\"}}")));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
            response
        }
        Outcome::Refused(error) => error.into_response(),
        Outcome::Drop => severed(),
        Outcome::Delayed { .. } => {
            tracing::error!("a send was delayed twice");
            FcmError::from(ErrorCode::Internal).into_response()
        }
    }
}

/// A response whose body fails before its first byte: hyper then closes the connection without
/// writing the response head, so the client sees the connection end with no answer.
fn severed() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "drop_connection fault",
        ))
    });
    Response::new(Body::from_stream(failing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_schemes_case_and_another_scheme_is_no_token() {
        assert_eq!(bearer(&headers(Some("Bearer ya29.abc"))), Some("ya29.abc"));
        assert_eq!(bearer(&headers(Some("bearer ya29.abc"))), Some("ya29.abc"));
        assert_eq!(bearer(&headers(Some("Basic abc"))), Some(""));
        assert_eq!(bearer(&headers(Some("ya29.abc"))), Some(""));
        assert_eq!(bearer(&headers(None)), None);
    }

    #[test]
    fn the_sandboxs_own_token_url_follows_the_host_header_or_the_http2_authority() {
        let mut with_host = HeaderMap::new();
        with_host.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8090"));
        let path_only = Uri::from_static("/fcm/token");
        assert_eq!(
            own_token_urls(&with_host, &path_only),
            [
                "http://127.0.0.1:8090/fcm/token",
                "https://127.0.0.1:8090/fcm/token"
            ]
        );
        assert!(own_token_urls(&HeaderMap::new(), &path_only).is_empty());
        let http2 = Uri::from_static("https://localhost:8443/fcm/token");
        assert_eq!(
            own_token_urls(&HeaderMap::new(), &http2),
            [
                "http://localhost:8443/fcm/token",
                "https://localhost:8443/fcm/token"
            ]
        );
    }
}

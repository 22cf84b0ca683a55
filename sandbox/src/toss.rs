//! Toss Payments core API v1: authentication and the error shape.
//!
//! Toss authenticates with `Authorization: Basic base64("{secretKey}:")`, where the secret key is
//! `test_sk_…` in the test environment (the trailing colon matters). Errors are the HTTP status
//! plus `{"code", "message"}`.

use axum::{
    Json, Router,
    extract::Path,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

/// Prefix of the secret keys the test environment accepts.
pub const TEST_SECRET_KEY_PREFIX: &str = "test_sk_";

/// A Toss error: status plus `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TossError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

impl IntoResponse for TossError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }
}

const UNAUTHORIZED_KEY: TossError = TossError {
    status: StatusCode::UNAUTHORIZED,
    code: "UNAUTHORIZED_KEY",
    message: "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
};

const INCORRECT_BASIC_AUTH_FORMAT: TossError = TossError {
    status: StatusCode::FORBIDDEN,
    code: "INCORRECT_BASIC_AUTH_FORMAT",
    message: "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.",
};

const NOT_FOUND_PAYMENT: TossError = TossError {
    status: StatusCode::NOT_FOUND,
    code: "NOT_FOUND_PAYMENT",
    message: "존재하지 않는 결제 정보 입니다.",
};

/// Checks Toss's Basic authentication and returns the secret key.
///
/// # Errors
/// `INCORRECT_BASIC_AUTH_FORMAT` when the header is not `Basic base64("key:")`;
/// `UNAUTHORIZED_KEY` when the key is not a test secret key.
pub fn authenticate(headers: &HeaderMap) -> Result<String, TossError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(UNAUTHORIZED_KEY)?;
    let encoded = value
        .strip_prefix("Basic ")
        .ok_or(INCORRECT_BASIC_AUTH_FORMAT)?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(INCORRECT_BASIC_AUTH_FORMAT)?;
    let key = decoded
        .strip_suffix(':')
        .ok_or(INCORRECT_BASIC_AUTH_FORMAT)?;
    if key.starts_with(TEST_SECRET_KEY_PREFIX) && key.len() > TEST_SECRET_KEY_PREFIX.len() {
        Ok(key.to_owned())
    } else {
        Err(UNAUTHORIZED_KEY)
    }
}

pub fn router() -> Router {
    Router::new().route("/v1/payments/{payment_key}", get(get_payment))
}

/// `GET /v1/payments/{paymentKey}`. No payment can exist until the confirm flow lands, so every
/// authenticated lookup is `NOT_FOUND_PAYMENT`, exactly as Toss answers for an unknown key.
async fn get_payment(headers: HeaderMap, Path(_payment_key): Path<String>) -> Response {
    match authenticate(&headers) {
        Ok(_) => NOT_FOUND_PAYMENT.into_response(),
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn a_test_secret_key_with_the_trailing_colon_is_accepted() {
        let encoded = STANDARD.encode("test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R:");
        assert_eq!(
            authenticate(&with_authorization(&format!("Basic {encoded}"))),
            Ok("test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R".to_owned())
        );
    }

    #[test]
    fn a_key_encoded_without_the_colon_is_an_incorrect_format() {
        let encoded = STANDARD.encode("test_sk_abc");
        assert_eq!(
            authenticate(&with_authorization(&format!("Basic {encoded}"))),
            Err(INCORRECT_BASIC_AUTH_FORMAT)
        );
    }

    #[test]
    fn a_live_or_client_key_or_no_header_is_unauthorized() {
        for key in ["live_sk_abc:", "test_ck_abc:", "test_sk_:"] {
            let encoded = STANDARD.encode(key);
            assert_eq!(
                authenticate(&with_authorization(&format!("Basic {encoded}"))),
                Err(UNAUTHORIZED_KEY),
                "{key}"
            );
        }
        assert_eq!(authenticate(&HeaderMap::new()), Err(UNAUTHORIZED_KEY));
    }
}

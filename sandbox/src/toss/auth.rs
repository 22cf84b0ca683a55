//! Toss's Basic authentication.
//!
//! Toss authenticates with `Authorization: Basic base64("{secretKey}:")`, where the secret key is
//! `test_sk_…` in the test environment (the trailing colon matters).

use axum::http::{HeaderMap, header};
use base64::{Engine, engine::general_purpose::STANDARD};

use super::error::{INCORRECT_BASIC_AUTH_FORMAT, TossError, UNAUTHORIZED_KEY};

/// Prefix of the secret keys the test environment accepts.
pub const TEST_SECRET_KEY_PREFIX: &str = "test_sk_";

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
        Err(UNAUTHORIZED_KEY.into())
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
            Err(INCORRECT_BASIC_AUTH_FORMAT.into())
        );
    }

    #[test]
    fn a_live_or_client_key_or_no_header_is_unauthorized() {
        for key in ["live_sk_abc:", "test_ck_abc:", "test_sk_:"] {
            let encoded = STANDARD.encode(key);
            assert_eq!(
                authenticate(&with_authorization(&format!("Basic {encoded}"))),
                Err(UNAUTHORIZED_KEY.into()),
                "{key}"
            );
        }
        assert_eq!(
            authenticate(&HeaderMap::new()),
            Err(UNAUTHORIZED_KEY.into())
        );
    }
}

//! Who is calling: the access token in `Authorization: Bearer …`, verified at the edge. Handlers
//! that take [`User`] are refused with 401 before they run when the token is missing, malformed,
//! forged, for another audience, or expired. (Revocation of a token's `jti` is issue 6's.)

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use nene_domain::ErrorCode;

use crate::{error::ApiError, platform::Platform};

/// The authenticated user's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

impl FromRequestParts<Arc<Platform>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::new(ErrorCode::Unauthorized))?;
        let claims = platform
            .config
            .token_keys
            .verify(token.trim(), platform.host.now_unix_seconds())
            .map_err(|_| ApiError::new(ErrorCode::Unauthorized))?;
        Ok(User(claims.sub))
    }
}

//! Who is calling: the access token in `Authorization: Bearer …`, verified at the edge, and not
//! revoked. Handlers that take [`User`] (or [`Session`]) are refused with 401 before they run when
//! the token is missing, malformed, forged, for another audience, expired, or revoked.
//!
//! Revocation (logout, a reused refresh token) is recorded by the core. How fast it bites:
//! - endpoints that move money take [`PayingUser`], which asks the core on every request: a
//!   revoked token is refused at once;
//! - a join ([`TokenHolder`]) passes the token's id to the core, which refuses a revoked one in
//!   the join itself, where the money moves; a join refused before that (full, closed, already
//!   joined) moves nothing and never waits on the core;
//! - every other endpoint asks the core at most once per [`REVOCATION_CACHE_SECONDS`] per token
//!   and isolate (a Workers isolate keeps the answer in memory; a Spin instance lives for one
//!   request and always asks), so a revoked token stops working within 60 seconds — at once in
//!   the isolate that handled the logout, which forgets its answers for the whole family.
//!
//! The edge's one internal route is called by the core, not a user: [`SignedByCore`] holds it to
//! the shared secret's signature, as the core's own extractor holds the edge's calls.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use bytes::Bytes;
use nene_domain::{ErrorCode, access_token::AccessClaims, internal_api};

use crate::{core_client, error::ApiError, platform::Platform};

/// How long a "not revoked" answer is reused for endpoints that do not move money.
pub const REVOCATION_CACHE_SECONDS: i64 = 60;
/// Tokens remembered per isolate; past it the cache starts over (a bound, not an eviction policy:
/// a busy isolate asks a little more often).
pub const REVOCATION_CACHE_ENTRIES_MAX: usize = 10_000;

/// The authenticated user's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// The authenticated user, checked against revocation on this very request: for money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayingUser(pub String);

/// The holder of a valid token (signature, audience, expiry), NOT checked against revocation. Only
/// for a handler that moves money solely through a core call carrying the token's id, which the
/// core checks (the join), or that calls [`ensure_not_revoked`] before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder(pub AccessClaims);

/// The whole verified token (logout needs its `jti` and expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(pub AccessClaims);

fn cache() -> &'static Mutex<HashMap<String, i64>> {
    static CACHE: OnceLock<Mutex<HashMap<String, i64>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Verifies the bearer token: signature, audience, expiry. Not revocation.
fn verify(parts: &Parts, platform: &Platform) -> Result<AccessClaims, ApiError> {
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::new(ErrorCode::Unauthorized))?;
    platform
        .config
        .token_keys
        .verify(token.trim(), platform.host.now_unix_seconds())
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized))
}

/// Refuses `claims` if the core has revoked them (`fresh`: ask the core now; else an answer up to
/// [`REVOCATION_CACHE_SECONDS`] old will do).
///
/// # Errors
/// 401 when revoked; the core's unavailability as it comes.
pub async fn ensure_not_revoked(
    platform: &Platform,
    claims: &AccessClaims,
    fresh: bool,
) -> Result<(), ApiError> {
    let now = platform.host.now_unix_seconds();
    let cached = !fresh
        && cache()
            .lock()
            .ok()
            .and_then(|cache| cache.get(&claims.jti).copied())
            .is_some_and(|checked| now - checked < REVOCATION_CACHE_SECONDS);
    if cached {
        return Ok(());
    }
    let request_id = platform.host.random_id();
    let body = core_client::json_body(&internal_api::auth::RevokedBody {
        jti: claims.jti.clone(),
    })?;
    let answer: internal_api::auth::Revoked = core_client::call_json(
        platform,
        &internal_api::AUTH_REVOKED.call(&[]),
        Some(&claims.sub),
        body,
        &request_id,
    )
    .await?;
    if answer.revoked {
        Err(ApiError::new(ErrorCode::Unauthorized))
    } else {
        if let Ok(mut cache) = cache().lock() {
            if cache.len() >= REVOCATION_CACHE_ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(claims.jti.clone(), now);
        }
        Ok(())
    }
}

/// The refresh family of an access token's id (`{family}.{random}`; an id without a dot is its
/// own family).
fn family_of(jti: &str) -> &str {
    jti.rsplit_once('.').map_or(jti, |(family, _)| family)
}

/// Forgets this isolate's "not revoked" answers for every token of `jti`'s refresh family, so
/// after a logout here the family's tokens are asked about (and refused) on their next request
/// here, not up to [`REVOCATION_CACHE_SECONDS`] later. Other isolates keep their answers for the
/// rest of their minute.
pub fn forget_family(jti: &str) {
    let family = family_of(jti);
    if let Ok(mut cache) = cache().lock() {
        cache.retain(|cached, _| family_of(cached) != family);
    }
}

/// Verifies the bearer token and that it is not revoked (`fresh`: ask the core now).
async fn authenticate(
    parts: &Parts,
    platform: &Platform,
    fresh: bool,
) -> Result<AccessClaims, ApiError> {
    let claims = verify(parts, platform)?;
    ensure_not_revoked(platform, &claims, fresh).await?;
    Ok(claims)
}

impl FromRequestParts<Arc<Platform>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        Ok(User(authenticate(parts, platform, false).await?.sub))
    }
}

impl FromRequestParts<Arc<Platform>> for PayingUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        Ok(PayingUser(authenticate(parts, platform, true).await?.sub))
    }
}

impl FromRequestParts<Arc<Platform>> for TokenHolder {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        Ok(TokenHolder(verify(parts, platform)?))
    }
}

impl FromRequestParts<Arc<Platform>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Session(authenticate(parts, platform, true).await?))
    }
}

/// A request the core signed (method, path, timestamp, body; no user), fresh by the signature's
/// window: the body, verified.
#[derive(Debug, Clone)]
pub struct SignedByCore(pub Bytes);

impl FromRequest<Arc<Platform>> for SignedByCore {
    type Rejection = ApiError;

    async fn from_request(request: Request, platform: &Arc<Platform>) -> Result<Self, ApiError> {
        use nene_domain::signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedParts};
        let invalid = || ApiError::new(ErrorCode::SignatureInvalid);
        let (parts, body) = request.into_parts();
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let timestamp = header(HEADER_TIMESTAMP)
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(invalid)?;
        let signature = header(HEADER_SIGNATURE).ok_or_else(invalid)?;
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), platform)
            .await
            .map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
        platform
            .config
            .signing_secret
            .verify(
                &SignedParts {
                    method: parts.method.as_str(),
                    path_and_query: parts.uri.path(),
                    timestamp_unix_seconds: timestamp,
                    user: "",
                    body: &body,
                },
                signature,
                platform.host.now_unix_seconds(),
            )
            .map_err(|_| invalid())?;
        Ok(SignedByCore(body))
    }
}

//! Sign-in and the account (docs/api.md, "Sign-in and tokens"). The core keeps login states, users
//! and refresh families and talks to the providers; the edge mints the short-lived access tokens,
//! whose `jti` is `{refresh family}.{random}` so that revoking a family revokes its access tokens.
//!
//! A login is bound to the client that starts it (PKCE, `nene_domain::pkce`): `start` takes the
//! client's S256 `code_challenge`, and `callback` forwards the client's `code_verifier`, which the
//! core checks after spending the state and before calling the provider. The login steps are rate
//! limited per client address, as the host reports it (`client_address`).

use axum::{
    Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use bytes::Bytes;
use nene_domain::{
    ErrorCode, access_token::ACCESS_TOKEN_TTL_SECONDS, internal_api, pkce::CodeChallenge,
};
use serde::Deserialize;

use crate::{
    auth::{Session, User},
    client_address::ClientIp,
    core_client::{Core, Forwarded, json_body},
    error::{ApiError, ApiJson},
    platform::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/{provider}/start", get(start))
        .route("/v1/auth/{provider}/callback", post(callback))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me", get(me).patch(change_me))
        .route(
            "/v1/me/devices/{device_id}",
            put(put_device).delete(delete_device),
        )
}

/// Longest provider name and device id in a path: ours are short; the bound keeps junk out.
const PATH_SEGMENT_LEN_MAX: usize = 128;

fn segment(raw: &str) -> Result<&str, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= PATH_SEGMENT_LEN_MAX
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::new(ErrorCode::NotFound))
    }
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    redirect_uri: String,
    code_challenge: String,
    code_challenge_method: String,
}

/// `GET /v1/auth/{provider}/start?redirect_uri=&code_challenge=&code_challenge_method=S256` → 302
/// to the provider. A missing parameter is a 400 naming it; a challenge method other than `S256`
/// (`plain` included) or a challenge that is not an S256 digest is a 422 naming it.
async fn start(
    core: Core,
    Path(provider): Path<String>,
    query: Result<Query<StartQuery>, QueryRejection>,
    ClientIp(client_ip): ClientIp,
) -> Result<Response, ApiError> {
    let provider = segment(&provider)?;
    // serde's message names the missing or unreadable parameter.
    let Query(query) = query.map_err(|rejection| {
        ApiError::with_message(ErrorCode::BadRequest, rejection.body_text())
    })?;
    let challenge =
        CodeChallenge::parse_with_method(&query.code_challenge_method, &query.code_challenge)
            .map_err(|error| {
                ApiError::with_message(ErrorCode::ValidationFailed, error.to_string())
            })?;
    let body = internal_api::auth::StartBody {
        redirect_uri: query.redirect_uri,
        code_challenge: challenge.as_base64url(),
        client_ip,
    };
    let call = internal_api::AUTH_START.call(&[provider]);
    let started: internal_api::auth::Started = core.json(call, None, json_body(&body)?).await?;
    let location = HeaderValue::from_str(&started.authorize_url)
        .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A new access token for `user` in refresh family `family`.
fn mint(state: &AppState, user: &str, family: &str) -> Result<String, ApiError> {
    let jti = format!("{family}.{}", state.host.random_id());
    state
        .config
        .token_keys
        .issue(user, &jti, state.host.now_unix_seconds())
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

#[derive(Debug, Deserialize)]
struct CallbackBody {
    code: String,
    state: String,
    /// Forwarded as sent, absent included: the core spends the state first and then refuses a
    /// missing or wrong verifier, so a callback without one cannot be retried with the same state.
    #[serde(default)]
    code_verifier: Option<String>,
}

/// `POST /v1/auth/{provider}/callback {code, state, code_verifier}` → the token pair and the user;
/// `401 LOGIN_STATE_INVALID` when the verifier is missing or does not answer the challenge the
/// login started with.
async fn callback(
    State(state): State<AppState>,
    core: Core,
    Path(provider): Path<String>,
    ClientIp(client_ip): ClientIp,
    ApiJson(body): ApiJson<CallbackBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let provider = segment(&provider)?;
    let request = internal_api::auth::CallbackBody {
        code: body.code,
        state: body.state,
        code_verifier: body.code_verifier,
        client_ip,
    };
    let call = internal_api::AUTH_CALLBACK.call(&[provider]);
    let session: internal_api::auth::Session = core.json(call, None, json_body(&request)?).await?;
    if session.user.id.is_empty() || session.family.is_empty() {
        return Err(ApiError::new(ErrorCode::Internal));
    }
    Ok(axum::Json(serde_json::json!({
        "access_token": mint(&state, &session.user.id, &session.family)?,
        "refresh_token": session.refresh_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_SECONDS,
        "user": session.user,
    })))
}

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/auth/refresh {refresh_token}` → a new pair; a reused token revokes its family.
async fn refresh(
    State(state): State<AppState>,
    core: Core,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let request = internal_api::auth::RefreshBody {
        refresh_token: body.refresh_token,
    };
    let call = internal_api::AUTH_REFRESH.call(&[]);
    let rotated: internal_api::auth::Rotated = core.json(call, None, json_body(&request)?).await?;
    Ok(axum::Json(serde_json::json!({
        "access_token": mint(&state, &rotated.user_id, &rotated.family)?,
        "refresh_token": rotated.refresh_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_SECONDS,
    })))
}

/// `POST /v1/auth/logout` → 204; this access token and its refresh family stop working.
async fn logout(core: Core, Session(claims): Session) -> Result<StatusCode, ApiError> {
    let request = internal_api::auth::LogoutBody {
        jti: claims.jti.clone(),
        expires_at: claims.exp,
    };
    let call = internal_api::AUTH_LOGOUT.call(&[]);
    // A 204: nothing to read.
    let _: serde::de::IgnoredAny = core
        .json(call, Some(&claims.sub), json_body(&request)?)
        .await?;
    crate::auth::forget_family(&claims.jti);
    Ok(StatusCode::NO_CONTENT)
}

async fn me(core: Core, User(user): User) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let me = core
        .json(internal_api::ME.call(&[]), Some(&user), Bytes::new())
        .await?;
    Ok(axum::Json(me))
}

async fn change_me(
    core: Core,
    User(user): User,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let me = core
        .json(
            internal_api::ME_CHANGE.call(&[]),
            Some(&user),
            json_body(&body)?,
        )
        .await?;
    Ok(axum::Json(me))
}

async fn put_device(
    core: Core,
    User(user): User,
    Path(device_id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::DEVICE_PUT.call(&[segment(&device_id)?]);
    core.forward(call, Some(&user), json_body(&body)?).await
}

async fn delete_device(
    core: Core,
    User(user): User,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let call = internal_api::DEVICE_DELETE.call(&[segment(&device_id)?]);
    let _: serde_json::Value = core.json(call, Some(&user), Bytes::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

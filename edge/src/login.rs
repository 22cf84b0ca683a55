//! Sign-in and the account (API.md "Auth and account"). The core keeps login states, users and
//! refresh families and talks to the providers; the edge mints the short-lived access tokens, whose
//! `jti` is `{refresh family}.{random}` so that revoking a family revokes its access tokens.

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use bytes::Bytes;
use nene_domain::{ErrorCode, access_token::ACCESS_TOKEN_TTL_SECONDS};
use serde::Deserialize;

use crate::{
    auth::{Session, User, client_ip},
    core_client,
    error::{ApiError, ApiJson},
    router::{AppState, RequestId},
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

fn json_bytes(value: &serde_json::Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    redirect_uri: String,
}

/// `GET /v1/auth/{provider}/start?redirect_uri=` → 302 to the provider.
async fn start(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    let provider = segment(&provider)?;
    let body = serde_json::json!({
        "redirect_uri": query.redirect_uri,
        "client_ip": client_ip(&headers),
    });
    let started: serde_json::Value = core_client::call_json(
        &state,
        http::Method::POST,
        &format!("/internal/v1/auth/{provider}/start"),
        None,
        json_bytes(&body)?,
        &request_id,
    )
    .await?;
    let location = started["authorize_url"]
        .as_str()
        .and_then(|url| HeaderValue::from_str(url).ok())
        .ok_or(ApiError::new(ErrorCode::Internal))?;
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
}

/// `POST /v1/auth/{provider}/callback {code, state}` → the token pair and the user.
async fn callback(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    Path(provider): Path<String>,
    headers: http::HeaderMap,
    ApiJson(body): ApiJson<CallbackBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let provider = segment(&provider)?;
    let request = serde_json::json!({
        "code": body.code,
        "state": body.state,
        "client_ip": client_ip(&headers),
    });
    let session: serde_json::Value = core_client::call_json(
        &state,
        http::Method::POST,
        &format!("/internal/v1/auth/{provider}/callback"),
        None,
        json_bytes(&request)?,
        &request_id,
    )
    .await?;
    let user = session["user"]["id"].as_str().unwrap_or_default();
    let family = session["family"].as_str().unwrap_or_default();
    if user.is_empty() || family.is_empty() {
        return Err(ApiError::new(ErrorCode::Internal));
    }
    Ok(axum::Json(serde_json::json!({
        "access_token": mint(&state, user, family)?,
        "refresh_token": session["refresh_token"],
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_SECONDS,
        "user": session["user"],
    })))
}

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/auth/refresh {refresh_token}` → a new pair; a reused token revokes its family.
async fn refresh(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let request = serde_json::json!({ "refresh_token": body.refresh_token });
    let rotated: serde_json::Value = core_client::call_json(
        &state,
        http::Method::POST,
        "/internal/v1/auth/refresh",
        None,
        json_bytes(&request)?,
        &request_id,
    )
    .await?;
    let user = rotated["user_id"].as_str().unwrap_or_default();
    let family = rotated["family"].as_str().unwrap_or_default();
    Ok(axum::Json(serde_json::json!({
        "access_token": mint(&state, user, family)?,
        "refresh_token": rotated["refresh_token"],
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_SECONDS,
    })))
}

/// `POST /v1/auth/logout` → 204; this access token and its refresh family stop working.
async fn logout(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    Session(claims): Session,
) -> Result<StatusCode, ApiError> {
    let request = serde_json::json!({ "jti": claims.jti, "expires_at": claims.exp });
    core_client::call_json_with_status::<serde_json::Value>(
        &state,
        http::Method::POST,
        "/internal/v1/auth/logout",
        Some(&claims.sub),
        json_bytes(&request)?,
        &request_id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(
        core_client::call_json(
            &state,
            http::Method::GET,
            "/internal/v1/me",
            Some(&user),
            Bytes::new(),
            &request_id,
        )
        .await?,
    ))
}

async fn change_me(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(
        core_client::call_json(
            &state,
            http::Method::PATCH,
            "/internal/v1/me",
            Some(&user),
            json_bytes(&body)?,
            &request_id,
        )
        .await?,
    ))
}

async fn put_device(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(device_id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let device_id = segment(&device_id)?;
    let (status, device) = core_client::call_json_with_status(
        &state,
        http::Method::PUT,
        &format!("/internal/v1/me/devices/{device_id}"),
        Some(&user),
        json_bytes(&body)?,
        &request_id,
    )
    .await?;
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(device),
    ))
}

async fn delete_device(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device_id = segment(&device_id)?;
    core_client::call_json_with_status::<serde_json::Value>(
        &state,
        http::Method::DELETE,
        &format!("/internal/v1/me/devices/{device_id}"),
        Some(&user),
        Bytes::new(),
        &request_id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

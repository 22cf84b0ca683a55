//! Sign-in's internal HTTP API. The edge terminates the public routes, mints access tokens, and
//! calls these: login start and callback, refresh, logout, the revocation check, the profile and
//! push devices.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use nene_domain::{
    internal_api::{
        self as api,
        auth::{
            CallbackBody, LogoutBody, RefreshBody, Revoked, RevokedBody, Rotated, Session,
            StartBody, Started,
        },
    },
    pkce::CodeChallenge,
};

use super::{CoreJson, Mounted, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    auth::{
        self, AuthError,
        users::{self, Device, Me, MeChange},
    },
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::AUTH_START, start)
        .at(api::AUTH_CALLBACK, callback)
        .at(api::AUTH_REFRESH, refresh)
        .at(api::AUTH_LOGOUT, logout)
        .at(api::AUTH_REVOKED, revoked)
        .at(api::ME, me)
        .at(api::ME_CHANGE, change_me)
        .at(api::DEVICE_PUT, put_device)
        .at(api::DEVICE_DELETE, delete_device)
}

impl From<AuthError> for CoreApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Database(error) => CoreApiError::Database(error),
            other => CoreApiError::Client(other.code()),
        }
    }
}

async fn start(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    CoreJson(body): CoreJson<StartBody>,
) -> Result<Json<Started>, CoreApiError> {
    let challenge =
        CodeChallenge::parse_s256(&body.code_challenge).map_err(AuthError::CodeChallenge)?;
    let url = auth::start(
        &state.auth,
        &provider,
        &body.redirect_uri,
        &challenge,
        &body.client_ip,
    )
    .await?;
    Ok(Json(Started { authorize_url: url }))
}

async fn callback(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    CoreJson(body): CoreJson<CallbackBody>,
) -> Result<Json<Session>, CoreApiError> {
    Ok(Json(
        auth::callback(
            &state.auth,
            &provider,
            &body.code,
            &body.state,
            body.code_verifier.as_deref(),
            &body.client_ip,
        )
        .await?,
    ))
}

async fn refresh(
    State(state): State<Arc<AppState>>,
    CoreJson(body): CoreJson<RefreshBody>,
) -> Result<Json<Rotated>, CoreApiError> {
    Ok(Json(auth::refresh(&state.db, &body.refresh_token).await?))
}

async fn logout(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreJson(body): CoreJson<LogoutBody>,
) -> Result<StatusCode, CoreApiError> {
    auth::logout(&state.db, &user, &body.jti, body.expires_at).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoked(
    State(state): State<Arc<AppState>>,
    CoreJson(body): CoreJson<RevokedBody>,
) -> Result<Json<Revoked>, CoreApiError> {
    let revoked = auth::is_revoked(&state.db, &body.jti).await?;
    Ok(Json(Revoked { revoked }))
}

async fn me(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
) -> Result<Json<Me>, CoreApiError> {
    Ok(Json(users::me(&state.db, &user).await?))
}

async fn change_me(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreJson(change): CoreJson<MeChange>,
) -> Result<Json<Me>, CoreApiError> {
    Ok(Json(users::change_me(&state.db, &user, &change).await?))
}

async fn put_device(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    Path(device_id): Path<String>,
    CoreJson(device): CoreJson<Device>,
) -> Result<(StatusCode, Json<Device>), CoreApiError> {
    let created = users::put_device(&state.db, &user, &device_id, &device).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device)))
}

async fn delete_device(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    Path(device_id): Path<String>,
) -> Result<StatusCode, CoreApiError> {
    users::delete_device(&state.db, &user, &device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

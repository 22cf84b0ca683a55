//! The challenges' internal HTTP API: creation (enough to test joins; issue 7 owns the rest),
//! detail with live counts, and the join — correct on its own, for the Spin edge and for the
//! `ChallengeRoom` alike. The joining user is the one the edge's signature vouches for.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};

use super::{CoreJson, error::CoreApiError, signature::Caller};
use crate::{
    AppState,
    challenges::{self, Challenge, JoinError, NewChallenge, Seat},
};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/v1/challenges", post(create))
        .route("/internal/v1/challenges/{id}", get(detail))
        .route("/internal/v1/challenges/{id}/join", post(join))
}

impl From<JoinError> for CoreApiError {
    fn from(error: JoinError) -> Self {
        match error {
            JoinError::Database(error) => CoreApiError::Database(error),
            JoinError::Ledger(error) => CoreApiError::Ledger(error),
            other => CoreApiError::Client(other.code()),
        }
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    CoreJson(new): CoreJson<NewChallenge>,
) -> Result<(StatusCode, Json<Challenge>), CoreApiError> {
    Ok((
        StatusCode::CREATED,
        Json(challenges::create(&state.db, &new).await?),
    ))
}

async fn detail(
    State(state): State<Arc<AppState>>,
    Path(id): Path<uuid::Uuid>,
) -> Result<Json<Challenge>, CoreApiError> {
    Ok(Json(challenges::get(&state.db, id).await?))
}

async fn join(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<uuid::Uuid>,
) -> Result<(StatusCode, Json<Seat>), CoreApiError> {
    let user = caller
        .user
        .ok_or(CoreApiError::Client(nene_domain::ErrorCode::Unauthorized))?;
    if state.payments.faults.take_join_failure() {
        return Err(CoreApiError::Client(
            nene_domain::ErrorCode::CoreUnavailable,
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(challenges::join(&state.db, id, &user).await?),
    ))
}

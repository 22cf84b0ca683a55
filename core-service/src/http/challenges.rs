//! The challenges' internal HTTP API: creation with validated rules, browsing, detail, the join
//! (correct on its own, for the Spin edge and the `ChallengeRoom` alike), proofs with reports,
//! reviews and appeals, the reviewers' queue, a participant's standing, and (dev mode only) the
//! test clock. The acting user is the one the edge's signature vouches for.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{RawQuery, State},
    http::StatusCode,
};
use nene_domain::{ErrorCode, internal_api as api};
use serde::Deserialize;

use super::{
    CoreJson, CorePath, CoreQuery, Mounted,
    error::CoreApiError,
    signature::{Caller, SignedIn},
};
use crate::{
    AppState,
    challenges::{self, Browse, Challenge, JoinError, NewChallenge, NewChallengeWire, Page, Seat},
    proofs::{self, MyStanding, NewProof, Proof, ProofError, QueuePage, Reason, Review},
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::CHALLENGE_CREATE, create)
        .at(api::CHALLENGE_BROWSE, browse)
        .at(api::CHALLENGE_DETAIL, detail)
        .at(api::CHALLENGE_JOIN, join)
        .at(api::PROOF_SUBMIT, submit_proof)
        .at(api::PROOF_LIST, list_proofs)
        .at(api::CHALLENGE_STANDING, my_standing)
        .at(api::PROOF_REPORT, report)
        .at(api::PROOF_APPEAL, appeal)
        .at(api::PROOF_REVIEW, review)
        .at(api::PROOF_REVIEW_QUEUE, review_queue)
        // Dev only (skipped outside dev mode).
        .at(api::DEV_CLOCK, advance_clock)
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

impl From<ProofError> for CoreApiError {
    fn from(error: ProofError) -> Self {
        match error {
            ProofError::Database(error) => CoreApiError::Database(error),
            other => CoreApiError::Client(other.code()),
        }
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    CoreJson(wire): CoreJson<NewChallengeWire>,
) -> Result<(StatusCode, Json<Challenge>), CoreApiError> {
    let new = NewChallenge::parse(&wire)?;
    Ok((
        StatusCode::CREATED,
        Json(challenges::create(&state.db, caller.user.as_deref(), &new).await?),
    ))
}

async fn browse(
    State(state): State<Arc<AppState>>,
    CoreQuery(browse): CoreQuery<Browse>,
) -> Result<Json<Page>, CoreApiError> {
    Ok(Json(challenges::list(&state.db, &browse).await?))
}

async fn detail(
    State(state): State<Arc<AppState>>,
    CorePath(id): CorePath<uuid::Uuid>,
) -> Result<Json<Challenge>, CoreApiError> {
    Ok(Json(challenges::get(&state.db, id).await?))
}

/// A join (`api::CHALLENGE_JOIN`), with its optional [`api::JoinBody`].
async fn join(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Seat>), CoreApiError> {
    let body: api::JoinBody = if body.is_empty() {
        api::JoinBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| CoreApiError::Client(ErrorCode::BadRequest))?
    };
    if let Some(session) = &body.session {
        if session.is_empty() || session.len() > api::SESSION_ID_LEN_MAX {
            return Err(CoreApiError::Client(ErrorCode::BadRequest));
        }
        if crate::auth::is_revoked(&state.db, session).await? {
            return Err(CoreApiError::Client(ErrorCode::Unauthorized));
        }
    }
    if state.payments.faults.take_join_failure() {
        return Err(CoreApiError::Client(ErrorCode::CoreUnavailable));
    }
    Ok((
        StatusCode::CREATED,
        Json(challenges::join(&state.db, id, &user).await?),
    ))
}

async fn submit_proof(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
    CoreJson(proof): CoreJson<NewProof>,
) -> Result<(StatusCode, Json<Proof>), CoreApiError> {
    let proof = proofs::submit(&state.db, id, &user, &proof).await?;
    Ok((StatusCode::CREATED, Json(proof)))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_proofs(
    State(state): State<Arc<AppState>>,
    CorePath(id): CorePath<uuid::Uuid>,
    CoreQuery(page): CoreQuery<PageQuery>,
) -> Result<Json<serde_json::Value>, CoreApiError> {
    let (items, next_cursor) =
        proofs::list(&state.db, id, page.cursor.as_deref(), page.limit).await?;
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": next_cursor }),
    ))
}

async fn my_standing(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
) -> Result<Json<MyStanding>, CoreApiError> {
    Ok(Json(proofs::my_standing(&state.db, id, &user).await?))
}

async fn report(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
    CoreJson(reason): CoreJson<Reason>,
) -> Result<StatusCode, CoreApiError> {
    proofs::report(&state.db, id, &user, &reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn appeal(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
    CoreJson(reason): CoreJson<Reason>,
) -> Result<StatusCode, CoreApiError> {
    proofs::appeal(&state.db, id, &user, &reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn review(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<uuid::Uuid>,
    CoreJson(decision): CoreJson<Review>,
) -> Result<StatusCode, CoreApiError> {
    proofs::review(&state.db, &state.reviewers, id, &user, &decision).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// The queue's query, parsed: a cursor this API handed out (else 400) and a limit of 1 to 100
/// (else 422), as every list.
fn parse_queue_query(raw: Option<&str>) -> Result<(Option<uuid::Uuid>, i64), CoreApiError> {
    let query: QueueQuery = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| CoreApiError::Client(ErrorCode::BadRequest))?;
    let cursor = match query.cursor.filter(|cursor| !cursor.is_empty()) {
        None => None,
        Some(cursor) => Some(
            proofs::parse_queue_cursor(&cursor)
                .ok_or(CoreApiError::Client(ErrorCode::BadRequest))?,
        ),
    };
    let limit = match query.limit.filter(|limit| !limit.is_empty()) {
        None => proofs::QUEUE_PAGE_DEFAULT,
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=proofs::PROOF_PAGE_MAX).contains(limit))
            .ok_or(CoreApiError::Client(ErrorCode::ValidationFailed))?,
    };
    Ok((cursor, limit))
}

/// `GET /internal/v1/admin/proofs/queue?cursor=&limit=`: open reports and appeals, oldest first,
/// for reviewers only (403 before the query is even read).
async fn review_queue(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Json<QueuePage>, CoreApiError> {
    if !proofs::is_reviewer(&state.reviewers, &user) {
        return Err(ProofError::NotAReviewer.into());
    }
    let (cursor, limit) = parse_queue_query(query.as_deref())?;
    Ok(Json(
        proofs::review_queue(&state.db, &state.reviewers, &user, cursor, limit).await?,
    ))
}

/// The longest step of the test clock at once: a whole challenge (8 weeks, reviews) and more.
const CLOCK_ADVANCE_SECONDS_MAX: i64 = 366 * 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: i64,
}

/// `POST /internal/v1/dev/clock {advance_seconds}` (dev mode only): moves the platform's clock
/// forward for every component that reads it, then runs the lifecycle once so the stack reacts
/// at once.
async fn advance_clock(
    State(state): State<Arc<AppState>>,
    CoreJson(advance): CoreJson<Advance>,
) -> Result<Json<serde_json::Value>, CoreApiError> {
    if !(1..=CLOCK_ADVANCE_SECONDS_MAX).contains(&advance.advance_seconds) {
        return Err(CoreApiError::Client(ErrorCode::ValidationFailed));
    }
    let offset: i64 = sqlx::query_scalar(
        "UPDATE test_clock SET offset_seconds = offset_seconds + $1 WHERE id \
         RETURNING offset_seconds",
    )
    .bind(advance.advance_seconds)
    .fetch_one(&state.db)
    .await?;
    if let Err(error) = crate::lifecycle::run_once_with(&state.db, state.room_pusher.as_ref()).await
    {
        tracing::error!(%error, "lifecycle pass after a clock advance failed");
    }
    let now = crate::clock::platform_now_unix_seconds(&state.db, state.wall_clock.as_ref()).await?;
    Ok(Json(serde_json::json!({
        "offset_seconds": offset,
        "now": nene_domain::time::format_rfc3339(now),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> Option<ErrorCode> {
        match parse_queue_query(Some(raw)) {
            Err(CoreApiError::Client(code)) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn the_queues_limit_out_of_range_is_422_and_a_foreign_cursor_or_parameter_is_400() {
        assert_eq!(code("limit=101"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("limit=0"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("limit=ten"), Some(ErrorCode::ValidationFailed));
        assert_eq!(code("cursor=abc"), Some(ErrorCode::BadRequest));
        assert_eq!(code("challenge=1"), Some(ErrorCode::BadRequest));
        assert!(parse_queue_query(Some("limit=100&cursor=")).is_ok());
        assert!(parse_queue_query(Some("cursor=0190f5a27c1e7a4b9c3d1e2f3a4b5c6d")).is_ok());
        assert!(parse_queue_query(None).is_ok());
    }
}

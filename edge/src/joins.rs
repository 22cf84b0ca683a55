//! Joining a challenge, and the core's push that closes a room.
//!
//! On Workers a join goes through the user's `Wallet` (one money-moving request at a time,
//! Idempotency-Key replays) and the challenge's `ChallengeRoom` (duplicates, full and closed
//! answered without the core; the rest serialized); on Spin straight to the core. On Workers a join
//! to a sealed room by someone not on its roster is refused at once from the isolate's cache
//! (`crate::rosters`).

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    routing::post,
};
use bytes::Bytes;
use nene_domain::{ChallengeId, ErrorCode, internal_api};
use nene_durable::protocol::{RoomClosed, RoomRoute, RosterAnswer, WalletJoin, WalletRoute};

use crate::{
    auth::{SignedByCore, TokenHolder},
    core_client::{Core, json_body},
    error::ApiError,
    input::{challenge_id, idempotency_key},
    objects::call_object,
    platform::{AppState, ObjectName, Rooms},
    rosters::{self, Lookup},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/challenges/{challenge_id}/join", post(join_challenge))
        .route(internal_api::EDGE_ROOM_CLOSE, post(close_room))
}

/// `POST /v1/challenges/{id}/join`. The token's revocation is not asked here: the token's id
/// travels with the join, and the core refuses a revoked one where the money would move, so a
/// join the room refuses alone never waits on the core.
async fn join_challenge(
    State(state): State<AppState>,
    core: Core,
    TokenHolder(claims): TokenHolder,
    Path(challenge): Path<String>,
    headers: http::HeaderMap,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let challenge = challenge_id(&challenge)?;
    let idempotency_key = idempotency_key(&headers)?;
    let user = claims.sub.clone();
    let Some(objects) = &state.rooms else {
        let body = json_body(&internal_api::JoinBody {
            session: Some(claims.jti),
        })?;
        let call = internal_api::CHALLENGE_JOIN.call(&[challenge.as_str()]);
        let joined = core.json(call, Some(&user), body).await?;
        return Ok((StatusCode::CREATED, axum::Json(joined)));
    };
    refuse_from_roster(&state, objects.as_ref(), &challenge, &user).await?;
    let body = json_body(&WalletJoin {
        challenge: challenge.clone(),
        user: user.clone(),
        idempotency_key,
        session: Some(claims.jti),
    })?;
    let route = WalletRoute::Join;
    match call_object(
        objects.as_ref(),
        ObjectName::Wallet(&user),
        route.method(),
        route.path(),
        body,
    )
    .await
    {
        Ok(joined) => Ok((StatusCode::CREATED, axum::Json(joined))),
        Err(error) => {
            if matches!(
                error.code,
                ErrorCode::ChallengeFull | ErrorCode::ChallengeNotRecruiting
            ) {
                ask_roster(&state, objects.as_ref(), &challenge).await;
            }
            Err(error)
        }
    }
}

/// Refuses the join if the isolate holds a fresh sealed roster of the room without `user`; asks
/// the room again (one request per room at a time) when the roster it holds has aged.
async fn refuse_from_roster(
    state: &AppState,
    objects: &dyn Rooms,
    challenge: &ChallengeId,
    user: &str,
) -> Result<(), ApiError> {
    let now = state.host.now_unix_seconds();
    let (lookup, aged) = {
        let cache = rosters::isolate_cache()
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal))?;
        let lookup = cache.lookup(challenge.as_str(), user, now);
        (
            lookup,
            lookup == Lookup::Forward && cache.knows_sealed(challenge.as_str()),
        )
    };
    let lookup = if aged {
        ask_roster(state, objects, challenge).await;
        rosters::isolate_cache()
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal))?
            .lookup(challenge.as_str(), user, now)
    } else {
        lookup
    };
    match lookup {
        Lookup::Refuse(code) => Err(ApiError::new(code)),
        Lookup::Forward => Ok(()),
    }
}

/// Asks the room for its roster unless another request of this isolate just did, and keeps the
/// answer. A failed call leaves what was known: an unsealed room's joins keep going the whole way,
/// and an aged sealed roster keeps answering (a sealed room never reopens; at most its FULL has
/// become NOT_RECRUITING) until a later ask, a second on, gets through.
async fn ask_roster(state: &AppState, objects: &dyn Rooms, challenge: &ChallengeId) {
    let now = state.host.now_unix_seconds();
    let ours = rosters::isolate_cache()
        .lock()
        .is_ok_and(|mut cache| cache.should_ask(challenge.as_str(), now));
    if !ours {
        return;
    }
    let route = RoomRoute::Roster;
    let answer = call_object(
        objects,
        ObjectName::Room(challenge),
        route.method(),
        route.path(),
        Bytes::new(),
    )
    .await
    .ok()
    .and_then(|value| serde_json::from_value::<RosterAnswer>(value).ok());
    if let Some(answer) = answer
        && let Ok(mut cache) = rosters::isolate_cache().lock()
    {
        cache.learn(challenge.as_str(), answer.sealed, now);
    }
}

/// `POST /internal/rooms/{id}/close` (`internal_api::EDGE_ROOM_CLOSE`): the core's scheduler
/// closed recruitment; the challenge's room stops admitting at once instead of learning it from
/// the core's next refusal. Only the core can call it ([`SignedByCore`]).
async fn close_room(
    State(state): State<AppState>,
    Path(challenge): Path<String>,
    SignedByCore(_): SignedByCore,
) -> Result<axum::Json<RoomClosed>, ApiError> {
    let challenge = challenge_id(&challenge)?;
    let rooms = state
        .rooms
        .as_ref()
        .ok_or(ApiError::new(ErrorCode::NotFound))?;
    let route = RoomRoute::Close;
    let closed = call_object(
        rooms.as_ref(),
        ObjectName::Room(&challenge),
        route.method(),
        route.path(),
        Bytes::new(),
    )
    .await?;
    serde_json::from_value(closed)
        .map(axum::Json)
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

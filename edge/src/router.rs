//! The one router of the public API, shared by every host.

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Path, RawQuery, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use nene_domain::{
    ChallengeId, ErrorCode,
    health::{CoreHealth, PartStatus, PlatformHealth},
    internal_api,
    limits::{CORE_TIMEOUT_MS, REQUEST_BODY_BYTES_MAX},
};
use nene_durable::{
    join::RosterAnswer,
    room::{PATH_PROBE, ProbeAdd, ProbeValue},
};

use crate::{
    auth::{TokenHolder, User},
    config::EdgeConfig,
    core_client::{Core, HEADER_REQUEST_ID, json_body},
    error::{ApiError, ApiJson, render_pending_error},
    platform::{ObjectName, OutboundRequest, Platform},
    rosters::{self, Lookup},
};

/// The request id of the current request, set by the request-context middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub(crate) type AppState = Arc<Platform>;

/// What a host serves: the router over the platform `platform` builds from a valid
/// configuration read through `lookup`; or, when the configuration is invalid, a router that
/// answers every request 503 ([`crate::error::misconfigured_response`]) after `log_error` has
/// been given the reason, which names the variable. A Worker or a Spin component has no start-up
/// to fail, so this is how the edge refuses to run wrong: it never serves with a bad
/// configuration.
pub fn configured_router(
    lookup: impl Fn(&str) -> Option<String>,
    platform: impl FnOnce(EdgeConfig) -> Platform,
    log_error: impl FnOnce(&str),
) -> Router {
    match EdgeConfig::from_lookup(lookup) {
        Ok(config) => router(platform(config)),
        Err(error) => {
            log_error(&format!("edge configuration is invalid: {error}"));
            Router::new().fallback(|| async { crate::error::misconfigured_response() })
        }
    }
}

/// Builds the router over `platform`.
pub fn router(platform: Platform) -> Router {
    let state: AppState = Arc::new(platform);
    let mut routes = Router::new()
        .route("/v1/health", get(health))
        .route(
            "/v1/challenges",
            post(create_challenge).get(crate::challenges::browse),
        )
        .route("/v1/challenges/{challenge_id}", get(challenge_detail))
        .route("/v1/challenges/{challenge_id}/join", post(join_challenge))
        .route("/v1/wallet", get(wallet))
        .route("/v1/wallet/entries", get(wallet_entries))
        .merge(crate::payments::routes())
        .merge(crate::login::routes())
        .merge(crate::notifications::routes())
        .merge(crate::challenges::routes(state.config.dev_mode));
    routes = routes.route(PATH_ROOM_CLOSE, post(close_room));
    if state.config.dev_mode {
        routes = routes.route(
            "/v1/dev/rooms/{challenge_id}/probe",
            get(read_room_probe).post(add_to_room_probe),
        );
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(middleware::from_fn(crate::input::refuse_unstorable_input))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            request_context,
        ))
        .with_state(state)
}

/// Gives every request an id, and renders every error with it.
async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = state.host.random_id();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let mut response = next.run(request).await;
    render_pending_error(&mut response, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, value);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed)
}

/// `GET /v1/health`: the status of every part. 200 when the edge, the core and the database are
/// up; 503 with the same body when one is down; 503 `CORE_UNAVAILABLE` when the core is unreachable.
async fn health(State(state): State<AppState>, core: Core) -> Result<Response, ApiError> {
    let core: CoreHealth = core
        .json(internal_api::HEALTH.call(&[]), None, Bytes::new())
        .await?;
    let report = PlatformHealth::from_core(state.host.runtime(), &core);
    let status = if report.status == PartStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(report)).into_response())
}

/// Length of a UUID's hyphenated text form.
const UUID_TEXT_LEN: usize = 36;

/// A path segment that must name something the core identifies by UUID (a challenge, a proof):
/// the hyphenated form (`8-4-4-4-12` hex digits), else a 404 before anything is asked. Without
/// this, a malformed id reached the core, whose refusal to parse it came back as a 500 (detail)
/// or, through the room's read of its rules, a 503 (join).
///
/// # Errors
/// `NOT_FOUND` for anything else.
pub(crate) fn uuid_segment(raw: &str) -> Result<&str, ApiError> {
    let well_formed = raw.len() == UUID_TEXT_LEN
        && raw.bytes().enumerate().all(|(at, b)| match at {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(raw)
    } else {
        Err(ApiError::new(ErrorCode::NotFound))
    }
}

/// A challenge's id in a public path: a UUID (see [`uuid_segment`]).
fn parse_challenge_id(raw: &str) -> Result<ChallengeId, ApiError> {
    room_name(uuid_segment(raw)?)
}

/// A room's name in a dev probe path: any well-formed object name (the probe is plumbing, not a
/// challenge).
fn room_name(raw: &str) -> Result<ChallengeId, ApiError> {
    ChallengeId::parse(raw).map_err(|_| ApiError::new(ErrorCode::NotFound))
}

/// Sends one call to a challenge's room and decodes its answer.
async fn call_room(
    state: &Platform,
    challenge_id: &ChallengeId,
    method: http::Method,
    path: &str,
    body: Bytes,
) -> Result<ProbeValue, ApiError> {
    let rooms = state
        .rooms
        .as_ref()
        .ok_or(ApiError::new(ErrorCode::NotFound))?;
    let request = OutboundRequest {
        method,
        url: format!("https://room{path}"),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
        timeout_ms: CORE_TIMEOUT_MS,
    };
    let response = rooms
        .send(ObjectName::Room(challenge_id), request)
        .await
        .map_err(|_| ApiError::new(ErrorCode::CoreUnavailable))?;
    match response.status {
        200 => {
            serde_json::from_slice(&response.body).map_err(|_| ApiError::new(ErrorCode::Internal))
        }
        404 => Err(ApiError::new(ErrorCode::NotFound)),
        422 => Err(ApiError::new(ErrorCode::ValidationFailed)),
        _ => Err(ApiError::new(ErrorCode::CoreUnavailable)),
    }
}

/// `GET /v1/dev/rooms/{id}/probe` (dev only): the probe value kept in the room's SQLite.
async fn read_room_probe(
    State(state): State<AppState>,
    Path(challenge_id): Path<String>,
) -> Result<axum::Json<ProbeValue>, ApiError> {
    let challenge_id = room_name(&challenge_id)?;
    call_room(
        &state,
        &challenge_id,
        http::Method::GET,
        PATH_PROBE,
        Bytes::new(),
    )
    .await
    .map(axum::Json)
}

/// `POST /v1/dev/rooms/{id}/probe {"add": n}` (dev only): adds to the probe and returns it.
async fn add_to_room_probe(
    State(state): State<AppState>,
    Path(challenge_id): Path<String>,
    ApiJson(add): ApiJson<ProbeAdd>,
) -> Result<axum::Json<ProbeValue>, ApiError> {
    let challenge_id = room_name(&challenge_id)?;
    let body = json_body(&add)?;
    call_room(&state, &challenge_id, http::Method::POST, PATH_PROBE, body)
        .await
        .map(axum::Json)
}

/// `POST /v1/challenges`: enough of creation to run joins (issue 7 owns the full rules); the
/// core validates the rules and answers 422 outside their bounds.
async fn create_challenge(
    core: Core,
    User(user): User,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let call = internal_api::CHALLENGE_CREATE.call(&[]);
    let created: serde_json::Value = core.json(call, Some(&user), json_body(&body)?).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Decodes a room's answer: its JSON on success, its error code otherwise.
fn room_answer(
    response: &crate::platform::OutboundResponse,
) -> Result<serde_json::Value, ApiError> {
    match response.status {
        200..=299 => {
            serde_json::from_slice(&response.body).map_err(|_| ApiError::new(ErrorCode::Internal))
        }
        400..=499 => Err(serde_json::from_slice::<nene_domain::error::ErrorEnvelope>(
            &response.body,
        )
        .map_or(ApiError::new(ErrorCode::Internal), |envelope| {
            ApiError::new(envelope.error.code)
        })),
        _ => Err(ApiError::new(ErrorCode::CoreUnavailable)),
    }
}

/// Calls a Durable Object and decodes its answer.
async fn call_object(
    objects: &dyn crate::platform::Rooms,
    object: ObjectName<'_>,
    method: http::Method,
    path_and_query: &str,
    body: Bytes,
) -> Result<serde_json::Value, ApiError> {
    let response = objects
        .send(object, room_request(method, path_and_query, body))
        .await
        .map_err(|_| ApiError::new(ErrorCode::CoreUnavailable))?;
    room_answer(&response)
}

fn room_request(method: http::Method, path_and_query: &str, body: Bytes) -> OutboundRequest {
    OutboundRequest {
        method,
        url: format!("https://room{path_and_query}"),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
        // The room may itself wait on the core once (its own bound) before answering.
        timeout_ms: 2 * CORE_TIMEOUT_MS,
    }
}

/// `GET /v1/challenges/{id}`: the challenge, with live counts from its room where the host has
/// rooms (Workers) and from the core otherwise (Spin).
async fn challenge_detail(
    State(state): State<AppState>,
    core: Core,
    User(user): User,
    Path(challenge_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let challenge_id = parse_challenge_id(&challenge_id)?;
    let call = internal_api::CHALLENGE_DETAIL.call(&[challenge_id.as_str()]);
    let mut detail: serde_json::Value = core.json(call, Some(&user), Bytes::new()).await?;
    let live = match &state.rooms {
        Some(rooms) => {
            let path = format!("/counts?challenge={challenge_id}");
            call_object(
                rooms.as_ref(),
                ObjectName::Room(&challenge_id),
                http::Method::GET,
                &path,
                Bytes::new(),
            )
            .await?
        }
        None => serde_json::json!({
            "participants": detail["participants"],
            "capacity": detail["capacity"],
        }),
    };
    let mut live = live;
    // Seats come from the room; the proof rates from the core's proofs, and only under `live`
    // (moved, not copied: a detail has them nowhere else).
    for rate in ["proof_rate_today", "success_rate"] {
        live[rate] = detail
            .as_object_mut()
            .and_then(|fields| fields.remove(rate))
            .unwrap_or(serde_json::Value::Null);
    }
    detail["live"] = live;
    Ok(axum::Json(detail))
}

/// The core's push when recruitment closes (signed by the core, like its own inbound calls).
pub const PATH_ROOM_CLOSE: &str = "/internal/rooms/{challenge_id}/close";

/// `POST /internal/rooms/{id}/close`: the core's scheduler closed recruitment; the challenge's room
/// stops admitting at once instead of learning it from the core's next refusal. Only the core can
/// call it: the request must carry the shared secret's signature, fresh.
async fn close_room(
    State(state): State<AppState>,
    Path(challenge_id): Path<String>,
    headers: http::HeaderMap,
    uri: http::Uri,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    use nene_domain::signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedParts};
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header(HEADER_TIMESTAMP)
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(ApiError::new(ErrorCode::SignatureInvalid))?;
    let signature = header(HEADER_SIGNATURE).ok_or(ApiError::new(ErrorCode::SignatureInvalid))?;
    state
        .config
        .signing_secret
        .verify(
            &SignedParts {
                method: "POST",
                path_and_query: uri.path(),
                timestamp_unix_seconds: timestamp,
                user: "",
                body: &body,
            },
            signature,
            state.host.now_unix_seconds(),
        )
        .map_err(|_| ApiError::new(ErrorCode::SignatureInvalid))?;
    let challenge_id = parse_challenge_id(&challenge_id)?;
    let rooms = state
        .rooms
        .as_ref()
        .ok_or(ApiError::new(ErrorCode::NotFound))?;
    call_object(
        rooms.as_ref(),
        ObjectName::Room(&challenge_id),
        http::Method::POST,
        "/close",
        Bytes::new(),
    )
    .await
    .map(axum::Json)
}

/// Longest Idempotency-Key accepted (docs/api.md, "Idempotency").
const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// The request's `Idempotency-Key`, if any: 1–255 printable ASCII characters.
pub(crate) fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let valid = !key.is_empty()
        && key.len() <= IDEMPOTENCY_KEY_LEN_MAX
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(ApiError::with_message(
            ErrorCode::BadRequest,
            "Idempotency-Key must be 1–255 printable ASCII characters.",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// `POST /v1/challenges/{id}/join`: on Workers through the user's `Wallet` (one money-moving
/// request at a time, Idempotency-Key replays) and the challenge's `ChallengeRoom` (duplicates,
/// full and closed answered without the core; the rest serialized); on Spin straight to the core.
/// On Workers a join to a sealed room by someone not on its roster is refused at once from the
/// isolate's cache (`crate::rosters`). The token's revocation is not asked here: the token's id
/// travels with the join, and the core refuses a revoked one where the money would move, so a
/// join the room refuses alone never waits on the core.
async fn join_challenge(
    State(state): State<AppState>,
    core: Core,
    TokenHolder(claims): TokenHolder,
    Path(challenge_id): Path<String>,
    headers: http::HeaderMap,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let challenge_id = parse_challenge_id(&challenge_id)?;
    let idempotency_key = idempotency_key(&headers)?;
    let user = claims.sub.clone();
    let Some(objects) = &state.rooms else {
        let body = json_body(&serde_json::json!({ "session": claims.jti }))?;
        let call = internal_api::CHALLENGE_JOIN.call(&[challenge_id.as_str()]);
        let joined = core.json(call, Some(&user), body).await?;
        return Ok((StatusCode::CREATED, axum::Json(joined)));
    };
    refuse_from_roster(&state, objects.as_ref(), &challenge_id, &user).await?;
    let body = serde_json::json!({
        "challenge": challenge_id.as_str(),
        "user": user,
        "idempotency_key": idempotency_key,
        "session": claims.jti,
    });
    let body = json_body(&body)?;
    match call_object(
        objects.as_ref(),
        ObjectName::Wallet(&user),
        http::Method::POST,
        "/join",
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
                ask_roster(&state, objects.as_ref(), &challenge_id).await;
            }
            Err(error)
        }
    }
}

/// Refuses the join if the isolate holds a fresh sealed roster of the room without `user`; asks
/// the room again (one request per room at a time) when the roster it holds has aged.
async fn refuse_from_roster(
    state: &AppState,
    objects: &dyn crate::platform::Rooms,
    challenge_id: &ChallengeId,
    user: &str,
) -> Result<(), ApiError> {
    let now = state.host.now_unix_seconds();
    let (lookup, aged) = {
        let cache = rosters::isolate_cache()
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal))?;
        let lookup = cache.lookup(challenge_id.as_str(), user, now);
        (
            lookup,
            lookup == Lookup::Forward && cache.knows_sealed(challenge_id.as_str()),
        )
    };
    let lookup = if aged {
        ask_roster(state, objects, challenge_id).await;
        rosters::isolate_cache()
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal))?
            .lookup(challenge_id.as_str(), user, now)
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
async fn ask_roster(
    state: &AppState,
    objects: &dyn crate::platform::Rooms,
    challenge_id: &ChallengeId,
) {
    let now = state.host.now_unix_seconds();
    let ours = rosters::isolate_cache()
        .lock()
        .is_ok_and(|mut cache| cache.should_ask(challenge_id.as_str(), now));
    if !ours {
        return;
    }
    let answer = call_object(
        objects,
        ObjectName::Room(challenge_id),
        http::Method::GET,
        nene_durable::join::PATH_ROSTER,
        Bytes::new(),
    )
    .await
    .ok()
    .and_then(|value| serde_json::from_value::<RosterAnswer>(value).ok());
    if let Some(answer) = answer
        && let Ok(mut cache) = rosters::isolate_cache().lock()
    {
        cache.learn(challenge_id.as_str(), answer.sealed, now);
    }
}

/// `GET /v1/wallet/entries?cursor=&limit=`: the user's ledger history, newest first, from the
/// core (the ledger is the truth; the `Wallet` object keeps only a balance).
async fn wallet_entries(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let query = crate::paging::core_query(query.as_deref(), crate::paging::SEQUENCE_CURSOR)?;
    let call = internal_api::WALLET_ENTRIES.call(&[]).with_query(&query);
    let page = core.json(call, Some(&user), Bytes::new()).await?;
    Ok(axum::Json(page))
}

/// `GET /v1/wallet`: balance, holds and lots; on Workers through the user's `Wallet`, which never
/// shows a balance older than its own last write.
async fn wallet(
    State(state): State<AppState>,
    core: Core,
    User(user): User,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let balance = match &state.rooms {
        Some(objects) => {
            let path = format!("/balance?user={user}");
            call_object(
                objects.as_ref(),
                ObjectName::Wallet(&user),
                http::Method::GET,
                &path,
                Bytes::new(),
            )
            .await?
        }
        None => {
            core.json(internal_api::WALLET.call(&[]), Some(&user), Bytes::new())
                .await?
        }
    };
    Ok(axum::Json(balance))
}

//! Firebase Cloud Messaging HTTP v1 and the OAuth 2.0 token endpoint its senders use, stateful,
//! with fault injection and a delivery log.
//!
//! Both live under `/fcm`, standing for their real hosts, so that pointing a client at Google is a
//! change of base URL and service account only: `/fcm/token` = `https://oauth2.googleapis.com/
//! token`, `/fcm/v1/…` = `https://fcm.googleapis.com/v1/…`.
//!
//! # Token endpoint (as `oauth2.googleapis.com/token`)
//! - `POST /fcm/token` (form: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&
//!   assertion=<JWT>`) → `{access_token: "ya29.…", expires_in: 3599, token_type: "Bearer"}`.
//!   The assertion is an RS256 JWT with `kid` = the key's `private_key_id` (or no `kid`), signed
//!   by a registered service-account key, claims `{iss: client_email, scope: "… https://www.
//!   googleapis.com/auth/firebase.messaging …", aud, iat, exp}`; `aud` is Google's token URL or
//!   the sandbox's own (`http(s)://<Host>/fcm/token`). Errors are `400 {error,
//!   error_description}`: `invalid_grant` `"Invalid JWT Signature."` (another key, a tampered
//!   token, not RS256), `"Invalid grant: account not found"`, `"Invalid JWT: Token must be a
//!   short-lived token (60 minutes) and in a reasonable timeframe. …"` (expired, `exp − iat >
//!   3600`, `iat` ahead of the clock), `"Invalid JWT: Failed audience check."`; `invalid_scope`
//!   (`"Invalid OAuth scope or ID token audience provided."`, `"Empty or missing scope not
//!   allowed."`); `invalid_request` `"Missing required parameter: …"`;
//!   `unsupported_grant_type`. See [`grant`].
//!
//! # FCM (as `fcm.googleapis.com`, `Authorization: Bearer <access token>`)
//! - `POST /fcm/v1/projects/{project_id}/messages:send` `{validate_only?: bool, message: {token |
//!   topic | condition, notification?, data?, android?, apns?, webpush?, fcm_options?}}` → `200
//!   {"name": "projects/{project_id}/messages/0:<µs>%<hex>"}` (`…/messages/fake_message_id` and
//!   nothing delivered with `validate_only`). Checks and their order are in [`service`], the
//!   message rules in [`message`].
//! - Errors are `{"error": {code, message, status, details: [{"@type": "type.googleapis.com/
//!   google.firebase.fcm.v1.FcmError", errorCode}, …]}}` (see [`error`]): `401 UNAUTHENTICATED`
//!   (no FcmError: a `google.rpc.ErrorInfo` with `CREDENTIALS_MISSING`, `ACCESS_TOKEN_EXPIRED` or
//!   `ACCESS_TOKEN_TYPE_UNSUPPORTED`), `403 PERMISSION_DENIED`/`SENDER_ID_MISMATCH` (the token's
//!   project is not the path's), `400 INVALID_ARGUMENT` (with a `google.rpc.BadRequest` naming
//!   the field), `404 NOT_FOUND`/`UNREGISTERED`, `429 RESOURCE_EXHAUSTED`/`QUOTA_EXCEEDED` with
//!   `Retry-After` (injected, or past 600,000 messages in a minute), `503 UNAVAILABLE`, `500
//!   INTERNAL`, `401 UNAUTHENTICATED`/`THIRD_PARTY_AUTH_ERROR`.
//! - Device tokens are not registered anywhere: any non-empty token is accepted until the control
//!   plane marks it unregistered.
//!
//! # Control plane (not Google's: no auth, JSON, for tests and `./nene up`)
//! Errors are `400 {"error": {code: 400, message, status: "INVALID_ARGUMENT"}}`.
//! - `GET /sandbox/fcm/service-account.json`: the test service account's key file
//!   (`src/fcm/service-account.json`: project `nene-sandbox`, `fcm-sender@nene-sandbox.iam.
//!   gserviceaccount.com`); `GET /sandbox/fcm/unregistered-service-account.json`: the same
//!   account with a key Google does not know. Their `token_uri` is Google's: clients post to
//!   their configured token URL. See [`service_account`].
//! - `POST /sandbox/fcm/faults` `{token?: string (absent: every send), kind: "unregistered" |
//!   "invalid_argument" | "quota_exceeded" | "unavailable" | "internal" | "sender_id_mismatch" |
//!   "third_party_auth_error" | "latency" | "drop_connection", retryAfterSeconds? (quota_exceeded
//!   (default 60), unavailable, internal; ≤ 3600), latencyMs? (latency only, ≤ 120000), count?
//!   (default 1; 0 = until cleared)}` → `201 {rules: [...]}`; `GET` lists the rules; `DELETE`
//!   clears them (`204`). `drop_connection` closes the connection without an answer and
//!   delivers nothing. See [`faults`].
//! - `POST /sandbox/fcm/tokens/{token}/unregister` → `204`: sends to the token answer `404
//!   UNREGISTERED` from now on.
//! - `GET /sandbox/fcm/deliveries[?token=…|topic=…|condition=…][&limit=N]` → `[{name, token |
//!   topic | condition, notification, data, android?, apns?, webpush?, fcm_options?, at}]`,
//!   oldest first (`notification` and `data` are `null` when absent; `at` is UTC with
//!   milliseconds). The log keeps the newest [`DELIVERIES_MAX`].
//! - `GET /sandbox/fcm/stats` → `{sent, validated, rejected_by_kind: {unauthenticated,
//!   sender_id_mismatch, invalid_argument, unregistered, quota_exceeded, unavailable, internal,
//!   third_party_auth_error, drop_connection}, tokens_issued, access_tokens, deliveries_logged,
//!   deliveries_evicted}`.
//! - `POST /sandbox/fcm/reset` → `204`: forgets deliveries, faults, unregistered tokens, counts
//!   and the quota window; keeps issued access tokens, so a running client's cached token works.

mod control;
pub mod error;
pub mod faults;
pub mod grant;
mod http;
pub mod message;
pub mod service;
pub mod service_account;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::{Router, extract::DefaultBodyLimit, routing::post};

pub use error::{ErrorCode, FcmError};
pub use service::{DELIVERIES_MAX, Service};
pub use service_account::{CLIENT_EMAIL, PROJECT_ID, SERVICE_ACCOUNT_JSON};

/// A message is at most 4096 bytes encoded; whitespace and escapes may double it. Anything much
/// larger is refused before it is parsed.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(BODY_BYTES_MAX > 2 * message::PAYLOAD_BYTES_MAX);
const _: () = assert!(BODY_BYTES_MAX > grant::ASSERTION_BYTES_MAX);

/// The router's state: one per [`router`] call, one mutex held for short, await-free sections.
#[derive(Clone, Default)]
struct Fcm {
    service: Arc<Mutex<Service>>,
}

impl Fcm {
    fn lock(&self) -> MutexGuard<'_, Service> {
        self.service.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The token endpoint, FCM and their control plane, with their own, fresh state.
pub fn router() -> Router {
    Router::new()
        .route("/fcm/token", post(http::token))
        // `:` is a literal in axum 0.8 paths (parameters are `{…}`).
        .route(
            "/fcm/v1/projects/{project_id}/messages:send",
            post(http::send),
        )
        .merge(control::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(Fcm::default())
}

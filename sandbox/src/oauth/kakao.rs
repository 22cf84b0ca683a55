//! Kakao's dialect: `kauth.kakao.com` errors carry a `KOE` code, `kapi.kakao.com` errors are
//! `{msg, code}`, and the member id is a JSON number.
//!
//! `KOE320` (code not found), `KOE303` (redirect URI mismatch) and `KOE010` (bad client
//! credentials) are Kakao's documented codes; using `KOE320` for a PKCE failure and `KOE001`
//! for a malformed token request is the sandbox's choice.

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use super::{
    OAuth,
    faults::Endpoint,
    grants::{ExchangeError, Grant, Issued, KAKAO_REFRESH_TOKEN_SECONDS},
    http::{self, Dialect, INJECTED_DESCRIPTION, Unauthorized, error_name},
    provider::{Provider, kakao_user_id},
};

/// The scope Kakao reports when the request named none: the consent item every app has.
const SCOPE_DEFAULT: &str = "profile_nickname";

pub(super) struct Kakao;

pub(super) fn routes() -> Router<OAuth> {
    Router::new()
        .route("/kakao/oauth/authorize", get(http::authorize::<Kakao>))
        .route(
            "/kakao/oauth/token",
            axum::routing::post(http::token::<Kakao>),
        )
        .route(
            "/kakao/v2/user/me",
            get(http::userinfo::<Kakao>).post(http::userinfo::<Kakao>),
        )
        .route("/kakao/.well-known/jwks.json", get(http::jwks::<Kakao>))
}

/// A `kauth.kakao.com` error.
fn kauth_error(status: StatusCode, error: &str, description: &str, code: &str) -> Response {
    let body = json!({ "error": error, "error_description": description, "error_code": code });
    (status, Json(body)).into_response()
}

/// A `kapi.kakao.com` error.
fn kapi_error(status: StatusCode, message: &str, code: i64) -> Response {
    (status, Json(json!({ "msg": message, "code": code }))).into_response()
}

/// The scopes as the token response lists them: the default consent item first, then the rest.
fn scope(grant: &Grant) -> String {
    let mut scopes = vec![SCOPE_DEFAULT];
    scopes.extend(
        grant
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|scope| *scope != SCOPE_DEFAULT),
    );
    scopes.join(" ")
}

impl Dialect for Kakao {
    const PROVIDER: Provider = Provider::Kakao;

    fn token_error(error: &ExchangeError) -> Response {
        use ExchangeError as E;
        let bad_request = StatusCode::BAD_REQUEST;
        match error {
            E::Malformed(problem) => kauth_error(bad_request, "invalid_request", problem, "KOE001"),
            E::MissingParameter(name) => kauth_error(
                bad_request,
                "invalid_request",
                &format!("{name} is required"),
                "KOE001",
            ),
            E::UnsupportedGrantType(grant_type) => kauth_error(
                bad_request,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {grant_type}"),
                "KOE001",
            ),
            E::CodeNotFound | E::ClientMismatch | E::StateMismatch => kauth_error(
                bad_request,
                "invalid_grant",
                "authorization code not found",
                "KOE320",
            ),
            E::RedirectUriMismatch => kauth_error(
                bad_request,
                "invalid_grant",
                "Redirect URI mismatch.",
                "KOE303",
            ),
            E::VerifierMissing | E::VerifierMismatch => kauth_error(
                bad_request,
                "invalid_grant",
                "code_verifier does not match the code_challenge",
                "KOE320",
            ),
        }
    }

    fn token_body(grant: &Grant, issued: &Issued, id_token: Option<String>) -> Value {
        let mut body = json!({
            "token_type": "bearer",
            "access_token": issued.access_token,
            "expires_in": issued.expires_in_seconds,
            "refresh_token": issued.refresh_token,
            "refresh_token_expires_in": KAKAO_REFRESH_TOKEN_SECONDS,
            "scope": scope(grant),
        });
        if let Some(id_token) = id_token {
            body["id_token"] = json!(id_token);
        }
        body
    }

    fn userinfo_body(grant: &Grant) -> Value {
        let user = &grant.user;
        let mut account = json!({
            "profile_nickname_needs_agreement": false,
            "profile": { "nickname": user.nickname(), "is_default_nickname": false },
        });
        if grant.has_scope("account_email") {
            account["email_needs_agreement"] = json!(false);
            account["is_email_valid"] = json!(true);
            account["is_email_verified"] = json!(true);
            account["email"] = json!(user.email());
        }
        json!({
            "id": kakao_user_id(user),
            "connected_at": crate::clock::utc_seconds(grant.approved_at_ms),
            "properties": { "nickname": user.nickname() },
            "kakao_account": account,
        })
    }

    fn unauthorized(reason: Unauthorized) -> Response {
        let message = match reason {
            Unauthorized::MissingHeader => "no authentication key!",
            Unauthorized::InvalidToken => "this access token does not exist",
        };
        kapi_error(StatusCode::UNAUTHORIZED, message, -401)
    }

    fn injected(endpoint: Endpoint, status: StatusCode) -> Response {
        match endpoint {
            Endpoint::Userinfo => {
                let code = if status == StatusCode::UNAUTHORIZED {
                    -401
                } else {
                    -1
                };
                kapi_error(status, INJECTED_DESCRIPTION, code)
            }
            Endpoint::Authorize | Endpoint::Token | Endpoint::Jwks => {
                // KOE003: Kakao's "temporary error in the OAuth server".
                let code = match status {
                    StatusCode::UNAUTHORIZED => "KOE010",
                    status if status.is_server_error() => "KOE003",
                    _ => "KOE001",
                };
                kauth_error(status, error_name(status), INJECTED_DESCRIPTION, code)
            }
        }
    }
}

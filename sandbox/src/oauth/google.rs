//! Google's dialect: terse `{error, error_description}` errors (`"Bad Request"`), `token_type`
//! spelled `Bearer`, the `email` and `profile` scopes answered by their long names, and claims
//! in user info only for the scopes granted.

use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    OAuth,
    faults::Endpoint,
    grants::{ExchangeError, Grant, Issued},
    http::{self, Dialect, INJECTED_DESCRIPTION, Unauthorized, error_name},
    id_token::{GOOGLE_EMAIL_SCOPE, GOOGLE_PROFILE_SCOPE, google_has_email, google_has_profile},
    provider::{Provider, google_subject},
};

/// What Google's userinfo endpoint sends with its 401.
const WWW_AUTHENTICATE: &str =
    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"";

pub(super) struct Google;

pub(super) fn routes() -> Router<OAuth> {
    Router::new()
        .route("/google/o/oauth2/v2/auth", get(http::authorize::<Google>))
        .route("/google/token", post(http::token::<Google>))
        .route("/google/v1/userinfo", get(http::userinfo::<Google>))
        .route("/google/oauth2/v3/userinfo", get(http::userinfo::<Google>))
        .route("/google/oauth2/v3/certs", get(http::jwks::<Google>))
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

/// The granted scopes as Google lists them.
fn scope(grant: &Grant) -> String {
    let long_name = |scope: &str| match scope {
        "email" => GOOGLE_EMAIL_SCOPE.to_owned(),
        "profile" => GOOGLE_PROFILE_SCOPE.to_owned(),
        other => other.to_owned(),
    };
    let mut scopes: Vec<String> = grant.scopes.iter().map(|scope| long_name(scope)).collect();
    scopes.dedup();
    scopes.join(" ")
}

impl Dialect for Google {
    const PROVIDER: Provider = Provider::Google;

    fn token_error(failure: &ExchangeError) -> Response {
        use ExchangeError as E;
        let bad_request = StatusCode::BAD_REQUEST;
        match failure {
            E::Malformed(problem) => error(bad_request, "invalid_request", problem),
            E::MissingParameter("client_secret") => {
                error(bad_request, "invalid_request", "client_secret is missing.")
            }
            E::MissingParameter(name) => error(
                bad_request,
                "invalid_request",
                &format!("Missing required parameter: {name}"),
            ),
            E::UnsupportedGrantType(grant_type) => error(
                bad_request,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {grant_type}"),
            ),
            E::CodeNotFound | E::ClientMismatch | E::StateMismatch => {
                error(bad_request, "invalid_grant", "Bad Request")
            }
            E::RedirectUriMismatch => error(bad_request, "redirect_uri_mismatch", "Bad Request"),
            E::VerifierMissing => error(bad_request, "invalid_grant", "Missing code verifier."),
            E::VerifierMismatch => error(bad_request, "invalid_grant", "Invalid code verifier."),
        }
    }

    fn token_body(grant: &Grant, issued: &Issued, id_token: Option<String>) -> Value {
        let mut body = json!({
            "access_token": issued.access_token,
            "expires_in": issued.expires_in_seconds,
            "token_type": "Bearer",
            "scope": scope(grant),
        });
        if let Some(id_token) = id_token {
            body["id_token"] = json!(id_token);
        }
        body
    }

    fn userinfo_body(grant: &Grant) -> Value {
        let user = &grant.user;
        let mut body = json!({ "sub": google_subject(user) });
        if google_has_profile(grant) {
            body["name"] = json!(user.nickname());
        }
        if google_has_email(grant) {
            body["email"] = json!(user.email());
            body["email_verified"] = json!(true);
        }
        body
    }

    fn unauthorized(_reason: Unauthorized) -> Response {
        let body =
            json!({ "error": "invalid_request", "error_description": "Invalid Credentials" });
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE)],
            Json(body),
        )
            .into_response()
    }

    fn injected(_endpoint: Endpoint, status: StatusCode) -> Response {
        error(status, error_name(status), INJECTED_DESCRIPTION)
    }
}

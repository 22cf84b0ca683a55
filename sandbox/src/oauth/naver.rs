//! Naver's dialect: token errors are `200 {error, error_description}`, `expires_in` is a string,
//! and the profile API wraps everything in `{resultcode, message, response}`.

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
    grants::{ExchangeError, Grant, Issued},
    http::{self, Dialect, INJECTED_DESCRIPTION, Unauthorized, error_name},
    provider::{Provider, naver_user_id},
};

pub(super) struct Naver;

pub(super) fn routes() -> Router<OAuth> {
    Router::new()
        .route("/naver/oauth2.0/authorize", get(http::authorize::<Naver>))
        .route(
            "/naver/oauth2.0/token",
            get(http::token::<Naver>).post(http::token::<Naver>),
        )
        .route(
            "/naver/v1/nid/me",
            get(http::userinfo::<Naver>).post(http::userinfo::<Naver>),
        )
}

/// A `nid.naver.com` token error.
fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

/// An `openapi.naver.com` error.
fn api_error(status: StatusCode, result_code: &str, message: &str) -> Response {
    let body = json!({ "resultcode": result_code, "message": message });
    (status, Json(body)).into_response()
}

impl Dialect for Naver {
    const PROVIDER: Provider = Provider::Naver;
    const TOKEN_PARAMS_IN_QUERY: bool = true;

    fn token_error(error: &ExchangeError) -> Response {
        use ExchangeError as E;
        let description = match error {
            E::Malformed(problem) => problem.clone(),
            E::MissingParameter(name) => format!("{name} is required"),
            E::UnsupportedGrantType(grant_type) => format!("unsupported grant_type: {grant_type}"),
            E::CodeNotFound | E::ClientMismatch | E::RedirectUriMismatch => {
                "no valid data in session".to_owned()
            }
            E::StateMismatch => "state does not match the authorize request".to_owned(),
            // Naver has no PKCE; a grant never carries a challenge.
            E::VerifierMissing | E::VerifierMismatch => "invalid code_verifier".to_owned(),
        };
        // Naver answers its token errors with 200.
        token_error(StatusCode::OK, "invalid_request", &description)
    }

    fn token_body(_grant: &Grant, issued: &Issued, _id_token: Option<String>) -> Value {
        json!({
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in_seconds.to_string(),
        })
    }

    fn userinfo_body(grant: &Grant) -> Value {
        let user = &grant.user;
        json!({
            "resultcode": "00",
            "message": "success",
            "response": {
                "id": naver_user_id(user),
                "nickname": user.nickname(),
                "email": user.email(),
            },
        })
    }

    fn unauthorized(reason: Unauthorized) -> Response {
        match reason {
            Unauthorized::MissingHeader => api_error(
                StatusCode::UNAUTHORIZED,
                "028",
                "Authentication header not exists / 인증 헤더가 존재하지 않습니다.",
            ),
            Unauthorized::InvalidToken => api_error(
                StatusCode::UNAUTHORIZED,
                "024",
                "Authentication failed / 인증에 실패했습니다.",
            ),
        }
    }

    fn injected(endpoint: Endpoint, status: StatusCode) -> Response {
        match endpoint {
            Endpoint::Userinfo => {
                let result_code = if status == StatusCode::UNAUTHORIZED {
                    "024".to_owned()
                } else {
                    status.as_str().to_owned()
                };
                api_error(status, &result_code, INJECTED_DESCRIPTION)
            }
            Endpoint::Authorize | Endpoint::Token | Endpoint::Jwks => {
                token_error(status, error_name(status), INJECTED_DESCRIPTION)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::grants::{NAVER_ACCESS_TOKEN_SECONDS, tests::grant};

    #[test]
    fn naver_expires_in_is_a_string() {
        let issued = Issued {
            access_token: "AAAA+/x".to_owned(),
            refresh_token: "r".to_owned(),
            expires_in_seconds: NAVER_ACCESS_TOKEN_SECONDS,
        };
        let body = Naver::token_body(&grant(Provider::Naver), &issued, None);
        assert_eq!(body["expires_in"], "3600");
        assert_eq!(body["token_type"], "bearer");
        assert!(body.get("id_token").is_none());
    }

    #[test]
    fn naver_answers_an_unusable_code_with_200_and_an_error_body() {
        let response = Naver::token_error(&ExchangeError::CodeNotFound);
        assert_eq!(response.status(), StatusCode::OK);
    }
}

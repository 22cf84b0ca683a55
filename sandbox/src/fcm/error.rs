//! FCM's errors as Google writes them, and the one place that turns them into HTTP answers.
//!
//! Every answer is `{"error": {"code": <http>, "message", "status": <google.rpc code name>,
//! "details": [...]}}`. FCM's own failures carry a
//! `type.googleapis.com/google.firebase.fcm.v1.FcmError` detail first, with the `errorCode` a
//! client decides on; a refused field adds a `google.rpc.BadRequest` detail naming it. A request
//! refused before FCM sees it (no or a bad access token) is `401 UNAUTHENTICATED` with a
//! `google.rpc.ErrorInfo` detail instead, as Google's front end answers.

use std::borrow::Cow;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

pub const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// What a 401 says when the `Authorization` header is missing.
pub const CREDENTIALS_MISSING_MESSAGE: &str = "Request is missing required authentication \
     credential. Expected OAuth 2 access token, login cookie or other valid authentication \
     credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// What a 401 says when the access token is unknown or expired.
pub const INVALID_CREDENTIALS_MESSAGE: &str = "Request had invalid authentication credentials. \
     Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
     https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// Why a send failed: FCM's `errorCode`s, plus the front end's `UNAUTHENTICATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No, an unknown or an expired access token (not an FCM error code: Google's front end).
    Unauthenticated,
    /// The access token belongs to another project than the one in the path.
    SenderIdMismatch,
    InvalidArgument,
    /// The device token is no longer valid: delete it, do not retry.
    Unregistered,
    QuotaExceeded,
    Unavailable,
    Internal,
    /// APNs or Web Push refused FCM's credentials.
    ThirdPartyAuthError,
}

impl ErrorCode {
    pub const ALL: [Self; 8] = [
        Self::Unauthenticated,
        Self::SenderIdMismatch,
        Self::InvalidArgument,
        Self::Unregistered,
        Self::QuotaExceeded,
        Self::Unavailable,
        Self::Internal,
        Self::ThirdPartyAuthError,
    ];

    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::ThirdPartyAuthError => StatusCode::UNAUTHORIZED,
            Self::SenderIdMismatch => StatusCode::FORBIDDEN,
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unregistered => StatusCode::NOT_FOUND,
            Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `google.rpc.Code` name in `error.status`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Unauthenticated | Self::ThirdPartyAuthError => "UNAUTHENTICATED",
            Self::SenderIdMismatch => "PERMISSION_DENIED",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unregistered => "NOT_FOUND",
            Self::QuotaExceeded => "RESOURCE_EXHAUSTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    /// The FcmError detail's `errorCode`; `None` for the front end's refusals.
    pub fn fcm_error_code(self) -> Option<&'static str> {
        match self {
            Self::Unauthenticated => None,
            Self::SenderIdMismatch => Some("SENDER_ID_MISMATCH"),
            Self::InvalidArgument => Some("INVALID_ARGUMENT"),
            Self::Unregistered => Some("UNREGISTERED"),
            Self::QuotaExceeded => Some("QUOTA_EXCEEDED"),
            Self::Unavailable => Some("UNAVAILABLE"),
            Self::Internal => Some("INTERNAL"),
            Self::ThirdPartyAuthError => Some("THIRD_PARTY_AUTH_ERROR"),
        }
    }

    /// The sandbox's own name: fault kinds and the statistics' keys.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::SenderIdMismatch => "sender_id_mismatch",
            Self::InvalidArgument => "invalid_argument",
            Self::Unregistered => "unregistered",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::ThirdPartyAuthError => "third_party_auth_error",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Unauthenticated => 0,
            Self::SenderIdMismatch => 1,
            Self::InvalidArgument => 2,
            Self::Unregistered => 3,
            Self::QuotaExceeded => 4,
            Self::Unavailable => 5,
            Self::Internal => 6,
            Self::ThirdPartyAuthError => 7,
        }
    }

    /// What FCM says when nothing more specific applies.
    pub fn message(self) -> &'static str {
        match self {
            Self::Unauthenticated => INVALID_CREDENTIALS_MESSAGE,
            Self::SenderIdMismatch => "SenderId mismatch",
            Self::InvalidArgument => "Request contains an invalid argument.",
            Self::Unregistered => "Requested entity was not found.",
            Self::QuotaExceeded => {
                "Quota exceeded for quota metric 'Messages' of service \
                 'fcm.googleapis.com'."
            }
            Self::Unavailable => "The service is currently unavailable.",
            Self::Internal => "Internal error encountered.",
            Self::ThirdPartyAuthError => "Auth error from APNS or Web Push Service",
        }
    }
}

/// A refused send, ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// The refused field (`message.android.ttl`), answered as a `google.rpc.BadRequest` detail.
    pub field: Option<String>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after_seconds: Option<u32>,
    /// The `google.rpc.ErrorInfo` reason of a 401 (`CREDENTIALS_MISSING`, …).
    pub reason: Option<&'static str>,
}

impl From<ErrorCode> for FcmError {
    fn from(code: ErrorCode) -> Self {
        Self {
            code,
            message: Cow::Borrowed(code.message()),
            field: None,
            retry_after_seconds: None,
            reason: None,
        }
    }
}

impl FcmError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..code.into()
        }
    }

    /// `INVALID_ARGUMENT` about one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::InvalidArgument, message)
        }
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: Option<u32>) -> Self {
        self.retry_after_seconds = seconds;
        self
    }

    /// The 401 for a request without an `Authorization: Bearer` header.
    pub fn credentials_missing() -> Self {
        Self {
            reason: Some("CREDENTIALS_MISSING"),
            ..Self::new(ErrorCode::Unauthenticated, CREDENTIALS_MISSING_MESSAGE)
        }
    }

    /// The 401 for an unknown access token (Google's `ErrorInfo` reason for this case is not
    /// documented; the sandbox's choice).
    pub fn token_unknown() -> Self {
        Self {
            reason: Some("ACCESS_TOKEN_TYPE_UNSUPPORTED"),
            ..ErrorCode::Unauthenticated.into()
        }
    }

    /// The 401 for an access token past its hour.
    pub fn token_expired() -> Self {
        Self {
            reason: Some("ACCESS_TOKEN_EXPIRED"),
            ..ErrorCode::Unauthenticated.into()
        }
    }

    /// The body Google answers.
    pub fn to_json(&self) -> Value {
        let mut details = Vec::new();
        if let Some(error_code) = self.code.fcm_error_code() {
            details.push(json!({ "@type": FCM_ERROR_TYPE, "errorCode": error_code }));
        }
        if let Some(field) = &self.field {
            details.push(json!({
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [{ "field": field, "description": self.message }],
            }));
        }
        if let Some(reason) = self.reason {
            details.push(json!({
                "@type": ERROR_INFO_TYPE,
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {
                    "service": "fcm.googleapis.com",
                    "method": "google.firebase.fcm.v1.FcmService.SendMessage",
                },
            }));
        }
        json!({
            "error": {
                "code": self.code.http_status().as_u16(),
                "message": self.message,
                "status": self.code.status(),
                "details": details,
            }
        })
    }
}

/// What Google's front end sends with a 401, as for its other APIs.
const WWW_AUTHENTICATE_MISSING: &str = "Bearer realm=\"https://accounts.google.com/\"";
const WWW_AUTHENTICATE_INVALID: &str =
    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"";

impl IntoResponse for FcmError {
    fn into_response(self) -> Response {
        let mut response = (self.code.http_status(), Json(self.to_json())).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == ErrorCode::Unauthenticated {
            let challenge = if self.reason == Some("CREDENTIALS_MISSING") {
                WWW_AUTHENTICATE_MISSING
            } else {
                WWW_AUTHENTICATE_INVALID
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fcm_error_code_answers_googles_shape_with_the_matching_status() {
        let table = [
            (ErrorCode::Unregistered, 404, "NOT_FOUND", "UNREGISTERED"),
            (
                ErrorCode::InvalidArgument,
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
            ),
            (
                ErrorCode::QuotaExceeded,
                429,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
            ),
            (ErrorCode::Unavailable, 503, "UNAVAILABLE", "UNAVAILABLE"),
            (ErrorCode::Internal, 500, "INTERNAL", "INTERNAL"),
            (
                ErrorCode::SenderIdMismatch,
                403,
                "PERMISSION_DENIED",
                "SENDER_ID_MISMATCH",
            ),
            (
                ErrorCode::ThirdPartyAuthError,
                401,
                "UNAUTHENTICATED",
                "THIRD_PARTY_AUTH_ERROR",
            ),
        ];
        for (code, http, status, error_code) in table {
            let body = FcmError::from(code).to_json();
            assert_eq!(body["error"]["code"], http, "{code:?}");
            assert_eq!(body["error"]["status"], status, "{code:?}");
            assert_eq!(body["error"]["details"][0]["@type"], FCM_ERROR_TYPE);
            assert_eq!(body["error"]["details"][0]["errorCode"], error_code);
            assert_eq!(code.http_status().as_u16(), http);
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[test]
    fn quota_exceeded_carries_retry_after() {
        let response = FcmError::from(ErrorCode::QuotaExceeded)
            .with_retry_after(Some(7))
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(7_u32))
        );
    }

    #[test]
    fn a_refused_field_is_named_in_a_bad_request_detail_after_the_fcm_error() {
        let body = FcmError::invalid_field("message.android.ttl", "too long").to_json();
        let details = &body["error"]["details"];
        assert_eq!(details[0]["errorCode"], "INVALID_ARGUMENT");
        assert_eq!(details[1]["@type"], BAD_REQUEST_TYPE);
        assert_eq!(
            details[1]["fieldViolations"][0]["field"],
            "message.android.ttl"
        );
    }

    #[test]
    fn an_unauthenticated_answer_has_no_fcm_error_and_a_challenge() {
        let error = FcmError::token_expired();
        let body = error.to_json();
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(body["error"]["details"][0]["@type"], ERROR_INFO_TYPE);
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "ACCESS_TOKEN_EXPIRED"
        );
        assert_eq!(body["error"]["details"].as_array().map(Vec::len), Some(1));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}

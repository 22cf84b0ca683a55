//! Error codes of the public API: one stable code, one HTTP status, one default message.
//!
//! Every layer has its own error enum; each maps into an [`ErrorCode`] exactly once, and the HTTP
//! adapters turn an `ErrorCode` into `{"error": {"code", "message", "request_id"}}`.

use serde::{Deserialize, Serialize};

/// A stable error code of the public API (docs/api.md, "Errors"). The serialized form is the
/// SCREAMING_SNAKE_CASE name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // Request shape
    BadRequest,
    InvalidJson,
    ValidationFailed,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    // Auth
    Unauthorized,
    Forbidden,
    SignatureInvalid,
    RedirectUriNotAllowed,
    LoginStateInvalid,
    IdentityRejected,
    RefreshTokenReused,
    RateLimited,
    NicknameTaken,
    ProviderUnavailable,
    // Idempotency
    IdempotencyKeyReused,
    RequestInProgress,
    // Money and challenges
    InsufficientPoints,
    AlreadyJoined,
    NotAParticipant,
    ProofAlreadySubmitted,
    OutsideProofWindow,
    ProofStateConflict,
    ReportsClosed,
    AppealsClosed,
    ReportLimitReached,
    ChallengeFull,
    ChallengeNotRecruiting,
    AmountOutOfRange,
    AmountMismatch,
    PaymentRejected,
    OrderAlreadyConfirmed,
    NothingToRefund,
    // The shop
    SoldOut,
    PurchaseLimitReached,
    NotOnSale,
    OrderStateConflict,
    // Dependencies
    CoreUnavailable,
    UpstreamError,
    Internal,
}

impl ErrorCode {
    /// The code for an error that arrived as a bare HTTP status (a framework's own rejection):
    /// the general code of that status, `INTERNAL` for a status the API does not use.
    #[must_use]
    pub const fn for_status(status: u16) -> Self {
        match status {
            400 => ErrorCode::BadRequest,
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::ValidationFailed,
            429 => ErrorCode::RateLimited,
            502 => ErrorCode::UpstreamError,
            503 => ErrorCode::CoreUnavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The HTTP status this code is always sent with.
    #[must_use]
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidJson => 400,
            ErrorCode::Unauthorized
            | ErrorCode::SignatureInvalid
            | ErrorCode::LoginStateInvalid
            | ErrorCode::IdentityRejected
            | ErrorCode::RefreshTokenReused => 401,
            ErrorCode::InsufficientPoints => 402,
            ErrorCode::Forbidden | ErrorCode::NotAParticipant => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyJoined
            | ErrorCode::ProofAlreadySubmitted
            | ErrorCode::ProofStateConflict
            | ErrorCode::ReportsClosed
            | ErrorCode::AppealsClosed
            | ErrorCode::ChallengeFull
            | ErrorCode::ChallengeNotRecruiting
            | ErrorCode::RequestInProgress
            | ErrorCode::OrderAlreadyConfirmed
            | ErrorCode::NothingToRefund
            | ErrorCode::SoldOut
            | ErrorCode::PurchaseLimitReached
            | ErrorCode::NotOnSale
            | ErrorCode::OrderStateConflict
            | ErrorCode::NicknameTaken => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::AmountOutOfRange
            | ErrorCode::AmountMismatch
            | ErrorCode::PaymentRejected
            | ErrorCode::RedirectUriNotAllowed
            | ErrorCode::OutsideProofWindow => 422,
            ErrorCode::RateLimited | ErrorCode::ReportLimitReached => 429,
            ErrorCode::Internal => 500,
            ErrorCode::UpstreamError | ErrorCode::ProviderUnavailable => 502,
            ErrorCode::CoreUnavailable => 503,
        }
    }

    /// The wire name, e.g. `CHALLENGE_FULL`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::SignatureInvalid => "SIGNATURE_INVALID",
            ErrorCode::RedirectUriNotAllowed => "REDIRECT_URI_NOT_ALLOWED",
            ErrorCode::LoginStateInvalid => "LOGIN_STATE_INVALID",
            ErrorCode::IdentityRejected => "IDENTITY_REJECTED",
            ErrorCode::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::NicknameTaken => "NICKNAME_TAKEN",
            ErrorCode::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::RequestInProgress => "REQUEST_IN_PROGRESS",
            ErrorCode::InsufficientPoints => "INSUFFICIENT_POINTS",
            ErrorCode::AlreadyJoined => "ALREADY_JOINED",
            ErrorCode::NotAParticipant => "NOT_A_PARTICIPANT",
            ErrorCode::ProofAlreadySubmitted => "PROOF_ALREADY_SUBMITTED",
            ErrorCode::OutsideProofWindow => "OUTSIDE_PROOF_WINDOW",
            ErrorCode::ProofStateConflict => "PROOF_STATE_CONFLICT",
            ErrorCode::ReportsClosed => "REPORTS_CLOSED",
            ErrorCode::AppealsClosed => "APPEALS_CLOSED",
            ErrorCode::ReportLimitReached => "REPORT_LIMIT_REACHED",
            ErrorCode::ChallengeFull => "CHALLENGE_FULL",
            ErrorCode::ChallengeNotRecruiting => "CHALLENGE_NOT_RECRUITING",
            ErrorCode::AmountOutOfRange => "AMOUNT_OUT_OF_RANGE",
            ErrorCode::AmountMismatch => "AMOUNT_MISMATCH",
            ErrorCode::PaymentRejected => "PAYMENT_REJECTED",
            ErrorCode::OrderAlreadyConfirmed => "ORDER_ALREADY_CONFIRMED",
            ErrorCode::NothingToRefund => "NOTHING_TO_REFUND",
            ErrorCode::SoldOut => "SOLD_OUT",
            ErrorCode::PurchaseLimitReached => "PURCHASE_LIMIT_REACHED",
            ErrorCode::NotOnSale => "NOT_ON_SALE",
            ErrorCode::OrderStateConflict => "ORDER_STATE_CONFLICT",
            ErrorCode::CoreUnavailable => "CORE_UNAVAILABLE",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// A message safe to show a client: it never carries internal detail.
    #[must_use]
    pub const fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "The request is malformed.",
            ErrorCode::InvalidJson => "The request body is not valid JSON of the expected shape.",
            ErrorCode::ValidationFailed => "A field of the request is out of its allowed range.",
            ErrorCode::PayloadTooLarge => "The request body is too large.",
            ErrorCode::NotFound => "No such resource.",
            ErrorCode::MethodNotAllowed => "This method is not allowed on this resource.",
            ErrorCode::UnsupportedMediaType => "The request body must be application/json.",
            ErrorCode::Unauthorized => "Sign in again: the credentials are missing or invalid.",
            ErrorCode::Forbidden => "You may not do this.",
            ErrorCode::SignatureInvalid => "The request signature is missing, stale or wrong.",
            ErrorCode::RedirectUriNotAllowed => "This redirect_uri is not allowed.",
            ErrorCode::LoginStateInvalid => {
                "This sign-in link is unknown, used or expired. Start again."
            }
            ErrorCode::IdentityRejected => "The provider's answer could not be verified.",
            ErrorCode::RefreshTokenReused => {
                "This refresh token was already used; the session is revoked. Sign in again."
            }
            ErrorCode::RateLimited => "Too many attempts. Wait a minute and try again.",
            ErrorCode::NicknameTaken => "This nickname is taken.",
            ErrorCode::ProviderUnavailable => {
                "The sign-in provider is not answering. Try again later."
            }
            ErrorCode::IdempotencyKeyReused => {
                "This Idempotency-Key was used with a different request."
            }
            ErrorCode::RequestInProgress => {
                "A request with this Idempotency-Key is still being processed."
            }
            ErrorCode::InsufficientPoints => "Not enough points.",
            ErrorCode::AlreadyJoined => "You have already joined this challenge.",
            ErrorCode::NotAParticipant => "Only participants of this challenge may do this.",
            ErrorCode::ProofAlreadySubmitted => "Today's proof is already in.",
            ErrorCode::OutsideProofWindow => "Proofs are accepted only inside today's window.",
            ErrorCode::ProofStateConflict => {
                "This proof cannot take that step now (its state or the review window)."
            }
            ErrorCode::ReportsClosed => {
                "Reports for this challenge are closed: they close a day before reviews do."
            }
            ErrorCode::AppealsClosed => {
                "Appeals for this challenge are closed: they close a day before reviews do."
            }
            ErrorCode::ReportLimitReached => {
                "You have made today's most reports in this challenge. Try again tomorrow."
            }
            ErrorCode::ChallengeFull => "This challenge is full.",
            ErrorCode::ChallengeNotRecruiting => "This challenge is not taking participants.",
            ErrorCode::AmountOutOfRange => "The amount is outside the allowed range.",
            ErrorCode::AmountMismatch => "The amount does not match the order.",
            ErrorCode::PaymentRejected => "The payment was declined. No money was taken.",
            ErrorCode::OrderAlreadyConfirmed => {
                "This order was already confirmed with another payment."
            }
            ErrorCode::NothingToRefund => "No unused points of this payment are left to refund.",
            ErrorCode::SoldOut => "This product is sold out.",
            ErrorCode::PurchaseLimitReached => {
                "You have bought as many of this product as one person may."
            }
            ErrorCode::NotOnSale => "This product is not on sale now (see its sale window).",
            ErrorCode::OrderStateConflict => {
                "This order cannot take that step now (its state or its deadline)."
            }
            ErrorCode::CoreUnavailable => "The service is temporarily unavailable. Try again.",
            ErrorCode::UpstreamError => "A partner service failed. Try again.",
            ErrorCode::Internal => "Something went wrong on our side.",
        }
    }
}

/// Longest error message sent, in characters: a message may quote the client's input (serde names
/// the value it could not read), and an answer must not grow with what was sent.
pub const ERROR_MESSAGE_CHARS_MAX: usize = 300;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
}

impl ErrorEnvelope {
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: impl Into<String>) -> Self {
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(ERROR_MESSAGE_CHARS_MAX) {
            message.truncate(cut);
            message.push('…');
        }
        ErrorEnvelope {
            error: ErrorBody {
                code,
                message,
                request_id: request_id.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_the_bound_on_a_character_boundary() {
        let long = "닉네임".repeat(ERROR_MESSAGE_CHARS_MAX);
        let envelope = ErrorEnvelope::new(ErrorCode::InvalidJson, long, "r");
        assert_eq!(
            envelope.error.message.chars().count(),
            ERROR_MESSAGE_CHARS_MAX + 1
        );
        assert!(envelope.error.message.ends_with('…'));
        let short = ErrorEnvelope::new(ErrorCode::InvalidJson, "nickname: too short", "r");
        assert_eq!(short.error.message, "nickname: too short");
    }

    const ALL: [ErrorCode; 42] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::ValidationFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::SignatureInvalid,
        ErrorCode::RedirectUriNotAllowed,
        ErrorCode::LoginStateInvalid,
        ErrorCode::IdentityRejected,
        ErrorCode::RefreshTokenReused,
        ErrorCode::RateLimited,
        ErrorCode::NicknameTaken,
        ErrorCode::ProviderUnavailable,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::RequestInProgress,
        ErrorCode::InsufficientPoints,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotAParticipant,
        ErrorCode::ProofAlreadySubmitted,
        ErrorCode::OutsideProofWindow,
        ErrorCode::ProofStateConflict,
        ErrorCode::ReportsClosed,
        ErrorCode::AppealsClosed,
        ErrorCode::ReportLimitReached,
        ErrorCode::ChallengeFull,
        ErrorCode::ChallengeNotRecruiting,
        ErrorCode::AmountOutOfRange,
        ErrorCode::AmountMismatch,
        ErrorCode::PaymentRejected,
        ErrorCode::OrderAlreadyConfirmed,
        ErrorCode::NothingToRefund,
        ErrorCode::SoldOut,
        ErrorCode::PurchaseLimitReached,
        ErrorCode::NotOnSale,
        ErrorCode::OrderStateConflict,
        ErrorCode::CoreUnavailable,
        ErrorCode::UpstreamError,
        ErrorCode::Internal,
    ];

    #[test]
    fn every_code_serializes_to_its_wire_name() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    /// The error table of `docs/api.md`: rows `` | `CODE` | status | meaning | ``.
    fn documented_codes() -> Vec<(String, u16)> {
        include_str!("../../docs/api.md")
            .lines()
            .filter_map(|line| {
                let (code, rest) = line.strip_prefix("| `")?.split_once("` | ")?;
                let status = rest.split_once(" |")?.0.parse().ok()?;
                code.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_')
                    .then(|| (code.to_owned(), status))
            })
            .collect()
    }

    #[test]
    fn the_api_document_lists_every_code_once_with_its_status() {
        let documented = documented_codes();
        for code in ALL {
            let rows: Vec<u16> = documented
                .iter()
                .filter(|(name, _)| name == code.as_str())
                .map(|(_, status)| *status)
                .collect();
            assert_eq!(
                rows,
                vec![code.http_status()],
                "docs/api.md's row for {}",
                code.as_str()
            );
        }
        assert_eq!(
            documented.len(),
            ALL.len(),
            "docs/api.md lists codes that do not exist"
        );
    }

    #[test]
    fn the_statuses_of_api_md_are_kept() {
        assert_eq!(ErrorCode::InsufficientPoints.http_status(), 402);
        assert_eq!(ErrorCode::ChallengeFull.http_status(), 409);
        assert_eq!(ErrorCode::IdempotencyKeyReused.http_status(), 422);
        assert_eq!(ErrorCode::RequestInProgress.http_status(), 409);
        assert_eq!(ErrorCode::AmountMismatch.http_status(), 422);
        assert_eq!(ErrorCode::ReportsClosed.http_status(), 409);
        assert_eq!(ErrorCode::AppealsClosed.http_status(), 409);
        assert_eq!(ErrorCode::ReportLimitReached.http_status(), 429);
    }
}

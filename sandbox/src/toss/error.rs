//! Toss's error shape (HTTP status plus `{"code", "message"}`) and the table of codes the sandbox
//! knows, with the Korean messages Toss sends by default.
//!
//! The table serves three callers: the sandbox's own failures, the `TossPayments-Test-Code` header
//! (which makes any endpoint return the named error) and injected `error` faults. A code that is
//! not in the table is still returned, with status 400 and a generic message, as Toss's test
//! environment does for codes it does not list.

use std::borrow::Cow;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::payment::PaymentError;

/// A known Toss error code: its status and its default (Korean) message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: &'static str,
}

const fn code(status: StatusCode, code: &'static str, message: &'static str) -> ErrorCode {
    ErrorCode {
        code,
        status,
        message,
    }
}

use StatusCode as S;

pub const INVALID_REQUEST: ErrorCode =
    code(S::BAD_REQUEST, "INVALID_REQUEST", "잘못된 요청입니다.");
pub const ALREADY_PROCESSED_PAYMENT: ErrorCode = code(
    S::BAD_REQUEST,
    "ALREADY_PROCESSED_PAYMENT",
    "이미 처리된 결제 입니다.",
);
pub const DUPLICATED_ORDER_ID: ErrorCode = code(
    S::BAD_REQUEST,
    "DUPLICATED_ORDER_ID",
    "이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.",
);
pub const ALREADY_CANCELED_PAYMENT: ErrorCode = code(
    S::BAD_REQUEST,
    "ALREADY_CANCELED_PAYMENT",
    "이미 취소된 결제 입니다.",
);
pub const UNAUTHORIZED_KEY: ErrorCode = code(
    S::UNAUTHORIZED,
    "UNAUTHORIZED_KEY",
    "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
);
pub const INCORRECT_BASIC_AUTH_FORMAT: ErrorCode = code(
    S::FORBIDDEN,
    "INCORRECT_BASIC_AUTH_FORMAT",
    "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.",
);
pub const NOT_CANCELABLE_AMOUNT: ErrorCode = code(
    S::FORBIDDEN,
    "NOT_CANCELABLE_AMOUNT",
    "취소 할 수 없는 금액 입니다.",
);
pub const NOT_CANCELABLE_PAYMENT: ErrorCode = code(
    S::FORBIDDEN,
    "NOT_CANCELABLE_PAYMENT",
    "취소 할 수 없는 결제 입니다.",
);
pub const NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT: ErrorCode = code(
    S::FORBIDDEN,
    "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT",
    "입금 대기중인 결제는 부분 환불이 불가합니다.",
);
pub const FORBIDDEN_CONSECUTIVE_REQUEST: ErrorCode = code(
    S::FORBIDDEN,
    "FORBIDDEN_CONSECUTIVE_REQUEST",
    "반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.",
);
pub const NOT_FOUND_PAYMENT: ErrorCode = code(
    S::NOT_FOUND,
    "NOT_FOUND_PAYMENT",
    "존재하지 않는 결제 정보 입니다.",
);
pub const NOT_FOUND_PAYMENT_SESSION: ErrorCode = code(
    S::NOT_FOUND,
    "NOT_FOUND_PAYMENT_SESSION",
    "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
);
/// Toss documents the code but not its status (?): 409 is what the brief and Stripe-style APIs use.
pub const IDEMPOTENT_REQUEST_PROCESSING: ErrorCode = code(
    S::CONFLICT,
    "IDEMPOTENT_REQUEST_PROCESSING",
    "이전 멱등 요청이 처리중입니다. 잠시 후 다시 시도해주세요.",
);
pub const FAILED_INTERNAL_SYSTEM_PROCESSING: ErrorCode = code(
    S::INTERNAL_SERVER_ERROR,
    "FAILED_INTERNAL_SYSTEM_PROCESSING",
    "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.",
);

/// Every code the sandbox can name, for `TossPayments-Test-Code` and injected errors.
pub const CODES: &[ErrorCode] = &[
    INVALID_REQUEST,
    ALREADY_PROCESSED_PAYMENT,
    DUPLICATED_ORDER_ID,
    ALREADY_CANCELED_PAYMENT,
    UNAUTHORIZED_KEY,
    INCORRECT_BASIC_AUTH_FORMAT,
    NOT_CANCELABLE_AMOUNT,
    NOT_CANCELABLE_PAYMENT,
    NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT,
    FORBIDDEN_CONSECUTIVE_REQUEST,
    NOT_FOUND_PAYMENT,
    NOT_FOUND_PAYMENT_SESSION,
    IDEMPOTENT_REQUEST_PROCESSING,
    FAILED_INTERNAL_SYSTEM_PROCESSING,
    code(
        S::BAD_REQUEST,
        "PROVIDER_ERROR",
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
    ),
    code(
        S::BAD_REQUEST,
        "BELOW_MINIMUM_AMOUNT",
        "신용카드는 결제금액이 100원 이상, 계좌는 200원이상부터 결제가 가능합니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_CARD_EXPIRATION",
        "카드 정보를 다시 확인해주세요. (유효기간)",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_STOPPED_CARD",
        "정지된 카드 입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_CARD_NUMBER",
        "카드번호를 다시 확인해주세요.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_CARD_LOST_OR_STOLEN",
        "분실 혹은 도난 카드입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_REJECT_CARD",
        "카드 사용이 거절되었습니다. 카드사 문의가 필요합니다.",
    ),
    code(
        S::BAD_REQUEST,
        "EXCEED_MAX_DAILY_PAYMENT_COUNT",
        "하루 결제 가능 횟수를 초과했습니다.",
    ),
    code(
        S::BAD_REQUEST,
        "EXCEED_MAX_PAYMENT_AMOUNT",
        "하루 결제 가능 금액을 초과했습니다.",
    ),
    code(
        S::BAD_REQUEST,
        "CARD_PROCESSING_ERROR",
        "카드사에서 오류가 발생했습니다.",
    ),
    code(
        S::BAD_REQUEST,
        "NOT_AVAILABLE_PAYMENT",
        "결제가 불가능한 시간대입니다",
    ),
    code(
        S::BAD_REQUEST,
        "UNAPPROVED_ORDER_ID",
        "아직 승인되지 않은 주문번호입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_API_KEY",
        "잘못된 시크릿키 연동 정보 입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "ALREADY_REFUND_PAYMENT",
        "이미 환불된 결제입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "REFUND_REJECTED",
        "환불이 거절됐습니다. 결제사에 문의 부탁드립니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_REFUND_ACCOUNT_INFO",
        "환불 계좌번호와 예금주명이 일치하지 않습니다.",
    ),
    code(
        S::BAD_REQUEST,
        "INVALID_REFUND_ACCOUNT_NUMBER",
        "잘못된 환불 계좌번호입니다.",
    ),
    code(
        S::BAD_REQUEST,
        "NOT_MATCHES_REFUNDABLE_AMOUNT",
        "잔액 결과가 일치하지 않습니다.",
    ),
    code(
        S::FORBIDDEN,
        "REJECT_CARD_PAYMENT",
        "한도초과 혹은 잔액부족으로 결제에 실패했습니다.",
    ),
    code(
        S::FORBIDDEN,
        "REJECT_ACCOUNT_PAYMENT",
        "잔액부족으로 결제에 실패했습니다.",
    ),
    code(
        S::FORBIDDEN,
        "REJECT_CARD_COMPANY",
        "결제 승인이 거절되었습니다.",
    ),
    code(
        S::FORBIDDEN,
        "FORBIDDEN_REQUEST",
        "허용되지 않은 요청입니다.",
    ),
    code(
        S::FORBIDDEN,
        "EXCEED_MAX_AUTH_COUNT",
        "최대 인증 횟수를 초과했습니다. 카드사로 문의해주세요.",
    ),
    code(
        S::FORBIDDEN,
        "EXCEED_MAX_ONE_DAY_AMOUNT",
        "일일 한도를 초과했습니다.",
    ),
    code(
        S::FORBIDDEN,
        "NOT_AVAILABLE_BANK",
        "은행 서비스 시간이 아닙니다.",
    ),
    code(
        S::FORBIDDEN,
        "INVALID_PASSWORD",
        "결제 비밀번호가 일치하지 않습니다.",
    ),
    code(
        S::FORBIDDEN,
        "FDS_ERROR",
        "[토스페이먼츠] 위험거래가 감지되어 결제가 제한됩니다.",
    ),
    code(
        S::FORBIDDEN,
        "EXCEED_MAX_REFUND_DUE",
        "환불 가능한 기간이 지났습니다.",
    ),
    code(
        S::FORBIDDEN,
        "NOT_ALLOWED_PARTIAL_REFUND",
        "에스크로 주문, 현금 카드 결제일 때는 부분 환불이 불가합니다.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
        "결제가 완료되지 않았어요. 다시 시도해주세요.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "UNKNOWN_PAYMENT_ERROR",
        "결제에 실패했어요. 같은 문제가 반복된다면 은행이나 카드사로 문의해주세요.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "FAILED_REFUND_PROCESS",
        "은행 응답시간 지연이나 일시적인 오류로 환불요청에 실패했습니다.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "FAILED_METHOD_HANDLING_CANCEL",
        "취소 중 결제 시 사용한 결제 수단 처리과정에서 일시적인 오류가 발생했습니다.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "FAILED_PARTIAL_REFUND",
        "은행 점검, 해약 계좌 등의 사유로 부분 환불이 실패했습니다.",
    ),
    code(
        S::INTERNAL_SERVER_ERROR,
        "COMMON_ERROR",
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
    ),
];

/// The message of a code the table does not know.
const UNLISTED_CODE_MESSAGE: &str = "테스트 코드로 요청한 오류입니다.";

/// Looks a code up in [`CODES`].
pub fn known(code: &str) -> Option<ErrorCode> {
    CODES.iter().copied().find(|known| known.code == code)
}

/// A Toss error on the wire: status plus `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TossError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
}

impl TossError {
    /// The error Toss returns for `code`: the table's status and message, or 400 for an unlisted code.
    pub fn named(code: &str) -> Self {
        match known(code) {
            Some(known) => known.into(),
            None => Self {
                status: StatusCode::BAD_REQUEST,
                code: Cow::Owned(code.to_owned()),
                message: Cow::Borrowed(UNLISTED_CODE_MESSAGE),
            },
        }
    }

    /// `INVALID_REQUEST` with a message that says what was wrong.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..INVALID_REQUEST.into()
        }
    }

    /// The `{code, message}` body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "code": self.code, "message": self.message })
    }
}

impl From<ErrorCode> for TossError {
    fn from(known: ErrorCode) -> Self {
        Self {
            status: known.status,
            code: Cow::Borrowed(known.code),
            message: Cow::Borrowed(known.message),
        }
    }
}

/// The one place a refused operation becomes a wire error.
impl From<PaymentError> for TossError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::InvalidRequest(message) => Self::invalid_request(message),
            PaymentError::NotFoundPaymentSession => NOT_FOUND_PAYMENT_SESSION.into(),
            PaymentError::NotFoundPayment => NOT_FOUND_PAYMENT.into(),
            PaymentError::AlreadyProcessedPayment => ALREADY_PROCESSED_PAYMENT.into(),
            PaymentError::DuplicatedOrderId => DUPLICATED_ORDER_ID.into(),
            PaymentError::AlreadyCanceledPayment => ALREADY_CANCELED_PAYMENT.into(),
            PaymentError::NotCancelableAmount => NOT_CANCELABLE_AMOUNT.into(),
            PaymentError::NotCancelablePayment => NOT_CANCELABLE_PAYMENT.into(),
            PaymentError::NotAllowedPartialRefundWaitingDeposit => {
                NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT.into()
            }
            PaymentError::ForbiddenConsecutiveRequest => FORBIDDEN_CONSECUTIVE_REQUEST.into(),
            PaymentError::NotWaitingForDeposit => {
                Self::invalid_request("입금 대기 중인 가상계좌 결제가 아닙니다.")
            }
            PaymentError::BookFull => Self {
                message: Cow::Borrowed(
                    "샌드박스 결제 저장소가 가득 찼습니다. POST /sandbox/toss/reset 으로 비워주세요.",
                ),
                ..FAILED_INTERNAL_SYSTEM_PROCESSING.into()
            },
        }
    }
}

impl IntoResponse for TossError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_in_the_table_is_listed_once_with_a_client_or_server_error_status() {
        for (index, entry) in CODES.iter().enumerate() {
            assert!(
                entry.status.is_client_error() || entry.status.is_server_error(),
                "{}",
                entry.code
            );
            assert!(
                CODES[index + 1..]
                    .iter()
                    .all(|other| other.code != entry.code),
                "{} listed twice",
                entry.code
            );
        }
    }

    #[test]
    fn the_codes_the_notes_name_have_the_statuses_the_notes_give() {
        for (name, status) in [
            ("ALREADY_PROCESSED_PAYMENT", 400),
            ("PROVIDER_ERROR", 400),
            ("INVALID_REQUEST", 400),
            ("BELOW_MINIMUM_AMOUNT", 400),
            ("ALREADY_CANCELED_PAYMENT", 400),
            ("UNAUTHORIZED_KEY", 401),
            ("REJECT_CARD_PAYMENT", 403),
            ("NOT_CANCELABLE_AMOUNT", 403),
            ("FORBIDDEN_CONSECUTIVE_REQUEST", 403),
            ("INCORRECT_BASIC_AUTH_FORMAT", 403),
            ("NOT_FOUND_PAYMENT", 404),
            ("NOT_FOUND_PAYMENT_SESSION", 404),
            ("FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING", 500),
            ("FAILED_INTERNAL_SYSTEM_PROCESSING", 500),
            ("UNKNOWN_PAYMENT_ERROR", 500),
        ] {
            assert_eq!(TossError::named(name).status.as_u16(), status, "{name}");
        }
    }

    #[test]
    fn an_unlisted_code_is_returned_as_a_bad_request_with_that_code() {
        let error = TossError::named("SOMETHING_NEW");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "SOMETHING_NEW");
    }
}

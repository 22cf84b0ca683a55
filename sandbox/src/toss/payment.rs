//! Payments and their state machine: authorisation by the widget, confirm, cancel and
//! virtual-account deposit, as plain functions over an in-memory [`PaymentBook`].
//!
//! Nothing here knows HTTP: each operation takes its already-parsed input and `now` (Unix
//! milliseconds) and returns the new [`Payment`] or a [`PaymentError`], which `error.rs` maps to
//! Toss's wire codes. Amounts are `i64` won with checked arithmetic.
//!
//! Lifecycle: the widget (`/sandbox/toss/pay`) creates a payment `IN_PROGRESS`; confirm makes a
//! card payment `DONE` and a virtual-account payment `WAITING_FOR_DEPOSIT` (then `DONE` on deposit);
//! cancels lower `balanceAmount` and leave it `PARTIAL_CANCELED` or `CANCELED`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock;

/// Toss's limit on `paymentKey`.
pub const PAYMENT_KEY_CHARS_MAX: usize = 200;
/// Toss's limits on `orderId` (`[A-Za-z0-9_-]` only).
pub const ORDER_ID_CHARS_MIN: usize = 6;
pub const ORDER_ID_CHARS_MAX: usize = 64;
/// Toss's limit on `orderName`.
pub const ORDER_NAME_CHARS_MAX: usize = 100;
/// Toss's limit on `cancelReason`.
pub const CANCEL_REASON_CHARS_MAX: usize = 200;
/// Toss processes only the first of two cancels of one payment less than a second apart.
pub const CONSECUTIVE_CANCEL_WINDOW_MS: i64 = 1000;
/// Toss drops an authorised payment that is not confirmed within about ten minutes (?); the
/// sandbox enforces it so a client that confirms late meets the failure here first.
pub const PAYMENT_SESSION_TTL_MS: i64 = 10 * 60 * 1000;
/// Toss's default due date for a virtual account deposit is seven days (?).
pub const VIRTUAL_ACCOUNT_DUE_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Payments kept in memory: far more than any test run creates, small enough (about 2 KB each)
/// that a runaway client cannot exhaust the machine. `/sandbox/toss/reset` empties the book.
pub const PAYMENTS_MAX: usize = 100_000;

/// The Payment object version this sandbox speaks.
pub const API_VERSION: &str = "2022-11-16";
/// Toss's test merchant id.
pub const MERCHANT_ID: &str = "tosspayments";
/// `orderName` when the widget call names none.
pub const ORDER_NAME_DEFAULT: &str = "테스트 주문";
/// `cancelReason` of a cancel made in the merchant console when the call gives none.
pub const CONSOLE_CANCEL_REASON_DEFAULT: &str = "상점관리자에서 취소";

/// Why an operation was refused. `error.rs` maps each to Toss's code and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentError {
    /// `INVALID_REQUEST`, with a message saying which field.
    InvalidRequest(String),
    NotFoundPaymentSession,
    NotFoundPayment,
    AlreadyProcessedPayment,
    DuplicatedOrderId,
    AlreadyCanceledPayment,
    NotCancelableAmount,
    NotCancelablePayment,
    NotAllowedPartialRefundWaitingDeposit,
    ForbiddenConsecutiveRequest,
    /// Control plane: a deposit for a payment that is not a virtual account waiting for one.
    NotWaitingForDeposit,
    /// The book holds [`PAYMENTS_MAX`] payments.
    BookFull,
}

fn invalid(message: &str) -> PaymentError {
    PaymentError::InvalidRequest(message.to_owned())
}

/// An `orderId`: 6–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId(String);

impl OrderId {
    /// # Errors
    /// `INVALID_REQUEST` when the length or a character is outside Toss's rule.
    pub fn parse(raw: &str) -> Result<Self, PaymentError> {
        let length_ok = (ORDER_ID_CHARS_MIN..=ORDER_ID_CHARS_MAX).contains(&raw.len());
        let characters_ok = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if length_ok && characters_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid(
                "orderId는 영문 대소문자, 숫자, 특수문자 -, _ 로 이루어진 6자 이상 64자 이하의 문자열이어야 합니다.",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `paymentKey`: 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentKey(String);

impl PaymentKey {
    /// # Errors
    /// `INVALID_REQUEST` when empty or longer than Toss allows.
    pub fn parse(raw: &str) -> Result<Self, PaymentError> {
        if raw.is_empty() || raw.chars().count() > PAYMENT_KEY_CHARS_MAX {
            Err(invalid("paymentKey는 1자 이상 200자 이하여야 합니다."))
        } else {
            Ok(Self(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Card,
    VirtualAccount,
}

impl Method {
    /// The control plane's names, `CARD` and `VIRTUAL_ACCOUNT`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "CARD" => Some(Self::Card),
            "VIRTUAL_ACCOUNT" => Some(Self::VirtualAccount),
            _ => None,
        }
    }

    /// `method` as Toss writes it (Korean by default).
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Card => "카드",
            Self::VirtualAccount => "가상계좌",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Ready,
    InProgress,
    WaitingForDeposit,
    Done,
    Canceled,
    PartialCanceled,
    Aborted,
    Expired,
}

/// Toss's Payment object (version 2022-11-16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub version: String,
    pub payment_key: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: String,
    pub order_name: String,
    pub m_id: String,
    pub currency: String,
    pub method: String,
    pub total_amount: i64,
    pub balance_amount: i64,
    pub status: PaymentStatus,
    pub requested_at: String,
    pub approved_at: Option<String>,
    pub use_escrow: bool,
    pub last_transaction_key: Option<String>,
    pub supplied_amount: i64,
    pub vat: i64,
    pub culture_expense: bool,
    pub tax_free_amount: i64,
    pub tax_exemption_amount: i64,
    pub cancels: Option<Vec<Cancel>>,
    pub is_partial_cancelable: bool,
    pub card: Option<Card>,
    pub virtual_account: Option<VirtualAccount>,
    pub secret: Option<String>,
    pub mobile_phone: Option<serde_json::Value>,
    pub gift_certificate: Option<serde_json::Value>,
    pub transfer: Option<serde_json::Value>,
    pub receipt: Option<Link>,
    pub checkout: Option<Link>,
    pub easy_pay: Option<serde_json::Value>,
    pub country: String,
    pub failure: Option<Failure>,
    pub cash_receipt: Option<serde_json::Value>,
    pub cash_receipts: Option<serde_json::Value>,
    pub discount: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancel {
    pub transaction_key: String,
    pub cancel_reason: String,
    pub tax_exemption_amount: i64,
    pub canceled_at: String,
    pub easy_pay_discount_amount: i64,
    pub receipt_key: String,
    pub cancel_amount: i64,
    pub tax_free_amount: i64,
    /// The balance left after this cancel.
    pub refundable_amount: i64,
    pub cancel_status: String,
    pub cancel_request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub amount: i64,
    pub issuer_code: String,
    pub acquirer_code: Option<String>,
    pub number: String,
    pub installment_plan_months: u32,
    pub approve_no: String,
    pub use_card_point: bool,
    pub card_type: String,
    pub owner_type: String,
    pub acquire_status: String,
    pub is_interest_free: bool,
    pub interest_payer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualAccount {
    pub account_type: String,
    pub account_number: String,
    pub bank_code: String,
    pub customer_name: String,
    pub due_date: String,
    pub refund_status: String,
    pub expired: bool,
    pub settlement_status: String,
    pub refund_receive_account: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// `DEPOSIT_CALLBACK` webhook data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositCallback {
    pub created_at: String,
    pub secret: String,
    pub status: PaymentStatus,
    pub transaction_key: String,
    pub order_id: String,
}

/// What the widget sends when the customer approves: a validated order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    pub order_id: OrderId,
    pub amount: i64,
    pub order_name: String,
    pub method: Method,
}

impl Authorisation {
    /// # Errors
    /// `INVALID_REQUEST` naming the field that breaks Toss's rules.
    pub fn parse(
        order_id: &str,
        amount: i64,
        order_name: Option<&str>,
        method: Option<&str>,
    ) -> Result<Self, PaymentError> {
        let order_id = OrderId::parse(order_id)?;
        if amount <= 0 {
            return Err(invalid("amount는 0보다 커야 합니다."));
        }
        let order_name = order_name.unwrap_or(ORDER_NAME_DEFAULT);
        if order_name.is_empty() || order_name.chars().count() > ORDER_NAME_CHARS_MAX {
            return Err(invalid("orderName은 1자 이상 100자 이하여야 합니다."));
        }
        let method = match method {
            None => Method::Card,
            Some(raw) => Method::parse(raw)
                .ok_or_else(|| invalid("method는 CARD 또는 VIRTUAL_ACCOUNT 여야 합니다."))?,
        };
        Ok(Self {
            order_id,
            amount,
            order_name: order_name.to_owned(),
            method,
        })
    }
}

/// The body of `POST /v1/payments/confirm`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub payment_key: PaymentKey,
    pub order_id: OrderId,
    pub amount: i64,
}

impl Confirmation {
    /// # Errors
    /// `INVALID_REQUEST` naming the malformed field.
    pub fn parse(payment_key: &str, order_id: &str, amount: i64) -> Result<Self, PaymentError> {
        Ok(Self {
            payment_key: PaymentKey::parse(payment_key)?,
            order_id: OrderId::parse(order_id)?,
            amount,
        })
    }
}

/// The body of `POST /v1/payments/{paymentKey}/cancel`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelRequest {
    pub reason: String,
    /// `None` cancels the whole balance.
    pub amount: Option<i64>,
    pub tax_free_amount: i64,
    pub refund_receive_account: Option<serde_json::Value>,
}

impl CancelRequest {
    /// # Errors
    /// `INVALID_REQUEST` naming the malformed field. Amounts out of range are left to
    /// [`PaymentBook::cancel`], which answers `NOT_CANCELABLE_AMOUNT` as Toss does.
    pub fn parse(
        reason: &str,
        amount: Option<i64>,
        tax_free_amount: Option<i64>,
        currency: Option<&str>,
        refund_receive_account: Option<serde_json::Value>,
    ) -> Result<Self, PaymentError> {
        if reason.trim().is_empty() || reason.chars().count() > CANCEL_REASON_CHARS_MAX {
            return Err(invalid("cancelReason은 1자 이상 200자 이하여야 합니다."));
        }
        let tax_free_amount = tax_free_amount.unwrap_or(0);
        if tax_free_amount < 0 {
            return Err(invalid("taxFreeAmount는 0 이상이어야 합니다."));
        }
        if currency.is_some_and(|currency| currency != "KRW") {
            return Err(invalid("currency는 KRW만 지원합니다."));
        }
        if let Some(account) = &refund_receive_account {
            let has = |field: &str| {
                account
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|value| !value.is_empty())
            };
            if !(has("bank") && has("accountNumber") && has("holderName")) {
                return Err(invalid(
                    "refundReceiveAccount에는 bank, accountNumber, holderName이 필요합니다.",
                ));
            }
        }
        Ok(Self {
            reason: reason.to_owned(),
            amount,
            tax_free_amount,
            refund_receive_account,
        })
    }
}

/// Whether a confirm compares its `amount` with the authorised one (Toss always does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountCheck {
    Enforced,
    /// Approve the authorised amount whatever the request names (a fault, never Toss).
    Skipped,
}

/// Who cancels: the merchant's server through the API, or a person in Toss's console. Only API
/// cancels are subject to the one-second consecutive-request rule (and counted as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOrigin {
    Api,
    Console,
}

/// Counters for assertions: how often each operation changed state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Confirms that approved a payment (replays and refusals do not count).
    pub confirms_executed: u64,
    /// API cancels that cancelled money.
    pub cancels_executed: u64,
    /// Cancels made through the console stand-in.
    pub console_cancels_executed: u64,
    /// Reads answered (`GET /v1/payments/{paymentKey}` and `…/orders/{orderId}`, found or not):
    /// what a client's polling costs.
    pub reads: u64,
    /// Payments in the book.
    pub payments: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    payment: Payment,
    method: Method,
    authorised_ms: i64,
    last_api_cancel_ms: Option<i64>,
}

/// Every payment the sandbox knows, by key, with the latest one of each order.
#[derive(Debug, Default)]
pub struct PaymentBook {
    entries: HashMap<String, Entry>,
    latest_by_order: HashMap<String, String>,
    stats: Stats,
}

impl PaymentBook {
    /// The widget's approval: a new payment `IN_PROGRESS`. An earlier unconfirmed payment of the
    /// same order is superseded (`EXPIRED`); a confirmed one makes the order a duplicate.
    ///
    /// # Errors
    /// `DUPLICATED_ORDER_ID`; the book is full.
    pub fn authorise(
        &mut self,
        order: Authorisation,
        now_ms: i64,
    ) -> Result<Payment, PaymentError> {
        if self.entries.len() >= PAYMENTS_MAX {
            return Err(PaymentError::BookFull);
        }
        if let Some(previous) = self
            .latest_by_order
            .get(order.order_id.as_str())
            .and_then(|key| self.entries.get_mut(key))
        {
            match previous.payment.status {
                PaymentStatus::Ready | PaymentStatus::InProgress => {
                    previous.payment.status = PaymentStatus::Expired;
                }
                PaymentStatus::Aborted | PaymentStatus::Expired => {}
                PaymentStatus::WaitingForDeposit
                | PaymentStatus::Done
                | PaymentStatus::Canceled
                | PaymentStatus::PartialCanceled => return Err(PaymentError::DuplicatedOrderId),
            }
        }
        let payment_key = format!("tsb_{}", Uuid::new_v4().simple());
        let (supplied_amount, vat) = supplied_and_vat(order.amount, 0);
        let card = (order.method == Method::Card).then(|| Card {
            amount: order.amount,
            issuer_code: "71".to_owned(),
            acquirer_code: Some("71".to_owned()),
            number: "43301234****123*".to_owned(),
            installment_plan_months: 0,
            approve_no: "00000000".to_owned(),
            use_card_point: false,
            card_type: "신용".to_owned(),
            owner_type: "개인".to_owned(),
            acquire_status: "READY".to_owned(),
            is_interest_free: false,
            interest_payer: None,
        });
        let payment = Payment {
            version: API_VERSION.to_owned(),
            payment_key: payment_key.clone(),
            kind: "NORMAL".to_owned(),
            order_id: order.order_id.as_str().to_owned(),
            order_name: order.order_name,
            m_id: MERCHANT_ID.to_owned(),
            currency: "KRW".to_owned(),
            method: order.method.wire_name().to_owned(),
            total_amount: order.amount,
            balance_amount: order.amount,
            status: PaymentStatus::InProgress,
            requested_at: clock::kst_seconds(now_ms),
            approved_at: None,
            use_escrow: false,
            last_transaction_key: None,
            supplied_amount,
            vat,
            culture_expense: false,
            tax_free_amount: 0,
            tax_exemption_amount: 0,
            cancels: None,
            is_partial_cancelable: true,
            card,
            virtual_account: None,
            secret: None,
            mobile_phone: None,
            gift_certificate: None,
            transfer: None,
            receipt: Some(Link {
                url: format!(
                    "https://dashboard.tosspayments.com/receipt/redirection?transactionId={payment_key}&ref=PX"
                ),
            }),
            checkout: Some(Link {
                url: format!("https://api.tosspayments.com/v1/payments/{payment_key}/checkout"),
            }),
            easy_pay: None,
            country: "KR".to_owned(),
            failure: None,
            cash_receipt: None,
            cash_receipts: None,
            discount: None,
        };
        self.latest_by_order
            .insert(payment.order_id.clone(), payment_key.clone());
        self.entries.insert(
            payment_key,
            Entry {
                payment: payment.clone(),
                method: order.method,
                authorised_ms: now_ms,
                last_api_cancel_ms: None,
            },
        );
        Ok(payment)
    }

    /// `POST /v1/payments/confirm`.
    ///
    /// # Errors
    /// `NOT_FOUND_PAYMENT_SESSION` for an unknown, superseded or timed-out authorisation;
    /// `ALREADY_PROCESSED_PAYMENT` once confirmed; `INVALID_REQUEST` when `orderId` or `amount`
    /// differ from the authorisation.
    pub fn confirm(
        &mut self,
        request: &Confirmation,
        now_ms: i64,
    ) -> Result<Payment, PaymentError> {
        self.confirm_checking(request, now_ms, AmountCheck::Enforced)
    }

    /// [`PaymentBook::confirm`], with the amount check as `check` says: a fault can make the sandbox
    /// approve what the customer authorised whatever the request names, which the real Toss
    /// refuses to do, so that a client's defence against it can be tested.
    ///
    /// # Errors
    /// As [`PaymentBook::confirm`].
    pub fn confirm_checking(
        &mut self,
        request: &Confirmation,
        now_ms: i64,
        check: AmountCheck,
    ) -> Result<Payment, PaymentError> {
        let entry = self
            .entries
            .get_mut(request.payment_key.as_str())
            .ok_or(PaymentError::NotFoundPaymentSession)?;
        match entry.payment.status {
            PaymentStatus::Ready | PaymentStatus::InProgress => {}
            PaymentStatus::Aborted | PaymentStatus::Expired => {
                return Err(PaymentError::NotFoundPaymentSession);
            }
            PaymentStatus::WaitingForDeposit
            | PaymentStatus::Done
            | PaymentStatus::Canceled
            | PaymentStatus::PartialCanceled => return Err(PaymentError::AlreadyProcessedPayment),
        }
        if now_ms.saturating_sub(entry.authorised_ms) > PAYMENT_SESSION_TTL_MS {
            entry.payment.status = PaymentStatus::Expired;
            return Err(PaymentError::NotFoundPaymentSession);
        }
        let payment = &mut entry.payment;
        if payment.order_id != request.order_id.as_str() {
            return Err(invalid(
                "주문번호(orderId)가 결제 요청 정보와 일치하지 않습니다.",
            ));
        }
        if check == AmountCheck::Enforced && payment.total_amount != request.amount {
            return Err(invalid(
                "결제 금액(amount)이 결제 요청 정보와 일치하지 않습니다.",
            ));
        }
        match entry.method {
            Method::Card => {
                payment.status = PaymentStatus::Done;
                payment.approved_at = Some(clock::kst_seconds(now_ms));
                if let Some(card) = &mut payment.card {
                    card.approve_no = approve_number();
                }
            }
            Method::VirtualAccount => {
                // Toss approves a virtual-account payment when the money arrives, so
                // `approvedAt` stays null until the deposit (?).
                payment.status = PaymentStatus::WaitingForDeposit;
                payment.secret = Some(format!("ps_{}", Uuid::new_v4().simple()));
                payment.virtual_account = Some(VirtualAccount {
                    account_type: "일반".to_owned(),
                    account_number: account_number(),
                    bank_code: "20".to_owned(),
                    customer_name: "김토스".to_owned(),
                    due_date: clock::kst_seconds(now_ms.saturating_add(VIRTUAL_ACCOUNT_DUE_MS)),
                    refund_status: "NONE".to_owned(),
                    expired: false,
                    settlement_status: "INCOMPLETED".to_owned(),
                    refund_receive_account: None,
                });
            }
        }
        payment.last_transaction_key = Some(transaction_key());
        self.stats.confirms_executed += 1;
        Ok(payment.clone())
    }

    /// `POST /v1/payments/{paymentKey}/cancel`, or a cancel in the console.
    ///
    /// # Errors
    /// `NOT_FOUND_PAYMENT`; `FORBIDDEN_CONSECUTIVE_REQUEST` within a second of the previous API
    /// cancel; `ALREADY_CANCELED_PAYMENT`; `NOT_CANCELABLE_PAYMENT` before approval;
    /// `NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT`; `NOT_CANCELABLE_AMOUNT` for an amount not in
    /// `1..=balanceAmount`; `INVALID_REQUEST` for a tax-free part above the amount or a
    /// deposited virtual account refunded through the API without `refundReceiveAccount`.
    pub fn cancel(
        &mut self,
        payment_key: &str,
        request: CancelRequest,
        origin: CancelOrigin,
        now_ms: i64,
    ) -> Result<Payment, PaymentError> {
        let entry = self
            .entries
            .get_mut(payment_key)
            .ok_or(PaymentError::NotFoundPayment)?;
        if origin == CancelOrigin::Api
            && entry
                .last_api_cancel_ms
                .is_some_and(|last| now_ms.saturating_sub(last) < CONSECUTIVE_CANCEL_WINDOW_MS)
        {
            return Err(PaymentError::ForbiddenConsecutiveRequest);
        }
        let payment = &mut entry.payment;
        let balance = payment.balance_amount;
        let waiting_for_deposit = match payment.status {
            PaymentStatus::Done | PaymentStatus::PartialCanceled => false,
            PaymentStatus::WaitingForDeposit => true,
            PaymentStatus::Canceled => return Err(PaymentError::AlreadyCanceledPayment),
            PaymentStatus::Ready
            | PaymentStatus::InProgress
            | PaymentStatus::Aborted
            | PaymentStatus::Expired => return Err(PaymentError::NotCancelablePayment),
        };
        let amount = request.amount.unwrap_or(balance);
        if waiting_for_deposit && amount != balance {
            return Err(PaymentError::NotAllowedPartialRefundWaitingDeposit);
        }
        if amount <= 0 || amount > balance {
            return Err(PaymentError::NotCancelableAmount);
        }
        if request.tax_free_amount > amount {
            return Err(invalid("taxFreeAmount는 cancelAmount보다 클 수 없습니다."));
        }
        let refund_needed = entry.method == Method::VirtualAccount && !waiting_for_deposit;
        if refund_needed && origin == CancelOrigin::Api && request.refund_receive_account.is_none()
        {
            return Err(invalid(
                "가상계좌 결제 취소에는 환불 계좌 정보(refundReceiveAccount)가 필요합니다.",
            ));
        }
        let remaining = balance
            .checked_sub(amount)
            .ok_or(PaymentError::NotCancelableAmount)?;
        let key = transaction_key();
        payment.cancels.get_or_insert_with(Vec::new).push(Cancel {
            transaction_key: key.clone(),
            cancel_reason: request.reason,
            tax_exemption_amount: 0,
            canceled_at: clock::kst_seconds(now_ms),
            easy_pay_discount_amount: 0,
            receipt_key: format!("rk_{}", Uuid::new_v4().simple()),
            cancel_amount: amount,
            tax_free_amount: request.tax_free_amount,
            refundable_amount: remaining,
            cancel_status: "DONE".to_owned(),
            cancel_request_id: None,
        });
        payment.balance_amount = remaining;
        payment.status = if remaining == 0 {
            PaymentStatus::Canceled
        } else {
            PaymentStatus::PartialCanceled
        };
        // Toss lowers the supplied amount and VAT with each cancel.
        (payment.supplied_amount, payment.vat) = supplied_and_vat(remaining, 0);
        payment.last_transaction_key = Some(key);
        if let Some(account) = &mut payment.virtual_account
            && refund_needed
        {
            "COMPLETED".clone_into(&mut account.refund_status);
            account.refund_receive_account = request.refund_receive_account;
        }
        let payment = payment.clone();
        match origin {
            CancelOrigin::Api => {
                entry.last_api_cancel_ms = Some(now_ms);
                self.stats.cancels_executed += 1;
            }
            CancelOrigin::Console => self.stats.console_cancels_executed += 1,
        }
        Ok(payment)
    }

    /// The customer pays into the virtual account: `WAITING_FOR_DEPOSIT` becomes `DONE`.
    ///
    /// # Errors
    /// `NOT_FOUND_PAYMENT`; the payment is not waiting for a deposit.
    pub fn deposit(&mut self, payment_key: &str, now_ms: i64) -> Result<Payment, PaymentError> {
        let entry = self
            .entries
            .get_mut(payment_key)
            .ok_or(PaymentError::NotFoundPayment)?;
        if entry.payment.status != PaymentStatus::WaitingForDeposit {
            return Err(PaymentError::NotWaitingForDeposit);
        }
        entry.payment.status = PaymentStatus::Done;
        entry.payment.approved_at = Some(clock::kst_seconds(now_ms));
        entry.payment.last_transaction_key = Some(transaction_key());
        Ok(entry.payment.clone())
    }

    pub fn get(&self, payment_key: &str) -> Option<&Payment> {
        self.entries.get(payment_key).map(|entry| &entry.payment)
    }

    /// The latest payment made for an order.
    pub fn get_by_order(&self, order_id: &str) -> Option<&Payment> {
        self.latest_by_order
            .get(order_id)
            .and_then(|key| self.get(key))
    }

    /// Counts one answered read.
    pub fn count_read(&mut self) {
        self.stats.reads = self.stats.reads.saturating_add(1);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            payments: self.entries.len(),
            ..self.stats
        }
    }
}

/// The `DEPOSIT_CALLBACK` Toss sends for a virtual-account payment's current state; `None` for
/// other methods or before an account was issued.
pub fn deposit_callback(payment: &Payment, now_ms: i64) -> Option<DepositCallback> {
    payment.virtual_account.as_ref()?;
    Some(DepositCallback {
        created_at: clock::kst_local_micros(now_ms),
        secret: payment.secret.clone()?,
        status: payment.status,
        transaction_key: payment.last_transaction_key.clone()?,
        order_id: payment.order_id.clone(),
    })
}

/// `(suppliedAmount, vat)`: VAT is a rounded eleventh of the taxable part, as Toss computes it.
pub fn supplied_and_vat(amount: i64, tax_free_amount: i64) -> (i64, i64) {
    let taxable = amount.saturating_sub(tax_free_amount).max(0);
    // Round half up; an eleventh is never exactly half.
    let vat = taxable / 11 + i64::from(taxable % 11 >= 6);
    (taxable - vat, vat)
}

fn transaction_key() -> String {
    Uuid::new_v4().simple().to_string().to_uppercase()
}

fn approve_number() -> String {
    format!("{:08}", Uuid::new_v4().as_u128() % 100_000_000)
}

fn account_number() -> String {
    format!("X{:013}", Uuid::new_v4().as_u128() % 10_000_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_707_794_294_123;

    fn authorised(book: &mut PaymentBook, order_id: &str, amount: i64, method: Method) -> Payment {
        let method = match method {
            Method::Card => "CARD",
            Method::VirtualAccount => "VIRTUAL_ACCOUNT",
        };
        let order = Authorisation::parse(order_id, amount, None, Some(method));
        let payment = order.and_then(|order| book.authorise(order, NOW_MS));
        assert!(payment.is_ok(), "{payment:?}");
        payment.unwrap()
    }

    fn confirmation(payment: &Payment) -> Confirmation {
        Confirmation::parse(
            &payment.payment_key,
            &payment.order_id,
            payment.total_amount,
        )
        .unwrap()
    }

    fn confirmed(book: &mut PaymentBook, order_id: &str, amount: i64) -> Payment {
        let payment = authorised(book, order_id, amount, Method::Card);
        book.confirm(&confirmation(&payment), NOW_MS).unwrap()
    }

    fn cancel_of(amount: Option<i64>) -> CancelRequest {
        CancelRequest::parse("고객 변심", amount, None, None, None).unwrap()
    }

    #[test]
    fn an_authorised_card_payment_is_confirmed_once_and_becomes_done() {
        let mut book = PaymentBook::default();
        let payment = authorised(&mut book, "order-0001", 15_000, Method::Card);
        assert_eq!(payment.status, PaymentStatus::InProgress);
        assert_eq!(payment.approved_at, None);

        let done = book.confirm(&confirmation(&payment), NOW_MS + 1000);
        let done = done.unwrap();
        assert_eq!(done.status, PaymentStatus::Done);
        assert_eq!(done.method, "카드");
        assert_eq!(done.balance_amount, 15_000);
        assert_eq!(done.total_amount, 15_000);
        assert_eq!(
            done.approved_at.as_deref(),
            Some("2024-02-13T12:18:15+09:00")
        );
        assert!(done.last_transaction_key.is_some());
        assert_eq!(done.secret, None);
        assert!(done.card.is_some());
        assert_eq!(book.stats().confirms_executed, 1);

        assert_eq!(
            book.confirm(&confirmation(&payment), NOW_MS + 2000),
            Err(PaymentError::AlreadyProcessedPayment)
        );
        assert_eq!(book.stats().confirms_executed, 1);
    }

    #[test]
    fn a_confirm_with_another_order_id_or_amount_is_an_invalid_request_naming_the_field() {
        let mut book = PaymentBook::default();
        let payment = authorised(&mut book, "order-0001", 15_000, Method::Card);
        let mut wrong_amount = confirmation(&payment);
        wrong_amount.amount = 14_999;
        assert!(matches!(
            book.confirm(&wrong_amount, NOW_MS),
            Err(PaymentError::InvalidRequest(message)) if message.contains("amount")
        ));
        let mut wrong_order = confirmation(&payment);
        wrong_order.order_id = OrderId("order-0002".to_owned());
        assert!(matches!(
            book.confirm(&wrong_order, NOW_MS),
            Err(PaymentError::InvalidRequest(message)) if message.contains("orderId")
        ));
        assert_eq!(
            book.get(&payment.payment_key).map(|p| p.status),
            Some(PaymentStatus::InProgress)
        );
        assert_eq!(book.stats().confirms_executed, 0);
    }

    #[test]
    fn a_confirm_of_an_unknown_or_stale_authorisation_is_not_found_payment_session() {
        let mut book = PaymentBook::default();
        let unknown = Confirmation::parse("tsb_nope", "order-0001", 1000);
        let unknown = unknown.unwrap();
        assert_eq!(
            book.confirm(&unknown, NOW_MS),
            Err(PaymentError::NotFoundPaymentSession)
        );
        let payment = authorised(&mut book, "order-0001", 1000, Method::Card);
        assert_eq!(
            book.confirm(&confirmation(&payment), NOW_MS + PAYMENT_SESSION_TTL_MS + 1),
            Err(PaymentError::NotFoundPaymentSession)
        );
        assert_eq!(
            book.get(&payment.payment_key).map(|p| p.status),
            Some(PaymentStatus::Expired)
        );
    }

    #[test]
    fn paying_an_order_again_supersedes_an_unconfirmed_payment_but_not_a_confirmed_one() {
        let mut book = PaymentBook::default();
        let first = authorised(&mut book, "order-0001", 1000, Method::Card);
        let second = authorised(&mut book, "order-0001", 1000, Method::Card);
        assert_ne!(first.payment_key, second.payment_key);
        assert_eq!(
            book.confirm(&confirmation(&first), NOW_MS),
            Err(PaymentError::NotFoundPaymentSession)
        );
        assert!(book.confirm(&confirmation(&second), NOW_MS).is_ok());
        let order = Authorisation::parse("order-0001", 1000, None, None);
        assert_eq!(
            order.and_then(|order| book.authorise(order, NOW_MS)),
            Err(PaymentError::DuplicatedOrderId)
        );
        assert_eq!(
            book.get_by_order("order-0001")
                .map(|p| p.payment_key.clone()),
            Some(second.payment_key)
        );
    }

    #[test]
    fn order_ids_outside_six_to_sixty_four_url_safe_characters_are_rejected() {
        for bad in [
            "short",
            "has space",
            "주문번호123456",
            &"x".repeat(65),
            "semi;colon",
        ] {
            assert!(OrderId::parse(bad).is_err(), "{bad}");
        }
        for good in ["abc-12", "A_b-C_d-0123456789", &"x".repeat(64)] {
            assert!(OrderId::parse(good).is_ok(), "{good}");
        }
        assert!(PaymentKey::parse(&"k".repeat(201)).is_err());
        assert!(Authorisation::parse("order-0001", 0, None, None).is_err());
        assert!(Authorisation::parse("order-0001", 100, None, Some("BITCOIN")).is_err());
    }

    #[test]
    fn a_partial_cancel_reduces_the_balance_and_keeps_the_payment_partially_canceled() {
        let mut book = PaymentBook::default();
        let payment = confirmed(&mut book, "order-0001", 10_000);
        let canceled = book.cancel(
            &payment.payment_key,
            cancel_of(Some(3000)),
            CancelOrigin::Api,
            NOW_MS,
        );
        let canceled = canceled.unwrap();
        assert_eq!(canceled.status, PaymentStatus::PartialCanceled);
        assert_eq!(canceled.balance_amount, 7000);
        assert_eq!(canceled.total_amount, 10_000);
        let cancels = canceled.cancels.clone().unwrap_or_default();
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].cancel_amount, 3000);
        assert_eq!(cancels[0].refundable_amount, 7000);
        assert_eq!(cancels[0].cancel_reason, "고객 변심");
        assert_eq!(
            canceled.last_transaction_key.as_ref(),
            Some(&cancels[0].transaction_key)
        );
        assert_eq!(canceled.supplied_amount + canceled.vat, 7000);
        assert_eq!(book.stats().cancels_executed, 1);
    }

    #[test]
    fn cancelling_the_rest_makes_the_payment_canceled_and_a_further_cancel_is_already_canceled() {
        let mut book = PaymentBook::default();
        let payment = confirmed(&mut book, "order-0001", 10_000);
        let key = &payment.payment_key;
        assert!(
            book.cancel(key, cancel_of(Some(4000)), CancelOrigin::Api, NOW_MS)
                .is_ok()
        );
        let rest = book.cancel(key, cancel_of(None), CancelOrigin::Api, NOW_MS + 1000);
        let rest = rest.unwrap();
        assert_eq!(rest.status, PaymentStatus::Canceled);
        assert_eq!(rest.balance_amount, 0);
        assert_eq!(rest.cancels.map(|cancels| cancels.len()), Some(2));
        assert_eq!(
            book.cancel(key, cancel_of(None), CancelOrigin::Api, NOW_MS + 5000),
            Err(PaymentError::AlreadyCanceledPayment)
        );
    }

    #[test]
    fn a_cancel_beyond_the_balance_or_not_positive_is_not_cancelable_amount_and_changes_nothing() {
        let mut book = PaymentBook::default();
        let payment = confirmed(&mut book, "order-0001", 10_000);
        for amount in [10_001, 0, -5] {
            assert_eq!(
                book.cancel(
                    &payment.payment_key,
                    cancel_of(Some(amount)),
                    CancelOrigin::Api,
                    NOW_MS
                ),
                Err(PaymentError::NotCancelableAmount),
                "{amount}"
            );
        }
        assert_eq!(book.get(&payment.payment_key), Some(&payment));
        assert_eq!(book.stats().cancels_executed, 0);
    }

    #[test]
    fn a_second_api_cancel_within_one_second_is_a_forbidden_consecutive_request() {
        let mut book = PaymentBook::default();
        let payment = confirmed(&mut book, "order-0001", 10_000);
        let key = &payment.payment_key;
        assert!(
            book.cancel(key, cancel_of(Some(1000)), CancelOrigin::Api, NOW_MS)
                .is_ok()
        );
        assert_eq!(
            book.cancel(key, cancel_of(Some(1000)), CancelOrigin::Api, NOW_MS + 999),
            Err(PaymentError::ForbiddenConsecutiveRequest)
        );
        assert_eq!(book.get(key).map(|p| p.balance_amount), Some(9000));
        // The console is a person, not a retrying client: it is not held to the rule.
        assert!(
            book.cancel(
                key,
                cancel_of(Some(1000)),
                CancelOrigin::Console,
                NOW_MS + 999
            )
            .is_ok()
        );
        assert!(
            book.cancel(key, cancel_of(Some(1000)), CancelOrigin::Api, NOW_MS + 1000)
                .is_ok()
        );
        assert_eq!(book.get(key).map(|p| p.balance_amount), Some(7000));
        assert_eq!(book.stats().cancels_executed, 2);
        assert_eq!(book.stats().console_cancels_executed, 1);
    }

    #[test]
    fn a_payment_not_yet_confirmed_cannot_be_cancelled() {
        let mut book = PaymentBook::default();
        let payment = authorised(&mut book, "order-0001", 1000, Method::Card);
        assert_eq!(
            book.cancel(
                &payment.payment_key,
                cancel_of(None),
                CancelOrigin::Api,
                NOW_MS
            ),
            Err(PaymentError::NotCancelablePayment)
        );
        assert_eq!(
            book.cancel("tsb_nope", cancel_of(None), CancelOrigin::Api, NOW_MS),
            Err(PaymentError::NotFoundPayment)
        );
    }

    #[test]
    fn a_virtual_account_waits_for_its_deposit_with_a_secret_and_the_deposit_makes_it_done() {
        let mut book = PaymentBook::default();
        let payment = authorised(&mut book, "order-0001", 50_000, Method::VirtualAccount);
        let waiting = book.confirm(&confirmation(&payment), NOW_MS);
        let waiting = waiting.unwrap();
        assert_eq!(waiting.status, PaymentStatus::WaitingForDeposit);
        assert_eq!(waiting.method, "가상계좌");
        assert!(waiting.virtual_account.is_some());
        assert!(waiting.card.is_none());
        let secret = waiting.secret.clone().unwrap_or_default();
        assert!(!secret.is_empty());

        let done = book.deposit(&payment.payment_key, NOW_MS + 60_000);
        let done = done.unwrap();
        assert_eq!(done.status, PaymentStatus::Done);
        assert!(done.approved_at.is_some());
        let callback = deposit_callback(&done, NOW_MS + 60_000);
        let callback = callback.unwrap();
        assert_eq!(callback.secret, secret);
        assert_eq!(callback.status, PaymentStatus::Done);
        assert_eq!(
            Some(&callback.transaction_key),
            done.last_transaction_key.as_ref()
        );
        assert_eq!(
            book.deposit(&payment.payment_key, NOW_MS),
            Err(PaymentError::NotWaitingForDeposit)
        );
    }

    #[test]
    fn a_virtual_account_is_cancelled_whole_before_its_deposit_and_refunded_to_an_account_after() {
        let mut book = PaymentBook::default();
        let before = authorised(&mut book, "order-0001", 50_000, Method::VirtualAccount);
        assert!(book.confirm(&confirmation(&before), NOW_MS).is_ok());
        assert_eq!(
            book.cancel(
                &before.payment_key,
                cancel_of(Some(10_000)),
                CancelOrigin::Api,
                NOW_MS
            ),
            Err(PaymentError::NotAllowedPartialRefundWaitingDeposit)
        );
        let canceled = book.cancel(
            &before.payment_key,
            cancel_of(None),
            CancelOrigin::Api,
            NOW_MS,
        );
        assert_eq!(canceled.map(|p| p.status), Ok(PaymentStatus::Canceled));

        let after = authorised(&mut book, "order-0002", 50_000, Method::VirtualAccount);
        assert!(book.confirm(&confirmation(&after), NOW_MS).is_ok());
        assert!(book.deposit(&after.payment_key, NOW_MS).is_ok());
        assert!(matches!(
            book.cancel(&after.payment_key, cancel_of(None), CancelOrigin::Api, NOW_MS),
            Err(PaymentError::InvalidRequest(message)) if message.contains("refundReceiveAccount")
        ));
        let account = serde_json::json!({"bank": "20", "accountNumber": "1002123456789", "holderName": "김토스"});
        let refund = CancelRequest::parse("환불", None, None, Some("KRW"), Some(account));
        let refund = refund.unwrap();
        let refunded = book.cancel(&after.payment_key, refund, CancelOrigin::Api, NOW_MS);
        let refunded = refunded.unwrap();
        assert_eq!(refunded.status, PaymentStatus::Canceled);
        assert_eq!(
            refunded
                .virtual_account
                .map(|account| account.refund_status),
            Some("COMPLETED".to_owned())
        );
    }

    #[test]
    fn vat_is_a_rounded_eleventh_and_with_the_supplied_amount_adds_up_to_the_amount() {
        assert_eq!(supplied_and_vat(11_000, 0), (10_000, 1000));
        assert_eq!(supplied_and_vat(1000, 0), (909, 91));
        assert_eq!(supplied_and_vat(1005, 0), (914, 91));
        assert_eq!(supplied_and_vat(1006, 0), (915, 91));
        for amount in [1, 5, 6, 99, 12_345, i64::MAX] {
            let (supplied, vat) = supplied_and_vat(amount, 0);
            assert_eq!(supplied.checked_add(vat), Some(amount));
        }
    }

    #[test]
    fn the_payment_serialises_with_toss_field_names_and_numbers_for_amounts() {
        let mut book = PaymentBook::default();
        let payment = confirmed(&mut book, "order-0001", 15_000);
        let json = serde_json::to_value(&payment).unwrap_or_default();
        assert_eq!(json["version"], "2022-11-16");
        assert_eq!(json["type"], "NORMAL");
        assert_eq!(json["mId"], "tosspayments");
        assert_eq!(json["status"], "DONE");
        assert_eq!(json["totalAmount"], 15_000);
        assert_eq!(json["balanceAmount"], 15_000);
        assert_eq!(json["taxFreeAmount"], 0);
        assert_eq!(json["isPartialCancelable"], true);
        assert!(json["cancels"].is_null());
        assert!(json["virtualAccount"].is_null());
        assert!(json["easyPay"].is_null());
        assert!(json["failure"].is_null());
        assert!(json["receipt"]["url"].is_string());
        assert!(json["card"]["approveNo"].is_string());
    }
}

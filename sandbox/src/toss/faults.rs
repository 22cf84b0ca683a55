//! Injected faults: rules that make the next matching Toss calls slow, fail, hang, or approve
//! and then never answer. This is what the real Toss cannot be asked to do, and exactly what a
//! payment client must survive (ADR 0002).
//!
//! A rule names an operation (or `any`); the list's order and counting are [`crate::faults`]'.
//! `count` is at least 1.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{self, TossError};
use crate::faults::{self, Counted, Rule, Uses, ZeroCount};

/// The Toss sandbox's rules.
pub type Faults = faults::Faults<FaultRule>;

/// The Toss call a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Confirm,
    Cancel,
    /// `GET /v1/payments/{paymentKey}` and `GET /v1/payments/orders/{orderId}`.
    Get,
    /// Every Toss call (rules only).
    Any,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Get => "get",
            Self::Any => "any",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Sleep, then handle normally.
    Latency { ms: u64 },
    /// Answer this error without touching state.
    Error(TossError),
    /// Never answer (in practice: answer after the client gave up) and touch nothing.
    Hang,
    /// Execute (state, webhook, idempotency record), then never answer.
    ApproveThenDrop,
    /// Confirm only: approve the amount the customer authorised in the widget even when the
    /// request names another (the real Toss refuses such a confirm), then answer, or never answer
    /// when `drop_reply`. What a client must survive if Toss ever holds another amount than the
    /// order's.
    ApproveAuthorisedAmount { drop_reply: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub operation: Operation,
    pub kind: FaultKind,
}

impl FaultRule {
    fn matches(&self, operation: Operation) -> bool {
        self.operation == operation || self.operation == Operation::Any
    }
}

impl Rule for FaultRule {
    type Kind = FaultKind;

    fn kind(&self) -> &FaultKind {
        &self.kind
    }

    fn to_json(&self) -> Value {
        let mut json = json!({ "operation": self.operation.name() });
        match &self.kind {
            FaultKind::Latency { ms } => {
                json["kind"] = json!("latency");
                json["latencyMs"] = json!(ms);
            }
            FaultKind::Error(error) => {
                json["kind"] = json!("error");
                json["status"] = json!(error.status.as_u16());
                json["code"] = json!(error.code);
            }
            FaultKind::Hang => json["kind"] = json!("hang"),
            FaultKind::ApproveThenDrop => json["kind"] = json!("approve_then_drop"),
            FaultKind::ApproveAuthorisedAmount { drop_reply: false } => {
                json["kind"] = json!("approve_authorised_amount");
            }
            FaultKind::ApproveAuthorisedAmount { drop_reply: true } => {
                json["kind"] = json!("approve_authorised_amount_then_drop");
            }
        }
        json
    }
}

/// The control plane's `POST /sandbox/toss/faults` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    pub operation: Operation,
    pub kind: String,
    pub latency_ms: Option<u64>,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub count: Option<u32>,
}

impl FaultSpec {
    /// # Errors
    /// A message saying which field is wrong.
    pub fn into_rule(self) -> Result<Counted<FaultRule>, String> {
        let uses = Uses::from_count(self.count, ZeroCount::Refused)?;
        let kind = match self.kind.as_str() {
            "latency" => FaultKind::Latency {
                ms: faults::latency_ms(self.latency_ms)?,
            },
            "error" => FaultKind::Error(injected_error(self.status, self.code.as_deref())?),
            "hang" => FaultKind::Hang,
            "approve_then_drop" => FaultKind::ApproveThenDrop,
            "approve_authorised_amount" | "approve_authorised_amount_then_drop" => {
                if self.operation != Operation::Confirm {
                    return Err(format!("{} applies to confirm only", self.kind));
                }
                FaultKind::ApproveAuthorisedAmount {
                    drop_reply: self.kind.ends_with("_then_drop"),
                }
            }
            other => {
                return Err(format!(
                    "unknown kind {other:?}: latency, error, hang, approve_then_drop, \
                     approve_authorised_amount or approve_authorised_amount_then_drop"
                ));
            }
        };
        Ok(Counted {
            rule: FaultRule {
                operation: self.operation,
                kind,
            },
            uses,
        })
    }
}

/// The error an `error` rule answers: the code defaults to `FAILED_INTERNAL_SYSTEM_PROCESSING`;
/// the status defaults to the code's own (500 for a code the table does not know).
fn injected_error(status: Option<u16>, code: Option<&str>) -> Result<TossError, String> {
    let code = code.unwrap_or(error::FAILED_INTERNAL_SYSTEM_PROCESSING.code);
    if code.is_empty() {
        return Err("code must not be empty".to_owned());
    }
    let mut injected = TossError::named(code);
    if error::known(code).is_none() {
        injected.status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(status) = status {
        injected.status = faults::error_status(status)?;
    }
    Ok(injected)
}

impl Faults {
    /// Uses up one call of the first rule matching `operation`.
    pub fn take(&mut self, operation: Operation) -> Option<FaultKind> {
        self.take_first(|rule| rule.matches(operation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: Value) -> Counted<FaultRule> {
        serde_json::from_value::<FaultSpec>(json)
            .map_err(|error| error.to_string())
            .and_then(FaultSpec::into_rule)
            .unwrap()
    }

    #[test]
    fn a_rule_applies_to_its_count_of_matching_calls_and_then_lapses() {
        let mut faults = Faults::default();
        let added = faults.add(rule(
            json!({"operation": "confirm", "kind": "hang", "count": 2}),
        ));
        assert!(added.is_ok());
        assert_eq!(faults.take(Operation::Get), None);
        assert_eq!(faults.take(Operation::Confirm), Some(FaultKind::Hang));
        assert_eq!(faults.take(Operation::Confirm), Some(FaultKind::Hang));
        assert_eq!(faults.take(Operation::Confirm), None);
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn an_any_rule_matches_every_operation_and_rules_apply_in_the_order_added() {
        let mut faults = Faults::default();
        assert!(
            faults
                .add(rule(
                    json!({"operation": "any", "kind": "latency", "latencyMs": 5})
                ))
                .is_ok()
        );
        assert!(
            faults
                .add(rule(
                    json!({"operation": "cancel", "kind": "approve_then_drop"})
                ))
                .is_ok()
        );
        assert_eq!(
            faults.take(Operation::Cancel),
            Some(FaultKind::Latency { ms: 5 })
        );
        assert_eq!(
            faults.take(Operation::Cancel),
            Some(FaultKind::ApproveThenDrop)
        );
    }

    #[test]
    fn an_error_rule_defaults_to_a_500_internal_failure_and_takes_a_known_codes_status() {
        let plain = rule(json!({"operation": "confirm", "kind": "error"}));
        let FaultKind::Error(plain) = plain.rule.kind else {
            unreachable!()
        };
        assert_eq!(plain.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(plain.code, "FAILED_INTERNAL_SYSTEM_PROCESSING");

        let rejected =
            rule(json!({"operation": "confirm", "kind": "error", "code": "REJECT_CARD_PAYMENT"}));
        let FaultKind::Error(rejected) = rejected.rule.kind else {
            unreachable!()
        };
        assert_eq!(rejected.status, StatusCode::FORBIDDEN);

        let explicit =
            rule(json!({"operation": "confirm", "kind": "error", "status": 503, "code": "X"}));
        let FaultKind::Error(explicit) = explicit.rule.kind else {
            unreachable!()
        };
        assert_eq!(explicit.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(explicit.code, "X");
    }

    #[test]
    fn a_confirm_may_be_made_to_approve_the_authorised_amount_and_to_drop_its_answer() {
        let answering = rule(json!({"operation": "confirm", "kind": "approve_authorised_amount"}));
        assert_eq!(
            answering.rule.kind,
            FaultKind::ApproveAuthorisedAmount { drop_reply: false }
        );
        let dropping =
            rule(json!({"operation": "confirm", "kind": "approve_authorised_amount_then_drop"}));
        assert_eq!(
            dropping.rule.kind,
            FaultKind::ApproveAuthorisedAmount { drop_reply: true }
        );
        assert_eq!(
            dropping.rule.to_json()["kind"],
            "approve_authorised_amount_then_drop"
        );
    }

    #[test]
    fn malformed_rules_are_refused_with_a_reason() {
        for bad in [
            json!({"operation": "confirm", "kind": "latency"}),
            json!({"operation": "confirm", "kind": "latency", "latencyMs": faults::FAULT_LATENCY_MS_MAX + 1}),
            json!({"operation": "confirm", "kind": "error", "status": 200}),
            json!({"operation": "confirm", "kind": "explode"}),
            json!({"operation": "confirm", "kind": "hang", "count": 0}),
            json!({"operation": "cancel", "kind": "approve_authorised_amount"}),
            json!({"operation": "any", "kind": "approve_authorised_amount_then_drop"}),
        ] {
            let spec = serde_json::from_value::<FaultSpec>(bad.clone());
            assert!(
                spec.map_err(|e| e.to_string())
                    .and_then(FaultSpec::into_rule)
                    .is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<FaultSpec>(json!({"operation": "refund", "kind": "hang"}))
                .is_err()
        );
    }
}

//! Injected faults: rules that make the next matching sends fail with one of FCM's errors, answer
//! late, or lose their connection. This is what the real FCM cannot be asked to do, and what a
//! notification sender must survive.
//!
//! A rule names a device token (or none: it matches every send, topics and conditions included).
//! The list's order and counting are [`crate::faults`]'; `count: 0` applies until the rules are
//! cleared. Faults apply after authentication and the message checks, before delivery.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ErrorCode;
use crate::faults::{self, Counted, Rule, Uses, ZeroCount};

/// FCM's rules.
pub type Faults = faults::Faults<FaultRule>;
/// `Retry-After` of an injected `quota_exceeded` that names none: FCM's quota is per minute.
pub const QUOTA_RETRY_AFTER_SECONDS_DEFAULT: u32 = 60;
/// A longer `Retry-After` would stall a test suite for nothing.
pub const RETRY_AFTER_SECONDS_MAX: u32 = 3600;
/// Device tokens are about 160 characters; a longer one cannot match a valid message.
pub const FAULT_TOKEN_CHARS_MAX: usize = 4096;

/// What a rule does to the sends it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this error; deliver nothing.
    Error {
        code: ErrorCode,
        retry_after_seconds: Option<u32>,
    },
    /// Wait, then handle the send normally.
    Latency { ms: u64 },
    /// Close the connection without an answer; deliver nothing.
    DropConnection,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Error { code, .. } => code.kind(),
            Self::Latency { .. } => "latency",
            Self::DropConnection => "drop_connection",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The device token it applies to; `None` for every send.
    pub token: Option<String>,
    pub kind: FaultKind,
}

impl FaultRule {
    fn matches(&self, token: Option<&str>) -> bool {
        self.token
            .as_deref()
            .is_none_or(|wanted| Some(wanted) == token)
    }
}

impl Rule for FaultRule {
    type Kind = FaultKind;

    fn kind(&self) -> &FaultKind {
        &self.kind
    }

    fn to_json(&self) -> Value {
        let mut json = json!({
            "token": self.token,
            "kind": self.kind.name(),
        });
        match self.kind {
            FaultKind::Error {
                retry_after_seconds: Some(seconds),
                ..
            } => json["retryAfterSeconds"] = json!(seconds),
            FaultKind::Latency { ms } => json["latencyMs"] = json!(ms),
            FaultKind::Error { .. } | FaultKind::DropConnection => {}
        }
        json
    }
}

/// The control plane's `POST /sandbox/fcm/faults` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    pub token: Option<String>,
    pub kind: String,
    pub retry_after_seconds: Option<u32>,
    pub latency_ms: Option<u64>,
    pub count: Option<u32>,
}

impl FaultSpec {
    /// # Errors
    /// A message saying which field is wrong.
    pub fn into_rule(self) -> Result<Counted<FaultRule>, String> {
        let error = |code: ErrorCode| FaultKind::Error {
            code,
            retry_after_seconds: self.retry_after_seconds,
        };
        let kind = match self.kind.as_str() {
            "unregistered" => error(ErrorCode::Unregistered),
            "invalid_argument" => error(ErrorCode::InvalidArgument),
            "quota_exceeded" => FaultKind::Error {
                code: ErrorCode::QuotaExceeded,
                retry_after_seconds: Some(
                    self.retry_after_seconds
                        .unwrap_or(QUOTA_RETRY_AFTER_SECONDS_DEFAULT),
                ),
            },
            "unavailable" => error(ErrorCode::Unavailable),
            "internal" => error(ErrorCode::Internal),
            "sender_id_mismatch" => error(ErrorCode::SenderIdMismatch),
            "third_party_auth_error" => error(ErrorCode::ThirdPartyAuthError),
            "latency" => FaultKind::Latency {
                ms: faults::latency_ms(self.latency_ms)?,
            },
            "drop_connection" => FaultKind::DropConnection,
            other => {
                return Err(format!(
                    "unknown kind {other:?}: unregistered, invalid_argument, quota_exceeded, \
                     unavailable, internal, sender_id_mismatch, third_party_auth_error, \
                     latency or drop_connection"
                ));
            }
        };
        if self.latency_ms.is_some() && !matches!(kind, FaultKind::Latency { .. }) {
            return Err("latencyMs applies to kind latency only".to_owned());
        }
        let retry_after_allowed = matches!(
            kind,
            FaultKind::Error {
                code: ErrorCode::QuotaExceeded | ErrorCode::Unavailable | ErrorCode::Internal,
                ..
            }
        );
        if let Some(seconds) = self.retry_after_seconds {
            if !retry_after_allowed {
                return Err(
                    "retryAfterSeconds applies to quota_exceeded, unavailable and internal only"
                        .to_owned(),
                );
            }
            if seconds > RETRY_AFTER_SECONDS_MAX {
                return Err(format!(
                    "retryAfterSeconds must be at most {RETRY_AFTER_SECONDS_MAX}"
                ));
            }
        }
        if let Some(token) = &self.token
            && (token.is_empty() || token.len() > FAULT_TOKEN_CHARS_MAX)
        {
            return Err(format!(
                "token must be 1 to {FAULT_TOKEN_CHARS_MAX} characters; leave it out for any"
            ));
        }
        Ok(Counted {
            rule: FaultRule {
                token: self.token,
                kind,
            },
            uses: Uses::from_count(self.count, ZeroCount::UntilCleared)?,
        })
    }
}

impl Faults {
    /// Uses up one send of the first rule matching a send to `token` (`None`: a topic or a
    /// condition).
    pub fn take(&mut self, token: Option<&str>) -> Option<FaultKind> {
        self.take_first(|rule| rule.matches(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: Value) -> Result<Counted<FaultRule>, String> {
        serde_json::from_value::<FaultSpec>(json)
            .map_err(|error| error.to_string())
            .and_then(FaultSpec::into_rule)
    }

    fn faults(rules: &[Value]) -> Faults {
        let mut faults = Faults::default();
        for json in rules {
            let added = rule(json.clone()).and_then(|rule| faults.add(rule));
            assert_eq!(added, Ok(()), "{json}");
        }
        faults
    }

    #[test]
    fn a_token_rule_applies_to_that_token_only_for_its_count() {
        let mut faults = faults(&[json!({"token": "a", "kind": "unregistered", "count": 2})]);
        let unregistered = Some(FaultKind::Error {
            code: ErrorCode::Unregistered,
            retry_after_seconds: None,
        });
        assert_eq!(faults.take(Some("b")), None);
        assert_eq!(faults.take(None), None);
        assert_eq!(faults.take(Some("a")), unregistered);
        assert_eq!(faults.take(Some("a")), unregistered);
        assert_eq!(faults.take(Some("a")), None);
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn a_rule_without_a_token_matches_every_send_and_count_zero_lasts_until_cleared() {
        let mut faults = faults(&[json!({"kind": "unavailable", "count": 0})]);
        for token in [Some("a"), None, Some("b")].into_iter().cycle().take(30) {
            assert_eq!(faults.take(token).map(FaultKind::name), Some("unavailable"));
        }
        faults.clear();
        assert_eq!(faults.take(Some("a")), None);
    }

    #[test]
    fn quota_exceeded_carries_retry_after() {
        let default = rule(json!({"kind": "quota_exceeded"})).map(|rule| rule.rule.kind);
        assert_eq!(
            default,
            Ok(FaultKind::Error {
                code: ErrorCode::QuotaExceeded,
                retry_after_seconds: Some(QUOTA_RETRY_AFTER_SECONDS_DEFAULT)
            })
        );
        let chosen = rule(json!({"kind": "quota_exceeded", "retryAfterSeconds": 2}));
        assert_eq!(
            chosen.map(|rule| rule.to_json()["retryAfterSeconds"].clone()),
            Ok(json!(2))
        );
    }

    #[test]
    fn rules_apply_in_the_order_added() {
        let mut faults = faults(&[
            json!({"kind": "latency", "latencyMs": 5}),
            json!({"token": "a", "kind": "drop_connection"}),
        ]);
        assert_eq!(faults.take(Some("a")), Some(FaultKind::Latency { ms: 5 }));
        assert_eq!(faults.take(Some("a")), Some(FaultKind::DropConnection));
    }

    #[test]
    fn a_malformed_rule_is_refused_with_a_reason() {
        for json in [
            json!({"kind": "latency"}),
            json!({"kind": "latency", "latencyMs": faults::FAULT_LATENCY_MS_MAX + 1}),
            json!({"kind": "unregistered", "latencyMs": 5}),
            json!({"kind": "unregistered", "retryAfterSeconds": 5}),
            json!({"kind": "quota_exceeded", "retryAfterSeconds": RETRY_AFTER_SECONDS_MAX + 1}),
            json!({"kind": "explode"}),
            json!({"kind": "internal", "token": ""}),
            json!({"kind": "internal", "extra": 1}),
            json!({"token": "a"}),
        ] {
            assert!(rule(json.clone()).is_err(), "{json}");
        }
    }
}

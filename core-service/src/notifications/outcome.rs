//! What an FCM answer means and what happens to a notification next, as pure functions.
//!
//! [`classify`] reads one `messages:send` answer as FCM's documentation of its error codes says
//! to act on it; [`decide`] turns the outcomes for all of a user's devices into the notification's
//! next state. What SENT means when a user has several devices:
//!
//! - A notification goes to every device the user has registered when it is attempted. A device
//!   FCM accepted it for is remembered (`delivered_devices`) and skipped by later attempts.
//! - While some device failed with a retryable error and retries are left (3 after the first
//!   attempt), the notification stays PENDING and only those devices are tried again.
//! - Otherwise it is SENT if FCM accepted it for at least one device, or if no device is left to
//!   try: the user has none, or every token turned out dead (`UNREGISTERED`, deleted). The last
//!   error still records what went wrong for the others. A user without devices has the
//!   notification in the app's list; there is nobody to push to, which is not an error.
//! - It is FAILED when no device accepted it and some device was refused for good
//!   (`INVALID_ARGUMENT`, `SENDER_ID_MISMATCH`, `THIRD_PARTY_AUTH_ERROR`) or ran out of retries.
//!   FAILED raises an operator alert: it means our message, our credentials or FCM are broken,
//!   not that a user uninstalled the app.

use serde::Deserialize;

/// A notification is tried once and then retried this many times at most (docs/design.md §5).
pub const RETRIES_MAX: u32 = 3;
/// First attempt plus retries; the schema's `CHECK (attempts <= 4)` holds the same number.
pub const ATTEMPTS_MAX: u32 = 1 + RETRIES_MAX;
/// FCM's quota is per minute: a `QUOTA_EXCEEDED` without `Retry-After` waits for the next window.
pub const QUOTA_RETRY_AFTER_MS_DEFAULT: u64 = 60_000;
/// A `Retry-After` longer than this is read as this: a bogus header must not park a message for
/// days, and three retries of an hour are already longer than anyone waits for a push.
pub const RETRY_AFTER_MS_MAX: u64 = 3_600_000;
/// `last_error` is for people: long enough for a device and FCM's message, short enough to list.
pub const LAST_ERROR_CHARS_MAX: usize = 500;

const _: () = assert!(
    ATTEMPTS_MAX == 4,
    "the schema's CHECK (attempts <= 4) says so too"
);
const _: () = assert!(QUOTA_RETRY_AFTER_MS_DEFAULT <= RETRY_AFTER_MS_MAX);

/// What one send to one device came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// FCM accepted the message for the device.
    Delivered,
    /// The token is dead (`UNREGISTERED`, or `INVALID_ARGUMENT` naming the token): delete it and
    /// do not retry.
    TokenGone(String),
    /// Refused for good (`INVALID_ARGUMENT`, `SENDER_ID_MISMATCH`, `THIRD_PARTY_AUTH_ERROR`, any
    /// other 4xx): no retry.
    Refused(String),
    /// Try again later (`QUOTA_EXCEEDED`, `UNAVAILABLE`, `INTERNAL`, other 5xx, transport errors),
    /// no sooner than `retry_after_ms` when FCM said so.
    Retry {
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// Our access token was refused (401 without an FCM error code): get a new one and send again.
    Unauthenticated(String),
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
    #[serde(rename = "fieldViolations", default)]
    field_violations: Vec<FieldViolation>,
}

#[derive(Debug, Deserialize)]
struct FieldViolation {
    #[serde(default)]
    field: String,
}

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// `Retry-After` as FCM sends it (whole seconds), in ms, bounded by [`RETRY_AFTER_MS_MAX`]. An
/// HTTP date or garbage reads as absent: the backoff applies instead.
#[must_use]
pub fn retry_after_ms(header: Option<&str>) -> Option<u64> {
    let seconds: u64 = header?.trim().parse().ok()?;
    Some(seconds.saturating_mul(1000).min(RETRY_AFTER_MS_MAX))
}

/// What an answer of `status` with `body` (and `Retry-After`, already read) means for a send.
#[must_use]
pub fn classify(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> DeviceOutcome {
    if (200..300).contains(&status) {
        return DeviceOutcome::Delivered;
    }
    let parsed: Option<ErrorObject> = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.error);
    let error_code = parsed.as_ref().and_then(|error| {
        error
            .details
            .iter()
            .find(|detail| detail.kind == FCM_ERROR_TYPE)
            .and_then(|detail| detail.error_code.clone())
    });
    let names_the_token = parsed.as_ref().is_some_and(|error| {
        error
            .details
            .iter()
            .filter(|detail| detail.kind == BAD_REQUEST_TYPE)
            .flat_map(|detail| &detail.field_violations)
            .any(|violation| violation.field == "message.token")
    });
    let described = |code: &str| {
        let message = parsed.as_ref().map_or("", |error| error.message.as_str());
        cut(&format!("{status} {code}: {message}"))
    };
    match error_code.as_deref() {
        Some(code @ "UNREGISTERED") => DeviceOutcome::TokenGone(described(code)),
        Some(code @ "INVALID_ARGUMENT") if names_the_token => {
            DeviceOutcome::TokenGone(described(code))
        }
        Some(code @ ("INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR")) => {
            DeviceOutcome::Refused(described(code))
        }
        Some(code @ "QUOTA_EXCEEDED") => DeviceOutcome::Retry {
            error: described(code),
            retry_after_ms: Some(retry_after_ms.unwrap_or(QUOTA_RETRY_AFTER_MS_DEFAULT)),
        },
        Some(code @ ("UNAVAILABLE" | "INTERNAL")) => DeviceOutcome::Retry {
            error: described(code),
            retry_after_ms,
        },
        // No FCM code we know: Google's front end (401), a proxy, or a code newer than this build.
        other => {
            let code = other.map_or_else(
                || {
                    parsed
                        .as_ref()
                        .map_or("HTTP", |error| error.status.as_str())
                        .to_owned()
                },
                str::to_owned,
            );
            match status {
                401 if other.is_none() => DeviceOutcome::Unauthenticated(described(&code)),
                429 => DeviceOutcome::Retry {
                    error: described(&code),
                    retry_after_ms: Some(retry_after_ms.unwrap_or(QUOTA_RETRY_AFTER_MS_DEFAULT)),
                },
                500..=599 => DeviceOutcome::Retry {
                    error: described(&code),
                    retry_after_ms,
                },
                _ => DeviceOutcome::Refused(described(&code)),
            }
        }
    }
}

/// Cuts `text` to [`LAST_ERROR_CHARS_MAX`] characters.
#[must_use]
pub fn cut(text: &str) -> String {
    if text.chars().count() <= LAST_ERROR_CHARS_MAX {
        text.to_owned()
    } else {
        text.chars().take(LAST_ERROR_CHARS_MAX).collect()
    }
}

/// Retry delays: `nene_domain::backoff` from `base_ms`, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

/// A notification's next state after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Done: `delivered` devices have it in all (this attempt and earlier ones); `last_error`
    /// says what went wrong for the others, if anything.
    Sent {
        delivered: usize,
        last_error: Option<String>,
    },
    /// Try the undelivered devices again after `delay_ms`.
    Retry { delay_ms: u64, last_error: String },
    /// No device has it and none will: raise an alert.
    Failed { last_error: String },
}

/// The decision after attempt number `attempt` (1 for the first send), given the devices that
/// had it before this attempt (`delivered_before`) and this attempt's outcome for every other
/// device. `random` feeds the backoff's jitter.
///
/// [`DeviceOutcome::Unauthenticated`] must have been resolved by the sender (it refreshes its
/// token and sends again); one left here counts as retryable.
#[must_use]
pub fn decide(
    attempt: u32,
    delivered_before: usize,
    outcomes: &[(String, DeviceOutcome)],
    backoff: Backoff,
    random: u64,
) -> Decision {
    let describe = |device: &str, error: &str| cut(&format!("device {device}: {error}"));
    let mut delivered = delivered_before;
    let mut retry_after_ms: Option<u64> = None;
    let mut retryable: Option<String> = None;
    let mut refused: Option<String> = None;
    let mut gone: Option<String> = None;
    for (device, outcome) in outcomes {
        match outcome {
            DeviceOutcome::Delivered => delivered += 1,
            DeviceOutcome::TokenGone(error) => {
                gone.get_or_insert_with(|| describe(device, error));
            }
            DeviceOutcome::Refused(error) => {
                refused.get_or_insert_with(|| describe(device, error));
            }
            DeviceOutcome::Retry {
                error,
                retry_after_ms: after,
            } => {
                retryable.get_or_insert_with(|| describe(device, error));
                retry_after_ms = retry_after_ms.max(*after);
            }
            DeviceOutcome::Unauthenticated(error) => {
                retryable.get_or_insert_with(|| describe(device, error));
            }
        }
    }
    if let Some(error) = &retryable
        && attempt < ATTEMPTS_MAX
    {
        let backoff_ms =
            nene_domain::backoff::retry_delay_ms(attempt, backoff.base_ms, backoff.max_ms, random);
        return Decision::Retry {
            delay_ms: backoff_ms.max(retry_after_ms.unwrap_or(0)),
            last_error: error.clone(),
        };
    }
    let undelivered = refused.or_else(|| {
        retryable.map(|error| cut(&format!("{error} (gave up after {attempt} attempts)")))
    });
    match undelivered {
        Some(last_error) if delivered == 0 => Decision::Failed { last_error },
        Some(last_error) => Decision::Sent {
            delivered,
            last_error: Some(last_error),
        },
        None if delivered == 0 && outcomes.is_empty() && delivered_before == 0 => Decision::Sent {
            delivered,
            last_error: Some("no registered device".to_owned()),
        },
        None => Decision::Sent {
            delivered,
            last_error: gone,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base_ms: 1_000,
        max_ms: 60_000,
    };

    fn fcm_error(status: u16, code: &str) -> Vec<u8> {
        serde_json::json!({ "error": { "code": status, "message": "m", "status": "S",
            "details": [{ "@type": FCM_ERROR_TYPE, "errorCode": code }] } })
        .to_string()
        .into_bytes()
    }

    fn device(name: &str, outcome: DeviceOutcome) -> (String, DeviceOutcome) {
        (name.to_owned(), outcome)
    }

    fn retry() -> DeviceOutcome {
        DeviceOutcome::Retry {
            error: "503 UNAVAILABLE".to_owned(),
            retry_after_ms: None,
        }
    }

    #[test]
    fn every_fcm_error_code_is_classified_as_fcm_documents_it() {
        let class = |status, code| classify(status, None, &fcm_error(status, code));
        assert!(matches!(
            class(404, "UNREGISTERED"),
            DeviceOutcome::TokenGone(_)
        ));
        assert!(matches!(
            class(400, "INVALID_ARGUMENT"),
            DeviceOutcome::Refused(_)
        ));
        assert!(matches!(
            class(403, "SENDER_ID_MISMATCH"),
            DeviceOutcome::Refused(_)
        ));
        assert!(matches!(
            class(401, "THIRD_PARTY_AUTH_ERROR"),
            DeviceOutcome::Refused(_)
        ));
        assert!(matches!(
            class(503, "UNAVAILABLE"),
            DeviceOutcome::Retry {
                retry_after_ms: None,
                ..
            }
        ));
        assert!(matches!(
            class(500, "INTERNAL"),
            DeviceOutcome::Retry { .. }
        ));
        assert_eq!(
            classify(200, None, b"{\"name\":\"x\"}"),
            DeviceOutcome::Delivered
        );
    }

    #[test]
    fn quota_exceeded_waits_for_retry_after_or_for_the_next_quota_window() {
        let body = fcm_error(429, "QUOTA_EXCEEDED");
        let with_header = classify(429, retry_after_ms(Some("7")), &body);
        assert!(matches!(
            with_header,
            DeviceOutcome::Retry {
                retry_after_ms: Some(7_000),
                ..
            }
        ));
        let without = classify(429, None, &body);
        assert!(matches!(
            without,
            DeviceOutcome::Retry {
                retry_after_ms: Some(QUOTA_RETRY_AFTER_MS_DEFAULT),
                ..
            }
        ));
    }

    #[test]
    fn an_invalid_argument_about_the_token_kills_the_token() {
        let body = serde_json::json!({ "error": { "code": 400, "message": "bad token",
            "status": "INVALID_ARGUMENT", "details": [
                { "@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT" },
                { "@type": BAD_REQUEST_TYPE, "fieldViolations": [{ "field": "message.token" }] }
            ] } });
        assert!(matches!(
            classify(400, None, body.to_string().as_bytes()),
            DeviceOutcome::TokenGone(_)
        ));
    }

    #[test]
    fn an_expired_access_token_asks_for_a_new_one_and_unknown_answers_go_by_status() {
        let front_end = br#"{"error":{"code":401,"message":"m","status":"UNAUTHENTICATED"}}"#;
        assert!(matches!(
            classify(401, None, front_end),
            DeviceOutcome::Unauthenticated(_)
        ));
        assert!(matches!(
            classify(502, None, b"<html>"),
            DeviceOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(404, None, b""),
            DeviceOutcome::Refused(_)
        ));
        assert!(matches!(
            classify(500, None, &fcm_error(500, "SOMETHING_NEW")),
            DeviceOutcome::Retry { .. }
        ));
    }

    #[test]
    fn retry_after_is_whole_seconds_bounded_and_anything_else_is_absent() {
        assert_eq!(retry_after_ms(Some(" 30 ")), Some(30_000));
        assert_eq!(retry_after_ms(Some("999999999")), Some(RETRY_AFTER_MS_MAX));
        assert_eq!(retry_after_ms(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after_ms(None), None);
    }

    #[test]
    fn a_retryable_failure_is_retried_three_times_then_fails_with_an_alert() {
        let outcomes = [device("d1", retry())];
        for attempt in 1..ATTEMPTS_MAX {
            assert!(matches!(
                decide(attempt, 0, &outcomes, BACKOFF, 0),
                Decision::Retry { .. }
            ));
        }
        let last = decide(ATTEMPTS_MAX, 0, &outcomes, BACKOFF, 0);
        assert!(
            matches!(&last, Decision::Failed { last_error } if last_error.contains("gave up after 4"))
        );
    }

    #[test]
    fn the_retry_waits_for_the_longer_of_the_backoff_and_retry_after() {
        let quota = [device(
            "d1",
            DeviceOutcome::Retry {
                error: "429".to_owned(),
                retry_after_ms: Some(30_000),
            },
        )];
        assert!(matches!(
            decide(1, 0, &quota, BACKOFF, 0),
            Decision::Retry {
                delay_ms: 30_000,
                ..
            }
        ));
        assert!(matches!(
            decide(1, 0, &[device("d1", retry())], BACKOFF, 250),
            Decision::Retry {
                delay_ms: 1_250,
                ..
            }
        ));
        assert!(matches!(
            decide(3, 0, &[device("d1", retry())], BACKOFF, 0),
            Decision::Retry {
                delay_ms: 4_000,
                ..
            }
        ));
    }

    #[test]
    fn a_permanent_refusal_fails_at_once_unless_another_device_has_it() {
        let refused = device(
            "d1",
            DeviceOutcome::Refused("400 INVALID_ARGUMENT".to_owned()),
        );
        assert!(matches!(
            decide(1, 0, std::slice::from_ref(&refused), BACKOFF, 0),
            Decision::Failed { .. }
        ));
        let with_another = [refused, device("d2", DeviceOutcome::Delivered)];
        assert!(matches!(
            decide(1, 0, &with_another, BACKOFF, 0),
            Decision::Sent {
                delivered: 1,
                last_error: Some(_)
            }
        ));
    }

    #[test]
    fn one_device_retrying_keeps_the_notification_pending_even_when_another_has_it() {
        let outcomes = [
            device("d1", DeviceOutcome::Delivered),
            device("d2", retry()),
        ];
        assert!(matches!(
            decide(1, 0, &outcomes, BACKOFF, 0),
            Decision::Retry { .. }
        ));
        // On the last attempt the one that has it makes it SENT.
        assert!(matches!(
            decide(ATTEMPTS_MAX, 1, &[device("d2", retry())], BACKOFF, 0),
            Decision::Sent {
                delivered: 1,
                last_error: Some(_)
            }
        ));
    }

    #[test]
    fn no_device_or_only_dead_tokens_is_sent_to_nobody_without_an_alert() {
        assert_eq!(
            decide(1, 0, &[], BACKOFF, 0),
            Decision::Sent {
                delivered: 0,
                last_error: Some("no registered device".to_owned())
            }
        );
        let gone = [device(
            "d1",
            DeviceOutcome::TokenGone("404 UNREGISTERED: m".to_owned()),
        )];
        assert!(matches!(
            decide(1, 0, &gone, BACKOFF, 0),
            Decision::Sent { delivered: 0, last_error: Some(error) } if error.contains("UNREGISTERED")
        ));
    }
}

//! The FCM stand-in's state and the decision for each send, as plain data and functions so the
//! whole decision is tested without HTTP.
//!
//! A send is checked in this order: the access token (`401 UNAUTHENTICATED`), its project against
//! the path's (`403 SENDER_ID_MISMATCH`), the message (`400 INVALID_ARGUMENT`), the fault rules,
//! the device token's registration (`404 UNREGISTERED`), the project's quota (`429
//! QUOTA_EXCEEDED`); then the message is delivered (recorded) unless `validate_only`.
//!
//! [`Service::send`] is what the HTTP handler runs under the mutex: a hash-map lookup for the
//! token, a length check for the fault rules, a hash-set lookup for the device token, a push
//! onto the delivery log. The message was parsed and encoded before the lock was taken, and the
//! answer's name is written after it is released.

use std::{
    collections::{HashSet, VecDeque},
    fmt,
};

use serde_json::{Map, Value, json};

use super::{
    error::{ErrorCode, FcmError},
    faults::{FaultKind, Faults},
    grant::AccessTokens,
    message::{SendRequest, Target},
};

/// Deliveries remembered, oldest forgotten first: the benchmark sends 300,000 and counts them
/// all; a million compact entries (a few hundred bytes each) stay well under a gigabyte.
pub const DELIVERIES_MAX: usize = 1_000_000;
/// Device tokens marked unregistered at once: tests mark a handful; the bound stops a loop.
pub const UNREGISTERED_TOKENS_MAX: usize = 100_000;
/// FCM's quota: 600,000 messages per minute per project (one project here).
pub const PROJECT_MESSAGES_PER_MINUTE_MAX: u64 = 600_000;
const QUOTA_WINDOW_MS: i64 = 60_000;

const _: () = assert!(DELIVERIES_MAX as u64 >= PROJECT_MESSAGES_PER_MINUTE_MAX);

/// A message's `name`, written only when answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageName {
    pub project_id: &'static str,
    /// `None` for a `validate_only` send, which FCM names `fake_message_id`.
    pub id: Option<(u64, i64)>,
}

impl fmt::Display for MessageName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "projects/{}/messages/", self.project_id)?;
        match self.id {
            // FCM's ids look like `0:1500415314455276%31bd1c9631bd1c96`.
            Some((sequence, at_ms)) => write!(
                formatter,
                "0:{}%{sequence:016x}",
                at_ms.saturating_mul(1000)
            ),
            None => formatter.write_str("fake_message_id"),
        }
    }
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sequence: u64,
    pub project_id: &'static str,
    pub target: Target,
    /// The message without its target, compact JSON.
    pub rest: Box<str>,
    pub at_ms: i64,
}

impl Delivery {
    pub fn name(&self) -> MessageName {
        MessageName {
            project_id: self.project_id,
            id: Some((self.sequence, self.at_ms)),
        }
    }

    /// `{name, token|topic|condition, notification, data, android?, apns?, webpush?,
    /// fcm_options?, at}`.
    pub fn to_json(&self) -> Value {
        let mut rest: Map<String, Value> = serde_json::from_str(&self.rest).unwrap_or_default();
        let mut json = Map::new();
        json.insert("name".to_owned(), self.name().to_string().into());
        json.insert(
            self.target.field().to_owned(),
            self.target.value().to_owned().into(),
        );
        for field in ["notification", "data"] {
            json.insert(field.to_owned(), rest.remove(field).unwrap_or(Value::Null));
        }
        for field in ["android", "apns", "webpush", "fcm_options"] {
            if let Some(value) = rest.remove(field).filter(|value| !value.is_null()) {
                json.insert(field.to_owned(), value);
            }
        }
        json.insert("at".to_owned(), crate::clock::utc_millis(self.at_ms).into());
        json.into()
    }
}

/// Which deliveries `GET /sandbox/fcm/deliveries` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub token: Option<String>,
    pub topic: Option<String>,
    pub condition: Option<String>,
    /// Only the newest this many (still newest last).
    pub limit: Option<usize>,
}

impl DeliveryFilter {
    fn matches(&self, delivery: &Delivery) -> bool {
        let wanted = |filter: &Option<String>, field: &str| {
            filter.as_deref().is_none_or(|value| {
                delivery.target.field() == field && delivery.target.value() == value
            })
        };
        wanted(&self.token, "token")
            && wanted(&self.topic, "topic")
            && wanted(&self.condition, "condition")
    }
}

/// The bounded delivery log, oldest first.
#[derive(Debug)]
pub struct Deliveries {
    log: VecDeque<Delivery>,
    /// [`DELIVERIES_MAX`], or less in tests.
    entries_max: usize,
    evicted: u64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self::with_entries_max(DELIVERIES_MAX)
    }
}

impl Deliveries {
    pub fn with_entries_max(entries_max: usize) -> Self {
        assert!(entries_max > 0, "a log must hold at least one delivery");
        Self {
            log: VecDeque::new(),
            entries_max,
            evicted: 0,
        }
    }

    pub fn record(&mut self, delivery: Delivery) {
        if self.log.len() >= self.entries_max {
            self.log.pop_front();
            self.evicted += 1;
        }
        self.log.push_back(delivery);
    }

    /// The deliveries `filter` selects, oldest first.
    pub fn matching(&self, filter: &DeliveryFilter) -> Vec<Delivery> {
        let mut selected: Vec<Delivery> = self
            .log
            .iter()
            .rev()
            .filter(|delivery| filter.matches(delivery))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        selected.reverse();
        selected
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

/// Sends counted by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub validated: u64,
    rejected: [u64; ErrorCode::ALL.len()],
    dropped_connections: u64,
    pub tokens_issued: u64,
}

impl Stats {
    pub fn rejected(&self, code: ErrorCode) -> u64 {
        self.rejected[code.index()]
    }

    fn reject(&mut self, code: ErrorCode) {
        let count = &mut self.rejected[code.index()];
        *count = count.saturating_add(1);
    }
}

/// A fixed one-minute window of the project's quota.
#[derive(Debug, Default)]
struct Quota {
    window_started_ms: i64,
    used: u64,
}

impl Quota {
    /// Counts one message, or says how many seconds until the window ends.
    fn take(&mut self, now_ms: i64) -> Result<(), u32> {
        let elapsed_ms = now_ms - self.window_started_ms;
        if !(0..QUOTA_WINDOW_MS).contains(&elapsed_ms) {
            self.window_started_ms = now_ms;
            self.used = 0;
        }
        if self.used >= PROJECT_MESSAGES_PER_MINUTE_MAX {
            let left_ms = QUOTA_WINDOW_MS - (now_ms - self.window_started_ms);
            return Err(u32::try_from(((left_ms + 999) / 1000).max(1)).unwrap_or(60));
        }
        self.used += 1;
        Ok(())
    }
}

/// What the handler does with a send.
#[derive(Debug)]
pub enum Outcome {
    /// `200 {"name": …}`.
    Sent(MessageName),
    Refused(FcmError),
    /// Wait this long, then send again without faults.
    Delayed {
        ms: u64,
        request: SendRequest,
    },
    /// Close the connection without answering.
    Drop,
}

/// Everything the FCM stand-in changes.
#[derive(Debug, Default)]
pub struct Service {
    pub tokens: AccessTokens,
    pub faults: Faults,
    unregistered: HashSet<String>,
    pub deliveries: Deliveries,
    pub stats: Stats,
    quota: Quota,
    sequence: u64,
}

impl Service {
    /// Mints an access token for `project_id`.
    pub fn issue_token(&mut self, project_id: &'static str, now_ms: i64) -> String {
        self.stats.tokens_issued += 1;
        self.tokens.issue(project_id, now_ms)
    }

    /// Marks a device token as no longer registered: sends to it answer `404 UNREGISTERED`.
    ///
    /// # Errors
    /// [`UNREGISTERED_TOKENS_MAX`] tokens are marked already.
    pub fn unregister(&mut self, token: &str) -> Result<(), String> {
        if !self.unregistered.contains(token) && self.unregistered.len() >= UNREGISTERED_TOKENS_MAX
        {
            return Err(format!(
                "at most {UNREGISTERED_TOKENS_MAX} unregistered tokens; reset first"
            ));
        }
        self.unregistered.insert(token.to_owned());
        Ok(())
    }

    /// Whether sends to `token` are accepted (any token is, unless marked unregistered).
    pub fn is_registered(&self, token: &str) -> bool {
        !self.unregistered.contains(token)
    }

    /// Forgets deliveries, faults, unregistered tokens, counts and the quota window; keeps the
    /// access tokens, so a running client's cached token stays good.
    pub fn reset(&mut self) {
        self.faults.clear();
        self.unregistered.clear();
        self.deliveries = Deliveries::default();
        self.stats = Stats::default();
        self.quota = Quota::default();
    }

    fn refuse(&mut self, error: FcmError) -> Outcome {
        self.stats.reject(error.code);
        Outcome::Refused(error)
    }

    /// Decides a send to `project_id` (the path's) with `bearer` (the `Authorization` header's
    /// token, if any) and the already parsed body; `apply_faults` is false for the second pass
    /// after an injected latency.
    pub fn send(
        &mut self,
        bearer: Option<&str>,
        project_id: &str,
        request: Result<SendRequest, FcmError>,
        now_ms: i64,
        apply_faults: bool,
    ) -> Outcome {
        let Some(bearer) = bearer else {
            return self.refuse(FcmError::credentials_missing());
        };
        let granted = match self.tokens.check(bearer, now_ms) {
            Ok(granted) => granted,
            Err(error) => return self.refuse(error),
        };
        if granted.project_id != project_id {
            return self.refuse(ErrorCode::SenderIdMismatch.into());
        }
        let request = match request {
            Ok(request) => request,
            Err(error) => return self.refuse(error),
        };
        let token = request.message.target.token();
        if apply_faults && let Some(fault) = self.faults.take(token) {
            match fault {
                FaultKind::Error {
                    code,
                    retry_after_seconds,
                } => {
                    let error = FcmError::from(code).with_retry_after(retry_after_seconds);
                    return self.refuse(error);
                }
                FaultKind::Latency { ms } => return Outcome::Delayed { ms, request },
                FaultKind::DropConnection => {
                    self.stats.dropped_connections += 1;
                    return Outcome::Drop;
                }
            }
        }
        if token.is_some_and(|token| !self.is_registered(token)) {
            return self.refuse(ErrorCode::Unregistered.into());
        }
        if let Err(seconds) = self.quota.take(now_ms) {
            let error = FcmError::from(ErrorCode::QuotaExceeded).with_retry_after(Some(seconds));
            return self.refuse(error);
        }
        if request.validate_only {
            self.stats.validated += 1;
            return Outcome::Sent(MessageName {
                project_id: granted.project_id,
                id: None,
            });
        }
        self.sequence += 1;
        let delivery = Delivery {
            sequence: self.sequence,
            project_id: granted.project_id,
            target: request.message.target,
            rest: request.message.rest,
            at_ms: now_ms,
        };
        let name = delivery.name();
        self.deliveries.record(delivery);
        self.stats.sent += 1;
        Outcome::Sent(name)
    }

    /// `{sent, validated, rejected_by_kind: {…}, tokens_issued, access_tokens, deliveries_logged,
    /// deliveries_evicted}`.
    pub fn stats_json(&self) -> Value {
        let mut rejected = Map::new();
        for code in ErrorCode::ALL {
            rejected.insert(code.kind().to_owned(), self.stats.rejected(code).into());
        }
        rejected.insert(
            "drop_connection".to_owned(),
            self.stats.dropped_connections.into(),
        );
        json!({
            "sent": self.stats.sent,
            "validated": self.stats.validated,
            "rejected_by_kind": rejected,
            "tokens_issued": self.stats.tokens_issued,
            "access_tokens": self.tokens.len(),
            "deliveries_logged": self.deliveries.len(),
            "deliveries_evicted": self.deliveries.evicted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcm::{message::parse_send_request, service_account::PROJECT_ID};

    const NOW_MS: i64 = 1_707_794_294_123;

    fn request(body: &Value) -> Result<SendRequest, FcmError> {
        parse_send_request(body.to_string().as_bytes())
    }

    fn to(token: &str) -> Result<SendRequest, FcmError> {
        request(&json!({"message": {"token": token, "notification": {"title": "t"}}}))
    }

    fn service() -> (Service, String) {
        let mut service = Service::default();
        let bearer = service.issue_token(PROJECT_ID, NOW_MS);
        (service, bearer)
    }

    fn refused_code(outcome: Outcome) -> Option<ErrorCode> {
        match outcome {
            Outcome::Refused(error) => Some(error.code),
            _ => None,
        }
    }

    #[test]
    fn a_send_with_a_good_token_is_delivered_and_named() {
        let (mut service, bearer) = service();
        let outcome = service.send(Some(&bearer), PROJECT_ID, to("device-1"), NOW_MS, true);
        let Outcome::Sent(name) = outcome else {
            unreachable!("{outcome:?}")
        };
        assert_eq!(
            name.to_string(),
            "projects/nene-sandbox/messages/0:1707794294123000%0000000000000001"
        );
        assert_eq!(service.stats.sent, 1);
        let log = service.deliveries.matching(&DeliveryFilter::default());
        assert_eq!(log.len(), 1);
        let json = log[0].to_json();
        assert_eq!(json["token"], "device-1");
        assert_eq!(json["notification"]["title"], "t");
        assert_eq!(json["data"], Value::Null);
        assert_eq!(json["at"], "2024-02-13T03:18:14.123Z");
        assert!(json.get("android").is_none());
    }

    #[test]
    fn a_send_without_or_with_an_unknown_token_is_unauthenticated() {
        let (mut service, _) = service();
        let missing = service.send(None, PROJECT_ID, to("d"), NOW_MS, true);
        assert_eq!(refused_code(missing), Some(ErrorCode::Unauthenticated));
        let unknown = service.send(Some("ya29.x"), PROJECT_ID, to("d"), NOW_MS, true);
        assert_eq!(refused_code(unknown), Some(ErrorCode::Unauthenticated));
        assert_eq!(service.stats.rejected(ErrorCode::Unauthenticated), 2);
        assert!(service.deliveries.is_empty());
    }

    #[test]
    fn authentication_is_checked_before_the_message() {
        let (mut service, _) = service();
        let bad = request(&json!({"message": {}}));
        let outcome = service.send(None, PROJECT_ID, bad, NOW_MS, true);
        assert_eq!(refused_code(outcome), Some(ErrorCode::Unauthenticated));
    }

    #[test]
    fn a_send_to_another_project_is_sender_id_mismatch() {
        let (mut service, bearer) = service();
        let outcome = service.send(Some(&bearer), "other-project", to("d"), NOW_MS, true);
        assert_eq!(refused_code(outcome), Some(ErrorCode::SenderIdMismatch));
    }

    #[test]
    fn an_unregistered_token_is_not_found_and_others_still_deliver() {
        let (mut service, bearer) = service();
        assert_eq!(service.unregister("gone"), Ok(()));
        let gone = service.send(Some(&bearer), PROJECT_ID, to("gone"), NOW_MS, true);
        assert_eq!(refused_code(gone), Some(ErrorCode::Unregistered));
        let here = service.send(Some(&bearer), PROJECT_ID, to("here"), NOW_MS, true);
        assert!(matches!(here, Outcome::Sent(_)));
        assert_eq!(service.stats.rejected(ErrorCode::Unregistered), 1);
    }

    #[test]
    fn validate_only_checks_everything_but_delivers_nothing() {
        let (mut service, bearer) = service();
        let body = json!({"validate_only": true, "message": {"token": "d"}});
        let outcome = service.send(Some(&bearer), PROJECT_ID, request(&body), NOW_MS, true);
        let Outcome::Sent(name) = outcome else {
            unreachable!("{outcome:?}")
        };
        assert_eq!(
            name.to_string(),
            "projects/nene-sandbox/messages/fake_message_id"
        );
        assert!(service.deliveries.is_empty());
        assert_eq!((service.stats.sent, service.stats.validated), (0, 1));
    }

    #[test]
    fn an_injected_fault_applies_once_and_latency_hands_the_request_back() {
        let (mut service, bearer) = service();
        for rule in [
            json!({"token": "d", "kind": "quota_exceeded", "retryAfterSeconds": 3}),
            json!({"kind": "latency", "latencyMs": 10}),
            json!({"kind": "drop_connection"}),
        ] {
            let rule = serde_json::from_value::<crate::fcm::faults::FaultSpec>(rule)
                .map_err(|error| error.to_string())
                .and_then(crate::fcm::faults::FaultSpec::into_rule)
                .and_then(|rule| service.faults.add(rule));
            assert_eq!(rule, Ok(()));
        }
        let quota = service.send(Some(&bearer), PROJECT_ID, to("d"), NOW_MS, true);
        let Outcome::Refused(error) = quota else {
            unreachable!("{quota:?}")
        };
        assert_eq!(
            (error.code, error.retry_after_seconds),
            (ErrorCode::QuotaExceeded, Some(3))
        );
        let delayed = service.send(Some(&bearer), PROJECT_ID, to("d"), NOW_MS, true);
        let Outcome::Delayed { ms: 10, request } = delayed else {
            unreachable!("{delayed:?}")
        };
        let after = service.send(Some(&bearer), PROJECT_ID, Ok(request), NOW_MS, false);
        assert!(matches!(after, Outcome::Sent(_)));
        let dropped = service.send(Some(&bearer), PROJECT_ID, to("d"), NOW_MS, true);
        assert!(matches!(dropped, Outcome::Drop));
        assert_eq!(service.stats.sent, 1);
        assert_eq!(
            service.stats_json()["rejected_by_kind"]["drop_connection"],
            1
        );
        assert_eq!(
            service.stats_json()["rejected_by_kind"]["quota_exceeded"],
            1
        );
    }

    #[test]
    fn the_project_quota_refuses_past_600000_a_minute_until_the_window_ends() {
        let mut quota = Quota::default();
        for _ in 0..PROJECT_MESSAGES_PER_MINUTE_MAX {
            assert_eq!(quota.take(NOW_MS), Ok(()));
        }
        assert_eq!(quota.take(NOW_MS + 20_500), Err(40));
        assert_eq!(quota.take(NOW_MS + QUOTA_WINDOW_MS), Ok(()));
    }

    #[test]
    fn the_delivery_log_filters_by_target_and_keeps_the_newest_last() {
        let (mut service, bearer) = service();
        for (index, token) in ["a", "b", "a"].into_iter().enumerate() {
            let now = NOW_MS + i64::try_from(index).unwrap_or_default();
            service.send(Some(&bearer), PROJECT_ID, to(token), now, true);
        }
        let topic = request(&json!({"message": {"topic": "news", "data": {"k": "v"}}}));
        service.send(Some(&bearer), PROJECT_ID, topic, NOW_MS + 9, true);
        let only_a = DeliveryFilter {
            token: Some("a".to_owned()),
            ..DeliveryFilter::default()
        };
        let a = service.deliveries.matching(&only_a);
        assert_eq!(a.iter().map(|d| d.sequence).collect::<Vec<_>>(), [1, 3]);
        let news = DeliveryFilter {
            topic: Some("news".to_owned()),
            ..DeliveryFilter::default()
        };
        let news = service.deliveries.matching(&news);
        assert_eq!(news[0].to_json()["topic"], "news");
        assert_eq!(news[0].to_json()["data"]["k"], "v");
        let last_two = DeliveryFilter {
            limit: Some(2),
            ..DeliveryFilter::default()
        };
        let last_two = service.deliveries.matching(&last_two);
        assert_eq!(
            last_two.iter().map(|d| d.sequence).collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn the_delivery_log_is_bounded_and_forgets_the_oldest_first() {
        let mut log = Deliveries::with_entries_max(2);
        for sequence in 1..=3 {
            log.record(Delivery {
                sequence,
                project_id: PROJECT_ID,
                target: Target::Token("d".to_owned()),
                rest: "{}".into(),
                at_ms: NOW_MS,
            });
        }
        let kept = log.matching(&DeliveryFilter::default());
        assert_eq!(kept.iter().map(|d| d.sequence).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(log.evicted, 1);
    }

    #[test]
    fn a_reset_forgets_everything_but_the_access_tokens() {
        let (mut service, bearer) = service();
        assert_eq!(service.unregister("gone"), Ok(()));
        service.send(Some(&bearer), PROJECT_ID, to("d"), NOW_MS, true);
        service.reset();
        assert!(service.deliveries.is_empty());
        assert!(service.is_registered("gone"));
        assert_eq!(service.stats, Stats::default());
        let again = service.send(Some(&bearer), PROJECT_ID, to("gone"), NOW_MS, true);
        assert!(matches!(again, Outcome::Sent(_)));
    }
}

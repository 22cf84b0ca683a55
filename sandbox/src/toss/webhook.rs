//! Webhook delivery as Toss does it: a JSON POST of `{eventType, createdAt, data}` to the
//! merchant's URL from a background task, with a 10 s answer limit; anything but `200` (or no
//! answer) is retried up to 7 times, after 1, 4, 16, 64, 256, 1024 and 4096 minutes.
//!
//! For tests the minute is a configurable "retry unit" (say 10 ms), and two misbehaviours Toss
//! can show are available on demand: duplicate copies of every delivery, and out-of-order arrival
//! (`shuffle`: hold events briefly, then send them newest first). Every attempt is logged for
//! assertions. A sandbox reset stops retries that are still pending.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock;

/// Toss's retry unit is a minute.
pub const RETRY_UNIT_MS_DEFAULT: u64 = 60_000;
/// A longer unit than Toss's own only postpones tests.
pub const RETRY_UNIT_MS_MAX: u64 = 60_000;
/// Toss retries an unacknowledged webhook seven times.
pub const RETRIES_MAX: u32 = 7;
/// Toss's schedule: retry `n` comes this many units after attempt `n` failed.
pub const RETRY_INTERVALS_UNITS: [u64; RETRIES_MAX as usize] = [1, 4, 16, 64, 256, 1024, 4096];
/// The first attempt plus the retries.
pub const ATTEMPTS_MAX: u32 = 1 + RETRIES_MAX;
/// Toss waits 10 s for the merchant's answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra copies per delivery: enough to exercise de-duplication, few enough not to flood.
pub const DUPLICATES_MAX: u32 = 10;
/// How long `shuffle` holds events before sending them newest first: long enough for a test's
/// burst of calls to land in one batch, short enough not to slow it.
pub const SHUFFLE_HOLD_MS: u64 = 200;
/// Events held for shuffling at once; beyond it events are sent at once, unshuffled.
pub const HELD_EVENTS_MAX: usize = 1000;
/// Attempts kept in the log; the oldest go first.
pub const DELIVERIES_LOGGED_MAX: usize = 10_000;
/// A webhook URL longer than this is a mistake.
pub const URL_CHARS_MAX: usize = 2048;

const _: () = assert!(RETRY_UNIT_MS_MAX.checked_mul(4096).is_some());

/// Where and how webhooks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    /// `None`: events are not delivered (nor logged).
    pub url: Option<String>,
    pub retry_unit_ms: u64,
    pub duplicates: u32,
    pub shuffle: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            retry_unit_ms: RETRY_UNIT_MS_DEFAULT,
            duplicates: 0,
            shuffle: false,
        }
    }
}

/// `PUT /sandbox/toss/webhook`: fields left out take their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfigBody {
    pub url: Option<String>,
    pub retry_unit_ms: Option<u64>,
    pub duplicates: Option<u32>,
    pub shuffle: Option<bool>,
}

impl WebhookConfig {
    /// # Errors
    /// A message naming the field out of range.
    pub fn parse(body: WebhookConfigBody) -> Result<Self, String> {
        let url = match body.url {
            Some(url) if url.is_empty() => None,
            Some(url) => {
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                if !scheme_ok || url.len() > URL_CHARS_MAX || reqwest::Url::parse(&url).is_err() {
                    return Err(format!(
                        "url must be an http(s) URL of at most {URL_CHARS_MAX} characters"
                    ));
                }
                Some(url)
            }
            None => None,
        };
        let retry_unit_ms = body.retry_unit_ms.unwrap_or(RETRY_UNIT_MS_DEFAULT);
        if !(1..=RETRY_UNIT_MS_MAX).contains(&retry_unit_ms) {
            return Err(format!("retryUnitMs must be 1 to {RETRY_UNIT_MS_MAX}"));
        }
        let duplicates = body.duplicates.unwrap_or(0);
        if duplicates > DUPLICATES_MAX {
            return Err(format!("duplicates must be at most {DUPLICATES_MAX}"));
        }
        Ok(Self {
            url,
            retry_unit_ms,
            duplicates,
            shuffle: body.shuffle.unwrap_or(false),
        })
    }

    /// From `SANDBOX_TOSS_WEBHOOK_URL` and `SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS`.
    ///
    /// # Errors
    /// A message naming the variable that does not parse.
    pub fn from_vars(url: Option<&str>, retry_unit_ms: Option<&str>) -> Result<Self, String> {
        let retry_unit_ms = match retry_unit_ms.map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                format!("SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS is not a number: {raw:?}")
            })?),
        };
        Self::parse(WebhookConfigBody {
            url: url.map(|url| url.trim().to_owned()),
            retry_unit_ms,
            duplicates: None,
            shuffle: None,
        })
    }
}

/// One webhook as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_type: String,
    pub created_at: String,
    pub data: Value,
}

impl Event {
    pub fn new(event_type: &str, data: Value, now_ms: i64) -> Self {
        Self {
            event_type: event_type.to_owned(),
            created_at: clock::kst_local_micros(now_ms),
            data,
        }
    }
}

/// One delivery attempt, for `GET /sandbox/toss/webhook/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub event_type: String,
    pub order_id: Option<String>,
    /// The receiver's HTTP status; `None` when it could not be reached or did not answer in time.
    pub status: Option<u16>,
    /// 1 for the first attempt, up to [`ATTEMPTS_MAX`].
    pub attempt: u32,
    /// When the attempt was sent.
    pub at: String,
}

/// The delay before retry `n` (1-based), or `None` after the last.
pub fn retry_delay(retry: u32, retry_unit_ms: u64) -> Option<Duration> {
    let units = RETRY_INTERVALS_UNITS.get(usize::try_from(retry).ok()?.checked_sub(1)?)?;
    Some(Duration::from_millis(units.saturating_mul(retry_unit_ms)))
}

/// The sender: cheap to clone, shared by the router and its delivery tasks.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only if the HTTP client could not be built; attempts are then logged as unreachable.
    client: Option<reqwest::Client>,
    state: Mutex<State>,
}

struct State {
    config: WebhookConfig,
    log: VecDeque<DeliveryRecord>,
    held: Vec<Event>,
    /// Bumped by reset, so tasks of an earlier generation stop.
    generation: u64,
}

/// Where one delivery goes, fixed when it is sent.
#[derive(Debug, Clone)]
struct Plan {
    url: String,
    retry_unit_ms: u64,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    Failed,
    /// The sandbox was reset since the delivery started.
    Stopped,
}

impl Webhooks {
    pub fn new(config: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .map_err(|error| tracing::error!(%error, "cannot build the webhook HTTP client"))
            .ok();
        Self {
            inner: Arc::new(Inner {
                client,
                state: Mutex::new(State {
                    config,
                    log: VecDeque::new(),
                    held: Vec::new(),
                    generation: 0,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> WebhookConfig {
        self.lock().config.clone()
    }

    pub fn set_config(&self, config: WebhookConfig) {
        self.lock().config = config;
    }

    /// Every attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// Forgets the log and held events and stops pending retries; keeps the configuration.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.log.clear();
        state.held.clear();
        state.generation += 1;
    }

    /// Sends `event` in the background (must be called inside a Tokio runtime). Without a URL
    /// the event is dropped, as Toss does for a merchant with no webhook registered.
    pub fn emit(&self, event: Event) {
        let mut state = self.lock();
        let Some(url) = state.config.url.clone() else {
            return;
        };
        let plan = Plan {
            url,
            retry_unit_ms: state.config.retry_unit_ms,
            generation: state.generation,
        };
        if state.config.shuffle && state.held.len() < HELD_EVENTS_MAX {
            state.held.push(event);
            if state.held.len() == 1 {
                tokio::spawn(self.clone().flush_held(plan.generation));
            }
            return;
        }
        let copies = state.config.duplicates;
        drop(state);
        let event = Arc::new(event);
        for _ in 0..=copies {
            tokio::spawn(self.clone().deliver(Arc::clone(&event), plan.clone()));
        }
    }

    /// `shuffle`: after a short hold, sends the held events newest first. The first attempts go
    /// one after the other so the receiver sees them in exactly that order.
    async fn flush_held(self, generation: u64) {
        tokio::time::sleep(Duration::from_millis(SHUFFLE_HOLD_MS)).await;
        let (events, plan, copies) = {
            let mut state = self.lock();
            if state.generation != generation {
                return;
            }
            let Some(url) = state.config.url.clone() else {
                state.held.clear();
                return;
            };
            let plan = Plan {
                url,
                retry_unit_ms: state.config.retry_unit_ms,
                generation,
            };
            (
                std::mem::take(&mut state.held),
                plan,
                state.config.duplicates,
            )
        };
        for event in events.into_iter().rev() {
            let event = Arc::new(event);
            for _ in 0..=copies {
                if self.attempt(&event, &plan, 1).await == Outcome::Failed {
                    tokio::spawn(self.clone().retry(Arc::clone(&event), plan.clone(), 1));
                }
            }
        }
    }

    async fn deliver(self, event: Arc<Event>, plan: Plan) {
        if self.attempt(&event, &plan, 1).await == Outcome::Failed {
            self.retry(event, plan, 1).await;
        }
    }

    /// Retries after attempt `failed` failed, on Toss's schedule.
    async fn retry(self, event: Arc<Event>, plan: Plan, failed: u32) {
        let mut attempt = failed;
        while let Some(delay) = retry_delay(attempt, plan.retry_unit_ms) {
            tokio::time::sleep(delay).await;
            attempt += 1;
            match self.attempt(&event, &plan, attempt).await {
                Outcome::Failed => {}
                Outcome::Acknowledged | Outcome::Stopped => return,
            }
        }
        tracing::warn!(
            event_type = %event.event_type,
            attempts = attempt,
            "webhook given up: never acknowledged with 200"
        );
    }

    #[tracing::instrument(skip_all, fields(event_type = %event.event_type, attempt = attempt))]
    async fn attempt(&self, event: &Event, plan: &Plan, attempt: u32) -> Outcome {
        let at = clock::kst_millis(clock::now_ms());
        if self.lock().generation != plan.generation {
            return Outcome::Stopped;
        }
        let status = match &self.inner.client {
            Some(client) => match client.post(&plan.url).json(event).send().await {
                Ok(response) => Some(response.status().as_u16()),
                Err(error) => {
                    tracing::info!(%error, "webhook not delivered");
                    None
                }
            },
            None => None,
        };
        let mut state = self.lock();
        if state.generation != plan.generation {
            return Outcome::Stopped;
        }
        if state.log.len() >= DELIVERIES_LOGGED_MAX {
            state.log.pop_front();
        }
        state.log.push_back(DeliveryRecord {
            event_type: event.event_type.clone(),
            order_id: event
                .data
                .get("orderId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            status,
            attempt,
            at,
        });
        drop(state);
        if status == Some(200) {
            tracing::debug!("webhook acknowledged");
            Outcome::Acknowledged
        } else {
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, extract::State, http::StatusCode, routing::post};
    use serde_json::json;
    use std::time::Instant;

    /// A receiver on 127.0.0.1:0 answering the given statuses in turn (then 200), recording
    /// what arrived and when.
    #[derive(Clone)]
    struct Receiver {
        answers: Arc<Mutex<VecDeque<u16>>>,
        arrivals: Arc<Mutex<Vec<(Instant, Event)>>>,
    }

    impl Receiver {
        async fn start(answers: &[u16]) -> (Self, String) {
            let receiver = Self {
                answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
                arrivals: Arc::new(Mutex::new(Vec::new())),
            };
            let app = Router::new()
                .route("/hook", post(Self::receive))
                .with_state(receiver.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
            let listener = listener.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            (receiver, format!("http://{address}/hook"))
        }

        async fn receive(
            State(receiver): State<Self>,
            axum::Json(event): axum::Json<Event>,
        ) -> StatusCode {
            receiver
                .arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((Instant::now(), event));
            let answer = receiver
                .answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            StatusCode::from_u16(answer.unwrap_or(200)).unwrap_or(StatusCode::OK)
        }

        fn arrivals(&self) -> Vec<(Instant, Event)> {
            self.arrivals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    fn config(url: &str, retry_unit_ms: u64) -> WebhookConfig {
        WebhookConfig {
            url: Some(url.to_owned()),
            retry_unit_ms,
            ..WebhookConfig::default()
        }
    }

    fn event(order_id: &str) -> Event {
        Event::new(
            "PAYMENT_STATUS_CHANGED",
            json!({ "orderId": order_id, "status": "DONE" }),
            clock::now_ms(),
        )
    }

    async fn wait_for_deliveries(webhooks: &Webhooks, count: usize) -> Vec<DeliveryRecord> {
        for _ in 0..500 {
            let deliveries = webhooks.deliveries();
            if deliveries.len() >= count {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        webhooks.deliveries()
    }

    #[tokio::test]
    async fn webhooks_are_retried_on_the_toss_schedule_until_acknowledged() {
        let (receiver, url) = Receiver::start(&[500, 500]).await;
        let unit_ms = 10;
        let webhooks = Webhooks::new(config(&url, unit_ms));
        webhooks.emit(event("order-0001"));

        let deliveries = wait_for_deliveries(&webhooks, 3).await;
        let seen: Vec<_> = deliveries.iter().map(|d| (d.attempt, d.status)).collect();
        assert_eq!(seen, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
        assert!(
            deliveries
                .iter()
                .all(|d| d.order_id.as_deref() == Some("order-0001"))
        );

        let arrivals = receiver.arrivals();
        assert_eq!(arrivals.len(), 3);
        let gap = |n: usize| arrivals[n].0.duration_since(arrivals[n - 1].0);
        assert!(gap(1) >= Duration::from_millis(unit_ms), "{:?}", gap(1));
        assert!(gap(2) >= Duration::from_millis(4 * unit_ms), "{:?}", gap(2));

        // Acknowledged: nothing more comes.
        tokio::time::sleep(Duration::from_millis(20 * unit_ms)).await;
        assert_eq!(receiver.arrivals().len(), 3);
        assert_eq!(webhooks.deliveries().len(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_logged_without_a_status_and_retried() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        let address = listener.and_then(|l| l.local_addr()).unwrap();
        let webhooks = Webhooks::new(config(&format!("http://{address}/hook"), 5));
        webhooks.emit(event("order-0001"));
        let deliveries = wait_for_deliveries(&webhooks, 2).await;
        assert_eq!(deliveries[0].status, None);
        assert_eq!(deliveries[1].attempt, 2);
    }

    #[test]
    fn the_schedule_is_seven_retries_at_one_four_sixteen_and_so_on_units() {
        let delays: Vec<_> = (1..=8).map(|retry| retry_delay(retry, 60_000)).collect();
        assert_eq!(delays[0], Some(Duration::from_secs(60)));
        assert_eq!(delays[1], Some(Duration::from_secs(4 * 60)));
        assert_eq!(delays[6], Some(Duration::from_secs(4096 * 60)));
        assert_eq!(delays[7], None);
        assert_eq!(retry_delay(0, 60_000), None);
        assert_eq!(ATTEMPTS_MAX, 8);
    }

    #[tokio::test]
    async fn duplicates_send_extra_copies_of_every_delivery() {
        let (receiver, url) = Receiver::start(&[]).await;
        let webhooks = Webhooks::new(WebhookConfig {
            duplicates: 2,
            ..config(&url, 10)
        });
        webhooks.emit(event("order-0001"));
        assert_eq!(wait_for_deliveries(&webhooks, 3).await.len(), 3);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(receiver.arrivals().len(), 3);
    }

    #[tokio::test]
    async fn shuffle_holds_events_and_sends_them_newest_first() {
        let (receiver, url) = Receiver::start(&[]).await;
        let webhooks = Webhooks::new(WebhookConfig {
            shuffle: true,
            ..config(&url, 10)
        });
        for order in ["order-0001", "order-0002", "order-0003"] {
            webhooks.emit(event(order));
        }
        assert!(webhooks.deliveries().is_empty());
        wait_for_deliveries(&webhooks, 3).await;
        let order: Vec<_> = receiver
            .arrivals()
            .into_iter()
            .map(|(_, event)| {
                event.data["orderId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(order, ["order-0003", "order-0002", "order-0001"]);
    }

    #[tokio::test]
    async fn a_reset_stops_pending_retries_and_clears_the_log() {
        let (receiver, url) = Receiver::start(&[500, 500, 500, 500]).await;
        let webhooks = Webhooks::new(config(&url, 30));
        webhooks.emit(event("order-0001"));
        wait_for_deliveries(&webhooks, 1).await;
        webhooks.reset();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(webhooks.deliveries().is_empty());
        assert_eq!(receiver.arrivals().len(), 1);
        assert_eq!(webhooks.config().url, Some(url));
    }

    #[test]
    fn the_configuration_comes_from_the_environment_with_toss_defaults() {
        let defaults = WebhookConfig::from_vars(None, None);
        assert_eq!(defaults, Ok(WebhookConfig::default()));
        let compressed = WebhookConfig::from_vars(Some("http://127.0.0.1:9/toss"), Some("10"));
        assert_eq!(
            compressed.map(|c| (c.url, c.retry_unit_ms)),
            Ok((Some("http://127.0.0.1:9/toss".to_owned()), 10))
        );
        assert!(WebhookConfig::from_vars(None, Some("soon")).is_err());
        assert!(WebhookConfig::from_vars(Some("ftp://x"), None).is_err());
        assert!(
            WebhookConfig::parse(WebhookConfigBody {
                retry_unit_ms: Some(0),
                ..Default::default()
            })
            .is_err()
        );
    }
}

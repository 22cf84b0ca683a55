//! Notifications against the real Postgres (a fresh database per test), the real Redis (a key
//! prefix per test, or a private `redis-server` that the test kills) and the FCM sandbox
//! (in-process, over real HTTP, with its fault injection and delivery log). Every scenario ends
//! with each notification SENT or FAILED as the rules say, and the sandbox's log showing each
//! message delivered once, or twice at most where at-least-once allows it.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis_url;

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use nene_core::{
    AppState,
    clock::SystemClock,
    notifications::{
        self, NotificationKind,
        dispatcher::{Dispatcher, DispatcherSettings, ORPHAN_GRACE, Source},
        fcm::{FcmClient, FcmConfig, ServiceAccount},
        metrics::Metrics,
        outcome::Backoff,
    },
};
use nene_domain::signing::{
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

/// Nothing listens on the discard port: a Redis that is down from the start.
const DEAD_REDIS_URL: &str = "redis://127.0.0.1:9";

struct Fixture {
    db: PgPool,
    sandbox: common::Sandbox,
    /// This test's key prefix in the shared Redis.
    prefix: String,
}

async fn fixture(db: PgPool) -> Fixture {
    let sandbox = common::Sandbox {
        url: common::spawn_sandbox().await,
        http: reqwest::Client::new(),
    };
    Fixture {
        db,
        sandbox,
        prefix: format!("nene:test:{}", Uuid::new_v4().simple()),
    }
}

/// Fast retries, short idle waits, small batches: the rules are production's, the clock is not.
fn settings(prefix: &str) -> DispatcherSettings {
    DispatcherSettings {
        claim_batch_max: 50,
        batches_in_flight: 2,
        sends_per_batch_in_flight: 16,
        visibility_timeout: Duration::from_secs(2),
        idle_interval: Duration::from_millis(20),
        backoff: Backoff {
            base_ms: 10,
            max_ms: 100,
        },
        redis_prefix: prefix.to_owned(),
    }
}

impl Fixture {
    fn fcm(&self) -> FcmClient {
        FcmClient::new(FcmConfig {
            api_url: format!("{}/fcm", self.sandbox.url),
            token_url: format!("{}/fcm/token", self.sandbox.url),
            account: ServiceAccount::from_json(nene_sandbox::fcm::SERVICE_ACCOUNT_JSON).unwrap(),
            send_timeout: Duration::from_secs(2),
            tls: nene_core::tls::Trust::public_roots(),
        })
        .unwrap()
    }

    fn dispatcher(&self, redis: Option<&str>, settings: DispatcherSettings) -> Dispatcher {
        let redis = redis.map(|url| redis::Client::open(url).unwrap());
        Dispatcher::new(self.db.clone(), self.fcm(), redis, settings)
    }

    /// A dispatcher on the shared Redis under this test's prefix.
    fn with_redis(&self) -> Dispatcher {
        self.dispatcher(Some(&redis_url()), settings(&self.prefix))
    }

    async fn fault(&self, rule: Value) {
        self.sandbox.post("/sandbox/fcm/faults", &rule).await;
    }

    async fn clear_faults(&self) {
        self.sandbox
            .http
            .delete(format!("{}/sandbox/fcm/faults", self.sandbox.url))
            .send()
            .await
            .unwrap();
    }

    async fn deliveries(&self) -> Vec<Value> {
        let log = self.sandbox.get("/sandbox/fcm/deliveries").await;
        log.as_array().cloned().unwrap_or_default()
    }

    /// How many times each notification id reached the sandbox.
    async fn deliveries_by_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for delivery in self.deliveries().await {
            let id = delivery["data"]["notification_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    async fn stats(&self) -> Value {
        self.sandbox.get("/sandbox/fcm/stats").await
    }

    /// Users `user_{from}`… each with one Android device whose token is `token_{n}`.
    async fn users_with_one_device(&self, from: usize, count: usize) {
        let (from, count) = (
            i64::try_from(from).unwrap_or(0),
            i64::try_from(count).unwrap_or(0),
        );
        sqlx::query(
            "WITH n AS (SELECT generate_series($1::int8, $1 + $2 - 1) AS n), \
             u AS (INSERT INTO users (id, nickname) SELECT 'user_' || n, 'nick_' || n FROM n) \
             INSERT INTO user_devices (user_id, device_id, platform, token) \
             SELECT 'user_' || n, 'phone', 'android', 'token_' || n FROM n",
        )
        .bind(from)
        .bind(count)
        .execute(&self.db)
        .await
        .unwrap();
    }

    async fn user(&self, user: &str, devices: &[(&str, &str, &str)]) {
        sqlx::query("INSERT INTO users (id, nickname) VALUES ($1, $1)")
            .bind(user)
            .execute(&self.db)
            .await
            .unwrap();
        for (device, platform, token) in devices {
            sqlx::query(
                "INSERT INTO user_devices (user_id, device_id, platform, token) \
                 VALUES ($1, $2, $3::device_platform, $4)",
            )
            .bind(user)
            .bind(device)
            .bind(platform)
            .bind(token)
            .execute(&self.db)
            .await
            .unwrap();
        }
    }

    /// Queues a credit notification for each user, each in its own committed transaction.
    async fn enqueue(&self, users: impl IntoIterator<Item = String>) -> Vec<Uuid> {
        let mut keys = Vec::new();
        for user in users {
            let key = format!("test:{}", Uuid::new_v4());
            let mut tx = self.db.begin().await.unwrap();
            notifications::enqueue_in_tx(
                &mut tx,
                &user,
                NotificationKind::PointsCredited,
                &json!({ "order_id": "order_1", "points": 5_000 }),
                &key,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            keys.push(key);
        }
        sqlx::query_scalar("SELECT id FROM notifications WHERE dedup_key = ANY($1) ORDER BY id")
            .bind(&keys)
            .fetch_all(&self.db)
            .await
            .unwrap()
    }

    async fn enqueue_range(&self, from: usize, count: usize) -> Vec<Uuid> {
        self.enqueue((from..from + count).map(|n| format!("user_{n}")))
            .await
    }

    /// (state, attempts, last_error) of one notification.
    async fn row(&self, id: Uuid) -> (String, i32, Option<String>) {
        sqlx::query_as("SELECT state::text, attempts, last_error FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    async fn count_in(&self, state: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE state::text = $1")
            .bind(state)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    async fn devices_of(&self, user: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT device_id FROM user_devices WHERE user_id = $1 ORDER BY device_id",
        )
        .bind(user)
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    /// Steps the dispatcher (feed, then a worker pass) until no notification is PENDING.
    async fn drain(&self, dispatcher: &Dispatcher, within: Duration) {
        let began = Instant::now();
        while self.count_in("pending").await > 0 {
            assert!(
                began.elapsed() < within,
                "still pending after {within:?}: {}",
                self.count_in("pending").await
            );
            let fed = dispatcher.feed_once().await.unwrap();
            let pass = dispatcher.work_once().await.unwrap();
            if fed == 0 && pass.attempted == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Runs the feed until every fed id is in Redis (the first pass builds the schedule).
    async fn fed(&self, dispatcher: &Dispatcher) {
        for _ in 0..10 {
            dispatcher.feed_once().await.unwrap();
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_feed")
                .fetch_one(&self.db)
                .await
                .unwrap();
            if left == 0 {
                return;
            }
        }
        panic!("the feed does not empty");
    }

    /// How many notifications no transaction holds a lock on.
    async fn lockable(&self) -> i64 {
        let mut tx = self.db.begin().await.unwrap();
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT id FROM notifications FOR UPDATE SKIP LOCKED) free",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap()
    }

    /// Waits until `condition` holds, polling.
    async fn wait_until<F, Fut>(&self, within: Duration, what: &str, condition: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let began = Instant::now();
        while !condition().await {
            assert!(began.elapsed() < within, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn forget_redis_keys(&self) {
        let client = redis::Client::open(redis_url()).unwrap();
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            let keys = nene_core::notifications::schedule::Keys::new(&self.prefix);
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(&keys.due)
                .arg(&keys.inflight)
                .arg(&keys.built)
                .query_async(&mut connection)
                .await;
        }
    }
}

fn counter(metric: &std::sync::atomic::AtomicU64) -> u64 {
    Metrics::get(metric)
}

// --- platforms and history ------------------------------------------------------------------

#[sqlx::test(migrations = "./migrations")]
async fn a_notification_reaches_every_device_of_its_user_shaped_for_its_platform(db: PgPool) {
    let fixture = fixture(db).await;
    fixture
        .user(
            "user_three_devices",
            &[
                ("pixel", "android", "token-android"),
                ("iphone", "ios", "token-ios"),
                ("laptop", "web", "token-web"),
            ],
        )
        .await;
    let ids = fixture.enqueue(["user_three_devices".to_owned()]).await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;

    let id = ids[0].to_string();
    assert_eq!(fixture.row(ids[0]).await, ("sent".to_owned(), 1, None));
    let delivered: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(delivered_devices) FROM notifications WHERE id = $1 ORDER BY 1",
    )
    .bind(ids[0])
    .fetch_all(&fixture.db)
    .await
    .unwrap();
    assert_eq!(delivered, ["iphone", "laptop", "pixel"]);

    let deliveries = fixture.deliveries().await;
    assert_eq!(deliveries.len(), 3);
    let by_token: HashMap<&str, &Value> = deliveries
        .iter()
        .map(|delivery| (delivery["token"].as_str().unwrap_or_default(), delivery))
        .collect();
    for delivery in &deliveries {
        assert_eq!(delivery["data"]["notification_id"], id.as_str());
        assert_eq!(delivery["data"]["kind"], "points_credited");
        assert_eq!(delivery["notification"]["title"], "포인트 충전 완료");
    }
    let android = by_token["token-android"];
    assert_eq!(android["android"]["priority"], "high");
    assert_eq!(
        android["android"]["notification"]["channel_id"],
        "nene_default"
    );
    assert_eq!(android["android"]["notification"]["tag"], id.as_str());
    assert!(android.get("apns").is_none() && android.get("webpush").is_none());
    let ios = by_token["token-ios"];
    assert_eq!(ios["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(ios["apns"]["headers"]["apns-collapse-id"], id.as_str());
    assert_eq!(
        ios["apns"]["payload"]["aps"]["alert"]["body"],
        "5,000P가 충전되었어요."
    );
    let web = by_token["token-web"];
    assert_eq!(web["webpush"]["notification"]["title"], "포인트 충전 완료");
    assert_eq!(web["webpush"]["notification"]["tag"], id.as_str());
    assert_eq!(counter(&dispatcher.metrics().messages_delivered), 3);
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_user_without_devices_has_the_notification_sent_to_nobody_without_an_alert(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.user("user_no_device", &[]).await;
    let ids = fixture.enqueue(["user_no_device".to_owned()]).await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    assert_eq!(
        fixture.row(ids[0]).await,
        (
            "sent".to_owned(),
            1,
            Some("no registered device".to_owned())
        )
    );
    assert!(fixture.deliveries().await.is_empty());
    assert_eq!(counter(&dispatcher.metrics().alerts), 0);
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_users_list_pages_newest_first_with_status_and_attempts_for_that_user_only(db: PgPool) {
    let fixture = fixture(db).await;
    fixture
        .user("user_list", &[("pixel", "android", "tok-list")])
        .await;
    fixture.user("user_other", &[]).await;
    let ids = fixture
        .enqueue((0..5).map(|_| "user_list".to_owned()))
        .await;
    fixture.enqueue(["user_other".to_owned()]).await;
    fixture
        .drain(&fixture.with_redis(), Duration::from_secs(10))
        .await;
    fixture.enqueue(["user_list".to_owned()]).await;

    let state = AppState::offline(
        fixture.db.clone(),
        SigningSecret::parse(SECRET).unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let get = |path: String| {
        let state = state.clone();
        async move {
            let now = nene_core::clock::WallClock::now_unix_seconds(&SystemClock);
            let signature = SigningSecret::parse(SECRET).unwrap().sign(&SignedParts {
                method: "GET",
                path_and_query: &path,
                timestamp_unix_seconds: now,
                user: "user_list",
                body: b"",
            });
            let request = Request::get(&path)
                .header(HEADER_TIMESTAMP, now.to_string())
                .header(HEADER_SIGNATURE, signature)
                .header(HEADER_USER, "user_list")
                .body(Body::empty())
                .unwrap();
            let response = nene_core::http::router(state)
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, first) = get("/internal/v1/notifications?limit=4".to_owned()).await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["attempts"], 0);
    assert_eq!(items[1]["status"], "sent");
    assert_eq!(items[1]["attempts"], 1);
    assert_eq!(items[1]["id"], ids[4].to_string());
    assert_eq!(items[1]["kind"], "points_credited");
    assert_eq!(items[1]["payload"]["points"], 5_000);
    assert!(
        items[1]["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let (_, second) = get(format!(
        "/internal/v1/notifications?cursor={cursor}&limit=4"
    ))
    .await;
    let rest: Vec<String> = second["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(rest, [ids[1].to_string(), ids[0].to_string()]);
    assert!(second["next_cursor"].is_null());
    let (status, _) = get("/internal/v1/notifications?limit=101".to_owned()).await;
    assert_eq!(status, 422);
    let (status, _) = get("/internal/v1/notifications?cursor=nope".to_owned()).await;
    assert_eq!(status, 400);
    fixture.forget_redis_keys().await;
}

const SECRET: &str = "core-test-secret-core-test-secret-0123";

#[sqlx::test(migrations = "./migrations")]
async fn a_notification_queued_for_later_is_not_sent_before_its_time(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 1).await;
    let due_ms = now_ms() + 1_500;
    let mut tx = fixture.db.begin().await.unwrap();
    notifications::enqueue_at_in_tx(
        &mut tx,
        "user_0",
        NotificationKind::PointsCredited,
        &json!({ "points": 1 }),
        "later:1",
        Some(due_ms),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let dispatcher = fixture.with_redis();
    fixture.fed(&dispatcher).await;
    while now_ms() < due_ms - 300 {
        dispatcher.work_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fixture.count_in("pending").await, 1);
    assert!(fixture.deliveries().await.is_empty());
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    let delivered_at: i64 = {
        let at = fixture.deliveries().await[0]["at"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        sqlx::query_scalar("SELECT (extract(epoch FROM $1::timestamptz) * 1000)::int8")
            .bind(at)
            .fetch_one(&fixture.db)
            .await
            .unwrap()
    };
    assert!(delivered_at >= due_ms, "{} ms early", due_ms - delivered_at);
    fixture.forget_redis_keys().await;
}

// --- FCM's error classes --------------------------------------------------------------------

#[sqlx::test(migrations = "./migrations")]
async fn an_unregistered_token_is_deleted_and_not_retried_while_the_other_device_gets_it(
    db: PgPool,
) {
    let fixture = fixture(db).await;
    fixture
        .user(
            "user_two",
            &[
                ("old-phone", "android", "tok-dead"),
                ("new-phone", "ios", "tok-live"),
            ],
        )
        .await;
    fixture
        .user("user_gone", &[("only", "web", "tok-gone")])
        .await;
    fixture
        .sandbox
        .post("/sandbox/fcm/tokens/tok-dead/unregister", &json!({}))
        .await;
    fixture
        .sandbox
        .post("/sandbox/fcm/tokens/tok-gone/unregister", &json!({}))
        .await;
    let ids = fixture
        .enqueue(["user_two".to_owned(), "user_gone".to_owned()])
        .await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;

    let (state, attempts, last_error) = fixture.row(ids[0]).await;
    assert_eq!((state.as_str(), attempts), ("sent", 1));
    assert!(last_error.is_some_and(|error| error.contains("UNREGISTERED")));
    assert_eq!(fixture.devices_of("user_two").await, ["new-phone"]);
    // Every device of the user is gone: sent to nobody, the token deleted, no alert.
    let (state, attempts, _) = fixture.row(ids[1]).await;
    assert_eq!((state.as_str(), attempts), ("sent", 1));
    assert!(fixture.devices_of("user_gone").await.is_empty());
    assert_eq!(fixture.stats().await["rejected_by_kind"]["unregistered"], 2);
    assert_eq!(counter(&dispatcher.metrics().tokens_deleted), 2);
    assert_eq!(counter(&dispatcher.metrics().alerts), 0);
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn invalid_argument_sender_id_mismatch_and_third_party_auth_errors_fail_at_once_with_an_alert(
    db: PgPool,
) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 3).await;
    for (n, kind) in [
        "invalid_argument",
        "sender_id_mismatch",
        "third_party_auth_error",
    ]
    .into_iter()
    .enumerate()
    {
        fixture
            .fault(json!({ "token": format!("token_{n}"), "kind": kind, "count": 0 }))
            .await;
    }
    let ids = fixture.enqueue_range(0, 3).await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;

    for (id, code) in ids.iter().zip([
        "INVALID_ARGUMENT",
        "SENDER_ID_MISMATCH",
        "THIRD_PARTY_AUTH_ERROR",
    ]) {
        let (state, attempts, last_error) = fixture.row(*id).await;
        assert_eq!((state.as_str(), attempts), ("failed", 1), "{code}");
        assert!(
            last_error.is_some_and(|error| error.contains(code)),
            "{code}"
        );
    }
    // Not the token's fault: it stays.
    assert_eq!(fixture.devices_of("user_0").await, ["phone"]);
    assert_eq!(counter(&dispatcher.metrics().alerts), 3);
    assert_eq!(counter(&dispatcher.metrics().failed), 3);
    assert!(fixture.deliveries().await.is_empty());
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn quota_exceeded_is_retried_no_sooner_than_retry_after_says(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 1).await;
    fixture
        .fault(json!({ "token": "token_0", "kind": "quota_exceeded", "retryAfterSeconds": 2 }))
        .await;
    let ids = fixture.enqueue_range(0, 1).await;
    let dispatcher = fixture.with_redis();
    fixture.fed(&dispatcher).await;
    let began_ms = now_ms();
    let pass = dispatcher.work_once().await.unwrap();
    assert_eq!((pass.source, pass.attempted), (Source::Redis, 1));
    let (state, attempts, last_error) = fixture.row(ids[0]).await;
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(last_error.is_some_and(|error| error.contains("QUOTA_EXCEEDED")));
    let next_ms: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM next_attempt_at) * 1000)::int8 FROM notifications WHERE id = $1",
    )
    .bind(ids[0])
    .fetch_one(&fixture.db)
    .await.unwrap();
    assert!(
        next_ms >= began_ms + 2_000,
        "rescheduled {} ms later",
        next_ms - began_ms
    );

    // Passes before then send nothing (the schedule holds it back).
    while now_ms() < began_ms + 1_700 {
        dispatcher.work_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fixture.row(ids[0]).await.0, "pending");
    assert!(fixture.deliveries().await.is_empty());
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    assert_eq!(fixture.row(ids[0]).await.0, "sent");
    assert_eq!(fixture.row(ids[0]).await.1, 2);
    let delivered_at: i64 = {
        let at = fixture.deliveries().await[0]["at"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        sqlx::query_scalar("SELECT (extract(epoch FROM $1::timestamptz) * 1000)::int8")
            .bind(at)
            .fetch_one(&fixture.db)
            .await
            .unwrap()
    };
    assert!(delivered_at >= began_ms + 2_000);
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn unavailable_and_internal_are_retried_three_times_then_failed_with_an_alert(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 3).await;
    fixture
        .fault(json!({ "token": "token_0", "kind": "unavailable", "count": 0 }))
        .await;
    fixture
        .fault(json!({ "token": "token_1", "kind": "internal", "count": 0 }))
        .await;
    // Two failures, then FCM is back: sent on the third attempt.
    fixture
        .fault(json!({ "token": "token_2", "kind": "unavailable", "count": 2 }))
        .await;
    let ids = fixture.enqueue_range(0, 3).await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(20)).await;

    for (id, code) in ids.iter().zip(["UNAVAILABLE", "INTERNAL"]) {
        let (state, attempts, last_error) = fixture.row(*id).await;
        assert_eq!((state.as_str(), attempts), ("failed", 4), "{code}");
        let last_error = last_error.unwrap_or_default();
        assert!(
            last_error.contains(code) && last_error.contains("gave up after 4"),
            "{last_error}"
        );
    }
    // SENT, keeping the last error it met on the way.
    let (state, attempts, last_error) = fixture.row(ids[2]).await;
    assert_eq!((state.as_str(), attempts), ("sent", 3));
    assert!(last_error.is_some_and(|error| error.contains("UNAVAILABLE")));
    let stats = fixture.stats().await;
    assert_eq!(stats["rejected_by_kind"]["unavailable"], 4 + 2);
    assert_eq!(stats["rejected_by_kind"]["internal"], 4);
    assert_eq!(counter(&dispatcher.metrics().alerts), 2);
    assert_eq!(counter(&dispatcher.metrics().retried), 3 + 3 + 2);
    assert_eq!(
        fixture.deliveries_by_id().await.get(&ids[2].to_string()),
        Some(&1)
    );
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dropped_connection_is_retried_and_the_message_sent_once(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 1).await;
    fixture
        .fault(json!({ "token": "token_0", "kind": "drop_connection" }))
        .await;
    let ids = fixture.enqueue_range(0, 1).await;
    fixture
        .drain(&fixture.with_redis(), Duration::from_secs(10))
        .await;
    let (state, attempts, last_error) = fixture.row(ids[0]).await;
    assert_eq!((state.as_str(), attempts), ("sent", 2));
    assert!(last_error.is_some_and(|error| error.contains("transport")));
    assert_eq!(
        fixture.deliveries_by_id().await.get(&ids[0].to_string()),
        Some(&1)
    );
    fixture.forget_redis_keys().await;
}

// --- crashes and outages --------------------------------------------------------------------

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

#[sqlx::test(migrations = "./migrations")]
async fn a_worker_killed_mid_batch_has_its_claims_redelivered_after_the_visibility_timeout(
    db: PgPool,
) {
    const COUNT: usize = 40;
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, COUNT).await;
    let ids = fixture.enqueue_range(0, COUNT).await;
    // Every send hangs long enough for the kill to land mid-batch.
    fixture
        .fault(json!({ "kind": "latency", "latencyMs": 400, "count": 0 }))
        .await;
    let settings = DispatcherSettings {
        claim_batch_max: 20,
        visibility_timeout: Duration::from_millis(1_500),
        ..settings(&fixture.prefix)
    };
    let doomed = fixture.dispatcher(Some(&redis_url()), settings.clone());
    let killed_at = now_ms();
    let worker = tokio::spawn(doomed.clone().run_forever());
    fixture
        .wait_until(Duration::from_secs(5), "claims in flight", || async {
            inflight(&doomed).await == COUNT as u64
        })
        .await;
    worker.abort();
    let _ = worker.await;
    fixture.clear_faults().await;
    // Nothing was recorded: the batches' transactions died with the worker, and their locks.
    assert_eq!(fixture.count_in("pending").await, COUNT as i64);
    fixture
        .wait_until(Duration::from_secs(5), "row locks released", || async {
            fixture.lockable().await == COUNT as i64
        })
        .await;

    let survivor = fixture.dispatcher(Some(&redis_url()), settings);
    let stop = tokio::sync::Notify::new();
    let run = survivor.clone().run_until(stop.notified());
    let check = async {
        // Before the deadline the claims are invisible: nothing is sent again.
        while now_ms() < killed_at + 1_200 {
            assert_eq!(fixture.count_in("sent").await, 0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fixture
            .wait_until(Duration::from_secs(10), "all sent", || async {
                fixture.count_in("sent").await == COUNT as i64
            })
            .await;
        stop.notify_one();
    };
    tokio::join!(run, check);

    let by_id = fixture.deliveries_by_id().await;
    for id in &ids {
        let count = by_id.get(&id.to_string()).copied().unwrap_or(0);
        assert!((1..=2).contains(&count), "{id} delivered {count} times");
    }
    // Every delivery names one of our notifications: a duplicate carries the same id.
    assert_eq!(by_id.len(), COUNT);
    assert!(by_id.values().sum::<usize>() <= 2 * COUNT);
    for id in &ids {
        assert_eq!(fixture.row(*id).await.1, 1, "one recorded attempt");
    }
    assert_eq!(inflight(&survivor).await, 0);
    fixture.forget_redis_keys().await;
}

async fn inflight(dispatcher: &Dispatcher) -> u64 {
    match dispatcher.schedule() {
        Some(schedule) => schedule.depth().await.map_or(0, |(_, inflight)| inflight),
        None => 0,
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_flushed_schedule_is_rebuilt_from_postgres_and_nothing_is_lost_or_sent_twice(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 30).await;
    let ids = fixture.enqueue_range(0, 30).await;
    let dispatcher = fixture.with_redis();
    // The ids reach Redis, then Redis loses everything (FLUSHALL, a restart without persistence).
    fixture.fed(&dispatcher).await;
    let schedule = dispatcher.schedule().expect("no schedule");
    assert_eq!(schedule.depth().await.unwrap(), (30, 0));
    fixture.forget_redis_keys().await;

    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    assert_eq!(fixture.count_in("sent").await, 30);
    let by_id = fixture.deliveries_by_id().await;
    assert!(ids.iter().all(|id| by_id.get(&id.to_string()) == Some(&1)));
    assert!(counter(&dispatcher.metrics().rebuilds) >= 2);
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_done_notification_whose_id_comes_back_to_the_schedule_is_not_sent_again(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 1).await;
    let ids = fixture.enqueue_range(0, 1).await;
    let dispatcher = fixture.with_redis();
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    let schedule = dispatcher.schedule().expect("no schedule");
    // A stale copy of the schedule (a replica, a restored snapshot) names it again.
    assert_eq!(
        schedule.schedule(&[(ids[0], now_ms())]).await.unwrap(),
        Some(1)
    );
    let pass = dispatcher.work_once().await.unwrap();
    assert_eq!((pass.claimed, pass.attempted), (1, 0));
    assert_eq!(schedule.depth().await.unwrap(), (0, 0));
    assert_eq!(fixture.deliveries().await.len(), 1);
    // And the schema refuses to reopen it.
    let reopened = sqlx::query("UPDATE notifications SET state = 'pending' WHERE id = $1")
        .bind(ids[0])
        .execute(&fixture.db)
        .await;
    assert!(reopened.is_err());
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn with_redis_unreachable_from_the_start_notifications_go_out_from_postgres(db: PgPool) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 60).await;
    let ids = fixture.enqueue_range(0, 60).await;
    let dispatcher = fixture.dispatcher(Some(DEAD_REDIS_URL), settings(&fixture.prefix));
    let pass = dispatcher.work_once().await.unwrap();
    assert_eq!(pass.source, Source::Postgres);
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    let by_id = fixture.deliveries_by_id().await;
    assert!(ids.iter().all(|id| by_id.get(&id.to_string()) == Some(&1)));
    assert!(counter(&dispatcher.metrics().fallback_batches) >= 2);
    assert_eq!(counter(&dispatcher.metrics().redis_batches), 0);
    // The feed kept every id for when Redis comes back.
    let feed: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_feed")
        .fetch_one(&fixture.db)
        .await
        .unwrap();
    assert_eq!(feed, 60);
}

/// A `redis-server` of this test's own, on a free port, without persistence (as a cache
/// restarted empty): killed and restarted by the test, never the machine's shared one.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .map_or(0, |address| address.port());
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the private redis-server did not start on port {}",
            self.port
        );
    }

    /// SIGKILL: no goodbye to clients, nothing saved.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn with_redis_killed_mid_run_and_restarted_empty_every_notification_is_sent_exactly_once(
    db: PgPool,
) {
    let fixture = fixture(db).await;
    fixture.users_with_one_device(0, 300).await;
    let mut redis = PrivateRedis::start().await;
    // Slow FCM a little so the run is still going when Redis dies.
    fixture
        .fault(json!({ "kind": "latency", "latencyMs": 5, "count": 0 }))
        .await;
    let settings = DispatcherSettings {
        claim_batch_max: 10,
        sends_per_batch_in_flight: 4,
        ..settings(&fixture.prefix)
    };
    let dispatcher = fixture.dispatcher(Some(&redis.url()), settings);
    let stop = tokio::sync::Notify::new();
    let run = dispatcher.clone().run_until(stop.notified());
    let script = async {
        let mut ids = fixture.enqueue_range(0, 100).await;
        fixture
            .wait_until(
                Duration::from_secs(20),
                "some sent through redis",
                || async { fixture.count_in("sent").await >= 20 },
            )
            .await;
        assert!(counter(&dispatcher.metrics().redis_batches) > 0);
        redis.kill();
        // Events keep happening while Redis is away.
        ids.extend(fixture.enqueue_range(100, 100).await);
        fixture
            .wait_until(Duration::from_secs(20), "the fallback at work", || async {
                counter(&dispatcher.metrics().fallback_batches) >= 3
            })
            .await;
        // Back, empty: the schedule is rebuilt from Postgres and used again.
        let rebuilds = counter(&dispatcher.metrics().rebuilds);
        redis.restart().await;
        fixture
            .wait_until(Duration::from_secs(10), "the schedule rebuilt", || async {
                counter(&dispatcher.metrics().rebuilds) > rebuilds
            })
            .await;
        let redis_batches = counter(&dispatcher.metrics().redis_batches);
        ids.extend(fixture.enqueue_range(200, 100).await);
        fixture
            .wait_until(Duration::from_secs(30), "all sent", || async {
                fixture.count_in("sent").await == 300
            })
            .await;
        assert!(counter(&dispatcher.metrics().redis_batches) > redis_batches);
        stop.notify_one();
        ids
    };
    let ((), ids) = tokio::join!(run, script);

    assert_eq!(fixture.count_in("pending").await, 0);
    assert_eq!(fixture.count_in("failed").await, 0);
    let by_id = fixture.deliveries_by_id().await;
    for id in &ids {
        assert_eq!(by_id.get(&id.to_string()), Some(&1), "{id}");
    }
    // Built at the start, and again after the restart.
    assert!(counter(&dispatcher.metrics().rebuilds) >= 2);
}

/// A claim on `schedule` (which is built): the ids it took.
async fn claim(
    schedule: &notifications::schedule::RedisSchedule,
    now_ms: i64,
    limit: usize,
    share: usize,
) -> Vec<Uuid> {
    /// Far beyond every `now_ms` of these tests: no claim expires.
    const DEADLINE_MS: i64 = 60_000;
    match schedule
        .claim(now_ms, limit, DEADLINE_MS, share)
        .await
        .unwrap()
    {
        notifications::schedule::Claim::Ids(ids) => ids,
        notifications::schedule::Claim::NotBuilt => panic!("the schedule is built"),
    }
}

fn schedule_of(fixture: &Fixture) -> notifications::schedule::RedisSchedule {
    notifications::schedule::RedisSchedule::new(
        redis::Client::open(redis_url()).unwrap(),
        &fixture.prefix,
    )
}

#[sqlx::test(migrations = "./migrations")]
async fn a_burst_is_claimed_in_equal_shares_so_every_worker_starts_at_once(db: PgPool) {
    let fixture = fixture(db).await;
    let schedule = schedule_of(&fixture);
    schedule.mark_built(0).await.unwrap();
    let (due_at, now) = (1_000, 2_000);
    let burst: Vec<(Uuid, i64)> = (0..500).map(|_| (Uuid::now_v7(), due_at)).collect();
    schedule.schedule(&burst).await.unwrap();
    let mut shares = Vec::new();
    for _ in 0..4 {
        shares.push(claim(&schedule, now, 500, 4).await.len());
    }
    assert_eq!(shares, vec![125; 4], "a quarter of the backlog each");
    assert_eq!(schedule.depth().await.unwrap(), (0, 500));

    // With 500 in flight, a later small burst goes to the first idle worker whole:
    // (500 claimed + 40 due) / 4 = 135 ≥ 40.
    let small: Vec<(Uuid, i64)> = (0..40).map(|_| (Uuid::now_v7(), due_at)).collect();
    schedule.schedule(&small).await.unwrap();
    assert_eq!(claim(&schedule, now, 500, 4).await.len(), 40);
    assert!(claim(&schedule, now, 500, 4).await.is_empty());
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn feeding_leaves_claimed_ids_to_their_claimant_and_moves_due_ones_to_the_new_time(
    db: PgPool,
) {
    let fixture = fixture(db).await;
    let schedule = schedule_of(&fixture);
    schedule.mark_built(0).await.unwrap();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let fed: Vec<(Uuid, i64)> = ids.iter().map(|id| (*id, 1_000)).collect();
    assert_eq!(schedule.schedule(&fed).await.unwrap(), Some(10));
    // Four are claimed (due at 1,000, claimed at 2,000); six stay due.
    let claimed = claim(&schedule, 2_000, 4, 1).await;
    assert_eq!(claimed.len(), 4);
    assert_eq!(schedule.depth().await.unwrap(), (6, 4));

    // Everything is fed again, due much later: only the six unclaimed ones take the new time.
    let again: Vec<(Uuid, i64)> = ids.iter().map(|id| (*id, 50_000)).collect();
    assert_eq!(schedule.schedule(&again).await.unwrap(), Some(6));
    assert_eq!(
        schedule.depth().await.unwrap(),
        (6, 4),
        "no claimed id is due twice"
    );
    assert!(
        claim(&schedule, 2_000, 10, 1).await.is_empty(),
        "the six are due at 50,000 now"
    );
    let later = claim(&schedule, 50_000, 10, 1).await;
    assert_eq!(later.len(), 6);
    assert!(later.iter().all(|id| !claimed.contains(id)));
    assert_eq!(schedule.schedule(&[]).await.unwrap(), Some(0));
    fixture.forget_redis_keys().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_worker_stopped_mid_batch_finishes_the_send_in_flight_and_gives_back_the_rest_at_once(
    db: PgPool,
) {
    let fixture = fixture(db).await;
    fixture
        .user(
            "user_three_phones",
            &[
                ("a", "android", "token_a"),
                ("b", "android", "token_b"),
                ("c", "android", "token_c"),
            ],
        )
        .await;
    let ids = fixture.enqueue(["user_three_phones".to_owned()]).await;
    // One send at a time, so the stop lands between the first device and the others.
    let dispatcher = fixture.dispatcher(
        Some(&redis_url()),
        DispatcherSettings {
            sends_per_batch_in_flight: 1,
            ..settings(&fixture.prefix)
        },
    );
    fixture.fed(&dispatcher).await;
    fixture
        .fault(json!({ "kind": "latency", "latencyMs": 500 }))
        .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = {
        let (dispatcher, stop) = (dispatcher.clone(), stop.clone());
        tokio::spawn(async move { dispatcher.work_once_until(&stop).await })
    };
    // The latency rule is used up when the first send reaches the sandbox: it is in flight now.
    fixture
        .wait_until(
            Duration::from_secs(10),
            "the first send in flight",
            || async {
                fixture.sandbox.get("/sandbox/fcm/faults").await["rules"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            },
        )
        .await;
    stop.cancel();
    let pass = worker.await.unwrap().unwrap();
    assert_eq!((pass.claimed, pass.given_back), (1, 1));

    // The send in flight finished and is recorded; the attempt is not counted; the id is back in
    // Redis' `due` at once, not held in flight until a visibility deadline.
    let (state, attempts, _) = fixture.row(ids[0]).await;
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let reached: Vec<String> =
        sqlx::query_scalar("SELECT delivered_devices FROM notifications WHERE id = $1")
            .bind(ids[0])
            .fetch_one(&fixture.db)
            .await
            .unwrap();
    assert_eq!(reached, ["a"]);
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = nene_core::notifications::schedule::Keys::new(&fixture.prefix);
    let inflight: u64 = redis::cmd("ZCARD")
        .arg(&keys.inflight)
        .query_async(&mut redis)
        .await
        .unwrap();
    let due: Option<f64> = redis::cmd("ZSCORE")
        .arg(&keys.due)
        .arg(ids[0].to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!((inflight, due.is_some()), (0, true));

    // The next pass (any replica's) sends to the two devices left, and only to them.
    fixture.drain(&dispatcher, Duration::from_secs(10)).await;
    let mut tokens: Vec<String> = fixture
        .deliveries()
        .await
        .iter()
        .map(|delivery| delivery["token"].as_str().unwrap_or_default().to_owned())
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["token_a", "token_b", "token_c"]);
    let (state, attempts, _) = fixture.row(ids[0]).await;
    assert_eq!((state.as_str(), attempts), ("sent", 1));
    fixture.forget_redis_keys().await;
}

/// The feeder's once-a-minute sweep: a PENDING row overdue by more than the grace (its schedule
/// entry lost with no rebuild) is fed again, once; one merely due is left to the schedule.
#[sqlx::test(migrations = "./migrations")]
async fn the_sweep_feeds_again_only_what_is_overdue_past_the_grace_and_only_once(db: PgPool) {
    let fixture = fixture(db).await;
    let ids = fixture.enqueue_range(0, 2).await;
    sqlx::query("DELETE FROM notification_feed")
        .execute(&fixture.db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE notifications SET next_attempt_at = now() - make_interval(secs => $2) \
         WHERE id = $1",
    )
    .bind(ids[0])
    .bind(ORPHAN_GRACE.as_secs_f64() + 60.0)
    .execute(&fixture.db)
    .await
    .unwrap();
    let dispatcher = fixture.dispatcher(None, settings(&fixture.prefix));
    assert_eq!(dispatcher.sweep_overdue().await.unwrap(), 1);
    let fed: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM notification_feed")
        .fetch_all(&fixture.db)
        .await
        .unwrap();
    assert_eq!(fed, vec![ids[0]]);
    assert_eq!(dispatcher.sweep_overdue().await.unwrap(), 0, "already fed");
}

/// An id in the schedule that names no notification (a stale copy, a foreign entry) is claimed,
/// found to be nothing, and acknowledged away.
#[sqlx::test(migrations = "./migrations")]
async fn a_claimed_id_that_names_no_notification_is_dropped_from_the_schedule(db: PgPool) {
    let fixture = fixture(db).await;
    let dispatcher = fixture.with_redis();
    let schedule = dispatcher.schedule().expect("no schedule");
    schedule.mark_built(now_ms()).await.unwrap();
    assert_eq!(
        schedule
            .schedule(&[(Uuid::now_v7(), now_ms())])
            .await
            .unwrap(),
        Some(1)
    );
    let pass = dispatcher.work_once().await.unwrap();
    assert_eq!(
        (pass.source, pass.claimed, pass.attempted),
        (Source::Redis, 1, 0)
    );
    assert_eq!(schedule.depth().await.unwrap(), (0, 0));
    assert!(fixture.deliveries().await.is_empty());
    fixture.forget_redis_keys().await;
}

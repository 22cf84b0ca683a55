//! SIGTERM to the real `nene-core` binary, as an orchestrator sends it: the process is started on
//! a fresh database (this test's), with the Toss and FCM sandbox in the test's process over real
//! HTTP, and signalled in the middle of work. Each scenario checks that the process exits 0 within
//! the bound an orchestrator gives it, that nothing it held is lost or done twice, and prints the
//! drain time (signal to exit) it measured.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis_url;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use nene_core::{
    challenges::{self, NewChallenge, NewChallengeWire},
    ledger::{self, Credit, IdempotencyKey, LotSource, SystemAccount, check_invariants},
    notifications::{self, NotificationKind, schedule::Keys},
    payments,
    shutdown::{CLOSE_TIMEOUT, DRAIN_TIMEOUT_DEFAULT, EXIT_MARGIN, RUNTIME_STOP_TIMEOUT},
};
use nene_domain::signing::{
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const SECRET: &str = "shutdown-test-secret-shutdown-test-secret";

/// The process must be gone by then: the drain, the close, the runtime's stop and the margin —
/// within the orchestrator's grace period, so its SIGKILL would never have come.
const EXIT_BOUND: Duration = DRAIN_TIMEOUT_DEFAULT
    .saturating_add(CLOSE_TIMEOUT)
    .saturating_add(RUNTIME_STOP_TIMEOUT)
    .saturating_add(EXIT_MARGIN);
/// A core under test starts (migrations already applied) well within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn now_unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The URL of this test's database (the one `#[sqlx::test]` made), for the child process.
async fn database_url(db: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(db)
        .await
        .unwrap();
    let admin = std::env::var("DATABASE_URL").unwrap();
    nene_domain::settings::with_database(&admin, &name)
}

/// The sandbox (Toss, FCM) served from this process on a free port.
async fn sandbox() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, nene_sandbox::router()).await;
    });
    format!("http://{address}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// A `nene-core` process.
struct Core {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl Core {
    /// Starts the binary on `database` with `env` on top of a dev-mode base, and waits until its
    /// `/readyz` says ready.
    async fn start(name: &str, database: &str, env: &[(&str, &str)]) -> Core {
        let port = free_port();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("shutdown-{name}-{}.log", Uuid::new_v4().simple()));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_nene-core"));
        for inherited in [
            "FCM_SERVICE_ACCOUNT_FILE",
            "FCM_SANDBOX_URL",
            "EDGE_URL",
            "NOTIFY_REDIS_PREFIX",
        ] {
            command.env_remove(inherited);
        }
        command
            .env("DATABASE_URL", database)
            .env("REDIS_URL", "")
            .env("CORE_SIGNING_SECRET", SECRET)
            .env("CORE_BIND", format!("127.0.0.1:{port}"))
            .env("NENE_ENV", "dev")
            // Nothing listens on the discard port: no test here reaches a real Toss.
            .env("TOSS_API_URL", "http://127.0.0.1:9")
            .env("PAYMENT_RETRY_BASE_MS", "20")
            .env("PAYMENT_RETRY_MAX_MS", "200")
            .env("NOTIFY_RETRY_BASE_MS", "10")
            .env("NOTIFY_RETRY_MAX_MS", "100")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut core = Core {
            child: command.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        core.wait_until_ready().await;
        core
    }

    async fn wait_until_ready(&mut self) {
        let http = reqwest::Client::new();
        let began = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{}/readyz", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the core exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                began.elapsed() < START_TIMEOUT,
                "the core was not ready within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Sends SIGTERM; returns when it was sent.
    fn sigterm(&self) -> Instant {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the core is already gone:\n{}", self.log_tail()));
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        Instant::now()
    }

    /// Waits for the exit, which must be 0 and within [`EXIT_BOUND`] of `signalled`; returns the
    /// drain time (signal to exit).
    async fn exits_cleanly(&mut self, signalled: Instant, scenario: &str) -> Duration {
        self.exits_cleanly_within(signalled, scenario, EXIT_BOUND)
            .await
    }

    /// [`Core::exits_cleanly`] with another bound (a core with another drain timeout).
    async fn exits_cleanly_within(
        &mut self,
        signalled: Instant,
        scenario: &str,
        bound: Duration,
    ) -> Duration {
        let left = bound.saturating_sub(signalled.elapsed());
        let status = match tokio::time::timeout(left, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "{scenario}: still running {bound:?} after SIGTERM:\n{}",
                self.log_tail()
            ),
        };
        let drain = signalled.elapsed();
        assert!(
            status.success(),
            "{scenario}: exited with {status}:\n{}",
            self.log_tail()
        );
        eprintln!("drain under SIGTERM, {scenario}: {} ms", drain.as_millis());
        drain
    }
}

/// A request to the core's internal API signed as the edge signs it.
fn signed(
    http: &reqwest::Client,
    core: &str,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let timestamp = now_unix_seconds();
    let signature = SigningSecret::parse(SECRET).unwrap().sign(&SignedParts {
        method: method.as_str(),
        path_and_query: path,
        timestamp_unix_seconds: timestamp,
        user,
        body: &bytes,
    });
    let mut request = http
        .request(method, format!("{core}{path}"))
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_SIGNATURE, signature)
        .header("content-type", "application/json")
        .body(bytes);
    if !user.is_empty() {
        request = request.header(HEADER_USER, user);
    }
    request
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `condition` every 50 ms until it holds, or fails naming `what` after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let began = Instant::now();
    while !condition().await {
        assert!(began.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn assert_ledger_sound(db: &PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let violations = check_invariants(&mut conn).await.unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
}

// --- SIGTERM during a notification drain --------------------------------------------------------

/// Notifications queued at once, one per user with one device.
const NOTIFICATIONS: usize = 2_000;
/// Every FCM send takes this long while the first core runs. With 32 sends in flight per batch, a
/// batch of 500 would need 16 rounds — longer than the drain bound — so the first core can only
/// exit in time by giving back what it has not started; and the signal lands mid-drain.
const FCM_LATENCY_MS: u64 = 2_000;
const _: () = assert!(
    (nene_core::notifications::dispatcher::CLAIM_BATCH_MAX as u64)
        .div_ceil(nene_core::notifications::dispatcher::SENDS_PER_BATCH_IN_FLIGHT as u64)
        * FCM_LATENCY_MS
        > DRAIN_TIMEOUT_DEFAULT.as_millis() as u64
);
/// The signal is sent once this many messages are delivered (the first round is done).
const DELIVERED_BEFORE_SIGTERM: i64 = 100;

#[sqlx::test(migrations = "./migrations")]
async fn sigterm_during_a_notification_drain_loses_none_and_sends_none_twice(db: PgPool) {
    let sandbox = sandbox().await;
    let http = reqwest::Client::new();
    let count_users = i64::try_from(NOTIFICATIONS).unwrap_or(i64::MAX);
    sqlx::query(
        "WITH n AS (SELECT generate_series(1, $1::int8) AS n), \
         u AS (INSERT INTO users (id, nickname) SELECT 'user_' || n, 'nick_' || n FROM n) \
         INSERT INTO user_devices (user_id, device_id, platform, token) \
         SELECT 'user_' || n, 'phone', 'android', 'token_' || n FROM n",
    )
    .bind(count_users)
    .execute(&db)
    .await
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    for n in 1..=NOTIFICATIONS {
        notifications::enqueue_in_tx(
            &mut tx,
            &format!("user_{n}"),
            NotificationKind::PointsCredited,
            &json!({ "order_id": format!("order_{n}"), "points": 5_000 }),
            &format!("shutdown-test:{n}"),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let queued: HashSet<String> = sqlx::query_scalar::<_, Uuid>("SELECT id FROM notifications")
        .fetch_all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    post_json(
        &http,
        &format!("{sandbox}/sandbox/fcm/faults"),
        &json!({ "kind": "latency", "latencyMs": FCM_LATENCY_MS, "count": 0 }),
    )
    .await;
    let prefix = format!("nene:test:shutdown:{}", Uuid::new_v4().simple());
    let database = database_url(&db).await;
    let env = [
        ("REDIS_URL", redis_url()),
        ("NOTIFY_REDIS_PREFIX", prefix.clone()),
        ("FCM_SANDBOX_URL", sandbox.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let mut first = Core::start("notify-first", &database, &env).await;
    let stats = format!("{sandbox}/sandbox/fcm/stats");
    eventually("deliveries under way", Duration::from_secs(60), || async {
        get_json(&http, &stats).await["sent"].as_i64().unwrap_or(0) >= DELIVERED_BEFORE_SIGTERM
    })
    .await;
    let signalled = first.sigterm();
    first
        .exits_cleanly(signalled, "notification drain in progress")
        .await;

    let sent_before = count(
        &db,
        "SELECT count(*) FROM notifications WHERE state = 'sent'",
    )
    .await;
    assert!(
        sent_before < count_users,
        "the drain was over before the signal: nothing was in flight"
    );
    // What the first core held came back at once: no claim left in Redis for a visibility
    // deadline to return, no attempt counted for a notification it did not send.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = Keys::new(&prefix);
    let inflight: u64 = redis::cmd("ZCARD")
        .arg(&keys.inflight)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(inflight, 0, "claims left in flight by the stopped core");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM notifications WHERE state = 'pending' AND attempts > 0"
        )
        .await,
        0
    );
    eprintln!(
        "notifications sent before the exit: {sent_before} of {NOTIFICATIONS}; the rest given back"
    );

    // A second core on the same database and Redis finishes the drain, FCM quick again.
    http.delete(format!("{sandbox}/sandbox/fcm/faults"))
        .send()
        .await
        .unwrap();
    let mut second = Core::start("notify-second", &database, &env).await;
    eventually(
        "every notification sent",
        Duration::from_secs(120),
        || async {
            count(
                &db,
                "SELECT count(*) FROM notifications WHERE state <> 'sent'",
            )
            .await
                == 0
        },
    )
    .await;
    let signalled = second.sigterm();
    second
        .exits_cleanly(signalled, "idle after its drain")
        .await;

    let mut delivered: HashMap<String, usize> = HashMap::new();
    for delivery in get_json(&http, &format!("{sandbox}/sandbox/fcm/deliveries"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = delivery["data"]["notification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *delivered.entry(id).or_insert(0) += 1;
    }
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let ids: HashSet<String> = delivered.into_keys().collect();
    assert_eq!(ids, queued, "every notification delivered, nothing else");
    let _: () = redis::cmd("DEL")
        .arg(&keys.due)
        .arg(&keys.inflight)
        .arg(&keys.built)
        .query_async(&mut redis)
        .await
        .unwrap();
}

// --- SIGTERM during a burst of joins ------------------------------------------------------------

const JOINERS: usize = 400;
const SEATS: i32 = 100;
const FEE: i64 = 1_000;
/// Joins waiting on the challenge's row lock before the signal: the burst is in flight.
const JOINS_WAITING_BEFORE_SIGTERM: i64 = 10;

/// What came back for one join.
#[derive(Debug)]
enum Answer {
    Http(u16),
    /// No HTTP answer at all (refused, reset, cut): `connect` says whether the connection was
    /// never made.
    Transport {
        connect: bool,
        error: String,
    },
}

#[sqlx::test(migrations = "./migrations")]
async fn sigterm_during_a_burst_of_joins_answers_every_request_and_charges_every_seat_once(
    db: PgPool,
) {
    let new = NewChallenge::parse(&NewChallengeWire::one_week(
        "Run 5 km a day",
        FEE,
        i64::from(SEATS),
        now_unix_seconds(),
    ))
    .unwrap();
    let room = challenges::create(&db, None, &new).await.unwrap();
    let users: Vec<String> = (0..JOINERS).map(|n| format!("joiner-{n}")).collect();
    let mut tx = db.begin().await.unwrap();
    for user in &users {
        let wallet = ledger::ensure_wallet_in_tx(&mut tx, user).await.unwrap();
        ledger::credit_in_tx(
            &mut tx,
            &Credit {
                key: IdempotencyKey::parse(&format!("charge:{user}")).unwrap(),
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: nene_domain::Points::new(FEE).unwrap(),
                source: LotSource::Charge,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut core = Core::start("joins", &database_url(&db).await, &[]).await;

    // Hold the challenge's row so the joins pile up mid-request, then signal.
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM challenges WHERE id = $1 FOR UPDATE")
        .bind(room.id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    // A connection per request: no keep-alive connection is reused across the signal, so every
    // failure seen is the server's doing, not a race on an idle connection.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let path = format!("/internal/v1/challenges/{}/join", room.id);
    let base = Arc::new(core.url.clone());
    let mut burst = tokio::task::JoinSet::new();
    for user in users.clone() {
        let (http, base, path) = (http.clone(), Arc::clone(&base), path.clone());
        burst.spawn(async move {
            let sent = Instant::now();
            let answer = match signed(
                &http,
                &base,
                reqwest::Method::POST,
                &path,
                &user,
                &Value::Null,
            )
            .send()
            .await
            {
                Ok(response) => Answer::Http(response.status().as_u16()),
                Err(error) => Answer::Transport {
                    connect: error.is_connect(),
                    error: format!("{error:?}"),
                },
            };
            (user, sent, answer)
        });
    }
    eventually(
        "joins waiting on the row lock",
        Duration::from_secs(30),
        || async {
            count(
                &db,
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
                >= JOINS_WAITING_BEFORE_SIGTERM
        },
    )
    .await;
    let signalled = core.sigterm();

    // At once: not ready, still alive, and a join sent now is refused cleanly.
    let probe = reqwest::Client::new();
    let draining = json!({ "status": "not_ready", "failed": "draining" });
    let mut readiness = Vec::new();
    for _ in 0..100 {
        let response = probe
            .get(format!("{}/readyz", core.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        readiness.push((status, body.clone()));
        if (status, &body) == (503, &draining) {
            break;
        }
        // The signal may not have been handled yet.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        readiness.last(),
        Some(&(503, draining)),
        "readiness did not turn 503 after SIGTERM: {readiness:?}"
    );
    let alive = probe
        .get(format!("{}/healthz", core.url))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), 200);
    let late = signed(
        &probe,
        &core.url,
        reqwest::Method::POST,
        &path,
        "late-joiner",
        &Value::Null,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(late.status(), 503);
    assert_eq!(
        late.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );

    // Let the joins in flight through.
    blocker.rollback().await.unwrap();
    let mut answers = Vec::new();
    while let Some(joined) = burst.join_next().await {
        answers.push(joined.unwrap());
    }
    core.exits_cleanly(signalled, "burst of joins in flight")
        .await;

    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (user, sent, answer) in &answers {
        match answer {
            Answer::Http(status) => *by_status.entry(*status).or_insert(0) += 1,
            // Only a request sent after the signal may find the listener gone (after the drain),
            // and then only as a refused connection.
            Answer::Transport { connect, error } => assert!(
                *sent > signalled && *connect,
                "{user}: no answer to a join sent before SIGTERM: {error}"
            ),
        }
    }
    eprintln!("join answers by status: {by_status:?}");
    for status in by_status.keys() {
        assert!([201, 409, 503].contains(status), "a join answered {status}");
    }
    let joined = by_status.get(&201).copied().unwrap_or(0);
    assert!(joined > 0, "no join went through");
    let seats: i64 =
        sqlx::query_scalar("SELECT count(*) FROM challenge_participants WHERE challenge_id = $1")
            .bind(room.id)
            .fetch_one(&db)
            .await
            .unwrap();
    let debits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE to_account_id = $1")
            .bind(room.escrow)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        seats, debits,
        "a seat without its fee, or a fee without its seat"
    );
    assert_eq!(
        usize::try_from(seats).unwrap_or(0),
        joined,
        "every seat taken was answered 201, and only those"
    );
    assert!(seats <= i64::from(SEATS));
    assert_ledger_sound(&db).await;
}

// --- SIGTERM with a payment confirm in flight ---------------------------------------------------

const BUYER: &str = "buyer";
/// The core's Toss timeout in this scenario; its lease is twice that.
const TOSS_TIMEOUT_MS: &str = "3000";
/// Toss answers a confirm after this long (under [`TOSS_TIMEOUT_MS`]).
const TOSS_SLOW_CONFIRM_MS: u64 = 1_500;

struct Purchase {
    order_id: String,
    payment_key: String,
    amount: i64,
}

async fn purchase(db: &PgPool, http: &reqwest::Client, sandbox: &str, amount: i64) -> Purchase {
    let order = payments::create_order(db, BUYER, amount).await.unwrap();
    let paid = post_json(
        http,
        &format!("{sandbox}/sandbox/toss/pay"),
        &json!({ "orderId": order.order_id.as_str(), "amount": amount }),
    )
    .await;
    Purchase {
        order_id: order.order_id.as_str().to_owned(),
        payment_key: paid["paymentKey"].as_str().unwrap_or_default().to_owned(),
        amount,
    }
}

/// Sends the confirm of `purchase` to `core` in the background; resolves to (status, body).
fn confirm(
    http: &reqwest::Client,
    core: &Core,
    purchase: &Purchase,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = signed(
        http,
        &core.url,
        reqwest::Method::POST,
        "/internal/v1/payments/confirm",
        BUYER,
        &json!({
            "payment_key": purchase.payment_key,
            "order_id": purchase.order_id,
            "amount": purchase.amount,
        }),
    );
    tokio::spawn(async move {
        let response = request
            .send()
            .await
            .expect("a confirm in flight got no answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// Waits until the confirm has claimed its payment row (it does so just before calling Toss).
async fn confirm_claimed(db: &PgPool, order_id: &str) {
    eventually("the confirm's claim", Duration::from_secs(30), || async {
        count(
            db,
            &format!("SELECT count(*) FROM payments WHERE order_id = '{order_id}'"),
        )
        .await
            == 1
    })
    .await;
}

async fn payment_state(db: &PgPool, order_id: &str) -> (String, String) {
    sqlx::query_as("SELECT state::text, points::text FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn sigterm_with_a_payment_confirm_in_flight_leaves_no_payment_without_an_owner(db: PgPool) {
    let sandbox = sandbox().await;
    let http = reqwest::Client::new();
    let database = database_url(&db).await;
    let env = [
        ("TOSS_API_URL", sandbox.as_str()),
        ("TOSS_TIMEOUT_MS", TOSS_TIMEOUT_MS),
    ];
    let faults = format!("{sandbox}/sandbox/toss/faults");

    // 1. Toss is slow but answers within our timeout: the confirm in flight finishes during the
    //    drain, and its answer reaches the caller.
    let slow = purchase(&db, &http, &sandbox, 10_000).await;
    post_json(
        &http,
        &faults,
        &json!({ "operation": "confirm", "kind": "latency", "latencyMs": TOSS_SLOW_CONFIRM_MS }),
    )
    .await;
    let mut core = Core::start("payments-slow-toss", &database, &env).await;
    let answer = confirm(&http, &core, &slow);
    confirm_claimed(&db, &slow.order_id).await;
    let signalled = core.sigterm();
    let (status, view) = answer.await.unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["status"].as_str(), view["points"].as_str()),
        (Some("done"), Some("credited"))
    );
    core.exits_cleanly(signalled, "confirm in flight, Toss slow")
        .await;

    // 2. Toss takes the money and never answers: our call times out during the drain, the
    //    caller hears "still confirming" (202), and the payment keeps its claim — a lease that
    //    ends, not an owner that died.
    let dropped = purchase(&db, &http, &sandbox, 20_000).await;
    post_json(
        &http,
        &faults,
        &json!({ "operation": "confirm", "kind": "approve_then_drop" }),
    )
    .await;
    let mut core = Core::start("payments-toss-drops", &database, &env).await;
    let answer = confirm(&http, &core, &dropped);
    confirm_claimed(&db, &dropped.order_id).await;
    let signalled = core.sigterm();
    let (status, view) = answer.await.unwrap();
    assert_eq!(
        (status, view["status"].as_str()),
        (202, Some("confirming")),
        "{view}"
    );
    core.exits_cleanly(signalled, "confirm in flight, Toss never answers")
        .await;
    let lease_ms: f64 =
        (TOSS_TIMEOUT_MS.parse::<f64>()).unwrap() * f64::from(payments::LEASE_TIMEOUT_MULTIPLE);
    let leased: bool = sqlx::query_scalar(
        "SELECT state = 'confirming' AND updated_at > now() - make_interval(secs => $2 / 1000) \
         FROM payments WHERE order_id = $1",
    )
    .bind(&dropped.order_id)
    .bind(lease_ms)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        leased,
        "the unsettled payment is neither settled nor under a live lease"
    );

    // 3. The next core's reconciler takes it when the lease ends and settles it with Toss.
    let mut core = Core::start("payments-reconciler", &database, &env).await;
    eventually(
        "the reconciler settles the payment",
        Duration::from_secs(60),
        || async {
            payment_state(&db, &dropped.order_id).await
                == ("done".to_owned(), "credited".to_owned())
        },
    )
    .await;
    let signalled = core.sigterm();
    core.exits_cleanly(signalled, "reconciler idle").await;

    // Both charges credited once: Toss confirmed each once, the buyer holds exactly both, no
    // claim is left open.
    for purchase in [&slow, &dropped] {
        assert_eq!(
            payment_state(&db, &purchase.order_id).await,
            ("done".to_owned(), "credited".to_owned())
        );
    }
    let toss = get_json(&http, &format!("{sandbox}/sandbox/toss/stats")).await;
    assert_eq!(toss["confirms_executed"].as_i64(), Some(2), "{toss}");
    let balance: i64 = sqlx::query_scalar(
        "SELECT w.balance FROM ledger_wallets w JOIN ledger_accounts a ON a.id = w.account_id \
         WHERE a.kind = 'user_wallet' AND a.owner_id = $1",
    )
    .bind(BUYER)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(balance, slow.amount + dropped.amount);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payment_outbox WHERE completed_at IS NULL"
        )
        .await,
        0
    );
    assert_ledger_sound(&db).await;
}

// --- a drain cut by its bound ----------------------------------------------------------------

/// The drain bound of this scenario: the shortest the setting allows.
const SHORT_DRAIN_MS: u64 = nene_core::shutdown::DRAIN_TIMEOUT_MS_MIN;
/// A Toss timeout longer than that drain, so the call in flight outlives it.
const LONG_TOSS_TIMEOUT_MS: u64 = 8_000;
const _: () = assert!(LONG_TOSS_TIMEOUT_MS > SHORT_DRAIN_MS);

#[sqlx::test(migrations = "./migrations")]
async fn a_drain_cut_by_its_bound_exits_0_in_time_and_the_payment_it_held_is_settled_after_its_lease(
    db: PgPool,
) {
    let sandbox = sandbox().await;
    let http = reqwest::Client::new();
    let database = database_url(&db).await;
    let (drain_ms, toss_timeout_ms) =
        (SHORT_DRAIN_MS.to_string(), LONG_TOSS_TIMEOUT_MS.to_string());
    let env = [
        ("TOSS_API_URL", sandbox.as_str()),
        ("TOSS_TIMEOUT_MS", toss_timeout_ms.as_str()),
        ("SHUTDOWN_DRAIN_TIMEOUT_MS", drain_ms.as_str()),
    ];
    // Toss takes the money and does not answer for longer than the drain.
    let held = purchase(&db, &http, &sandbox, 30_000).await;
    post_json(
        &http,
        &format!("{sandbox}/sandbox/toss/faults"),
        &json!({ "operation": "confirm", "kind": "approve_then_drop" }),
    )
    .await;
    let mut core = Core::start("payments-drain-cut", &database, &env).await;
    let request = signed(
        &http,
        &core.url,
        reqwest::Method::POST,
        "/internal/v1/payments/confirm",
        BUYER,
        &json!({
            "payment_key": held.payment_key,
            "order_id": held.order_id,
            "amount": held.amount,
        }),
    );
    let answer = tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    confirm_claimed(&db, &held.order_id).await;
    let signalled = core.sigterm();
    let bound = Duration::from_millis(SHORT_DRAIN_MS)
        .saturating_add(CLOSE_TIMEOUT)
        .saturating_add(RUNTIME_STOP_TIMEOUT)
        .saturating_add(EXIT_MARGIN);
    let drain = core
        .exits_cleanly_within(signalled, "drain cut by its bound", bound)
        .await;
    assert!(
        drain >= Duration::from_millis(SHORT_DRAIN_MS),
        "the drain did not wait for the request in flight: {drain:?}"
    );
    // The request cut off gets no answer (the edge stopped waiting for it at its own timeout)...
    let cut = answer.await.unwrap();
    assert!(
        cut.is_err(),
        "a request cut by the drain bound was answered: {cut:?}"
    );
    // ...and the payment keeps the claim the cut-off call holds, a lease that ends.
    let lease_ms = LONG_TOSS_TIMEOUT_MS * u64::from(payments::LEASE_TIMEOUT_MULTIPLE);
    let (state, leased): (String, bool) = sqlx::query_as(
        "SELECT state::text, updated_at > now() - make_interval(secs => $2::float8 / 1000) \
         FROM payments WHERE order_id = $1",
    )
    .bind(&held.order_id)
    .bind(lease_ms as f64)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((state.as_str(), leased), ("confirming", true));

    // The next core's reconciler takes it once the lease has ended and settles it with Toss.
    let mut core = Core::start("payments-after-cut", &database, &env).await;
    eventually(
        "the reconciler settles the cut-off payment",
        Duration::from_millis(lease_ms).saturating_add(Duration::from_secs(30)),
        || async {
            payment_state(&db, &held.order_id).await == ("done".to_owned(), "credited".to_owned())
        },
    )
    .await;
    let signalled = core.sigterm();
    core.exits_cleanly_within(signalled, "reconciler idle, short drain", bound)
        .await;
    let toss = get_json(&http, &format!("{sandbox}/sandbox/toss/stats")).await;
    assert_eq!(toss["confirms_executed"].as_i64(), Some(1), "{toss}");
    assert_ledger_sound(&db).await;
}

// --- the payment worker's give-back, in process -------------------------------------------------

#[sqlx::test(migrations = "./migrations")]
async fn a_stopping_payment_worker_gives_back_at_once_the_claims_it_has_not_started(db: PgPool) {
    let sandbox = sandbox().await;
    let http = reqwest::Client::new();
    let settings = payments::PaymentSettings {
        toss_timeout: Duration::from_secs(1),
        ..payments::PaymentSettings::fast()
    };
    let payments = payments::Payments::new(
        db.clone(),
        &payments::toss::TossConfig {
            base_url: sandbox.clone(),
            secret_key: "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R".to_owned(),
            timeout: settings.toss_timeout,
            tls: nene_core::tls::Trust::public_roots(),
        },
        settings,
    )
    .unwrap();
    // Three confirmed payments whose credit failed at confirm: three outbox rows for the worker.
    payments
        .faults
        .credit_failures
        .store(3, std::sync::atomic::Ordering::SeqCst);
    for amount in [10_000, 20_000, 30_000] {
        let purchase = purchase(&db, &http, &sandbox, amount).await;
        let view = payments::confirm(
            &payments,
            BUYER,
            &payments::ConfirmRequest {
                payment_key: nene_domain::payments::PaymentKey::parse(&purchase.payment_key)
                    .unwrap(),
                order_id: nene_domain::payments::OrderId::parse(&purchase.order_id).unwrap(),
                amount,
            },
        )
        .await
        .unwrap();
        assert_eq!(view.points, payments::PointsState::Pending);
    }
    let before: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, attempts FROM payment_outbox WHERE completed_at IS NULL ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(before.len(), 3);
    // Due now (the confirm's own failure scheduled no delay).
    sqlx::query("UPDATE payment_outbox SET next_attempt_at = now()")
        .execute(&db)
        .await
        .unwrap();

    // Told to stop before its first item: it claims the batch, starts nothing, gives all back.
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let done = payments::worker::run_once_until(&payments, &stop)
        .await
        .unwrap();
    assert_eq!(done, 0);
    let after: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, attempts FROM payment_outbox WHERE completed_at IS NULL \
         AND next_attempt_at <= now() ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        after, before,
        "each row due at once, its attempt not counted"
    );

    // Another worker (another replica) takes them now, without waiting for a lease.
    assert_eq!(payments::worker::run_once(&payments).await.unwrap(), 3);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments WHERE points = 'credited'"
        )
        .await,
        3
    );
    assert_ledger_sound(&db).await;
}

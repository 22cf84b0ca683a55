//! `notify-bench`: the notification benchmark of issue 8. In one run, on one machine, over real
//! HTTP on loopback, with the FCM sandbox in-process answering at once (no injected latency):
//! 1. the sandbox's ceiling: plain sends through the FCM client in a loop, no queue;
//! 2. a drain of 300,000 due notifications through the Redis schedule (feed, Lua claims, row
//!    locks, sends, outcome writes, acknowledgements);
//! 3. 500 due retries drained (the seed's "500 retries in 98 ms");
//! 4. the same 300,000 drain with Redis disabled: the Postgres fallback.
//!
//! Prints notifications/s, the retry drain's time, the claim script's p50/p99 round trip, and the
//! ratios between them.
//!
//!     ./nene bench notify
//!
//! `DATABASE_URL` names the Postgres server (the bench makes and drops its own database);
//! `REDIS_URL` the Redis (the bench uses its own key prefix and deletes it). `BENCH_NOTIFICATIONS`
//! (default 300,000), `BENCH_RETRIES` (500), `BENCH_USERS` (10,000, one Android device each),
//! `BENCH_CEILING_SENDS` (60,000); the dispatcher's bounds `BENCH_CLAIM_BATCH`, `BENCH_BATCHES`
//! and `BENCH_SENDS_PER_BATCH` default to production's.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use nene_core::{
    migrate,
    notifications::{
        dispatcher::{Dispatcher, DispatcherSettings},
        fcm::{FCM_SEND_TIMEOUT_DEFAULT, FcmClient, FcmConfig, ServiceAccount},
        message::{self, DevicePlatform, Outgoing},
        metrics::Metrics,
        outcome::{Backoff, DeviceOutcome},
        schedule::Keys,
    },
};
use nene_domain::settings::parsed_or;
use serde_json::json;
use sqlx::{PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Connections the bench's core may hold: as the real core's pool.
const DB_POOL_CONNECTIONS_MAX: u32 = 32;
/// Rows per bulk insert when queueing: one statement of a few megabytes.
const ENQUEUE_CHUNK: usize = 10_000;
/// The retry run's backoff: the first attempts of all retries fail well within it.
const RETRY_BACKOFF_MS: u64 = 1_000;
/// How long a drain may take before the bench gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

struct Knobs {
    notifications: usize,
    retries: usize,
    users: usize,
    ceiling_sends: usize,
    settings: DispatcherSettings,
}

fn knobs() -> Knobs {
    let env = |name: &str| std::env::var(name).ok();
    let defaults = DispatcherSettings::default();
    Knobs {
        notifications: parsed_or(env, "BENCH_NOTIFICATIONS", 300_000),
        retries: parsed_or(env, "BENCH_RETRIES", 500),
        users: parsed_or(env, "BENCH_USERS", 10_000),
        ceiling_sends: parsed_or(env, "BENCH_CEILING_SENDS", 60_000),
        settings: DispatcherSettings {
            claim_batch_max: parsed_or(env, "BENCH_CLAIM_BATCH", defaults.claim_batch_max),
            batches_in_flight: parsed_or(env, "BENCH_BATCHES", defaults.batches_in_flight),
            sends_per_batch_in_flight: parsed_or(
                env,
                "BENCH_SENDS_PER_BATCH",
                defaults.sends_per_batch_in_flight,
            ),
            idle_interval: Duration::from_millis(5),
            redis_prefix: format!("nene:bench:{}", Uuid::new_v4().simple()),
            ..defaults
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let knobs = knobs();
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let database = nene_core::scratch::ScratchDatabase::create("nene_notify_bench").await?;
    let outcome = run(&database.url, &redis_url, &knobs).await;
    let _ = forget_keys(&redis_url, &knobs.settings.redis_prefix).await;
    database.drop().await?;
    outcome
}

async fn forget_keys(redis_url: &str, prefix: &str) -> Result<(), Error> {
    let mut connection = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys = Keys::new(prefix);
    redis::cmd("DEL")
        .arg(&keys.due)
        .arg(&keys.inflight)
        .arg(&keys.built)
        .query_async::<()>(&mut connection)
        .await?;
    Ok(())
}

async fn serve_sandbox() -> Result<String, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, nene_sandbox::router()).await;
    });
    Ok(format!("http://{address}"))
}

/// Users `bench_user_{n}`, each with one Android device.
async fn make_users(db: &PgPool, users: usize) -> Result<(), Error> {
    sqlx::query(
        "WITH n AS (SELECT generate_series(0, $1 - 1) AS n), \
         u AS (INSERT INTO users (id, nickname) SELECT 'bench_user_' || n, 'bench_' || n FROM n) \
         INSERT INTO user_devices (user_id, device_id, platform, token) \
         SELECT 'bench_user_' || n, 'phone', 'android', 'bench-token-' || n FROM n",
    )
    .bind(i64::try_from(users)?)
    .execute(db)
    .await?;
    Ok(())
}

/// Queues `count` due notifications (and their feed rows) in bulk, as many events would.
async fn enqueue(db: &PgPool, count: usize, users: usize, tag: &str) -> Result<Duration, Error> {
    let began = Instant::now();
    let mut done = 0;
    while done < count {
        let chunk = ENQUEUE_CHUNK.min(count - done);
        let ids: Vec<Uuid> = (0..chunk).map(|_| Uuid::now_v7()).collect();
        let owners: Vec<String> = (done..done + chunk)
            .map(|n| format!("bench_user_{}", n % users))
            .collect();
        let keys: Vec<String> = (done..done + chunk)
            .map(|n| format!("bench:{tag}:{n}"))
            .collect();
        sqlx::query(
            "WITH queued AS ( \
                 INSERT INTO notifications (id, user_id, kind, payload, dedup_key) \
                 SELECT id, user_id, 'points_credited', \
                     jsonb_build_object('order_id', 'bench_order', 'points', 5000), key \
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(id, user_id, key) \
                 RETURNING id) \
             INSERT INTO notification_feed (id) SELECT id FROM queued",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&keys)
        .execute(db)
        .await?;
        done += chunk;
    }
    Ok(began.elapsed())
}

/// Runs `dispatcher` until its `sent` counter reaches `target`; returns the time it took.
async fn drain(dispatcher: &Dispatcher, target: u64) -> Result<Duration, Error> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let began = Instant::now();
    let running = {
        let (dispatcher, stop) = (dispatcher.clone(), Arc::clone(&stop));
        tokio::spawn(async move { dispatcher.run_until(stop.notified()).await })
    };
    while Metrics::get(&dispatcher.metrics().sent) < target {
        if began.elapsed() > DRAIN_TIMEOUT {
            stop.notify_one();
            return Err(format!(
                "drain stuck at {} of {target}",
                Metrics::get(&dispatcher.metrics().sent)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = began.elapsed();
    stop.notify_one();
    running.await?;
    Ok(elapsed)
}

/// Plain sends through the FCM client, `concurrency` at a time, no queue: what the sandbox and
/// the HTTP client cost on this machine.
async fn ceiling(fcm: &FcmClient, sends: usize, concurrency: usize) -> Result<Duration, Error> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (fcm, next, failed) = (fcm.clone(), Arc::clone(&next), Arc::clone(&failed));
        workers.spawn(async move {
            let payload = json!({ "order_id": "bench_order", "points": 5000 });
            let rendered = message::render("points_credited", &payload);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= sends {
                    return;
                }
                let id = Uuid::now_v7().to_string();
                let outgoing = Outgoing {
                    id: &id,
                    kind: "points_credited",
                    payload: &payload,
                    rendered: &rendered,
                };
                let token = format!("ceiling-token-{}", n % 10_000);
                let Ok(body) = message::send_body(DevicePlatform::Android, &token, &outgoing)
                else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if fcm.send(body).await != DeviceOutcome::Delivered {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = began.elapsed();
    match failed.load(Ordering::Relaxed) {
        0 => Ok(elapsed),
        failures => Err(format!("{failures} ceiling sends failed").into()),
    }
}

/// CPU time used so far (Linux: `/proc/…/schedstat`, nanoseconds on a CPU) by this process (the
/// dispatcher and the sandbox), by every Postgres process and by Redis: read before and after a
/// run, it tells whether the run was short of CPU or waiting on something.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    bench_ns: u64,
    postgres_ns: u64,
    redis_ns: u64,
}

impl CpuTime {
    fn now() -> Self {
        fn on_cpu_ns(schedstat: &std::path::Path) -> u64 {
            std::fs::read_to_string(schedstat)
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        }
        fn threads_ns(process: &std::path::Path) -> u64 {
            std::fs::read_dir(process.join("task")).map_or(0, |threads| {
                threads
                    .flatten()
                    .map(|thread| on_cpu_ns(&thread.path().join("schedstat")))
                    .sum()
            })
        }
        let mut time = CpuTime {
            bench_ns: threads_ns(std::path::Path::new("/proc/self")),
            ..CpuTime::default()
        };
        for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            if comm.starts_with("postgres") {
                time.postgres_ns += threads_ns(&process.path());
            } else if comm.starts_with("redis-server") {
                time.redis_ns += threads_ns(&process.path());
            }
        }
        time
    }

    /// Milliseconds of CPU since `earlier`: (this process, Postgres, Redis).
    fn since_ms(self, earlier: CpuTime) -> (f64, f64, f64) {
        #[allow(clippy::cast_precision_loss)]
        let ms = |now: u64, then: u64| now.saturating_sub(then) as f64 / 1e6;
        (
            ms(self.bench_ns, earlier.bench_ns),
            ms(self.postgres_ns, earlier.postgres_ns),
            ms(self.redis_ns, earlier.redis_ns),
        )
    }
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / elapsed.as_secs_f64()
}

async fn count_sent(db: &PgPool) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE state = 'sent'")
            .fetch_one(db)
            .await?,
    )
}

async fn sandbox_post(client: &reqwest::Client, url: String, body: serde_json::Value) {
    let _ = client.post(url).json(&body).send().await;
}

async fn sandbox_sent(client: &reqwest::Client, sandbox: &str) -> Result<u64, Error> {
    let stats: serde_json::Value = client
        .get(format!("{sandbox}/sandbox/fcm/stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["sent"].as_u64().unwrap_or(0))
}

#[allow(clippy::too_many_lines)]
async fn run(database_url: &str, redis_url: &str, knobs: &Knobs) -> Result<(), Error> {
    let db = PgPoolOptions::new()
        .max_connections(DB_POOL_CONNECTIONS_MAX)
        .connect(database_url)
        .await?;
    migrate(&db).await?;
    let sandbox = serve_sandbox().await?;
    let client = reqwest::Client::new();
    let fcm = FcmClient::new(FcmConfig {
        api_url: format!("{sandbox}/fcm"),
        token_url: format!("{sandbox}/fcm/token"),
        account: ServiceAccount::from_json(nene_sandbox::fcm::SERVICE_ACCOUNT_JSON)?,
        send_timeout: FCM_SEND_TIMEOUT_DEFAULT,
        tls: nene_core::tls::Trust::public_roots(),
    })?;
    let settings = &knobs.settings;
    let concurrency = settings.batches_in_flight * settings.sends_per_batch_in_flight;
    let count = knobs.notifications;
    make_users(&db, knobs.users).await?;

    eprintln!(
        "ceiling: {} plain sends, {concurrency} at a time …",
        knobs.ceiling_sends
    );
    // Warm the connection pool and the access token first.
    ceiling(&fcm, concurrency, concurrency).await?;
    let cpu_before = CpuTime::now();
    let ceiling_time = ceiling(&fcm, knobs.ceiling_sends, concurrency).await?;
    let ceiling_cpu = CpuTime::now().since_ms(cpu_before);
    sandbox_post(&client, format!("{sandbox}/sandbox/fcm/reset"), json!({})).await;

    // --- through Redis ---------------------------------------------------------------------
    let with_redis = Dispatcher::new(
        db.clone(),
        fcm.clone(),
        Some(redis::Client::open(redis_url)?),
        settings.clone(),
    );
    let schedule = with_redis
        .schedule()
        .ok_or("the dispatcher has no schedule")?;
    // A running system's schedule is built; the rebuild is measured on its own below.
    schedule.mark_built(0).await?;
    eprintln!("redis: queueing {count} due notifications …");
    let enqueue_time = enqueue(&db, count, knobs.users, "redis").await?;
    eprintln!("redis: draining …");
    let redis_time = drain(&with_redis, u64::try_from(count)?).await?;
    let claim_p50_us = with_redis.metrics().claim_latency.quantile_micros(0.50);
    let claim_p99_us = with_redis.metrics().claim_latency.quantile_micros(0.99);
    let claims = with_redis.metrics().claim_latency.count();
    let redis_delivered = sandbox_sent(&client, &sandbox).await?;

    // --- 500 retries -----------------------------------------------------------------------
    eprintln!("retries: {} notifications failing once …", knobs.retries);
    sandbox_post(
        &client,
        format!("{sandbox}/sandbox/fcm/faults"),
        json!({ "kind": "unavailable", "count": knobs.retries }),
    )
    .await;
    // Long enough a backoff that no retry is due before every first attempt has failed.
    let first_try_settings = DispatcherSettings {
        backoff: Backoff {
            base_ms: RETRY_BACKOFF_MS,
            max_ms: RETRY_BACKOFF_MS,
        },
        ..settings.clone()
    };
    let first_try = Dispatcher::new(
        db.clone(),
        fcm.clone(),
        Some(redis::Client::open(redis_url)?),
        first_try_settings,
    );
    enqueue(&db, knobs.retries, knobs.users, "retry").await?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let running = {
        let (dispatcher, stop) = (first_try.clone(), Arc::clone(&stop));
        tokio::spawn(async move { dispatcher.run_until(stop.notified()).await })
    };
    while Metrics::get(&first_try.metrics().retried) < u64::try_from(knobs.retries)? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.notify_one();
    running.await?;
    // Every retry is due once the backoff (at most base + jitter < 2 × base) has passed.
    tokio::time::sleep(Duration::from_millis(2 * RETRY_BACKOFF_MS + 10)).await;
    let retrying = Dispatcher::new(
        db.clone(),
        fcm.clone(),
        Some(redis::Client::open(redis_url)?),
        settings.clone(),
    );
    let cpu_before = CpuTime::now();
    let retry_time = drain(&retrying, u64::try_from(knobs.retries)?).await?;
    let retry_cpu = CpuTime::now().since_ms(cpu_before);

    // --- rebuild ---------------------------------------------------------------------------
    // How long a lost schedule takes to come back: 300,000 PENDING rows fed again.
    // They were fed to Redis (the feed is empty), then Redis lost them.
    enqueue(&db, count, knobs.users, "rebuild").await?;
    sqlx::query("DELETE FROM notification_feed")
        .execute(&db)
        .await?;
    forget_keys(redis_url, &settings.redis_prefix).await?;
    let rebuilder = Dispatcher::new(
        db.clone(),
        fcm.clone(),
        Some(redis::Client::open(redis_url)?),
        settings.clone(),
    );
    let rebuild_began = Instant::now();
    // The first pass finds the schedule missing and rebuilds it; the next ones feed it.
    rebuilder.work_once().await?;
    while rebuilder.feed_once().await? > 0 {}
    let rebuild_time = rebuild_began.elapsed();
    let (rebuilt_due, _) = schedule.depth().await?;
    // Those are not drained here: the fallback run below sends them from Postgres.
    forget_keys(redis_url, &settings.redis_prefix).await?;
    sqlx::query("DELETE FROM notification_feed")
        .execute(&db)
        .await?;
    sandbox_post(&client, format!("{sandbox}/sandbox/fcm/reset"), json!({})).await;

    // --- Postgres fallback -----------------------------------------------------------------
    eprintln!("postgres fallback: draining {count} due notifications, redis disabled …");
    let fallback = Dispatcher::new(db.clone(), fcm.clone(), None, settings.clone());
    let fallback_time = drain(&fallback, u64::try_from(count)?).await?;
    let fallback_delivered = sandbox_sent(&client, &sandbox).await?;
    let sent = count_sent(&db).await?;

    let ceiling_rate = per_second(knobs.ceiling_sends, ceiling_time);
    let redis_rate = per_second(count, redis_time);
    let fallback_rate = per_second(count, fallback_time);
    println!();
    println!(
        "notification benchmark: {count} due notifications, {} users with one Android device, \
         FCM sandbox in-process, {} cores",
        knobs.users,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "dispatcher: claims of {}, {} batches in flight, {} sends per batch ({concurrency} in flight)",
        settings.claim_batch_max, settings.batches_in_flight, settings.sends_per_batch_in_flight
    );
    println!(
        "{:<44} {:>14} {:>10} {:>11}",
        "run", "notifications/s", "seconds", "vs ceiling"
    );
    for (label, rate, elapsed) in [
        (
            "sandbox ceiling (plain sends, no queue)",
            ceiling_rate,
            ceiling_time,
        ),
        ("drain through redis", redis_rate, redis_time),
        (
            "drain from postgres (redis disabled)",
            fallback_rate,
            fallback_time,
        ),
    ] {
        println!(
            "{label:<44} {rate:>14.0} {:>10.2} {:>11.2}",
            elapsed.as_secs_f64(),
            rate / ceiling_rate
        );
    }
    println!(
        "goal >= 20,000/s through redis: {}; postgres fallback / redis = {:.2} (goal >= 0.20, \
         within 5x)",
        if redis_rate >= 20_000.0 {
            "met"
        } else {
            "NOT met"
        },
        fallback_rate / redis_rate
    );
    println!(
        "{} due retries drained in {:.1} ms (goal <= 20 ms; the seed: 98 ms)",
        knobs.retries,
        retry_time.as_secs_f64() * 1_000.0
    );
    // Whether the runs were short of CPU: CPU time against wall time × cores.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (sends_cpu, _, _) = ceiling_cpu;
    #[allow(clippy::cast_precision_loss)]
    let send_cpu_us = sends_cpu * 1_000.0 / knobs.ceiling_sends as f64;
    println!(
        "  CPU: the sandbox ceiling costs {send_cpu_us:.0} µs of CPU per send (client and sandbox); \
         the retries used {:.1} ms of CPU (this process {:.1}, postgres {:.1}, redis {:.1}) in \
         {:.1} ms of wall time on {cores} cores",
        retry_cpu.0 + retry_cpu.1 + retry_cpu.2,
        retry_cpu.0,
        retry_cpu.1,
        retry_cpu.2,
        retry_time.as_secs_f64() * 1_000.0
    );
    println!(
        "claim script round trip over {claims} claims: p50 {:.3} ms, p99 {:.3} ms",
        Duration::from_micros(claim_p50_us).as_secs_f64() * 1_000.0,
        Duration::from_micros(claim_p99_us).as_secs_f64() * 1_000.0
    );
    println!(
        "queueing {count} in bulk took {:.2} s; a lost schedule of {count} was rebuilt from \
         postgres and back in redis in {:.2} s ({rebuilt_due} due)",
        enqueue_time.as_secs_f64(),
        rebuild_time.as_secs_f64()
    );
    println!(
        "delivered once each: redis run {redis_delivered} of {count}, fallback run \
         {fallback_delivered} of {count}; rows SENT {sent} of {}",
        2 * count + knobs.retries
    );
    let expected = i64::try_from(2 * count + knobs.retries)?;
    if sent == expected
        && redis_delivered == u64::try_from(count)?
        && fallback_delivered == u64::try_from(count)?
    {
        Ok(())
    } else {
        Err("a notification was lost or sent twice".into())
    }
}

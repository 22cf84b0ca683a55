//! `payment-bench`: the confirm benchmark of issue 5. In one run, on one machine, over real HTTP
//! on loopback, with the Toss sandbox answering at once (no injected latency):
//! 1. the baseline — confirms sent straight to the sandbox (what Toss itself costs here);
//! 2. confirms through the core's internal API (signed, as the edge calls it): order check,
//!    payment record, Toss call, outbox, and the points credited before the answer.
//!
//! Our overhead is (2) minus (1) at each percentile. Prints confirms/s and p50/p99 for both.
//!
//!     ./nene bench payment
//!
//! `DATABASE_URL` names the server; the bench makes and drops its own database.
//! `BENCH_CONFIRMS` (default 2,000) and `BENCH_CONCURRENCY` (default 16).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nene_core::{
    AppState,
    clock::SystemClock,
    http,
    ledger::check_invariants,
    migrate,
    payments::{PaymentSettings, Payments, toss::TossConfig},
};
use nene_domain::{
    settings::parsed_or,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret},
};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

const SECRET: &str = "bench-signing-secret-0123456789abcdef0123";
const TOSS_KEY: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";
const AMOUNT: i64 = 10_000;
/// Connections the bench's core may hold: as the real core's pool.
const DB_POOL_CONNECTIONS_MAX: u32 = 32;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn signed(
    client: &reqwest::Client,
    core: &str,
    path: &str,
    user: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let timestamp = now();
    let signature = SigningSecret::parse(SECRET)
        .map(|secret| {
            secret.sign(&SignedParts {
                method: "POST",
                path_and_query: path,
                timestamp_unix_seconds: timestamp,
                user,
                body: &bytes,
            })
        })
        .unwrap_or_default();
    client
        .post(format!("{core}{path}"))
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_SIGNATURE, signature)
        .header(HEADER_USER, user)
        .header("content-type", "application/json")
        .body(bytes)
}

/// One prepared payment: an order of ours and the sandbox's authorised payment for it.
#[derive(Clone)]
struct Prepared {
    user: String,
    order_id: String,
    payment_key: String,
}

struct Figures {
    per_second: f64,
    latencies: Vec<Duration>,
    failed: usize,
}

impl Figures {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (p * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)].as_secs_f64() * 1_000.0
    }
}

/// Sends `send(i)` for every prepared payment, `concurrency` at a time.
async fn storm<F, Fut>(count: usize, concurrency: usize, send: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (send, next) = (Arc::clone(&send), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return (latencies, failed);
                    }
                    let began = Instant::now();
                    if send(i).await {
                        latencies.push(began.elapsed());
                    } else {
                        failed += 1;
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    for worker in workers {
        if let Ok((mine, failures)) = worker.await {
            latencies.extend(mine);
            failed += failures;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
        failed,
    }
}

async fn prepare(
    client: &reqwest::Client,
    core: &str,
    sandbox: &str,
    count: usize,
) -> Result<Vec<Prepared>, Error> {
    let mut prepared = Vec::with_capacity(count);
    for i in 0..count {
        let user = format!("bench_buyer_{}", i % 1_000);
        let order: Value = signed(
            client,
            core,
            nene_domain::internal_api::PAYMENT_ORDER.path,
            &user,
            &json!({ "amount": AMOUNT }),
        )
        .send()
        .await?
        .json()
        .await?;
        let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
        let paid: Value = client
            .post(format!("{sandbox}/sandbox/toss/pay"))
            .json(&json!({ "orderId": order_id, "amount": AMOUNT }))
            .send()
            .await?
            .json()
            .await?;
        prepared.push(Prepared {
            user,
            order_id,
            payment_key: paid["paymentKey"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(prepared)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let count: usize = parsed_or(|n| std::env::var(n).ok(), "BENCH_CONFIRMS", 2_000);
    let concurrency: usize = parsed_or(|n| std::env::var(n).ok(), "BENCH_CONCURRENCY", 16);
    let database = nene_core::scratch::ScratchDatabase::create("nene_payment_bench").await?;
    let outcome = run(&database.url, count, concurrency).await;
    database.drop().await?;
    outcome
}

async fn serve(router: axum::Router) -> Result<String, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{address}"))
}

async fn run(database_url: &str, count: usize, concurrency: usize) -> Result<(), Error> {
    let db = PgPoolOptions::new()
        .max_connections(DB_POOL_CONNECTIONS_MAX)
        .connect(database_url)
        .await?;
    migrate(&db).await?;
    let sandbox = serve(nene_sandbox::router()).await?;
    let payments = Payments::new(
        db.clone(),
        &TossConfig {
            base_url: sandbox.clone(),
            secret_key: TOSS_KEY.to_owned(),
            timeout: Duration::from_secs(10),
            tls: nene_core::tls::Trust::public_roots(),
        },
        PaymentSettings::fast(),
    )?;
    tokio::spawn(nene_core::payments::worker::run(
        payments.clone(),
        tokio_util::sync::CancellationToken::new(),
    ));
    let core = serve(http::router(AppState {
        payments,
        ..AppState::offline(
            db.clone(),
            SigningSecret::parse(SECRET)?,
            Arc::new(SystemClock),
        )
        .map_err(|error| error.to_string())?
    }))
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;

    eprintln!("preparing {count} orders for the baseline and {count} for the core …");
    let for_baseline = Arc::new(prepare(&client, &core, &sandbox, count).await?);
    let for_core = Arc::new(prepare(&client, &core, &sandbox, count).await?);

    eprintln!("baseline: {count} confirms straight to the sandbox, {concurrency} at a time …");
    let baseline = {
        let (client, sandbox, prepared) = (client.clone(), sandbox.clone(), for_baseline);
        storm(count, concurrency, move |i| {
            let (client, sandbox, prepared) = (client.clone(), sandbox.clone(), prepared.clone());
            async move {
                let payment = &prepared[i];
                client
                    .post(format!("{sandbox}/v1/payments/confirm"))
                    .basic_auth(TOSS_KEY, Some(""))
                    .header("Idempotency-Key", format!("bench:{}", payment.order_id))
                    .json(&json!({ "paymentKey": payment.payment_key,
                                   "orderId": payment.order_id, "amount": AMOUNT }))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            }
        })
        .await
    };

    eprintln!("core: {count} confirms through the internal API, {concurrency} at a time …");
    let through_core = {
        let (client, core, prepared) = (client.clone(), core.clone(), for_core);
        storm(count, concurrency, move |i| {
            let (client, core, prepared) = (client.clone(), core.clone(), prepared.clone());
            async move {
                let payment = &prepared[i];
                let body = json!({ "payment_key": payment.payment_key,
                                   "order_id": payment.order_id, "amount": AMOUNT });
                let answer = signed(
                    &client,
                    &core,
                    nene_domain::internal_api::PAYMENT_CONFIRM.path,
                    &payment.user,
                    &body,
                )
                .send()
                .await;
                match answer {
                    Ok(response) if response.status().as_u16() == 200 => response
                        .json::<Value>()
                        .await
                        .is_ok_and(|view| view["points"] == "credited"),
                    _ => false,
                }
            }
        })
        .await
    };

    let credited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE points = 'credited'")
            .fetch_one(&db)
            .await?;
    let mut conn = db.acquire().await?;
    let violations = check_invariants(&mut conn).await?;

    println!();
    println!("confirm benchmark: {count} confirms, {concurrency} concurrent, one machine");
    println!(
        "{:<34} {:>10} {:>8} {:>8} {:>7}",
        "run", "confirms/s", "p50 ms", "p99 ms", "failed"
    );
    for (label, figures) in [
        ("sandbox alone (Toss's share)", &baseline),
        ("through the core (all of it)", &through_core),
    ] {
        println!(
            "{:<34} {:>10.0} {:>8.2} {:>8.2} {:>7}",
            label,
            figures.per_second,
            figures.percentile_ms(0.50),
            figures.percentile_ms(0.99),
            figures.failed
        );
    }
    println!(
        "our overhead: p50 {:.2} ms, p99 {:.2} ms (goal: p99 <= 20 ms); throughput ratio {:.2}",
        through_core.percentile_ms(0.50) - baseline.percentile_ms(0.50),
        through_core.percentile_ms(0.99) - baseline.percentile_ms(0.99),
        through_core.per_second / baseline.per_second
    );
    println!(
        "credited before answering: {credited} of {count}; ledger checker: {}",
        nene_core::ledger::verdict(&violations)
    );
    if violations.is_empty() {
        Ok(())
    } else {
        Err(format!("the ledger checker found {violations:?}").into())
    }
}

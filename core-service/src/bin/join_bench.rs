//! `join-bench`: a join storm straight against the core's join endpoint (the Spin path): 5,000
//! concurrent signed requests from 5,000 funded users for one challenge of 100 seats. Prints
//! requests/s, p50/p99/max latency, admitted count, and the ledger checker's verdict.
//!
//!     ./nene bench join
//!
//! Environment: `DATABASE_URL` (the server; a fresh database is created and dropped),
//! `BENCH_USERS` (default 5,000), `BENCH_CAPACITY` (default 100).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nene_core::{
    AppState,
    challenges::{self, NewChallenge},
    clock::SystemClock,
    ledger::{self, *},
};
use nene_domain::{
    Points,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret},
};
use sqlx::postgres::PgPoolOptions;

const SECRET: &str = "join-bench-secret-0123456789abcdef012345";
const ENTRY_FEE_POINTS: i64 = 10_000;
/// The core's own pool size in production (main.rs).
const POOL_CONNECTIONS_MAX: u32 = 32;
/// Client connections: every request in flight at once, as in a real storm.
const CLIENT_CONNECTIONS_MAX: usize = 5_000;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = nene_core::scratch::ScratchDatabase::create("nene_join_bench").await?;
    let outcome = run(&database.url).await;
    database.drop().await?;
    outcome
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let users: usize =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "BENCH_USERS", 5_000);
    let capacity: i32 =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "BENCH_CAPACITY", 100);
    let db = PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .connect(url)
        .await?;
    nene_core::migrate(&db).await?;
    let challenge = challenges::create(
        &db,
        None,
        &NewChallenge::parse(&nene_core::challenges::NewChallengeWire::one_week(
            "Join storm",
            ENTRY_FEE_POINTS,
            i64::from(capacity),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
        ))?,
    )
    .await?;
    fund_users(&db, users).await?;

    let state = core_state(&db)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, nene_core::http::router(state)).await;
    });

    let id = challenge.id.to_string();
    eprintln!("storm: {users} concurrent joins for {capacity} seats …");
    let started = Instant::now();
    let (mut latencies, admitted, full, other) = storm(address, &id, users).await?;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1_000.0
    };
    let mut conn = db.acquire().await?;
    let violations = check_invariants(&mut conn).await?;
    let seated = challenges::get(&db, challenge.id).await?.participants;
    let escrow: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::int8 FROM ledger_entries WHERE account_id = $1",
    )
    .bind(challenge.escrow)
    .fetch_one(&mut *conn)
    .await?;

    println!();
    println!(
        "join-bench: {users} concurrent joins, capacity {capacity}, straight against the core"
    );
    println!(
        "requests/s        {:.0}",
        users as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms        p50 {:.1}  p99 {:.1}  max {:.1}",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    println!("admitted          {admitted}   (refused full: {full}, other: {other})");
    println!(
        "seats in db       {seated}   escrow {escrow} = {} × fee: {}",
        seated,
        escrow == i64::from(seated) * ENTRY_FEE_POINTS
    );
    println!(
        "invariant checker {}",
        nene_core::ledger::verdict(&violations)
    );
    let oversold =
        i64::from(admitted) != i64::from(capacity.min(i32::try_from(users).unwrap_or(i32::MAX)));
    if !violations.is_empty() || oversold || other > 0 {
        return Err("the storm broke an invariant".into());
    }
    Ok(())
}

/// Gives `users` wallets the entry fee each, in one transaction.
async fn fund_users(db: &sqlx::PgPool, users: usize) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("funding {users} users …");
    let mut tx = db.begin().await?;
    for i in 0..users {
        let wallet = ensure_wallet_in_tx(&mut tx, &format!("user-{i}")).await?;
        credit_in_tx(
            &mut tx,
            &Credit {
                key: IdempotencyKey::parse(&format!("fund:{i}"))?,
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: Points::new(ENTRY_FEE_POINTS)?,
                source: LotSource::Charge,
            },
        )
        .await?;
    }
    tx.commit().await?;

    Ok(())
}

/// The core's state over `db`, with no Toss, providers or Redis (the join touches none of them).
fn core_state(db: &sqlx::PgPool) -> Result<AppState, Box<dyn std::error::Error>> {
    Ok(AppState::offline(
        db.clone(),
        SigningSecret::parse(SECRET)?,
        Arc::new(SystemClock),
    )
    .map_err(|error| error.to_string())?)
}

/// `users` concurrent signed joins of `challenge` against the core at `address`: each one's
/// latency, and how many were admitted, refused full, and anything else.
async fn storm(
    address: std::net::SocketAddr,
    challenge: &str,
    users: usize,
) -> Result<(Vec<Duration>, u32, u32, u32), Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENT_CONNECTIONS_MAX)
        .timeout(Duration::from_secs(60))
        .build()?;
    let secret = Arc::new(SigningSecret::parse(SECRET)?);
    let path = nene_domain::internal_api::CHALLENGE_JOIN
        .call(&[challenge])
        .path_and_query()
        .to_owned();
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let client = client.clone();
            let secret = Arc::clone(&secret);
            let path = path.clone();
            tokio::spawn(async move {
                let user = format!("user-{i}");
                let timestamp = now_unix();
                let signature = secret.sign(&SignedParts {
                    method: "POST",
                    path_and_query: &path,
                    timestamp_unix_seconds: timestamp,
                    user: &user,
                    body: b"",
                });
                let began = Instant::now();
                let status = client
                    .post(format!("http://{address}{path}"))
                    .header(HEADER_TIMESTAMP, timestamp.to_string())
                    .header(HEADER_SIGNATURE, signature)
                    .header(HEADER_USER, &user)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, began.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(users);
    let (mut admitted, mut full, mut other) = (0, 0, 0);
    for task in tasks {
        let (status, latency) = task.await?;
        latencies.push(latency);
        match status {
            201 => admitted += 1,
            409 => full += 1,
            _ => other += 1,
        }
    }
    Ok((latencies, admitted, full, other))
}

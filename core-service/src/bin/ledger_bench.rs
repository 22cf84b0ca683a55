//! `ledger-bench`: throughput and latency of ledger debits on a real Postgres, beside pgbench's
//! simple-update on the same server as the machine's baseline.
//!
//!     ./nene bench ledger          (or: cargo run --profile native-release -p nene-core --bin ledger-bench)
//!
//! Environment: `DATABASE_URL` (the server; a fresh database is created and dropped),
//! `BENCH_SECONDS` (per scenario, default 10), `BENCH_CLIENTS` (concurrent callers, default 32).

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use nene_core::ledger::{self, *};
use nene_domain::Points;
use sqlx::{PgPool, postgres::PgPoolOptions};

/// Wallets of the spread scenario (the figure).
const SPREAD_WALLETS: usize = 1_000;
/// Points each wallet starts with: enough that no debit of 1 ever runs out during a run.
const FUNDING_POINTS: i64 = 100_000_000;
/// Pool size: one connection per client, so the pool itself never queues a caller.
const POOL_CONNECTIONS_MAX: u32 = 64;

struct Figures {
    name: &'static str,
    transfers: usize,
    failures: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.transfers as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[index] as f64 / 1_000.0
    }
}

/// Runs `clients` callers for `seconds`, each debiting 1 point per call from the one hot wallet or
/// from wallets spread over all of them; directly (one statement per debit) or through the batcher.
async fn storm(
    name: &'static str,
    db: &PgPool,
    wallets: Arc<Vec<AccountId>>,
    clients: usize,
    seconds: u64,
    hot: bool,
    batcher: Option<DebitBatcher>,
) -> Figures {
    // Keys must differ between scenarios: a tag per run.
    let run = u8::from(hot) * 2 + u8::from(batcher.is_some());
    let shop = ledger::system_account(SystemAccount::ShopSales);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let db = db.clone();
            let wallets = Arc::clone(&wallets);
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                let mut n: usize = 0;
                while Instant::now() < deadline {
                    let wallet = if hot {
                        wallets[0]
                    } else {
                        wallets[(client * 7919 + n * 104_729) % wallets.len()]
                    };
                    let request = Debit {
                        key: IdempotencyKey::parse(&format!("bench:{run}:{client}:{n}"))
                            .unwrap_or_else(|e| panic!("{e}")),
                        wallet,
                        to: shop,
                        amount: Points::new(1).unwrap_or(Points::ZERO),
                    };
                    let began = Instant::now();
                    let outcome = match &batcher {
                        Some(batcher) => batcher.debit(request).await,
                        None => ledger::debit(&db, &request).await,
                    };
                    match outcome {
                        Ok(_) => latencies
                            .push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX)),
                        Err(_) => failures += 1,
                    }
                    n += 1;
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (mut l, f) = task
            .await
            .unwrap_or_else(|e| panic!("a bench client failed: {e}"));
        latencies_us.append(&mut l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Figures {
        name,
        transfers: latencies_us.len(),
        failures,
        elapsed,
        latencies_us,
    }
}

fn pgbench_tps(url: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", url])
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    if !init.status.success() {
        return Err(String::from_utf8_lossy(&init.stderr).into_owned());
    }
    let run = Command::new("pgbench")
        .args([
            "-b",
            "simple-update",
            "-n",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &seconds.to_string(),
            url,
        ])
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&run.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench output: {text}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "BENCH_SECONDS", 10);
    let clients: usize =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "BENCH_CLIENTS", 32);
    let database = nene_core::scratch::ScratchDatabase::create("nene_ledger_bench").await?;
    let outcome = run(&database.url, seconds, clients).await;
    database.drop().await?;
    outcome
}

async fn run(url: &str, seconds: u64, clients: usize) -> Result<(), Box<dyn std::error::Error>> {
    let db = PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .connect(url)
        .await?;
    nene_core::migrate(&db).await?;
    eprintln!("funding {SPREAD_WALLETS} wallets …");
    let mut wallets = Vec::with_capacity(SPREAD_WALLETS);
    let mut tx = db.begin().await?;
    for i in 0..SPREAD_WALLETS {
        let wallet = ensure_wallet_in_tx(&mut tx, &format!("bench-user-{i}")).await?;
        credit_in_tx(
            &mut tx,
            &Credit {
                key: IdempotencyKey::parse(&format!("bench:fund:{i}"))?,
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: Points::new(FUNDING_POINTS)?,
                source: LotSource::Charge,
            },
        )
        .await?;
        wallets.push(wallet);
    }
    tx.commit().await?;
    let wallets = Arc::new(wallets);

    let batcher = DebitBatcher::spawn(db.clone());
    let mut results = Vec::new();
    for (name, hot, batched) in [
        ("(a) spread over 1,000 wallets, one per call", false, false),
        ("(a) spread over 1,000 wallets, batched", false, true),
        ("(b) one hot wallet, one per call", true, false),
        ("(b) one hot wallet, batched", true, true),
    ] {
        eprintln!("{name}: {clients} clients, {seconds} s …");
        let batcher = batched.then(|| batcher.clone());
        results.push(
            storm(
                name,
                &db,
                Arc::clone(&wallets),
                clients,
                seconds,
                hot,
                batcher,
            )
            .await,
        );
    }
    let mut conn = db.acquire().await?;
    let violations = check_invariants(&mut conn).await?;
    drop(conn);
    db.close().await;
    eprintln!("baseline: pgbench simple-update, {clients} clients, {seconds} s …");
    let baseline = pgbench_tps(url, clients, seconds);

    println!();
    println!("ledger-bench: {clients} clients, {seconds} s per scenario, one Postgres");
    println!(
        "{:<44} {:>12} {:>9} {:>9} {:>9}",
        "scenario", "transfers/s", "p50 ms", "p99 ms", "failed"
    );
    for figures in &results {
        println!(
            "{:<44} {:>12.0} {:>9.2} {:>9.2} {:>9}",
            figures.name,
            figures.per_second(),
            figures.percentile_ms(0.50),
            figures.percentile_ms(0.99),
            figures.failures
        );
    }
    match &baseline {
        Ok(tps) => {
            println!(
                "{:<44} {:>12.0}",
                "baseline: pgbench simple-update (tps)", tps
            );
            for figures in &results {
                println!(
                    "ratio to pgbench  {:<44} {:.2}",
                    figures.name,
                    figures.per_second() / tps
                );
            }
        }
        Err(error) => println!("baseline: pgbench failed: {error}"),
    }
    println!(
        "invariant checker: {}",
        nene_core::ledger::verdict(&violations)
    );
    if !violations.is_empty() {
        return Err("the ledger is inconsistent after the benchmark".into());
    }
    Ok(())
}

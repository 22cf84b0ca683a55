//! `join-storm`: the join benchmark of issue 4. In one run, on one machine:
//! 1. the ceiling — a trivial edge route (the JSON 404 fallback: routing and error rendering, no
//!    I/O) under the same `wrangler dev`;
//! 2. the storm through the edge — N funded users join one challenge of 100 seats at once,
//!    through the Worker, each user's `Wallet` and the challenge's `ChallengeRoom` (once the room
//!    is full and sealed, the Worker refuses the rest from its cached roster);
//! 3. the same storm straight against the core's join endpoint (a new challenge).
//!
//! Prints requests/s, p50/p99/max, admitted count, and the ledger checker's verdict.
//!
//!     ./nene bench join-storm
//!
//! Environment as for the end-to-end tests (`./nene bench` sets it); `STORM_USERS` (5,000),
//! `STORM_CAPACITY` (100), `STORM_IN_FLIGHT` (200: requests in flight at once, in every run;
//! docs/decisions/0006-joins.md has figures for 200, 500 and 1,000).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use nene_e2e::{Core, Wrangler, scratch_dir, signed_request, token_for};
use serde_json::{Value, json};

const FEE: i64 = 10_000;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(10_000)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn core_json(
    core: &Core,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: &Value,
) -> Value {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    signed_request(&client(), &core.url, method, path, user, &bytes)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null)
}

struct Figures {
    name: String,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    admitted: usize,
    /// How many answers had each status (0: no answer).
    statuses: std::collections::BTreeMap<u16, usize>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1_000.0
    }
}

/// Fires every request, at most `in_flight` at a time, and measures each from when it is sent.
async fn fire(name: &str, requests: Vec<reqwest::RequestBuilder>, in_flight: usize) -> Figures {
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let began = Instant::now();
                let status = request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, began.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut admitted = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let (status, latency) = task.await.unwrap_or((0, Duration::ZERO));
        if status == 201 {
            admitted += 1;
        }
        *statuses.entry(status).or_insert(0) += 1;
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Figures {
        name: name.to_owned(),
        requests: latencies.len(),
        elapsed,
        latencies,
        admitted,
        statuses,
    }
}

async fn new_challenge(core: &Core, capacity: i64) -> Value {
    core_json(
        core,
        reqwest::Method::POST,
        "/internal/v1/challenges",
        "host",
        &nene_e2e::challenge_body("Storm", FEE, capacity),
    )
    .await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // 5,000 users is the figure. Local `wrangler dev` (its proxy and workerd) runs out of
    // descriptors (hard limit 20,000 here, not raisable) with 5,000 connections open at once, even
    // on the trivial route, so every run holds at most STORM_IN_FLIGHT requests in flight.
    let users: usize =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "STORM_USERS", 5_000);
    let in_flight: usize =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "STORM_IN_FLIGHT", 200);
    let capacity: i64 =
        nene_domain::settings::parsed_or(|n| std::env::var(n).ok(), "STORM_CAPACITY", 100);
    let dir = scratch_dir("join_storm_bench");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    eprintln!("funding {users} users …");
    let http = client();
    let mut funding = Vec::new();
    for i in 0..users {
        let core = Arc::clone(&core);
        funding.push(tokio::spawn(async move {
            nene_e2e::fund_user(&core, &format!("user-{i}"), 2 * FEE).await;
        }));
        if funding.len() >= 256 {
            for task in funding.drain(..) {
                let _ = task.await;
            }
        }
    }
    for task in funding {
        let _ = task.await;
    }
    let tokens: Vec<String> = (0..users)
        .map(|i| token_for(&format!("user-{i}")))
        .collect();

    eprintln!("ceiling: {users} requests to a trivial edge route …");
    let ceiling = fire(
        "trivial edge route (JSON 404, no I/O)",
        (0..users)
            .map(|_| http.get(format!("{}/v1/no-such-route", edge.url)))
            .collect(),
        in_flight,
    )
    .await;

    let through_edge = new_challenge(&core, capacity).await;
    let id = through_edge["id"].as_str().unwrap_or_default().to_owned();
    eprintln!("storm through the edge: {users} joins for {capacity} seats …");
    let edge_storm = fire(
        "join storm through the edge (wrangler dev)",
        tokens
            .iter()
            .map(|token| {
                http.post(format!("{}/v1/challenges/{id}/join", edge.url))
                    .bearer_auth(token)
            })
            .collect(),
        in_flight,
    )
    .await;

    let direct = new_challenge(&core, capacity).await;
    let direct_id = direct["id"].as_str().unwrap_or_default().to_owned();
    eprintln!("storm straight against the core: {users} joins for {capacity} seats …");
    let path = format!("/internal/v1/challenges/{direct_id}/join");
    let core_storm = fire(
        "join storm straight against the core",
        (0..users)
            .map(|i| {
                signed_request(
                    &http,
                    &core.url,
                    reqwest::Method::POST,
                    &path,
                    &format!("user-{i}"),
                    b"",
                )
            })
            .collect(),
        in_flight,
    )
    .await;

    let violations = nene_e2e::ledger_violations(&core).await;
    let seats_edge = core_json(
        &core,
        reqwest::Method::GET,
        &format!("/internal/v1/challenges/{id}"),
        "",
        &Value::Null,
    )
    .await["participants"]
        .clone();
    let seats_core = core_json(
        &core,
        reqwest::Method::GET,
        &format!("/internal/v1/challenges/{direct_id}"),
        "",
        &Value::Null,
    )
    .await["participants"]
        .clone();

    println!();
    println!(
        "join-storm: {users} users, at most {in_flight} requests in flight, capacity {capacity}, one machine (2 cores)"
    );
    println!(
        "{:<44} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "run", "req/s", "p50 ms", "p99 ms", "max ms", "admitted"
    );
    for figures in [&ceiling, &edge_storm, &core_storm] {
        println!(
            "{:<44} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>9}",
            figures.name,
            figures.rate(),
            figures.ms(0.5),
            figures.ms(0.99),
            figures.ms(1.0),
            figures.admitted
        );
    }
    for figures in [&ceiling, &edge_storm, &core_storm] {
        println!("statuses of {}: {:?}", figures.name, figures.statuses);
    }
    println!(
        "edge storm / trivial route: {:.2}",
        edge_storm.rate() / ceiling.rate()
    );
    println!(
        "seats in the core: through the edge {seats_edge}, straight {seats_core} (capacity {capacity})"
    );
    println!(
        "invariant checker: {}",
        if violations == json!([]) {
            "clean".to_owned()
        } else {
            violations.to_string()
        }
    );
    // The core's seats are the truth: a join the edge answered 503 (its core call timed out) is
    // finished by the room's alarm, and is a seat all the same.
    let broken =
        violations != json!([]) || seats_edge != json!(capacity) || seats_core != json!(capacity);
    // Stop wrangler and the core before saying how it ended (an early exit would leave them).
    drop(edge);
    drop(core);
    if broken {
        eprintln!("the storm broke an invariant; logs in {}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::process::ExitCode::SUCCESS
}

//! Joining a challenge end to end: through the Worker and its `ChallengeRoom` under `wrangler dev`,
//! and through the Spin component straight to the core — no oversell, no double charge, no seat
//! without its fee, and the ledger checker clean after each storm.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use nene_e2e::{Core, SpinHost, Wrangler, client, core_call, scratch_dir, token_for};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const FEE: i64 = 10_000;
/// Requests in flight at once: enough to pile every join onto the room together, few enough
/// that the test client stays within the process's file descriptors.
const IN_FLIGHT_MAX: usize = 256;

/// Gives each user a wallet holding `points`.
async fn fund(core: &Arc<Core>, users: &[String], points: i64) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let core = Arc::clone(core);
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                nene_e2e::fund_user(&core, &user, points).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn create_challenge(edge_url: &str, capacity: i32) -> Value {
    let response = client()
        .post(format!("{edge_url}/v1/challenges"))
        .bearer_auth(token_for("host"))
        .json(&nene_e2e::challenge_body(
            "Run 5 km a day",
            FEE,
            i64::from(capacity),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

/// Every user joins at once; returns the statuses with their error codes.
async fn storm(edge_url: &str, challenge: &str, users: &[String]) -> Vec<(u16, String)> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let url = format!("{edge_url}/v1/challenges/{challenge}/join");
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                let response = client()
                    .post(url)
                    .bearer_auth(token_for(&user))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (
                    status,
                    body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

/// Seats, debits into escrow, escrow balance, and the ledger checker's violations, from the core.
async fn ledger_view(core: &Core, challenge: &Value) -> (i64, usize, i64, Value) {
    let id = challenge["id"].as_str().unwrap_or_default();
    let (_, detail) = core_call(
        core,
        "GET",
        &format!("/internal/v1/challenges/{id}"),
        "",
        &Value::Null,
    )
    .await;
    let escrow = challenge["escrow"].as_str().unwrap_or_default();
    let entries = nene_e2e::account_entries(core, escrow, 100).await;
    let items = entries["items"].as_array().cloned().unwrap_or_default();
    assert!(
        entries["next_cursor"].is_null(),
        "more than 100 entries in escrow"
    );
    let balance: i64 = items.iter().filter_map(|e| e["amount"].as_i64()).sum();
    let violations = nene_e2e::ledger_violations(core).await;
    (
        detail["participants"].as_i64().unwrap_or(-1),
        items.len(),
        balance,
        violations,
    )
}

fn count(outcomes: &[(u16, String)], status: u16, code: &str) -> usize {
    outcomes
        .iter()
        .filter(|(s, c)| *s == status && c == code)
        .count()
}

#[tokio::test]
async fn two_thousand_users_racing_through_workerd_for_a_hundred_seats_fill_exactly_a_hundred() {
    let dir = scratch_dir("join_storm_workers");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let challenge = create_challenge(&edge.url, 100).await;
    let users: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
    fund(&core, &users, FEE).await;

    let outcomes = storm(
        &edge.url,
        challenge["id"].as_str().unwrap_or_default(),
        &users,
    )
    .await;
    assert_eq!(count(&outcomes, 201, ""), 100, "admitted");
    assert_eq!(
        count(&outcomes, 409, "CHALLENGE_FULL"),
        1_900,
        "{:?}",
        &outcomes[..5]
    );
    let (seats, debits, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!((seats, debits, escrow), (100, 100, 100 * FEE));
    assert_eq!(violations, json!([]));

    // Live counts come from the room.
    let detail: Value = client()
        .get(format!(
            "{}/v1/challenges/{}",
            edge.url,
            challenge["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(token_for("user-0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["live"]["participants"], 100);
    assert_eq!(detail["live"]["capacity"], 100);
}

#[tokio::test]
async fn one_user_clicking_join_fifty_times_at_once_through_workerd_pays_once() {
    let dir = scratch_dir("join_double_click_workers");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let challenge = create_challenge(&edge.url, 10).await;
    fund(&core, &["eager".to_owned()], 5 * FEE).await;
    let users = vec!["eager".to_owned(); 50];
    let outcomes = storm(
        &edge.url,
        challenge["id"].as_str().unwrap_or_default(),
        &users,
    )
    .await;
    assert_eq!(count(&outcomes, 201, ""), 1);
    let refused =
        count(&outcomes, 409, "ALREADY_JOINED") + count(&outcomes, 409, "REQUEST_IN_PROGRESS");
    assert_eq!(refused, 49, "{outcomes:?}");
    let (seats, debits, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!((seats, debits, escrow), (1, 1, FEE));
    assert_eq!(violations, json!([]));
}

#[tokio::test]
async fn a_user_with_too_few_points_gets_402_through_workerd_and_the_seat_is_not_taken() {
    let dir = scratch_dir("join_poor_workers");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let challenge = create_challenge(&edge.url, 2).await;
    fund(&core, &["poor".to_owned()], FEE - 1).await;
    fund(&core, &["rich-1".to_owned(), "rich-2".to_owned()], FEE).await;
    let id = challenge["id"].as_str().unwrap_or_default();
    let outcomes = storm(&edge.url, id, &["poor".to_owned()]).await;
    assert_eq!(outcomes, vec![(402, "INSUFFICIENT_POINTS".to_owned())]);
    // Both seats are still there for others.
    let outcomes = storm(&edge.url, id, &["rich-1".to_owned(), "rich-2".to_owned()]).await;
    assert_eq!(count(&outcomes, 201, ""), 2);
    let (seats, _, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!((seats, escrow), (2, 2 * FEE));
    assert_eq!(violations, json!([]));
}

#[tokio::test]
async fn the_same_storms_through_the_spin_component_reach_the_same_ledger() {
    let dir = scratch_dir("join_storm_spin");
    let core = Arc::new(Core::start(&dir).await);
    let edge = SpinHost::start(&core.url, &dir).await;
    let challenge = create_challenge(&edge.url, 100).await;
    let id = challenge["id"].as_str().unwrap_or_default().to_owned();
    let users: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
    fund(&core, &users, FEE).await;
    fund(&core, &["poor".to_owned()], FEE - 1).await;

    let outcomes = storm(&edge.url, &id, &["poor".to_owned()]).await;
    assert_eq!(outcomes, vec![(402, "INSUFFICIENT_POINTS".to_owned())]);
    let outcomes = storm(&edge.url, &id, &vec!["user-0".to_owned(); 50]).await;
    assert_eq!(count(&outcomes, 201, ""), 1);
    assert_eq!(count(&outcomes, 409, "ALREADY_JOINED"), 49);
    let outcomes = storm(&edge.url, &id, &users).await;
    assert_eq!(
        count(&outcomes, 201, ""),
        99,
        "user-0 already holds one of the 100 seats"
    );
    assert_eq!(count(&outcomes, 409, "ALREADY_JOINED"), 1);
    assert_eq!(count(&outcomes, 409, "CHALLENGE_FULL"), 1_900);
    let (seats, debits, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!((seats, debits, escrow), (100, 100, 100 * FEE));
    assert_eq!(violations, json!([]));
}

async fn join_with_key(edge_url: &str, challenge: &str, user: &str, key: &str) -> (u16, Value) {
    let response = client()
        .post(format!("{edge_url}/v1/challenges/{challenge}/join"))
        .bearer_auth(token_for(user))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retried_join_with_its_idempotency_key_gets_the_first_answer_and_the_wallet_shows_it() {
    let dir = scratch_dir("join_idempotency_workers");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let first = create_challenge(&edge.url, 10).await;
    let second = create_challenge(&edge.url, 10).await;
    let (first, second) = (
        first["id"].as_str().unwrap_or_default().to_owned(),
        second["id"].as_str().unwrap_or_default().to_owned(),
    );
    fund(&core, &["retrier".to_owned()], 3 * FEE).await;
    let wallet = || async {
        client()
            .get(format!("{}/v1/wallet", edge.url))
            .bearer_auth(token_for("retrier"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(wallet().await["balance"], 3 * FEE);

    let (status, answer) = join_with_key(&edge.url, &first, "retrier", "click-1").await;
    assert_eq!(status, 201, "{answer}");
    // Never stale after its own write: the join's fee shows at once.
    assert_eq!(wallet().await["balance"], 2 * FEE);
    // The retry with the same key is the first answer again, not ALREADY_JOINED, and costs nothing.
    assert_eq!(
        join_with_key(&edge.url, &first, "retrier", "click-1").await,
        (201, answer)
    );
    // The same key for another challenge is refused.
    let (status, refused) = join_with_key(&edge.url, &second, "retrier", "click-1").await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (422, json!("IDEMPOTENCY_KEY_REUSED"))
    );
    // Without the key, a second join is what it is: already joined.
    let outcomes = storm(&edge.url, &first, &["retrier".to_owned()]).await;
    assert_eq!(outcomes, vec![(409, "ALREADY_JOINED".to_owned())]);
    assert_eq!(wallet().await["balance"], 2 * FEE);
    let violations = nene_e2e::ledger_violations(&core).await;
    assert_eq!(violations, json!([]));
}

#[tokio::test]
async fn a_join_the_core_could_not_answer_is_finished_by_the_rooms_alarm_after_a_crash_without_a_second_charge()
 {
    let dir = scratch_dir("join_alarm_workers");
    let mut core = Core::start(&dir).await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let challenge = create_challenge(&edge.url, 10).await;
    let id = challenge["id"].as_str().unwrap_or_default().to_owned();
    for user in ["first", "cut-off"] {
        nene_e2e::fund_user(&core, user, FEE).await;
    }
    // A first join teaches the room its rules while the core is up.
    assert_eq!(
        storm(&edge.url, &id, &["first".to_owned()]).await,
        vec![(201, String::new())]
    );

    // The core cannot answer the forwarded join (the revocation check before it still passes): the
    // room holds the seat and answers that it cannot tell yet.
    let (status, _) = core_call(
        &core,
        "POST",
        "/internal/v1/dev/faults",
        "",
        &json!({ "join_failures": 1_000 }),
    )
    .await;
    assert_eq!(status, 200);
    let outcomes = storm(&edge.url, &id, &["cut-off".to_owned()]).await;
    assert_eq!(outcomes, vec![(503, "CORE_UNAVAILABLE".to_owned())]);
    let retry = storm(&edge.url, &id, &["cut-off".to_owned()]).await;
    assert_eq!(
        retry,
        vec![(409, "REQUEST_IN_PROGRESS".to_owned())],
        "the seat is still pending"
    );

    // Then the core crashes outright (and comes back without the fault).
    core.process.stop();
    // The core comes back; the room's alarm retries with the same key until the answer is definite.
    core.restart(&dir).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (seats, _, _, _) = ledger_view(&core, &challenge).await;
        if seats == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the alarm did not finish the join"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let again = storm(&edge.url, &id, &["cut-off".to_owned()]).await;
    assert_eq!(again, vec![(409, "ALREADY_JOINED".to_owned())]);
    let (seats, debits, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!((seats, debits, escrow), (2, 2, 2 * FEE), "one charge each");
    assert_eq!(violations, json!([]));
}

/// What an orchestrator waits after SIGTERM before it kills (Kubernetes' default grace period):
/// the core's default drain and close fit inside it.
const GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// A user's join until its answer is definite: `REQUEST_IN_PROGRESS` (the room still holds the
/// seat pending, its alarm retrying) is asked again.
async fn definite_join(edge_url: &str, challenge: &str, user: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let outcome = storm(edge_url, challenge, &[user.to_owned()])
            .await
            .remove(0);
        let pending = outcome == (409, "REQUEST_IN_PROGRESS".to_owned())
            || outcome == (503, "CORE_UNAVAILABLE".to_owned());
        if !pending {
            return outcome;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{user}'s join is still not definite: {outcome:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn sigterm_to_the_core_during_a_burst_of_joins_through_workerd_answers_every_request_and_charges_each_seat_once()
 {
    const SEATS: i32 = 50;
    let dir = scratch_dir("join_sigterm_workers");
    let core = Arc::new(Core::start(&dir).await);
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let challenge = create_challenge(&edge.url, SEATS).await;
    let id = challenge["id"].as_str().unwrap_or_default().to_owned();
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    fund(&core, &users, FEE).await;
    let mut core = Arc::into_inner(core).expect("the core is still shared");
    // A first join teaches the room its rules while the core is up.
    assert_eq!(
        storm(&edge.url, &id, &users[..1]).await,
        vec![(201, String::new())]
    );

    // The challenge's row is held, so the joins the room forwards pile up inside the core.
    let connect = || async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&core.database.url)
            .await
            .unwrap()
    };
    let mut blocker = connect().await;
    // Another connection watches: inside the blocker's transaction `pg_stat_activity` would
    // show the same snapshot throughout.
    let mut watcher = connect().await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT 1 FROM challenges WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut blocker)
        .await
        .unwrap();
    let burst = {
        let (url, id, users) = (edge.url.clone(), id.clone(), users[1..].to_vec());
        tokio::spawn(async move { storm(&url, &id, &users).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        // A few are enough: the signal must come well inside the room's 5 s wait for the
        // core, or the room gives up on them and nothing is in flight any more.
        if waiting >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the joins did not reach the core"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // SIGTERM with the joins in flight: the core stops being ready at once, then lets them finish.
    core.process.sigterm();
    let probe = client();
    let mut readiness = None;
    for _ in 0..100 {
        let response = probe
            .get(format!("{}/readyz", core.url))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            readiness = Some(response.json::<Value>().await.unwrap_or(Value::Null));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        readiness,
        Some(json!({ "status": "not_ready", "failed": "draining" }))
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let outcomes = burst.await.unwrap();
    let status = core.process.exit_status(GRACE_PERIOD).await;
    assert!(status.success(), "the core exited with {status}");

    // Every request has an answer (the storm panics on a request without one): a seat, full, or
    // "try again" for those that found the core draining or gone.
    let unexpected: Vec<_> = outcomes
        .iter()
        .filter(|outcome| {
            ![
                (201, ""),
                (409, "CHALLENGE_FULL"),
                (503, "CORE_UNAVAILABLE"),
            ]
            .contains(&(outcome.0, outcome.1.as_str()))
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(
        count(&outcomes, 201, "") > 0,
        "no join in flight at the signal was finished: {:?}",
        &outcomes[..5]
    );

    // The core comes back; the rooms' alarms finish what was pending. Everyone told to try again
    // does, and each user's definite answer agrees with the ledger: one seat, one fee.
    core.restart(&dir).await;
    let mut seated = 1 + count(&outcomes, 201, "");
    for (user, outcome) in users[1..].iter().zip(&outcomes) {
        if *outcome == (503, "CORE_UNAVAILABLE".to_owned()) {
            let answer = definite_join(&edge.url, &id, user).await;
            match (answer.0, answer.1.as_str()) {
                (201, "") | (409, "ALREADY_JOINED") => seated += 1,
                (409, "CHALLENGE_FULL") => {}
                other => panic!("{user}: {other:?}"),
            }
        }
    }
    let (seats, debits, escrow, violations) = ledger_view(&core, &challenge).await;
    assert_eq!(
        (seats, debits, escrow),
        (
            i64::try_from(seated).unwrap_or(-1),
            seated,
            i64::try_from(seated).unwrap_or(-1) * FEE
        )
    );
    assert!(seats <= i64::from(SEATS));
    assert_eq!(violations, json!([]));
}

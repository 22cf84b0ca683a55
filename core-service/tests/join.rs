//! Joining a challenge through the core alone (the path the Spin edge takes): no oversell, no
//! double charge, no seat without its fee — on a real Postgres, under concurrency.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_sound, p};

use nene_core::{
    challenges::{self, Challenge, JoinError, NewChallenge, NewChallengeWire},
    ledger::{self, *},
};
use sqlx::PgPool;

fn wire(title: &str, fee: i64, capacity: i64) -> NewChallengeWire {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    NewChallengeWire::one_week(title, fee, capacity, now)
}

async fn challenge(db: &PgPool, fee: i64, capacity: i32) -> Challenge {
    let new = NewChallenge::parse(&wire("Run 5 km a day", fee, i64::from(capacity))).unwrap();
    challenges::create(db, None, &new).await.unwrap()
}

/// Funds `users` wallets with `points` each, in one transaction.
async fn fund(db: &PgPool, users: &[String], points: i64) {
    let mut tx = db.begin().await.unwrap();
    for user in users {
        let wallet = ensure_wallet_in_tx(&mut tx, user).await.unwrap();
        credit_in_tx(
            &mut tx,
            &Credit {
                key: IdempotencyKey::parse(&format!("charge:{user}")).unwrap(),
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: p(points),
                source: LotSource::Charge,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn escrow_balance(db: &PgPool, challenge: &Challenge) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::int8 FROM ledger_entries WHERE account_id = $1",
    )
    .bind(challenge.escrow)
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn two_thousand_users_racing_for_a_hundred_seats_fill_exactly_a_hundred(db: PgPool) {
    let room = challenge(&db, 10_000, 100).await;
    let users: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
    fund(&db, &users, 10_000).await;
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let db = db.clone();
            tokio::spawn(async move { challenges::join(&db, room.id, &user).await })
        })
        .collect();
    let (mut joined, mut full) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => joined += 1,
            Err(JoinError::Full) => full += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((joined, full), (100, 1_900));
    assert_eq!(
        challenges::get(&db, room.id).await.unwrap().participants,
        100
    );
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
    assert_eq!((seats, debits), (100, 100));
    assert_eq!(escrow_balance(&db, &room).await, 100 * 10_000);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn one_user_clicking_join_fifty_times_at_once_takes_one_seat_and_pays_once(db: PgPool) {
    let room = challenge(&db, 5_000, 10).await;
    fund(&db, &["eager".to_owned()], 50_000).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { challenges::join(&db, room.id, "eager").await })
        })
        .collect();
    let (mut joined, mut already) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => joined += 1,
            Err(JoinError::AlreadyJoined) => already += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((joined, already), (1, 49));
    let mut conn = db.acquire().await.unwrap();
    let wallet = ensure_wallet_in_tx(&mut conn, "eager").await.unwrap();
    assert_eq!(
        wallet_balance(&mut conn, wallet).await.unwrap().balance,
        p(45_000)
    );
    assert_eq!(escrow_balance(&db, &room).await, 5_000);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_user_without_enough_points_gets_402_and_no_seat(db: PgPool) {
    let room = challenge(&db, 10_000, 2).await;
    fund(&db, &["poor".to_owned()], 9_999).await;
    let result = challenges::join(&db, room.id, "poor").await;
    assert!(
        matches!(result, Err(JoinError::InsufficientPoints)),
        "{result:?}"
    );
    assert_eq!(result.err().map(|e| e.code().http_status()), Some(402));
    assert_eq!(challenges::get(&db, room.id).await.unwrap().participants, 0);
    assert_eq!(escrow_balance(&db, &room).await, 0);
    // Topped up, the same user can join: the failed attempt spent nothing, not even its key.
    let mut conn = db.acquire().await.unwrap();
    let wallet = ensure_wallet_in_tx(&mut conn, "poor").await.unwrap();
    credit_in_tx(
        &mut conn,
        &Credit {
            key: IdempotencyKey::parse("charge:poor:2").unwrap(),
            wallet,
            from: ledger::system_account(SystemAccount::PaymentClearing),
            amount: p(1),
            source: LotSource::Charge,
        },
    )
    .await
    .unwrap();
    assert!(challenges::join(&db, room.id, "poor").await.is_ok());
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn joins_are_refused_when_not_recruiting_or_unknown(db: PgPool) {
    let room = challenge(&db, 1_000, 2).await;
    fund(&db, &["late".to_owned()], 5_000).await;
    sqlx::query("UPDATE challenges SET state = 'in_progress' WHERE id = $1")
        .bind(room.id)
        .execute(&db)
        .await
        .unwrap();
    assert!(matches!(
        challenges::join(&db, room.id, "late").await,
        Err(JoinError::NotRecruiting)
    ));
    assert!(matches!(
        challenges::join(&db, uuid::Uuid::now_v7(), "late").await,
        Err(JoinError::NotFound)
    ));
    // The schema itself refuses an oversell.
    let forced = sqlx::query("UPDATE challenges SET participants = capacity + 1 WHERE id = $1")
        .bind(room.id)
        .execute(&db)
        .await;
    assert!(forced.is_err());
    assert_sound(&db).await;
}

#[test]
fn challenge_rules_outside_their_bounds_are_refused() {
    assert!(NewChallenge::parse(&wire("ok", 1_000, 2)).is_ok());
    assert!(NewChallenge::parse(&wire("ok", 999, 2)).is_err());
    assert!(NewChallenge::parse(&wire("ok", 1_500, 2)).is_err());
    assert!(NewChallenge::parse(&wire("ok", 201_000, 2)).is_err());
    assert!(NewChallenge::parse(&wire("ok", 1_000, 1)).is_err());
    assert!(NewChallenge::parse(&wire("ok", 1_000, 10_001)).is_err());
    assert!(NewChallenge::parse(&wire("   ", 1_000, 2)).is_err());
}

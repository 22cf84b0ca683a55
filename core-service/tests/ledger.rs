//! The ledger on a real Postgres (a fresh database per test). Every scenario ends with the
//! invariant checker finding nothing.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_sound, p};

use nene_core::ledger::{self, *};
use sqlx::{Connection, PgPool};

fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap()
}

const CLEARING: AccountId = ledger::system_account(SystemAccount::PaymentClearing);
const HOUSE: AccountId = ledger::system_account(SystemAccount::House);
const SHOP: AccountId = ledger::system_account(SystemAccount::ShopSales);

async fn wallet(db: &PgPool, user: &str) -> AccountId {
    let mut conn = db.acquire().await.unwrap();
    ensure_wallet_in_tx(&mut conn, user).await.unwrap()
}

async fn charge(db: &PgPool, wallet: AccountId, amount: i64, k: &str) -> TransferReceipt {
    credit(
        db,
        &Credit {
            key: key(k),
            wallet,
            from: CLEARING,
            amount: p(amount),
            source: LotSource::Charge,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("credit {k}: {e}"))
}

fn debit_of(wallet: AccountId, amount: i64, k: &str) -> Debit {
    Debit {
        key: key(k),
        wallet,
        to: SHOP,
        amount: p(amount),
    }
}

fn hold_of(wallet: AccountId, amount: i64, k: &str, expires_in_seconds: i64) -> Hold {
    Hold {
        key: key(k),
        wallet,
        amount: p(amount),
        expires_in_seconds,
    }
}

async fn balance(db: &PgPool, wallet: AccountId) -> WalletBalance {
    let mut conn = db.acquire().await.unwrap();
    wallet_balance(&mut conn, wallet).await.unwrap()
}

async fn transfer_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger_transfers")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_credit_creates_a_lot_and_raises_the_balance(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    let receipt = charge(&db, w, 5_000, "charge:1").await;
    assert_eq!(receipt.wallet_balance, Some(p(5_000)));
    let view = balance(&db, w).await;
    assert_eq!(view.balance, p(5_000));
    assert_eq!(view.available, p(5_000));
    assert_eq!(view.lots.len(), 1);
    assert_eq!(view.lots[0].source, LotSource::Charge);
    assert_eq!(Some(view.lots[0].id), receipt.lot);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_debit_consumes_the_oldest_lots_first(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    let first = charge(&db, w, 300, "charge:1").await;
    let second = charge(&db, w, 500, "charge:2").await;
    let third = charge(&db, w, 1_000, "charge:3").await;
    let receipt = debit(&db, &debit_of(w, 600, "buy:1")).await.unwrap();
    let taken: Vec<(Option<LotId>, i64)> = receipt
        .allocations
        .iter()
        .map(|a| (Some(a.lot), a.amount.get()))
        .collect();
    assert_eq!(taken, vec![(first.lot, 300), (second.lot, 300)]);
    let view = balance(&db, w).await;
    assert_eq!(view.balance, p(1_200));
    let lots: Vec<(Option<LotId>, i64)> = view
        .lots
        .iter()
        .map(|l| (Some(l.id), l.remaining.get()))
        .collect();
    assert_eq!(lots, vec![(second.lot, 200), (third.lot, 1_000)]);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_debit_beyond_the_balance_fails_and_writes_nothing(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let before = transfer_count(&db).await;
    let result = debit(&db, &debit_of(w, 1_001, "buy:1")).await;
    assert!(
        matches!(result, Err(LedgerError::InsufficientPoints)),
        "{result:?}"
    );
    assert_eq!(transfer_count(&db).await, before);
    assert_eq!(balance(&db, w).await.balance, p(1_000));
    // A failure stores no idempotency record: the same key works once there are points.
    charge(&db, w, 1, "charge:2").await;
    assert!(debit(&db, &debit_of(w, 1_001, "buy:1")).await.is_ok());
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn unknown_wallets_and_accounts_are_not_found(db: PgPool) {
    let ghost = AccountId(uuid::Uuid::now_v7());
    assert!(matches!(
        debit(&db, &debit_of(ghost, 1, "k1")).await,
        Err(LedgerError::NotFound("wallet"))
    ));
    let w = wallet(&db, "user-1").await;
    let to_ghost = Debit {
        to: ghost,
        ..debit_of(w, 1, "k2")
    };
    assert!(matches!(
        debit(&db, &to_ghost).await,
        Err(LedgerError::NotFound("account"))
    ));
}

#[sqlx::test(migrations = "./migrations")]
async fn zero_amounts_and_wallet_to_wallet_moves_are_refused(db: PgPool) {
    let a = wallet(&db, "user-a").await;
    let b = wallet(&db, "user-b").await;
    charge(&db, a, 100, "charge:1").await;
    let zero = debit(&db, &debit_of(a, 0, "k0")).await;
    assert!(
        matches!(zero, Err(LedgerError::InvalidRequest(_))),
        "{zero:?}"
    );
    let to_wallet = debit(
        &db,
        &Debit {
            to: b,
            ..debit_of(a, 10, "k1")
        },
    )
    .await;
    assert!(
        matches!(to_wallet, Err(LedgerError::InvalidRequest(_))),
        "{to_wallet:?}"
    );
    let from_wallet = credit(
        &db,
        &Credit {
            key: key("k2"),
            wallet: b,
            from: a,
            amount: p(10),
            source: LotSource::Prize,
        },
    )
    .await;
    assert!(
        matches!(from_wallet, Err(LedgerError::InvalidRequest(_))),
        "{from_wallet:?}"
    );
    let moved = transfer(
        &db,
        &Transfer {
            key: key("k3"),
            from: a,
            to: HOUSE,
            amount: p(10),
        },
    )
    .await;
    assert!(
        matches!(moved, Err(LedgerError::InvalidRequest(_))),
        "{moved:?}"
    );
    assert_eq!(balance(&db, a).await.balance, p(100));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_transfer_moves_points_between_system_accounts(db: PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let escrow = ensure_escrow_in_tx(&mut conn, "challenge-1").await.unwrap();
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 10_000, "charge:1").await;
    debit(
        &db,
        &Debit {
            to: escrow,
            ..debit_of(w, 10_000, "join:1")
        },
    )
    .await
    .unwrap();
    let fee = transfer(
        &db,
        &Transfer {
            key: key("fee:1"),
            from: escrow,
            to: HOUSE,
            amount: p(300),
        },
    )
    .await
    .unwrap();
    assert_eq!(fee.kind, TransferKind::Transfer);
    let page = history(&mut conn, escrow, None, 10).await.unwrap();
    let amounts: Vec<i64> = page.items.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, vec![-300, 10_000]);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_same_key_and_request_returns_the_first_result_with_one_effect(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let first = debit(&db, &debit_of(w, 100, "buy:1")).await.unwrap();
    let again = debit(&db, &debit_of(w, 100, "buy:1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(balance(&db, w).await.balance, p(900));
    let replayed_credit = charge(&db, w, 1_000, "charge:1").await;
    assert_eq!(
        replayed_credit.wallet_balance,
        Some(p(1_000)),
        "the first receipt, not a new one"
    );
    assert_eq!(balance(&db, w).await.balance, p(900));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_same_key_with_a_different_request_is_refused(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    debit(&db, &debit_of(w, 100, "buy:1")).await.unwrap();
    let other_amount = debit(&db, &debit_of(w, 200, "buy:1")).await;
    assert!(
        matches!(other_amount, Err(LedgerError::IdempotencyKeyReused)),
        "{other_amount:?}"
    );
    // A key is one effect across operations too.
    let other_operation = hold(&db, &hold_of(w, 100, "buy:1", 60)).await;
    assert!(
        matches!(other_operation, Err(LedgerError::IdempotencyKeyReused)),
        "{other_operation:?}"
    );
    assert_eq!(balance(&db, w).await.balance, p(900));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn after_its_record_is_purged_a_key_still_cannot_take_effect_twice(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    sqlx::query("DELETE FROM ledger_idempotency")
        .execute(&db)
        .await
        .unwrap();
    let replay = credit(
        &db,
        &Credit {
            key: key("charge:1"),
            wallet: w,
            from: CLEARING,
            amount: p(1_000),
            source: LotSource::Charge,
        },
    )
    .await;
    assert!(
        matches!(replay, Err(LedgerError::IdempotencyKeyReused)),
        "{replay:?}"
    );
    assert_eq!(balance(&db, w).await.balance, p(1_000));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_hold_reserves_points_and_posting_it_debits_oldest_lots_first(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    let first = charge(&db, w, 400, "charge:1").await;
    charge(&db, w, 600, "charge:2").await;
    let held = hold(&db, &hold_of(w, 700, "hold:1", 600)).await.unwrap();
    let view = balance(&db, w).await;
    assert_eq!(
        (view.balance, view.held, view.available),
        (p(1_000), p(700), p(300))
    );
    // Held points are not available to anyone else.
    assert!(matches!(
        debit(&db, &debit_of(w, 301, "buy:1")).await,
        Err(LedgerError::InsufficientPoints)
    ));
    let too_much = post_hold(
        &db,
        &PostHold {
            key: key("post:0"),
            hold: held.hold,
            to: SHOP,
            amount: p(701),
        },
    )
    .await;
    assert!(
        matches!(too_much, Err(LedgerError::ExceedsHold)),
        "{too_much:?}"
    );
    let posted = post_hold(
        &db,
        &PostHold {
            key: key("post:1"),
            hold: held.hold,
            to: SHOP,
            amount: p(500),
        },
    )
    .await
    .unwrap();
    assert_eq!(posted.state, HoldState::Posted);
    let debit_receipt = posted.debit.expect("a post makes a debit");
    assert_eq!(debit_receipt.allocations[0].lot, first.lot.unwrap());
    assert_eq!(debit_receipt.allocations[0].amount, p(400));
    // The unposted 200 is released with the post.
    let view = balance(&db, w).await;
    assert_eq!(
        (view.balance, view.held, view.available),
        (p(500), p(0), p(500))
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_hold_is_resolved_at_most_once(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let held = hold(&db, &hold_of(w, 300, "hold:1", 600)).await.unwrap();
    let released = release_hold(
        &db,
        &ReleaseHold {
            key: key("release:1"),
            hold: held.hold,
        },
    )
    .await
    .unwrap();
    assert_eq!(released.state, HoldState::Released);
    let post_after_release = post_hold(
        &db,
        &PostHold {
            key: key("post:1"),
            hold: held.hold,
            to: SHOP,
            amount: p(100),
        },
    )
    .await;
    assert!(
        matches!(
            post_after_release,
            Err(LedgerError::HoldNotPending(HoldState::Released))
        ),
        "{post_after_release:?}"
    );
    let second_release = release_hold(
        &db,
        &ReleaseHold {
            key: key("release:2"),
            hold: held.hold,
        },
    )
    .await;
    assert!(
        matches!(second_release, Err(LedgerError::HoldNotPending(_))),
        "{second_release:?}"
    );
    // Even the database refuses to change a resolved hold.
    let forced = sqlx::query("UPDATE ledger_holds SET state = 'pending', resolved_at = NULL")
        .execute(&db)
        .await;
    assert!(forced.is_err());
    let view = balance(&db, w).await;
    assert_eq!((view.balance, view.held), (p(1_000), p(0)));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn an_expired_hold_cannot_be_posted_and_is_released_by_the_sweep(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let held = hold(&db, &hold_of(w, 300, "hold:1", 60)).await.unwrap();
    // The test clock: the platform's "now" moves two minutes ahead.
    sqlx::query("UPDATE test_clock SET offset_seconds = 120")
        .execute(&db)
        .await
        .unwrap();
    let late = post_hold(
        &db,
        &PostHold {
            key: key("post:1"),
            hold: held.hold,
            to: SHOP,
            amount: p(300),
        },
    )
    .await;
    assert!(matches!(late, Err(LedgerError::HoldExpired)), "{late:?}");
    let mut conn = db.acquire().await.unwrap();
    let released = release_expired_holds_in_tx(&mut conn, 100).await.unwrap();
    assert_eq!(released, 1);
    assert_eq!(balance(&db, w).await.available, p(1_000));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refund_gives_points_back_to_the_same_lots(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    let first = charge(&db, w, 300, "charge:1").await;
    let second = charge(&db, w, 700, "charge:2").await;
    let spent = debit(&db, &debit_of(w, 800, "buy:1")).await.unwrap();
    let partial = refund(
        &db,
        &Refund {
            key: key("refund:1"),
            debit: spent.transfer,
            amount: p(600),
        },
    )
    .await
    .unwrap();
    // Newest lot of the debit first: 500 to the second lot, then 100 to the first.
    let back: Vec<(LotId, i64)> = partial
        .allocations
        .iter()
        .map(|a| (a.lot, a.amount.get()))
        .collect();
    let (first_lot, second_lot) = (first.lot.unwrap(), second.lot.unwrap());
    assert_eq!(back, vec![(second_lot, 500), (first_lot, 100)]);
    let exceeding = refund(
        &db,
        &Refund {
            key: key("refund:2"),
            debit: spent.transfer,
            amount: p(201),
        },
    )
    .await;
    assert!(
        matches!(exceeding, Err(LedgerError::RefundExceedsDebit)),
        "{exceeding:?}"
    );
    refund(
        &db,
        &Refund {
            key: key("refund:3"),
            debit: spent.transfer,
            amount: p(200),
        },
    )
    .await
    .unwrap();
    let view = balance(&db, w).await;
    let lots: Vec<(LotId, i64)> = view
        .lots
        .iter()
        .map(|l| (l.id, l.remaining.get()))
        .collect();
    assert_eq!(lots, vec![(first_lot, 300), (second_lot, 700)]);
    // Only debits are refundable.
    let of_credit = refund(
        &db,
        &Refund {
            key: key("refund:4"),
            debit: first.transfer,
            amount: p(1),
        },
    )
    .await;
    assert!(
        matches!(of_credit, Err(LedgerError::InvalidRequest(_))),
        "{of_credit:?}"
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn transfers_and_allocations_cannot_be_changed_or_deleted(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    debit(&db, &debit_of(w, 100, "buy:1")).await.unwrap();
    for statement in [
        "UPDATE ledger_transfers SET amount = 1",
        "DELETE FROM ledger_transfers",
        "TRUNCATE ledger_transfers CASCADE",
        "UPDATE ledger_lot_allocations SET amount = 1",
        "DELETE FROM ledger_lot_allocations",
    ] {
        let result = sqlx::query(statement).execute(&db).await;
        assert!(result.is_err(), "{statement} was allowed");
    }
    // A wallet can never be pushed negative, even by hand.
    let overdraft = sqlx::query("UPDATE ledger_wallets SET held = balance + 1")
        .execute(&db)
        .await;
    assert!(overdraft.is_err());
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn operations_in_one_transaction_commit_or_roll_back_together(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let mut tx = db.begin().await.unwrap();
    debit_in_tx(&mut tx, &debit_of(w, 400, "buy:1"))
        .await
        .unwrap();
    // A failure inside the transaction leaves it usable (its own savepoint rolled back) ...
    let failed = debit_in_tx(&mut tx, &debit_of(w, 700, "buy:2")).await;
    assert!(matches!(failed, Err(LedgerError::InsufficientPoints)));
    debit_in_tx(&mut tx, &debit_of(w, 600, "buy:3"))
        .await
        .unwrap();
    // ... and a rollback of the caller's transaction undoes everything in it.
    tx.rollback().await.unwrap();
    assert_eq!(balance(&db, w).await.balance, p(1_000));
    assert!(
        debit(&db, &debit_of(w, 400, "buy:1")).await.is_ok(),
        "the key was not spent"
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn history_pages_newest_first_with_a_cursor(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    for i in 0..5 {
        debit(&db, &debit_of(w, 10 + i, &format!("buy:{i}")))
            .await
            .unwrap();
    }
    let mut conn = db.acquire().await.unwrap();
    let first = history(&mut conn, w, None, 4).await.unwrap();
    assert_eq!(
        first.items.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![-14, -13, -12, -11]
    );
    let cursor = first.next_cursor.expect("there is a second page");
    let second = history(&mut conn, w, Some(&cursor), 4).await.unwrap();
    assert_eq!(
        second.items.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![-10, 1_000]
    );
    assert_eq!(second.next_cursor, None);
    assert!(matches!(
        history(&mut conn, w, None, 101).await,
        Err(LedgerError::InvalidRequest(_))
    ));
    assert!(matches!(
        history(&mut conn, w, Some("x"), 10).await,
        Err(LedgerError::InvalidRequest(_))
    ));
}

#[sqlx::test(migrations = "./migrations")]
async fn two_hundred_concurrent_debits_of_ten_on_a_thousand_exactly_a_hundred_succeed(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { debit(&db, &debit_of(w, 10, &format!("buy:{i}"))).await })
        })
        .collect();
    let mut succeeded = 0;
    let mut insufficient = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(LedgerError::InsufficientPoints) => insufficient += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((succeeded, insufficient), (100, 100));
    assert_eq!(balance(&db, w).await.balance, p(0));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn one_key_sent_fifty_times_at_once_has_one_effect(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:1").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { debit(&db, &debit_of(w, 10, "buy:same")).await })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap().unwrap());
    }
    assert!(
        receipts.windows(2).all(|pair| pair[0] == pair[1]),
        "every caller gets the one result"
    );
    assert_eq!(balance(&db, w).await.balance, p(990));
    assert_eq!(transfer_count(&db).await, 2);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_batcher_gives_every_caller_its_own_exact_result(db: PgPool) {
    let batcher = DebitBatcher::spawn(db.clone());
    let rich = wallet(&db, "user-rich").await;
    let poor = wallet(&db, "user-poor").await;
    charge(&db, rich, 1_001, "charge:rich").await;
    charge(&db, poor, 50, "charge:poor").await;
    // 200 debits of 10 on 1,001 points, 20 on 50 points, and a one-point debit whose key is sent
    // 30 times, all at once: in whatever order the batches run, 100 + 1 fit and the rest do not.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            (
                "rich",
                batcher
                    .debit(debit_of(rich, 10, &format!("rich:{i}")))
                    .await,
            )
        }));
    }
    for i in 0..20 {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            (
                "poor",
                batcher
                    .debit(debit_of(poor, 10, &format!("poor:{i}")))
                    .await,
            )
        }));
    }
    for _ in 0..30 {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            ("same", batcher.debit(debit_of(rich, 1, "same-key")).await)
        }));
    }
    let mut ok = std::collections::HashMap::<&str, usize>::new();
    let mut insufficient = std::collections::HashMap::<&str, usize>::new();
    let mut same_receipts = Vec::new();
    let mut transfers = std::collections::HashSet::new();
    for task in tasks {
        let (who, result) = task.await.unwrap();
        match result {
            Ok(receipt) => {
                *ok.entry(who).or_default() += 1;
                if who == "same" {
                    same_receipts.push(receipt);
                } else {
                    assert!(
                        transfers.insert(receipt.transfer),
                        "two callers got one transfer"
                    );
                }
            }
            Err(LedgerError::InsufficientPoints) => *insufficient.entry(who).or_default() += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok.get("same"), Some(&30));
    assert!(same_receipts.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(ok.get("rich"), Some(&100));
    assert_eq!(insufficient.get("rich"), Some(&100));
    assert_eq!(ok.get("poor"), Some(&5));
    assert_eq!(insufficient.get("poor"), Some(&15));
    assert_eq!(balance(&db, rich).await.balance, p(0));
    assert_eq!(balance(&db, poor).await.balance, p(0));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_balance_past_the_largest_amount_is_an_overflow_not_a_wrap(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, i64::MAX - 10, "charge:1").await;
    let result = credit(
        &db,
        &Credit {
            key: key("charge:2"),
            wallet: w,
            from: CLEARING,
            amount: p(11),
            source: LotSource::Charge,
        },
    )
    .await;
    assert!(matches!(result, Err(LedgerError::Overflow)), "{result:?}");
    assert_eq!(balance(&db, w).await.balance, p(i64::MAX - 10));
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn maintenance_purges_only_records_past_retention_and_releases_expired_holds(db: PgPool) {
    let w = wallet(&db, "user-1").await;
    charge(&db, w, 1_000, "charge:old").await;
    charge(&db, w, 1_000, "charge:new").await;
    hold(&db, &hold_of(w, 300, "hold:1", 60)).await.unwrap();
    // A record eight days old (past the week's retention) and one a day old (kept: ≥ 24 h).
    sqlx::query("UPDATE ledger_idempotency SET created_at = now() - interval '8 days' WHERE key = 'charge:old'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_idempotency SET created_at = now() - interval '1 day' WHERE key = 'charge:new'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE test_clock SET offset_seconds = 3600")
        .execute(&db)
        .await
        .unwrap();
    let (released, purged) = nene_core::maintenance::run_once(&db).await.unwrap();
    assert_eq!((released, purged), (1, 1));
    let kept: Vec<String> = sqlx::query_scalar("SELECT key FROM ledger_idempotency ORDER BY key")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(kept, vec!["charge:new".to_owned(), "hold:1".to_owned()]);
    assert_eq!(balance(&db, w).await.held, p(0));
    assert_sound(&db).await;
}

fn withdrawal(lot: LotId, amount: i64, k: &str) -> LotWithdrawal {
    LotWithdrawal {
        key: key(k),
        lot,
        to: CLEARING,
        amount: p(amount),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_withdrawal_takes_points_from_its_own_lot_only_and_once(db: PgPool) {
    let w = wallet(&db, "u_withdraw").await;
    let first = charge(&db, w, 1_000, "c1").await;
    charge(&db, w, 500, "c2").await;
    let lot = first.lot.expect("no lot");
    let request = withdrawal(lot, 600, "w1");
    let receipt = withdraw_from_lot(&db, &request).await.unwrap();
    assert_eq!(receipt.allocations.len(), 1);
    assert_eq!(receipt.allocations[0].lot, lot);
    let replay = withdraw_from_lot(&db, &request).await.unwrap();
    assert_eq!(replay, receipt);
    let after = balance(&db, w).await;
    assert_eq!(after.balance, p(900));
    let remaining: Vec<i64> = after.lots.iter().map(|l| l.remaining.get()).collect();
    assert_eq!(remaining, [400, 500], "the newer lot is untouched");
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_withdrawal_never_takes_more_than_the_lot_holds_or_holds_allow(db: PgPool) {
    let w = wallet(&db, "u_withdraw_2").await;
    let lot = charge(&db, w, 1_000, "c1").await.lot.expect("no lot");
    charge(&db, w, 5_000, "c2").await;
    let beyond_the_lot = withdraw_from_lot(&db, &withdrawal(lot, 1_001, "w1")).await;
    assert!(matches!(
        beyond_the_lot,
        Err(LedgerError::InsufficientPoints)
    ));
    hold(&db, &hold_of(w, 5_500, "h1", 600)).await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    let standing = lot_standing_in_tx(&mut conn, lot).await.unwrap();
    drop(conn);
    assert_eq!(
        (standing.remaining, standing.withdrawable),
        (p(1_000), p(500))
    );
    let over_the_holds = withdraw_from_lot(&db, &withdrawal(lot, 501, "w2")).await;
    assert!(matches!(
        over_the_holds,
        Err(LedgerError::InsufficientPoints)
    ));
    withdraw_from_lot(&db, &withdrawal(lot, 500, "w3"))
        .await
        .unwrap();
    assert_sound(&db).await;
}

// --- batched debits (`ledger_debit_batch`) ---------------------------------------------------

/// One debit as the SQL functions take it, with its transfer id fixed so that two runs of the same
/// debits can be compared receipt for receipt.
struct RawDebit {
    key: &'static str,
    hash: &'static [u8],
    transfer: uuid::Uuid,
    wallet: uuid::Uuid,
    to: uuid::Uuid,
    amount: i64,
}

fn raw(
    key: &'static str,
    hash: &'static [u8],
    wallet: AccountId,
    to: AccountId,
    amount: i64,
) -> RawDebit {
    RawDebit {
        key,
        hash,
        transfer: uuid::Uuid::now_v7(),
        wallet: wallet.0,
        to: to.0,
        amount,
    }
}

/// Everything a debit can change, in an order that does not depend on identity values.
const LEDGER_STATE: &str = "SELECT jsonb_build_object( \
     'wallets', (SELECT jsonb_agg(jsonb_build_array(account_id, balance, held) ORDER BY account_id) \
                 FROM ledger_wallets), \
     'lots', (SELECT jsonb_agg(jsonb_build_array(id, remaining, spent) ORDER BY id) FROM ledger_lots), \
     'transfers', (SELECT jsonb_agg(jsonb_build_array(id, idempotency_key, kind, from_account_id, \
                                                      to_account_id, amount) ORDER BY id) \
                   FROM ledger_transfers), \
     'allocations', (SELECT jsonb_agg(jsonb_build_array(transfer_id, lot_id, amount) \
                                      ORDER BY transfer_id, lot_id) FROM ledger_lot_allocations), \
     'idempotency', (SELECT jsonb_agg(jsonb_build_array(key, request_hash, response) ORDER BY key) \
                     FROM ledger_idempotency))";

async fn state(conn: &mut sqlx::PgConnection) -> serde_json::Value {
    sqlx::query_scalar(LEDGER_STATE)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// How many times `ledger_debit` (the one-by-one path) ran in this session's statistics not yet
/// reported (which may include earlier transactions: compare two readings in one transaction).
async fn one_by_one_calls(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_xact_user_functions \
         WHERE funcname = 'ledger_debit'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn run_batch(conn: &mut sqlx::PgConnection, debits: &[RawDebit]) -> Vec<serde_json::Value> {
    sqlx::query_scalar("SELECT ledger_debit_batch($1, $2, $3, $4, $5, $6)")
        .bind(debits.iter().map(|d| d.key).collect::<Vec<_>>())
        .bind(debits.iter().map(|d| d.hash).collect::<Vec<_>>())
        .bind(debits.iter().map(|d| d.transfer).collect::<Vec<_>>())
        .bind(debits.iter().map(|d| d.wallet).collect::<Vec<_>>())
        .bind(debits.iter().map(|d| d.to).collect::<Vec<_>>())
        .bind(debits.iter().map(|d| d.amount).collect::<Vec<_>>())
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn run_one_by_one(
    conn: &mut sqlx::PgConnection,
    debits: &[RawDebit],
) -> Vec<serde_json::Value> {
    let mut outcomes = Vec::new();
    for d in debits {
        outcomes.push(
            sqlx::query_scalar("SELECT ledger_debit($1, $2, $3, $4, $5, $6)")
                .bind(d.key)
                .bind(d.hash)
                .bind(d.transfer)
                .bind(d.wallet)
                .bind(d.to)
                .bind(d.amount)
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
        );
    }
    outcomes
}

fn outcome_kind(outcome: &serde_json::Value) -> String {
    match outcome.get("error") {
        Some(code) => code.as_str().unwrap_or("?").to_owned(),
        None if outcome.get("ok").is_some() => "ok".to_owned(),
        None if outcome.get("replay").is_some() => "replay".to_owned(),
        None => format!("unexpected {outcome}"),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_batch_gives_every_debit_exactly_what_running_them_one_by_one_gives(db: PgPool) {
    let a = wallet(&db, "user-a").await;
    let b = wallet(&db, "user-b").await;
    let c = wallet(&db, "user-c").await;
    let e = wallet(&db, "user-e").await;
    let f = wallet(&db, "user-f").await;
    let g = wallet(&db, "user-g").await;
    for (w, amounts) in [
        (a, vec![300, 500, 1_000]),
        (b, vec![100]),
        (c, vec![50]),
        (e, vec![100]),
        (f, vec![10, 10, 10]),
        (g, vec![15, 100]),
    ] {
        for (i, amount) in amounts.into_iter().enumerate() {
            charge(&db, w, amount, &format!("charge:{}:{i}", w.0)).await;
        }
    }
    hold(&db, &hold_of(e, 60, "hold:e", 600)).await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    run_one_by_one(&mut conn, &[raw("old", b"old", a, SHOP, 5)]).await;
    let nowhere = AccountId(uuid::Uuid::now_v7());
    // In array order, as the batch runs them; wallets interleaved on purpose.
    let debits = [
        raw("a:1", b"a1", a, SHOP, 600),     // spans two lots
        raw("f:1", b"f1", f, SHOP, 25),      // spans three lots
        raw("old", b"old", a, SHOP, 5),      // a replay of a key used before the batch
        raw("a:2", b"a2", a, HOUSE, 200),    // the same wallet after a replay
        raw("old", b"other", a, SHOP, 7),    // the key reused with another request
        raw("b:1", b"b1", b, SHOP, 150),     // more than the wallet has
        raw("b:2", b"b2", b, SHOP, 100),     // all it has, after a failure
        raw("c:1", b"c1", c, SHOP, 50),      // empties its only lot
        raw("d:1", b"d1", nowhere, SHOP, 1), // no such wallet
        raw("c:2", b"c2", c, b, 1),          // a wallet as the counterparty
        raw("a:1", b"a1", a, SHOP, 600),     // a replay of a debit of this batch
        raw("e:1", b"e1", e, SHOP, 50),      // more than the hold leaves available
        raw("e:2", b"e2", e, SHOP, 40),      // exactly what it leaves
        raw("x:1", b"x1", c, nowhere, 1),    // no such counterparty
        raw("z:1", b"z1", b, SHOP, 0),       // nothing
        raw("a:2", b"other", f, SHOP, 5),    // a key of this batch reused with another request
        raw("g:1", b"g1", g, SHOP, 10),      // three debits of one wallet, all within its balance
        raw("g:2", b"g2", g, SHOP, 20),
        raw("g:3", b"g3", g, SHOP, 30),
    ];
    sqlx::query("SET track_functions = 'pl'")
        .execute(&mut *conn)
        .await
        .unwrap();

    let mut tx = conn.begin().await.unwrap();
    let one_by_one = run_one_by_one(&mut tx, &debits).await;
    let state_one_by_one = state(&mut tx).await;
    tx.rollback().await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    let calls_before = one_by_one_calls(&mut tx).await;
    let batched = run_batch(&mut tx, &debits).await;
    let state_batched = state(&mut tx).await;
    let slow = one_by_one_calls(&mut tx).await - calls_before;
    tx.commit().await.unwrap();

    for (i, (one, batch)) in one_by_one.iter().zip(&batched).enumerate() {
        assert_eq!(one, batch, "debit {i} ({})", debits[i].key);
    }
    assert_eq!(one_by_one.len(), batched.len());
    assert_eq!(state_one_by_one, state_batched);
    let kinds: Vec<String> = batched.iter().map(outcome_kind).collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "ok",
            "replay",
            "ok",
            "IDEMPOTENCY_KEY_REUSED",
            "INSUFFICIENT_POINTS",
            "ok",
            "ok",
            "WALLET_NOT_FOUND",
            "WALLET_COUNTERPARTY",
            "replay",
            "INSUFFICIENT_POINTS",
            "ok",
            "ACCOUNT_NOT_FOUND",
            "ZERO_AMOUNT",
            "IDEMPOTENCY_KEY_REUSED",
            "ok",
            "ok",
            "ok",
        ]
    );
    assert_eq!(
        batched[0]["ok"]["allocations"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        batched[1]["ok"]["allocations"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        batched[17]["ok"]["allocations"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(batched[18]["ok"]["wallet_balance"], 55);
    // a:1, f:1, c:1 and the three of g took the set-based path; the other 13 went one by one.
    assert_eq!(slow, 13);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn concurrent_batches_over_the_same_wallets_never_deadlock_nor_overdraw(db: PgPool) {
    const WALLETS: usize = 12;
    const TASKS: u64 = 6;
    const ROUNDS: usize = 15;
    const BATCH: usize = 40;
    let mut wallets = Vec::new();
    for i in 0..WALLETS {
        let w = wallet(&db, &format!("user-{i}")).await;
        charge(&db, w, 600, &format!("charge:{i}:1")).await;
        charge(&db, w, 400, &format!("charge:{i}:2")).await;
        wallets.push(w);
    }
    let wallets = std::sync::Arc::new(wallets);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let db = db.clone();
            let wallets = std::sync::Arc::clone(&wallets);
            tokio::spawn(async move {
                let mut random = nene_domain::seeded::SplitMix64::new(task);
                let mut taken = vec![0_i64; WALLETS];
                let mut insufficient = 0;
                for round in 0..ROUNDS {
                    let picks: Vec<(usize, i64)> = (0..BATCH)
                        .map(|_| (random.index(WALLETS), random.amount(40)))
                        .collect();
                    let requests: Vec<Debit> = picks
                        .iter()
                        .enumerate()
                        .map(|(n, (w, amount))| {
                            debit_of(wallets[*w], *amount, &format!("t{task}:{round}:{n}"))
                        })
                        .collect();
                    let mut conn = db.acquire().await.unwrap();
                    let outcomes = debit_batch_in_tx(&mut conn, &requests)
                        .await
                        .expect("a batch failed as a whole");
                    for ((w, amount), outcome) in picks.iter().zip(outcomes) {
                        match outcome {
                            Ok(receipt) => {
                                assert_eq!(receipt.amount, p(*amount));
                                taken[*w] += amount;
                            }
                            Err(LedgerError::InsufficientPoints) => insufficient += 1,
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                }
                (taken, insufficient)
            })
        })
        .collect();
    let mut taken = vec![0_i64; WALLETS];
    let mut insufficient = 0;
    for task in tasks {
        let (t, i) = task.await.unwrap();
        for (total, part) in taken.iter_mut().zip(t) {
            *total += part;
        }
        insufficient += i;
    }
    // 6 × 15 × 40 debits of 20.5 on average ask for ~3.7 times what the wallets hold.
    assert!(insufficient > 0, "the wallets never ran short");
    for (w, total) in wallets.iter().zip(taken) {
        let view = balance(&db, *w).await;
        assert_eq!(view.balance.get(), 1_000 - total);
    }
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_key_first_used_by_a_concurrent_batch_still_has_one_effect(db: PgPool) {
    let w1 = wallet(&db, "user-1").await;
    let w2 = wallet(&db, "user-2").await;
    charge(&db, w1, 100, "charge:1").await;
    charge(&db, w2, 100, "charge:2").await;
    let first = debit_of(w1, 10, "buy:k");
    let mut tx = db.begin().await.unwrap();
    let receipt = debit_batch_in_tx(&mut tx, std::slice::from_ref(&first))
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    // While the first is uncommitted: the same request on the same wallet waits for the wallet and
    // then replays; the same key on another wallet waits for the key and then fails its whole batch
    // (nothing done), which the batcher answers by running that debit alone.
    let same = {
        let db = db.clone();
        let first = first.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await.unwrap();
            debit_batch_in_tx(&mut conn, &[first]).await
        })
    };
    let other = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await.unwrap();
            debit_batch_in_tx(&mut conn, &[debit_of(w2, 10, "buy:k")]).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let same = same.await.unwrap().unwrap().remove(0).unwrap();
    assert_eq!(same, receipt, "a replay of the first receipt");
    let other = other.await.unwrap();
    assert!(other.is_err(), "the batch fails as a whole: {other:?}");
    let alone = debit(&db, &debit_of(w2, 10, "buy:k")).await;
    assert!(
        matches!(alone, Err(LedgerError::IdempotencyKeyReused)),
        "{alone:?}"
    );
    assert_eq!(balance(&db, w1).await.balance, p(90));
    assert_eq!(balance(&db, w2).await.balance, p(100));
    assert_eq!(transfer_count(&db).await, 3);
    assert_sound(&db).await;
}

//! The payment path against the real Postgres (a fresh database per test) and the Toss sandbox
//! (in-process, over real HTTP, with its fault injection). Every scenario ends with the ledger's
//! invariant checker clean and with Toss's money matching our points, payment by payment.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use nene_core::{
    ledger::{self, AccountId, ensure_wallet_in_tx, wallet_balance},
    payments::{
        self, Applied, ConfirmRequest, Order, PaymentError, PaymentSettings, PaymentState,
        PaymentView, Payments, PointsState,
        refund::{self, RefundState},
        toss::{TossConfig, TossPayment, TossStatus},
        webhook::{self, Accepted},
        worker,
    },
};
use nene_domain::payments::{OrderId, PaymentKey};
use serde_json::{Value, json};
use sqlx::PgPool;

const USER: &str = "user_payments_a";
const OTHER_USER: &str = "user_payments_b";

struct Fixture {
    payments: Payments,
    sandbox: common::Sandbox,
}

async fn fixture(db: PgPool) -> Fixture {
    let sandbox = common::Sandbox {
        url: common::spawn_sandbox().await,
        http: reqwest::Client::new(),
    };
    let payments = Payments::new(
        db,
        &TossConfig {
            base_url: sandbox.url.clone(),
            secret_key: "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R".to_owned(),
            timeout: Duration::from_millis(1_000),
            tls: nene_core::tls::Trust::public_roots(),
        },
        PaymentSettings {
            toss_timeout: Duration::from_millis(1_000),
            ..PaymentSettings::fast()
        },
    )
    .unwrap();
    Fixture { payments, sandbox }
}

impl Fixture {
    async fn order(&self, user: &str, amount: i64) -> Order {
        payments::create_order(&self.payments.db, user, amount)
            .await
            .unwrap()
    }

    /// What the Toss widget does when the user approves: an authorised payment for the order.
    async fn pay(&self, order: &Order) -> String {
        let paid = self
            .sandbox
            .post(
                "/sandbox/toss/pay",
                &json!({ "orderId": order.order_id.as_str(), "amount": order.amount }),
            )
            .await;
        paid["paymentKey"]
            .as_str()
            .unwrap_or_else(|| panic!("no paymentKey in {paid}"))
            .to_owned()
    }

    async fn fault(&self, rule: Value) {
        self.sandbox.post("/sandbox/toss/faults", &rule).await;
    }

    async fn confirm(
        &self,
        user: &str,
        order: &Order,
        payment_key: &str,
        amount: i64,
    ) -> Result<PaymentView, PaymentError> {
        let request = ConfirmRequest {
            payment_key: PaymentKey::parse(payment_key).unwrap(),
            order_id: order.order_id.clone(),
            amount,
        };
        payments::confirm(&self.payments, user, &request).await
    }

    /// A bought and credited payment.
    async fn bought(&self, user: &str, amount: i64) -> (Order, String) {
        let order = self.order(user, amount).await;
        let key = self.pay(&order).await;
        let view = self.confirm(user, &order, &key, amount).await.unwrap();
        assert_eq!(
            (view.status, view.points),
            (PaymentState::Done, PointsState::Credited)
        );
        (order, key)
    }

    async fn toss_payment(&self, payment_key: &str) -> Value {
        self.sandbox
            .get(&format!("/sandbox/toss/payments/{payment_key}"))
            .await
    }

    async fn confirms_executed(&self) -> i64 {
        self.sandbox.get("/sandbox/toss/stats").await["confirms_executed"]
            .as_i64()
            .unwrap_or(-1)
    }

    /// Runs the worker until [`USER`]'s `order` has its points credited.
    async fn work_until_credited(&self, what: &str, order: &Order) {
        self.work_until(what, async |f| {
            f.view(USER, order).await.points == PointsState::Credited
        })
        .await;
    }

    /// Runs the worker until `done` holds (bounded: a stuck payment fails the test).
    async fn work_until(&self, what: &str, done: impl AsyncFn(&Self) -> bool) {
        for _ in 0..400 {
            worker::run_once(&self.payments).await.unwrap();
            if done(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the worker never got to: {what}");
    }

    async fn view(&self, user: &str, order: &Order) -> PaymentView {
        payments::get_payment(&self.payments.db, user, order.order_id.as_str())
            .await
            .unwrap()
    }

    async fn wallet(&self, user: &str) -> AccountId {
        let mut conn = self.payments.db.acquire().await.unwrap();
        ensure_wallet_in_tx(&mut conn, user).await.unwrap()
    }

    async fn balance(&self, user: &str) -> i64 {
        let wallet = self.wallet(user).await;
        let mut conn = self.payments.db.acquire().await.unwrap();
        wallet_balance(&mut conn, wallet)
            .await
            .unwrap()
            .balance
            .get()
    }

    async fn spend(&self, user: &str, amount: i64, key: &str) {
        let wallet = self.wallet(user).await;
        ledger::debit(
            &self.payments.db,
            &ledger::Debit {
                key: ledger::IdempotencyKey::parse(key).unwrap(),
                wallet,
                to: ledger::system_account(ledger::SystemAccount::ShopSales),
                amount: nene_domain::Points::new(amount).unwrap(),
            },
        )
        .await
        .unwrap();
    }

    async fn webhook(&self, body: &Value) -> Accepted {
        webhook::accept(&self.payments, &serde_json::to_vec(body).unwrap())
            .await
            .unwrap()
    }

    async fn reads(&self) -> i64 {
        self.sandbox.get("/sandbox/toss/stats").await["reads"]
            .as_i64()
            .unwrap_or(-1)
    }

    async fn webhook_rows(&self, pending_only: bool) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM toss_webhooks WHERE NOT $1 OR processed_at IS NULL",
        )
        .bind(pending_only)
        .fetch_one(&self.payments.db)
        .await
        .unwrap()
    }

    /// The amount-mismatch flag of an order: (reason, amount), if flagged.
    async fn amount_flag(&self, order: &Order) -> Option<(String, i64)> {
        sqlx::query_as(
            "SELECT reason, amount FROM payment_flags \
             WHERE order_id = $1 AND kind = 'amount_mismatch'",
        )
        .bind(order.order_id.as_str())
        .fetch_optional(&self.payments.db)
        .await
        .unwrap()
    }

    async fn notifications(&self, user: &str, kind: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = $2")
            .bind(user)
            .bind(kind)
            .fetch_one(&self.payments.db)
            .await
            .unwrap()
    }

    /// The ledger's invariants, and for every payment: the money Toss still holds equals the
    /// points we gave for it and did not take back, less what was flagged (canceled at Toss
    /// after those points were spent: a loss an operator must see). A payment Toss approved for
    /// another amount than its order's earned nothing and holds nothing once compensated.
    async fn assert_sound(&self) {
        common::assert_sound(&self.payments.db).await;
        let mut conn = self.payments.db.acquire().await.unwrap();
        let rows: Vec<(String, String, i64, String, i64, i64, bool)> = sqlx::query_as(
            "SELECT p.order_id, p.payment_key, p.amount, p.points::text, \
                 COALESCE(l.amount - (SELECT COALESCE(sum(a.amount), 0) \
                     FROM ledger_lot_allocations a JOIN ledger_transfers t ON t.id = a.transfer_id \
                     WHERE a.lot_id = l.id AND $1 IN (t.to_account_id, t.from_account_id)), 0)::int8, \
                 (SELECT COALESCE(sum(amount), 0) FROM payment_flags f \
                     WHERE f.order_id = p.order_id AND f.kind = 'canceled_after_spent')::int8, \
                 EXISTS (SELECT 1 FROM payment_flags f \
                     WHERE f.order_id = p.order_id AND f.kind = 'amount_mismatch') \
             FROM payments p LEFT JOIN ledger_lots l ON l.id = p.charge_lot_id \
             WHERE p.state = 'done'",
        )
        .bind(ledger::system_account(ledger::SystemAccount::PaymentClearing))
        .fetch_all(&mut *conn)
        .await.unwrap();
        for (order_id, payment_key, amount, points, net_points, flagged, mismatch) in rows {
            let toss = self.toss_payment(&payment_key).await;
            let toss_balance = toss["balanceAmount"].as_i64().unwrap_or(-1);
            if mismatch {
                assert_ne!(
                    points, "credited",
                    "{order_id}: another amount was credited"
                );
                assert_eq!(toss_balance, 0, "{order_id}: another amount left charged");
                continue;
            }
            assert_eq!(toss["totalAmount"].as_i64(), Some(amount), "{order_id}");
            if points == "credited" {
                assert_eq!(
                    toss_balance,
                    net_points - flagged,
                    "{order_id}: money at Toss vs our points"
                );
            } else if points == "compensated" {
                assert_eq!(toss_balance, 0, "{order_id}: compensated but money kept");
            }
        }
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_confirmed_payment_credits_its_points_once_and_tells_the_user(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    assert!(order.order_id.as_str().starts_with("nene_"));
    let key = f.pay(&order).await;
    let view = f.confirm(USER, &order, &key, 10_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Done);
    assert_eq!(
        view.points,
        PointsState::Credited,
        "credited before answering"
    );
    assert_eq!(f.balance(USER).await, 10_000);
    assert_eq!(f.toss_payment(&key).await["status"], "DONE");
    assert_eq!(f.notifications(USER, "points_credited").await, 1);
    // The same confirm again: the first result, no second charge.
    let again = f.confirm(USER, &order, &key, 10_000).await.unwrap();
    assert_eq!(again, view);
    assert_eq!(f.confirms_executed().await, 1);
    assert_eq!(f.balance(USER).await, 10_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn orders_outside_the_bounds_are_refused(db: PgPool) {
    let f = fixture(db).await;
    for amount in [0, 999, 1_000_001, -1] {
        let error = payments::create_order(&f.payments.db, USER, amount).await;
        assert!(
            matches!(error, Err(PaymentError::Input(_))),
            "{amount}: {error:?}"
        );
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_tampered_amount_is_refused_before_toss_is_called(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    let key = f.pay(&order).await;
    let error = f.confirm(USER, &order, &key, 100).await;
    assert!(
        matches!(error, Err(PaymentError::AmountMismatch)),
        "{error:?}"
    );
    assert_eq!(f.confirms_executed().await, 0);
    assert_eq!(f.toss_payment(&key).await["status"], "IN_PROGRESS");
    assert_eq!(f.balance(USER).await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn another_users_order_cannot_be_confirmed_or_seen(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    let key = f.pay(&order).await;
    let error = f.confirm(OTHER_USER, &order, &key, 10_000).await;
    assert!(
        matches!(error, Err(PaymentError::OrderNotFound)),
        "{error:?}"
    );
    let unknown = Order {
        order_id: OrderId::parse("nene_no_such_order").unwrap(),
        ..order.clone()
    };
    let error = f.confirm(USER, &unknown, &key, 10_000).await;
    assert!(
        matches!(error, Err(PaymentError::OrderNotFound)),
        "{error:?}"
    );
    assert_eq!(f.confirms_executed().await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn twenty_concurrent_confirms_of_one_order_charge_and_credit_once(db: PgPool) {
    let f = std::sync::Arc::new(fixture(db).await);
    let order = f.order(USER, 50_000).await;
    let key = f.pay(&order).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (f, order, key) = (f.clone(), order.clone(), key.clone());
            tokio::spawn(async move { f.confirm(USER, &order, &key, 50_000).await })
        })
        .collect();
    for task in tasks {
        let view = task.await.unwrap().unwrap();
        assert_ne!(view.status, PaymentState::Failed);
    }
    f.work_until_credited("credited", &order).await;
    assert_eq!(f.confirms_executed().await, 1);
    assert_eq!(f.balance(USER).await, 50_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_payment_key_confirms_one_order_and_an_order_takes_one_payment_key(db: PgPool) {
    let f = fixture(db).await;
    let (first, first_key) = f.bought(USER, 10_000).await;
    let second = f.order(USER, 10_000).await;
    let second_key = f.pay(&second).await;
    let reused_key = f.confirm(USER, &second, &first_key, 10_000).await;
    assert!(
        matches!(reused_key, Err(PaymentError::OrderAlreadyConfirmed)),
        "{reused_key:?}"
    );
    let other_key = f.confirm(USER, &first, &second_key, 10_000).await;
    assert!(
        matches!(other_key, Err(PaymentError::OrderAlreadyConfirmed)),
        "{other_key:?}"
    );
    assert_eq!(f.confirms_executed().await, 1, "neither reached Toss");
    let view = f.confirm(USER, &second, &second_key, 10_000).await.unwrap();
    assert_eq!(
        (view.status, view.points),
        (PaymentState::Done, PointsState::Credited)
    );
    assert_eq!(f.balance(USER).await, 20_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn after_a_declined_attempt_another_key_for_the_order_is_declined_not_called_confirmed(
    db: PgPool,
) {
    let f = fixture(db).await;
    let order = f.order(USER, 5_000).await;
    let real_key = f.pay(&order).await;
    let bogus = f
        .confirm(USER, &order, "tviva_not_a_real_key_000", 5_000)
        .await;
    assert!(matches!(bogus, Err(PaymentError::Rejected(_))), "{bogus:?}");
    let second = f.confirm(USER, &order, &real_key, 5_000).await;
    assert!(
        matches!(second, Err(PaymentError::Rejected(_))),
        "never confirmed, so not ORDER_ALREADY_CONFIRMED: {second:?}"
    );
    assert_eq!(f.confirms_executed().await, 0, "no money taken");
    assert_eq!(f.balance(USER).await, 0);
    // A new order pays with a new widget payment as usual.
    let (_, _) = f.bought(USER, 5_000).await;
    assert_eq!(f.balance(USER).await, 5_000);
    f.assert_sound().await;
}

/// Concurrent first confirms of one order race to insert its payment row, and the row has two
/// unique keys (order and payment key). Postgres arbitrates `ON CONFLICT (order_id)` only on the
/// order: a racer that reached the payment-key index second failed with a unique violation and
/// was told "confirmed with another payment key" for its own key. To make the race happen rather
/// than hope for it, a test-only trigger parks every insert of a round on an advisory lock the test
/// holds, and releases them all at once; every confirm must answer with the one payment.
#[sqlx::test(migrations = "./migrations")]
async fn confirms_racing_to_record_one_payment_never_mistake_their_own_key_for_another(db: PgPool) {
    const ROUNDS: usize = 10;
    const CONFIRMS: usize = 12;
    const AMOUNT: i64 = 1_000;
    const GATE: i64 = 7_100_042;
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_advisory_xact_lock_shared({GATE}); RETURN NEW; END $$; \
         CREATE TRIGGER test_gate BEFORE INSERT ON payments \
             FOR EACH ROW EXECUTE FUNCTION test_gate();"
    ))
    .execute(&db)
    .await
    .unwrap();
    let wide = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(CONFIRMS + 4).unwrap_or(u32::MAX))
        .connect_with((*db.connect_options()).clone())
        .await
        .unwrap();
    let f = std::sync::Arc::new(fixture(wide).await);
    let mut gate = db.acquire().await.unwrap();
    for _ in 0..ROUNDS {
        let order = f.order(USER, AMOUNT).await;
        let key = f.pay(&order).await;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(GATE)
            .execute(&mut *gate)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..CONFIRMS)
            .map(|_| {
                let (f, order, key) = (f.clone(), order.clone(), key.clone());
                tokio::spawn(async move { f.confirm(USER, &order, &key, AMOUNT).await })
            })
            .collect();
        let mut parked = 0;
        for _ in 0..400 {
            parked = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_locks \
                 WHERE locktype = 'advisory' AND objid = $1 AND NOT granted",
            )
            .bind(GATE)
            .fetch_one(&mut *gate)
            .await
            .unwrap();
            if parked == i64::try_from(CONFIRMS).unwrap_or(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            parked,
            i64::try_from(CONFIRMS).unwrap_or(0),
            "every confirm parked"
        );
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(GATE)
            .execute(&mut *gate)
            .await
            .unwrap();
        for task in tasks {
            let view = task.await.unwrap().unwrap();
            assert_ne!(view.status, PaymentState::Failed);
        }
    }
    f.work_until("all credited", async |f| {
        f.balance(USER).await == AMOUNT * i64::try_from(ROUNDS).unwrap_or(0)
    })
    .await;
    assert_eq!(
        f.confirms_executed().await,
        i64::try_from(ROUNDS).unwrap_or(-1)
    );
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn toss_approving_and_dropping_the_reply_is_reconciled_to_exactly_one_charge(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 20_000).await;
    let key = f.pay(&order).await;
    f.fault(json!({ "operation": "confirm", "kind": "approve_then_drop" }))
        .await;
    let view = f.confirm(USER, &order, &key, 20_000).await.unwrap();
    assert_eq!(
        view.status,
        PaymentState::Confirming,
        "the outcome is unknown"
    );
    assert_eq!(view.points, PointsState::None);
    assert_eq!(
        f.toss_payment(&key).await["status"],
        "DONE",
        "Toss took the money"
    );
    f.work_until_credited("reconciled", &order).await;
    assert_eq!(f.confirms_executed().await, 1);
    assert_eq!(f.balance(USER).await, 20_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_5xx_before_toss_acted_is_confirmed_again_by_the_reconciler(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 20_000).await;
    let key = f.pay(&order).await;
    f.fault(json!({ "operation": "confirm", "kind": "error", "status": 500 }))
        .await;
    let view = f.confirm(USER, &order, &key, 20_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Confirming);
    assert_eq!(f.toss_payment(&key).await["status"], "IN_PROGRESS");
    f.work_until_credited("confirmed", &order).await;
    assert_eq!(f.confirms_executed().await, 1);
    assert_eq!(f.balance(USER).await, 20_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_declined_card_fails_the_payment_and_gives_no_points(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 20_000).await;
    let key = f.pay(&order).await;
    f.fault(
        json!({ "operation": "confirm", "kind": "error", "status": 403,
                    "code": "REJECT_CARD_PAYMENT" }),
    )
    .await;
    let error = f.confirm(USER, &order, &key, 20_000).await;
    assert!(matches!(error, Err(PaymentError::Rejected(_))), "{error:?}");
    assert_eq!(f.view(USER, &order).await.status, PaymentState::Failed);
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn crediting_that_fails_three_times_then_works_credits_once(db: PgPool) {
    let f = fixture(db).await;
    f.payments
        .faults
        .credit_failures
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let order = f.order(USER, 30_000).await;
    let key = f.pay(&order).await;
    let view = f.confirm(USER, &order, &key, 30_000).await.unwrap();
    assert_eq!(
        (view.status, view.points),
        (PaymentState::Done, PointsState::Pending),
        "the payment succeeds although the points are not in yet"
    );
    f.work_until_credited("credited", &order).await;
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM payment_outbox WHERE order_id = $1 AND kind = 'credit_charge'",
    )
    .bind(order.order_id.as_str())
    .fetch_one(&f.payments.db)
    .await
    .unwrap();
    assert_eq!(attempts, 4);
    assert_eq!(f.balance(USER).await, 30_000);
    assert_eq!(f.notifications(USER, "points_credited").await, 1);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_charge_that_can_never_be_credited_is_canceled_at_toss_and_the_user_told(db: PgPool) {
    let f = fixture(db).await;
    f.payments
        .faults
        .credit_failures
        .store(1_000, std::sync::atomic::Ordering::SeqCst);
    let order = f.order(USER, 30_000).await;
    let key = f.pay(&order).await;
    f.confirm(USER, &order, &key, 30_000).await.unwrap();
    f.work_until("compensated", async |f| {
        f.view(USER, &order).await.points == PointsState::Compensated
    })
    .await;
    assert_eq!(f.toss_payment(&key).await["status"], "CANCELED");
    assert_eq!(f.balance(USER).await, 0);
    assert_eq!(f.notifications(USER, "payment_canceled").await, 1);
    f.assert_sound().await;
}

fn status_changed(toss_payment: &Value) -> Value {
    json!({ "eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-29T12:00:00.000000",
            "data": toss_payment })
}

#[sqlx::test(migrations = "./migrations")]
async fn a_cancel_in_the_toss_console_removes_the_unspent_points_once(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    f.sandbox
        .post(
            &format!("/sandbox/toss/payments/{key}/console-cancel"),
            &json!({ "cancelAmount": 4_000, "cancelReason": "customer asked" }),
        )
        .await;
    let canceled = f.toss_payment(&key).await;
    assert_eq!(canceled["status"], "PARTIAL_CANCELED");
    // Delivered three times, and an old DONE delivery arrives after them: one effect.
    for _ in 0..3 {
        f.webhook(&status_changed(&canceled)).await;
    }
    let mut stale = canceled.clone();
    stale["status"] = json!("DONE");
    stale["balanceAmount"] = json!(10_000);
    f.webhook(&status_changed(&stale)).await;
    f.work_until("webhooks applied", async |f| {
        f.view(USER, &order).await.canceled_amount == 4_000
    })
    .await;
    f.work_until("all processed", async |f| {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM toss_webhooks WHERE processed_at IS NULL")
                .fetch_one(&f.payments.db)
                .await
                .unwrap();
        left == 0
    })
    .await;
    assert_eq!(f.balance(USER).await, 6_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_console_cancel_of_spent_points_is_flagged_never_driven_negative(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    f.spend(USER, 7_000, "shop:1").await;
    f.sandbox
        .post(
            &format!("/sandbox/toss/payments/{key}/console-cancel"),
            &json!({ "cancelReason": "chargeback" }),
        )
        .await;
    f.webhook(&status_changed(&f.toss_payment(&key).await))
        .await;
    f.work_until("applied", async |f| {
        f.view(USER, &order).await.canceled_amount == 10_000
    })
    .await;
    assert_eq!(f.balance(USER).await, 0);
    let flagged: i64 =
        sqlx::query_scalar("SELECT sum(amount)::int8 FROM payment_flags WHERE order_id = $1")
            .bind(order.order_id.as_str())
            .fetch_one(&f.payments.db)
            .await
            .unwrap();
    assert_eq!(flagged, 7_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_forged_webhook_changes_nothing(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    let mut forged = f.toss_payment(&key).await;
    forged["status"] = json!("CANCELED");
    forged["balanceAmount"] = json!(0);
    // Our order and key: stored (a hint), and Toss's own answer decides.
    assert_eq!(f.webhook(&status_changed(&forged)).await, Accepted::Stored);
    // Another payment key for our order, an order we never made, and a deposit secret that is
    // not the payment's: not even stored.
    let mut other_key = forged.clone();
    other_key["paymentKey"] = json!("forged_key_123");
    let mut unknown = forged.clone();
    unknown["orderId"] = json!("nene_not_ours_1");
    let wrong_secret = json!({ "eventType": "DEPOSIT_CALLBACK",
        "data": { "orderId": order.order_id.as_str(), "secret": "guess", "status": "DONE" } });
    for ignored in [
        status_changed(&other_key),
        status_changed(&unknown),
        wrong_secret,
    ] {
        assert!(
            matches!(f.webhook(&ignored).await, Accepted::Ignored(_)),
            "{ignored}"
        );
    }
    assert_eq!(f.webhook_rows(false).await, 1);
    f.work_until("processed", async |f| {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM toss_webhooks WHERE processed_at IS NULL")
                .fetch_one(&f.payments.db)
                .await
                .unwrap();
        left == 0
    })
    .await;
    let view = f.view(USER, &order).await;
    assert_eq!(view.canceled_amount, 0);
    assert_eq!(f.balance(USER).await, 10_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_virtual_account_is_credited_on_a_deposit_callback_with_the_right_secret(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 15_000).await;
    let paid = f
        .sandbox
        .post(
            "/sandbox/toss/pay",
            &json!({ "orderId": order.order_id.as_str(), "amount": 15_000,
                     "method": "VIRTUAL_ACCOUNT" }),
        )
        .await;
    let key = paid["paymentKey"].as_str().unwrap_or_default().to_owned();
    let view = f.confirm(USER, &order, &key, 15_000).await.unwrap();
    assert_eq!(view.status, PaymentState::WaitingForDeposit);
    let secret = f.toss_payment(&key).await["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!secret.is_empty());
    // A callback with a wrong secret is ignored even once the money is in.
    f.sandbox
        .post(&format!("/sandbox/toss/payments/{key}/deposit"), &json!({}))
        .await;
    f.webhook(
        &json!({ "eventType": "DEPOSIT_CALLBACK", "createdAt": "2026-11-29T12:00:00",
        "data": { "orderId": order.order_id.as_str(), "secret": "wrong", "status": "DONE" } }),
    )
    .await;
    worker::run_once(&f.payments).await.unwrap();
    assert_eq!(f.balance(USER).await, 0);
    f.webhook(
        &json!({ "eventType": "DEPOSIT_CALLBACK", "createdAt": "2026-11-29T12:00:01",
        "data": { "orderId": order.order_id.as_str(), "secret": secret, "status": "DONE" } }),
    )
    .await;
    f.work_until_credited("credited", &order).await;
    assert_eq!(f.balance(USER).await, 15_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refund_of_partly_spent_points_cancels_exactly_the_unspent_part(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    // A later charge must not be touched: the refund is of this payment's lot only.
    f.bought(USER, 5_000).await;
    f.spend(USER, 3_000, "shop:2").await;
    let done = refund::refund(&f.payments, USER, order.order_id.as_str(), Some("r1"))
        .await
        .unwrap();
    assert_eq!((done.amount, done.state), (7_000, RefundState::Done));
    let toss = f.toss_payment(&key).await;
    assert_eq!(toss["balanceAmount"], 3_000);
    assert_eq!(toss["status"], "PARTIAL_CANCELED");
    assert_eq!(f.balance(USER).await, 5_000);
    // The same key again: the same refund. Another attempt: nothing left.
    let replay = refund::refund(&f.payments, USER, order.order_id.as_str(), Some("r1"))
        .await
        .unwrap();
    assert_eq!(replay, done);
    let again = refund::refund(&f.payments, USER, order.order_id.as_str(), Some("r2")).await;
    assert!(
        matches!(again, Err(PaymentError::NothingToRefund)),
        "{again:?}"
    );
    // Toss's webhook about our own cancel changes nothing more.
    f.webhook(&status_changed(&toss)).await;
    worker::run_once(&f.payments).await.unwrap();
    assert_eq!(f.balance(USER).await, 5_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refund_toss_refuses_puts_the_points_back_in_their_lot(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    f.fault(
        json!({ "operation": "cancel", "kind": "error", "status": 403,
                    "code": "NOT_CANCELABLE_PAYMENT" }),
    )
    .await;
    let error = refund::refund(&f.payments, USER, order.order_id.as_str(), None).await;
    assert!(
        matches!(error, Err(PaymentError::RefundRefused(_))),
        "{error:?}"
    );
    assert_eq!(f.balance(USER).await, 10_000);
    assert_eq!(f.view(USER, &order).await.canceled_amount, 0);
    assert_eq!(f.toss_payment(&key).await["balanceAmount"], 10_000);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refund_whose_answer_is_lost_is_asked_again_and_done_once(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    f.fault(json!({ "operation": "cancel", "kind": "approve_then_drop" }))
        .await;
    let pending = refund::refund(&f.payments, USER, order.order_id.as_str(), None)
        .await
        .unwrap();
    assert_eq!(pending.state, RefundState::Requested);
    assert_eq!(
        f.balance(USER).await,
        0,
        "points leave before Toss is asked"
    );
    let again = refund::refund(&f.payments, USER, order.order_id.as_str(), None).await;
    assert!(
        matches!(again, Err(PaymentError::RefundInFlight)),
        "{again:?}"
    );
    f.work_until("refund resolved", async |f| {
        let state: String =
            sqlx::query_scalar("SELECT state::text FROM payment_refunds WHERE order_id = $1")
                .bind(order.order_id.as_str())
                .fetch_one(&f.payments.db)
                .await
                .unwrap();
        state == "done"
    })
    .await;
    let toss = f.toss_payment(&key).await;
    assert_eq!(toss["balanceAmount"], 0);
    assert_eq!(
        toss["cancels"].as_array().map(Vec::len),
        Some(1),
        "one cancel"
    );
    f.assert_sound().await;
}

// --- a wrong amount is given back in full (issue: partial compensation) -----------------------

/// The widget runs in the customer's browser: it can authorise another amount than the order's.
async fn pay_amount(f: &Fixture, order: &Order, amount: i64) -> String {
    let paid = f
        .sandbox
        .post(
            "/sandbox/toss/pay",
            &json!({ "orderId": order.order_id.as_str(), "amount": amount }),
        )
        .await;
    paid["paymentKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no paymentKey in {paid}"))
        .to_owned()
}

/// Toss approves 50,000 for a 1,000 order and the confirm's answer is lost: the reconciler finds
/// a payment of another amount. It used to cancel the order's 1,000 only, leaving 49,000 charged.
#[sqlx::test(migrations = "./migrations")]
async fn another_amount_approved_behind_a_lost_answer_is_canceled_in_full_and_flagged(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 1_000).await;
    let key = pay_amount(&f, &order, 50_000).await;
    f.fault(json!({ "operation": "confirm", "kind": "approve_authorised_amount_then_drop" }))
        .await;
    let view = f.confirm(USER, &order, &key, 1_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Confirming, "the answer was lost");
    assert_eq!(f.toss_payment(&key).await["totalAmount"], 50_000);
    f.work_until("given back", async |f| {
        f.view(USER, &order).await.points == PointsState::Compensated
    })
    .await;
    let toss = f.toss_payment(&key).await;
    assert_eq!(
        (toss["status"].as_str(), toss["balanceAmount"].as_i64()),
        (Some("CANCELED"), Some(0)),
        "nothing of the customer's stays charged"
    );
    assert_eq!(f.balance(USER).await, 0, "no points for it");
    let (reason, flagged) = f.amount_flag(&order).await.expect("the order is flagged");
    assert_eq!(flagged, 50_000, "{reason}");
    assert_eq!(f.notifications(USER, "points_credited").await, 0);
    assert_eq!(f.notifications(USER, "payment_canceled").await, 1);
    // Toss's webhook about the cancel changes nothing more.
    f.webhook(&status_changed(&toss)).await;
    f.work_until("webhook processed", async |f| {
        f.webhook_rows(true).await == 0
    })
    .await;
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

/// The confirm itself may hear Toss approve another amount (not only the reconciler): it refuses
/// it, credits nothing, and the payment goes back in full.
#[sqlx::test(migrations = "./migrations")]
async fn a_confirm_answered_with_another_amount_is_refused_and_canceled_in_full(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 1_000).await;
    let key = pay_amount(&f, &order, 50_000).await;
    f.fault(json!({ "operation": "confirm", "kind": "approve_authorised_amount" }))
        .await;
    let refused = f.confirm(USER, &order, &key, 1_000).await;
    assert!(
        matches!(refused, Err(PaymentError::AmountMismatch)),
        "{refused:?}"
    );
    assert_eq!(f.view(USER, &order).await.points, PointsState::None);
    assert!(f.amount_flag(&order).await.is_some(), "flagged at once");
    f.work_until("given back", async |f| {
        f.view(USER, &order).await.points == PointsState::Compensated
    })
    .await;
    assert_eq!(f.toss_payment(&key).await["balanceAmount"], 0);
    assert_eq!(f.balance(USER).await, 0);
    // Asking again changes nothing: no second cancel, no points.
    let again = f.confirm(USER, &order, &key, 1_000).await;
    assert!(again.is_ok_and(|view| view.points == PointsState::Compensated));
    assert_eq!(
        f.toss_payment(&key).await["cancels"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    f.assert_sound().await;
}

/// The customer authorised 50,000 for a 1,000 order and our confirm's answer was lost (Toss
/// refused it: the amounts differ). The reconciler used to confirm again with Toss's amount,
/// charging 50,000 for 1,000 points. It confirms only the order's amount: here, not at all.
#[sqlx::test(migrations = "./migrations")]
async fn the_reconciler_never_confirms_an_amount_other_than_the_orders(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 1_000).await;
    let key = pay_amount(&f, &order, 50_000).await;
    f.fault(json!({ "operation": "confirm", "kind": "approve_then_drop" }))
        .await;
    let view = f.confirm(USER, &order, &key, 1_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Confirming);
    f.work_until("settled", async |f| {
        f.view(USER, &order).await.status == PaymentState::Failed
    })
    .await;
    assert_eq!(f.confirms_executed().await, 0, "nothing was ever charged");
    assert_ne!(f.toss_payment(&key).await["status"], "DONE");
    assert!(
        f.amount_flag(&order).await.is_some(),
        "flagged for an operator"
    );
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

// --- the public webhook endpoint stores only what names our payments (issue: stores anything) --

#[sqlx::test(migrations = "./migrations")]
async fn a_thousand_distinct_junk_webhooks_store_nothing_and_read_nothing(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    let real = f.toss_payment(&key).await;
    let reads_before = f.reads().await;
    for i in 0..1_000 {
        let junk: Vec<u8> = match i % 8 {
            0 => format!("not json {i}").into_bytes(),
            1 => serde_json::to_vec(&json!({ "hello": i })).unwrap(),
            2 => {
                let mut unknown = real.clone();
                unknown["orderId"] = json!(format!("nene_unknown_{i}"));
                serde_json::to_vec(&status_changed(&unknown)).unwrap()
            }
            3 => {
                let mut other_key = real.clone();
                other_key["paymentKey"] = json!(format!("tsb_forged_{i}"));
                serde_json::to_vec(&status_changed(&other_key)).unwrap()
            }
            4 => serde_json::to_vec(&json!({ "eventType": "DEPOSIT_CALLBACK",
                "data": { "orderId": order.order_id.as_str(), "secret": format!("guess{i}"),
                          "status": "DONE" } }))
            .unwrap(),
            5 => serde_json::to_vec(&json!({ "eventType": "PAYOUT_STATUS_CHANGED",
                "createdAt": i, "data": real }))
            .unwrap(),
            6 => serde_json::to_vec(&json!({ "eventType": "PAYMENT_STATUS_CHANGED",
                "createdAt": i, "data": { "orderId": order.order_id.as_str() } }))
            .unwrap(),
            _ => {
                let mut huge = serde_json::to_vec(&status_changed(&real)).unwrap();
                huge.extend(std::iter::repeat_n(b' ', webhook::WEBHOOK_BODY_BYTES_MAX));
                huge.extend(i.to_string().bytes());
                huge
            }
        };
        let accepted = webhook::accept(&f.payments, &junk).await.unwrap();
        assert!(
            matches!(accepted, Accepted::Ignored(_)),
            "{i}: {accepted:?}"
        );
    }
    assert_eq!(f.webhook_rows(false).await, 0, "nothing stored");
    worker::run_once(&f.payments).await.unwrap();
    assert_eq!(f.reads().await, reads_before, "no Toss read for junk");
    assert_eq!(f.balance(USER).await, 10_000);
    f.assert_sound().await;
}

/// Toss took the money but our confirm's answer was lost; then 1,000 distinct events name the
/// payment (Toss's redeliveries, or someone replaying them). One pending row takes them all, Toss
/// is read at most once per interval, and the points are credited once.
#[sqlx::test(migrations = "./migrations")]
async fn a_thousand_webhooks_naming_one_payment_read_toss_a_bounded_number_of_times_and_credit_once(
    db: PgPool,
) {
    const EVENTS: usize = 1_000;
    let f = fixture(db).await;
    let order = f.order(USER, 20_000).await;
    let key = f.pay(&order).await;
    f.fault(json!({ "operation": "confirm", "kind": "approve_then_drop" }))
        .await;
    let view = f.confirm(USER, &order, &key, 20_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Confirming);
    let done = f.toss_payment(&key).await;
    let reads_before = f.reads().await;
    let started = std::time::Instant::now();
    let mut stored = 0;
    for i in 0..EVENTS {
        let mut event = status_changed(&done);
        event["createdAt"] = json!(format!("2026-11-29T12:00:00.{i:06}"));
        if f.webhook(&event).await == Accepted::Stored {
            stored += 1;
        }
        if i % 100 == 99 {
            worker::run_once(&f.payments).await.unwrap();
        }
    }
    f.work_until_credited("credited", &order).await;
    f.work_until("every webhook processed", async |f| {
        f.webhook_rows(true).await == 0
    })
    .await;
    let elapsed = started.elapsed();
    let reads = f.reads().await - reads_before;
    // One read per interval that passed (and one for the interval under way), plus at most one
    // by the reconciler, which looks at confirms left unknown past their lease.
    let intervals = elapsed.as_millis() / worker::WEBHOOK_READ_INTERVAL.as_millis();
    let bound = i64::try_from(intervals).unwrap_or(i64::MAX) + 2;
    eprintln!("{EVENTS} events: {reads} Toss reads, {stored} rows stored, in {elapsed:?}");
    assert!(
        (1..=bound).contains(&reads),
        "{reads} Toss reads for {EVENTS} events in {elapsed:?} (at most {bound})"
    );
    assert!(
        (1..=reads).contains(&stored),
        "{stored} rows stored for {EVENTS} events"
    );
    assert_eq!(f.confirms_executed().await, 1);
    assert_eq!(f.balance(USER).await, 20_000, "credited exactly once");
    assert_eq!(f.notifications(USER, "points_credited").await, 1);

    // Toss was just read for this payment: a further event waits out the interval.
    let reads_now = f.reads().await;
    assert_eq!(f.webhook(&status_changed(&done)).await, Accepted::Stored);
    for _ in 0..3 {
        worker::run_once(&f.payments).await.unwrap();
    }
    assert_eq!(f.reads().await, reads_now, "no read within the interval");
    assert_eq!(f.webhook_rows(true).await, 1, "still pending, not lost");
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn processed_webhooks_are_purged_after_thirty_days_and_newer_or_pending_ones_kept(
    db: PgPool,
) {
    let f = fixture(db).await;
    let (order, _) = f.bought(USER, 10_000).await;
    let retention_days = worker::WEBHOOK_RETENTION.as_secs() / 86_400;
    assert_eq!(retention_days, 30);
    for (outcome, processed_days_ago, received_days_ago) in [
        ("old", Some(31_i32), 31_i32),
        ("recent", Some(29), 31),
        ("pending", None, 40),
    ] {
        sqlx::query(
            "INSERT INTO toss_webhooks (order_id, event_type, body, received_at, processed_at, \
                                        outcome) \
             VALUES ($1, 'PAYMENT_STATUS_CHANGED', '{}', now() - make_interval(days => $3), \
                     now() - make_interval(days => $2), $4)",
        )
        .bind(order.order_id.as_str())
        .bind(processed_days_ago)
        .bind(received_days_ago)
        .bind(outcome)
        .execute(&f.payments.db)
        .await
        .unwrap();
    }
    nene_core::maintenance::run_once(&f.payments.db)
        .await
        .unwrap();
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM toss_webhooks ORDER BY outcome")
            .fetch_all(&f.payments.db)
            .await
            .unwrap();
    assert_eq!(kept, ["pending", "recent"]);
}

// --- the failure branches no other test reaches (docs/decisions/0016-sql-queries.md) -----------

impl Fixture {
    /// The failure code recorded on an order's payment.
    async fn failure_code(&self, order: &Order) -> Option<String> {
        sqlx::query_scalar("SELECT failure_code FROM payments WHERE order_id = $1")
            .bind(order.order_id.as_str())
            .fetch_one(&self.payments.db)
            .await
            .unwrap()
    }

    /// A confirm of `payment_key` whose outcome is unknown: Toss answered 500 without acting.
    async fn confirm_unanswered(&self, order: &Order, payment_key: &str) {
        self.fault(json!({ "operation": "confirm", "kind": "error", "status": 500 }))
            .await;
        let view = self
            .confirm(USER, order, payment_key, order.amount)
            .await
            .unwrap();
        assert_eq!(view.status, PaymentState::Confirming);
    }

    async fn work_until_failed(&self, what: &str, order: &Order) {
        self.work_until(what, async |f| {
            f.view(USER, order).await.status == PaymentState::Failed
        })
        .await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_confirm_of_a_payment_toss_never_heard_of_is_failed_by_the_reconciler(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    f.confirm_unanswered(&order, "tsb_never_issued_by_toss")
        .await;
    f.work_until_failed("failed", &order).await;
    assert_eq!(
        f.failure_code(&order).await.as_deref(),
        Some("NOT_FOUND_PAYMENT")
    );
    assert_eq!(f.confirms_executed().await, 0);
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_payment_confirmed_again_as_often_as_allowed_is_failed_and_never_charged(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    let key = f.pay(&order).await;
    f.confirm_unanswered(&order, &key).await;
    // As if the reconciler had sent the confirm again that many times, never answered.
    sqlx::query("UPDATE payments SET confirm_attempts = $2 WHERE order_id = $1")
        .bind(order.order_id.as_str())
        .bind(worker::CONFIRM_ATTEMPTS_MAX)
        .execute(&f.payments.db)
        .await
        .unwrap();
    f.work_until_failed("failed", &order).await;
    assert_eq!(
        f.failure_code(&order).await.as_deref(),
        Some("CONFIRM_ATTEMPTS_EXHAUSTED")
    );
    assert_eq!(f.confirms_executed().await, 0, "not confirmed again");
    assert_eq!(f.toss_payment(&key).await["status"], "IN_PROGRESS");
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_confirm_the_reconciler_sends_again_and_toss_declines_fails_the_payment(db: PgPool) {
    let f = fixture(db).await;
    let order = f.order(USER, 10_000).await;
    let key = f.pay(&order).await;
    // The second confirm (the reconciler's) is declined.
    f.fault(json!({ "operation": "confirm", "kind": "error", "status": 500 }))
        .await;
    f.fault(
        json!({ "operation": "confirm", "kind": "error", "status": 403,
                "code": "REJECT_CARD_PAYMENT" }),
    )
    .await;
    let view = f.confirm(USER, &order, &key, 10_000).await.unwrap();
    assert_eq!(view.status, PaymentState::Confirming);
    f.work_until_failed("failed", &order).await;
    assert_eq!(
        f.failure_code(&order).await.as_deref(),
        Some("REJECT_CARD_PAYMENT")
    );
    assert_eq!(f.confirms_executed().await, 0);
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn toss_saying_an_open_payment_was_aborted_or_expired_fails_it_with_that_status(db: PgPool) {
    let f = fixture(db).await;
    for status in [TossStatus::Aborted, TossStatus::Expired] {
        let order = f.order(USER, 10_000).await;
        let key = f.pay(&order).await;
        f.confirm_unanswered(&order, &key).await;
        let toss_payment = TossPayment {
            payment_key: key,
            order_id: order.order_id.as_str().to_owned(),
            status,
            total_amount: 10_000,
            balance_amount: 10_000,
            method: None,
            secret: None,
        };
        for expected in [Applied::Changed, Applied::Nothing] {
            let mut tx = f.payments.db.begin().await.unwrap();
            let row = payments::lock_payment(&mut tx, order.order_id.as_str())
                .await
                .unwrap()
                .unwrap();
            let applied = payments::apply_toss_state(&mut tx, &row, &toss_payment)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(
                applied, expected,
                "{status:?}: failed once, then nothing new"
            );
        }
        assert_eq!(f.view(USER, &order).await.status, PaymentState::Failed);
        assert_eq!(
            f.failure_code(&order).await.as_deref(),
            Some(status.as_str())
        );
    }
    assert_eq!(f.balance(USER).await, 0);
    f.assert_sound().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_webhook_rearmed_while_it_is_worked_stays_pending_and_is_worked_again(db: PgPool) {
    let f = fixture(db).await;
    let (order, key) = f.bought(USER, 10_000).await;
    let event = status_changed(&f.toss_payment(&key).await);
    assert_eq!(f.webhook(&event).await, Accepted::Stored);
    // The worker's read of Toss takes a while; a second event arrives meanwhile.
    f.fault(json!({ "operation": "get", "kind": "latency", "latencyMs": 600 }))
        .await;
    let worked = tokio::spawn({
        let payments = f.payments.clone();
        async move { worker::run_once(&payments).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.webhook(&event).await, Accepted::Merged);
    worked.await.unwrap();
    let (attempts, outcome): (i32, String) = sqlx::query_as(
        "SELECT attempts, outcome FROM toss_webhooks \
         WHERE order_id = $1 AND processed_at IS NULL",
    )
    .bind(order.order_id.as_str())
    .fetch_one(&f.payments.db)
    .await
    .unwrap();
    assert_eq!(attempts, 0, "rearmed afresh");
    assert_eq!(outcome, "unchanged; rearmed by a later event");
    let reads = f.reads().await;
    f.work_until("the later event worked", async |f| {
        f.webhook_rows(true).await == 0
    })
    .await;
    assert_eq!(
        f.reads().await,
        reads + 1,
        "read once more, for the later event"
    );
    assert_eq!(f.balance(USER).await, 10_000);
    f.assert_sound().await;
}

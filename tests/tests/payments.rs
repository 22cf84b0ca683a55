//! Buying points end to end: the client calls the edge (the Worker under `wrangler dev`, and the
//! Spin component under wasmtime), the core calls the Toss sandbox, and the sandbox delivers its
//! webhooks to the edge with duplicates, reordering and retries. After every scenario the ledger
//! checker is clean and the money Toss holds for each payment equals the points we count for it.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nene_e2e::{
    Core, Sandbox, SpinHost, Wrangler, client, core_call, edge_call, scratch_dir, token_for,
};
use serde_json::{Value, json};

struct Stack {
    sandbox: Sandbox,
    core: Core,
    edge_url: String,
    _wrangler: Option<Wrangler>,
    _spin: Option<SpinHost>,
}

async fn workers_stack(test: &str) -> Stack {
    let dir = scratch_dir(test);
    let sandbox = Sandbox::start(&dir).await;
    let core = Core::start_with_toss(&dir, &sandbox.url).await;
    let wrangler = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let edge_url = wrangler.url.clone();
    let stack = Stack {
        sandbox,
        core,
        edge_url,
        _wrangler: Some(wrangler),
        _spin: None,
    };
    stack
        .sandbox_put(
            "/sandbox/toss/webhook",
            &json!({ "url": format!("{}/webhooks/toss", stack.edge_url), "retryUnitMs": 20 }),
        )
        .await;
    stack
}

async fn spin_stack(test: &str) -> Stack {
    let dir = scratch_dir(test);
    let sandbox = Sandbox::start(&dir).await;
    let core = Core::start_with_toss(&dir, &sandbox.url).await;
    let spin = SpinHost::start(&core.url, &dir).await;
    let edge_url = spin.url.clone();
    Stack {
        sandbox,
        core,
        edge_url,
        _wrangler: None,
        _spin: Some(spin),
    }
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

impl Stack {
    async fn edge(
        &self,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        edge_call(&self.edge_url, method, path, user, body).await
    }

    async fn sandbox_post(&self, path: &str, body: &Value) -> Value {
        let (status, body) = json_of(
            client()
                .post(format!("{}{path}", self.sandbox.url))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            (200..300).contains(&status),
            "sandbox {path}: {status} {body}"
        );
        body
    }

    async fn sandbox_put(&self, path: &str, body: &Value) {
        let response = client()
            .put(format!("{}{path}", self.sandbox.url))
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "sandbox {path}");
    }

    async fn sandbox_get(&self, path: &str) -> Value {
        json_of(
            client()
                .get(format!("{}{path}", self.sandbox.url))
                .send()
                .await
                .unwrap(),
        )
        .await
        .1
    }

    async fn order(&self, user: &str, amount: i64) -> String {
        let (status, order) = self
            .edge(
                "POST",
                "/v1/payments/orders",
                user,
                Some(json!({ "amount": amount })),
            )
            .await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["amount"], amount);
        order["order_id"].as_str().unwrap_or_default().to_owned()
    }

    async fn pay(&self, order_id: &str, amount: i64) -> String {
        let paid = self
            .sandbox_post(
                "/sandbox/toss/pay",
                &json!({ "orderId": order_id, "amount": amount }),
            )
            .await;
        paid["paymentKey"].as_str().unwrap_or_default().to_owned()
    }

    async fn confirm(&self, user: &str, order_id: &str, key: &str, amount: i64) -> (u16, Value) {
        self.edge(
            "POST",
            "/v1/payments/confirm",
            user,
            Some(json!({ "payment_key": key, "order_id": order_id, "amount": amount })),
        )
        .await
    }

    async fn buy(&self, user: &str, amount: i64) -> (String, String) {
        let order_id = self.order(user, amount).await;
        let key = self.pay(&order_id, amount).await;
        let (status, payment) = self.confirm(user, &order_id, &key, amount).await;
        assert_eq!(status, 200, "{payment}");
        assert_eq!(payment["points"], "credited", "{payment}");
        (order_id, key)
    }

    async fn balance(&self, user: &str) -> i64 {
        let (status, wallet) = self.edge("GET", "/v1/wallet", user, None).await;
        assert_eq!(status, 200, "{wallet}");
        wallet["balance"].as_i64().unwrap_or(-1)
    }

    async fn payment(&self, user: &str, order_id: &str) -> Value {
        let (status, payment) = self
            .edge("GET", &format!("/v1/payments/{order_id}"), user, None)
            .await;
        assert_eq!(status, 200, "{payment}");
        payment
    }

    async fn toss(&self, key: &str) -> Value {
        self.sandbox_get(&format!("/sandbox/toss/payments/{key}"))
            .await
    }

    async fn confirms_executed(&self) -> i64 {
        self.sandbox_get("/sandbox/toss/stats").await["confirms_executed"]
            .as_i64()
            .unwrap_or(-1)
    }

    /// Polls until `done` holds; the bound turns a stuck payment into a failure.
    async fn eventually(&self, what: &str, done: impl AsyncFn(&Self) -> bool) {
        for _ in 0..300 {
            if done(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never happened: {what}");
    }

    async fn db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.core.database.url)
            .await
            .unwrap()
    }

    /// The ledger's invariants, and Toss's money = our points for every payment.
    async fn assert_sound(&self) {
        let db = self.db().await;
        let violations: Vec<(String, String, String)> =
            sqlx::query_as("SELECT invariant, subject, detail FROM ledger_check_invariants()")
                .fetch_all(&db)
                .await
                .unwrap();
        assert!(violations.is_empty(), "ledger invariants: {violations:#?}");
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT p.order_id, p.payment_key, \
                 (COALESCE(l.amount - (SELECT COALESCE(sum(a.amount), 0) \
                     FROM ledger_lot_allocations a JOIN ledger_transfers t ON t.id = a.transfer_id \
                     WHERE a.lot_id = l.id AND '00000000-0000-7000-8000-000000000001'::uuid \
                           IN (t.to_account_id, t.from_account_id)), 0) \
                  - (SELECT COALESCE(sum(amount), 0) FROM payment_flags f \
                     WHERE f.order_id = p.order_id AND f.kind = 'canceled_after_spent'))::int8 \
             FROM payments p LEFT JOIN ledger_lots l ON l.id = p.charge_lot_id \
             WHERE p.state = 'done'",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        for (order_id, key, points) in rows {
            assert_eq!(
                self.toss(&key).await["balanceAmount"].as_i64(),
                Some(points),
                "{order_id}: money at Toss vs our points"
            );
        }
        db.close().await;
    }

    async fn unprocessed_webhooks(&self) -> i64 {
        let db = self.db().await;
        let left =
            sqlx::query_scalar("SELECT count(*) FROM toss_webhooks WHERE processed_at IS NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        db.close().await;
        left
    }
}

#[tokio::test]
async fn buying_points_through_the_worker_charges_once_and_refuses_tampering() {
    let stack = workers_stack("payments_happy").await;
    let user = "buyer_happy";
    let (status, body) = stack
        .edge(
            "POST",
            "/v1/payments/orders",
            user,
            Some(json!({ "amount": 999 })),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("AMOUNT_OUT_OF_RANGE"))
    );

    let order_id = stack.order(user, 10_000).await;
    let key = stack.pay(&order_id, 10_000).await;
    let (status, body) = stack.confirm(user, &order_id, &key, 100).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("AMOUNT_MISMATCH"))
    );
    let (status, body) = stack.confirm("someone_else", &order_id, &key, 10_000).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        stack.confirms_executed().await,
        0,
        "refused before Toss was called"
    );

    // A double click: ten confirms at once, then one more after.
    let confirms: Vec<_> = (0..10)
        .map(|_| stack.confirm(user, &order_id, &key, 10_000))
        .collect();
    for (status, body) in futures::future::join_all(confirms).await {
        assert!(status == 200 || status == 202, "{status} {body}");
    }
    stack
        .eventually("credited", async |s| {
            s.payment(user, &order_id).await["points"] == "credited"
        })
        .await;
    let (status, again) = stack.confirm(user, &order_id, &key, 10_000).await;
    assert_eq!((status, &again["status"]), (200, &json!("done")));
    assert_eq!(stack.confirms_executed().await, 1);
    assert_eq!(stack.balance(user).await, 10_000);
    stack.assert_sound().await;
}

#[tokio::test]
async fn a_confirm_whose_reply_toss_dropped_is_reconciled_and_a_flaky_ledger_credits_once() {
    let stack = workers_stack("payments_faults").await;
    let user = "buyer_faults";
    // No webhooks: otherwise Toss's own DONE webhook settles the payment before the reconciler.
    stack
        .sandbox_put("/sandbox/toss/webhook", &json!({ "url": null }))
        .await;
    let order_id = stack.order(user, 20_000).await;
    let key = stack.pay(&order_id, 20_000).await;
    stack
        .sandbox_post(
            "/sandbox/toss/faults",
            &json!({ "operation": "confirm", "kind": "approve_then_drop" }),
        )
        .await;
    let (status, body) = stack.confirm(user, &order_id, &key, 20_000).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("confirming")),
        "{body}"
    );
    stack
        .eventually("reconciled", async |s| {
            s.payment(user, &order_id).await["points"] == "credited"
        })
        .await;
    assert_eq!(stack.confirms_executed().await, 1);

    // The ledger fails the next three credits: the payment still succeeds, the points follow.
    let (status, _) = core_call(
        &stack.core,
        "POST",
        "/internal/v1/dev/faults",
        "",
        &json!({ "credit_failures": 3 }),
    )
    .await;
    assert_eq!(status, 200);
    let second = stack.order(user, 5_000).await;
    let key = stack.pay(&second, 5_000).await;
    let (status, body) = stack.confirm(user, &second, &key, 5_000).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["points"]),
        (&json!("done"), &json!("pending"))
    );
    stack
        .eventually("credited after the failures", async |s| {
            s.payment(user, &second).await["points"] == "credited"
        })
        .await;
    assert_eq!(stack.balance(user).await, 25_000);
    stack.assert_sound().await;
}

#[tokio::test]
async fn webhooks_duplicated_reordered_delayed_or_forged_change_only_what_toss_says() {
    let stack = workers_stack("payments_webhooks").await;
    let user = "buyer_webhooks";
    stack
        .sandbox_put(
            "/sandbox/toss/webhook",
            &json!({ "url": format!("{}/webhooks/toss", stack.edge_url), "retryUnitMs": 20,
                     "duplicates": 2, "shuffle": true }),
        )
        .await;
    let (order_id, key) = stack.buy(user, 10_000).await;

    // Forged: a webhook claiming the payment was canceled. The edge says 200; nothing changes.
    let mut forged = stack.toss(&key).await;
    forged["status"] = json!("CANCELED");
    forged["balanceAmount"] = json!(0);
    let response = client()
        .post(format!("{}/webhooks/toss", stack.edge_url))
        .json(
            &json!({ "eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-29T12:00:00",
                       "data": forged }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Delayed: the core is down when Toss delivers the console cancel; Toss retries until it
    // is back, and the edge never acknowledges what it could not hand off.
    let mut core = stack.core;
    core.process.stop();
    stack_console_cancel(&stack.sandbox.url, &key, 4_000).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir = scratch_dir("payments_webhooks_restart");
    core.restart(&dir).await;
    let stack = Stack { core, ..stack };
    stack
        .eventually("the cancel applied", async |s| {
            s.payment(user, &order_id).await["canceled_amount"] == 4_000
        })
        .await;
    stack
        .eventually("every delivery processed", async |s| {
            s.unprocessed_webhooks().await == 0
        })
        .await;
    assert_eq!(stack.balance(user).await, 6_000, "4,000 removed once");
    let deliveries = stack.sandbox_get("/sandbox/toss/webhook/deliveries").await;
    let failed_first = deliveries
        .as_array()
        .is_some_and(|all| all.iter().any(|d| d["status"] != 200));
    assert!(
        failed_first,
        "some delivery failed while the core was down: {deliveries}"
    );
    stack.assert_sound().await;
}

async fn stack_console_cancel(sandbox_url: &str, key: &str, amount: i64) {
    let response = client()
        .post(format!(
            "{sandbox_url}/sandbox/toss/payments/{key}/console-cancel"
        ))
        .json(&json!({ "cancelAmount": amount, "cancelReason": "console" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

#[tokio::test]
async fn a_refund_of_partly_spent_points_returns_exactly_the_unused_part_once() {
    let stack = workers_stack("payments_refund").await;
    let user = "buyer_refund";
    let (order_id, key) = stack.buy(user, 10_000).await;
    // Spend 3,000 on a challenge.
    let (status, challenge) = stack
        .edge(
            "POST",
            "/v1/challenges",
            user,
            Some(nene_e2e::challenge_body("Morning run", 3_000, 10)),
        )
        .await;
    assert_eq!(status, 201, "{challenge}");
    let challenge_id = challenge["id"].as_str().unwrap_or_default();
    let (status, joined) = stack
        .edge(
            "POST",
            &format!("/v1/challenges/{challenge_id}/join"),
            user,
            None,
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    assert_eq!(stack.balance(user).await, 7_000);

    let refund = |key: &'static str| {
        client()
            .post(format!("{}/v1/payments/{order_id}/refund", stack.edge_url))
            .bearer_auth(token_for(user))
            .header("Idempotency-Key", key)
            .send()
    };
    let (status, first) = json_of(refund("refund-1").await.unwrap()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (&first["amount"], &first["state"]),
        (&json!(7_000), &json!("done"))
    );
    let (status, replay) = json_of(refund("refund-1").await.unwrap()).await;
    assert_eq!((status, &replay), (200, &first));
    let (status, again) = json_of(refund("refund-2").await.unwrap()).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("NOTHING_TO_REFUND"))
    );

    let toss = stack.toss(&key).await;
    assert_eq!(
        (&toss["status"], &toss["balanceAmount"]),
        (&json!("PARTIAL_CANCELED"), &json!(3_000))
    );
    assert_eq!(stack.balance(user).await, 0);
    stack
        .eventually("toss's webhook about our cancel processed", async |s| {
            s.unprocessed_webhooks().await == 0
        })
        .await;
    assert_eq!(
        stack.balance(user).await,
        0,
        "our own cancel is not taken twice"
    );
    stack.assert_sound().await;
}

#[tokio::test]
async fn buying_and_refunding_through_the_spin_component_goes_straight_to_the_core() {
    let stack = spin_stack("payments_spin").await;
    let user = "buyer_spin";
    let (order_id, key) = stack.buy(user, 8_000).await;
    assert_eq!(stack.balance(user).await, 8_000);
    let (status, refund) = stack
        .edge(
            "POST",
            &format!("/v1/payments/{order_id}/refund"),
            user,
            None,
        )
        .await;
    assert_eq!(
        (status, &refund["amount"]),
        (200, &json!(8_000)),
        "{refund}"
    );
    assert_eq!(stack.toss(&key).await["status"], "CANCELED");
    assert_eq!(stack.balance(user).await, 0);
    stack.assert_sound().await;
}

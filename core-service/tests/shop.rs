//! The points shop in the core (issue 18) against a real Postgres: every refusal, a flash sale that
//! cannot oversell, one user's limit under concurrency, a try that expires, cancels that give the
//! same lots back, events the database will not let anyone change, and projections that a rebuild
//! from the events reproduces exactly. Every scenario that moves points ends with the ledger's
//! invariant checker clean.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_sound, p};

use nene_core::{
    ledger::{self, *},
    shop::{self, OrderView, ProductQuery, ShopError},
};
use nene_domain::{
    ErrorCode,
    idempotency::IdempotencyKey,
    shop::{OrderState, ProductDetails, ProductError, ProductInput, ProductKind, ProductSpec},
};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

const ADMIN: &str = "shop-admin";

fn admins() -> Vec<String> {
    vec![ADMIN.to_owned()]
}

fn input(kind: ProductKind, price: i64, stock: Option<i64>) -> ProductInput {
    ProductInput {
        name: "Coffee voucher".to_owned(),
        description: "One cup".to_owned(),
        category: "cafe".to_owned(),
        kind: Some(kind),
        price,
        stock,
        images: vec!["https://cdn.example.com/coffee.png".to_owned()],
        per_user_limit: None,
        sale_starts_at: None,
        sale_ends_at: None,
    }
}

/// A published product made from `input`.
async fn published(db: &PgPool, input: &ProductInput) -> shop::Product {
    let spec = ProductSpec::parse(input).unwrap();
    let product = shop::create_product(db, &admins(), ADMIN, &spec)
        .await
        .unwrap();
    shop::set_published(db, &admins(), ADMIN, product.id, true)
        .await
        .unwrap()
}

async fn goods(db: &PgPool, price: i64, stock: i64) -> shop::Product {
    published(db, &input(ProductKind::Goods, price, Some(stock))).await
}

/// Funds `user` with one lot of `points` per entry of `lots`, oldest first.
async fn fund(db: &PgPool, user: &str, lots: &[i64]) -> AccountId {
    let mut tx = db.begin().await.unwrap();
    let wallet = ensure_wallet_in_tx(&mut tx, user).await.unwrap();
    for (i, points) in lots.iter().enumerate() {
        credit_in_tx(
            &mut tx,
            &Credit {
                key: IdempotencyKey::parse(&format!("charge:{user}:{i}")).unwrap(),
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: p(*points),
                source: LotSource::Charge,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    wallet
}

async fn fund_many(db: &PgPool, users: &[String], points: i64) {
    for user in users {
        fund(db, user, &[points]).await;
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

async fn place(db: &PgPool, user: &str, product: Uuid) -> Result<OrderView, ShopError> {
    shop::place_order(db, user, product, &key(&Uuid::now_v7().to_string())).await
}

async fn balance(db: &PgPool, wallet: AccountId) -> WalletBalance {
    let mut conn = db.acquire().await.unwrap();
    wallet_balance(&mut conn, wallet).await.unwrap()
}

async fn stock(db: &PgPool, product: Uuid) -> Option<i64> {
    sqlx::query_scalar("SELECT stock::int8 FROM shop_products WHERE id = $1")
        .bind(product)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn shop_sales(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::int8 FROM ledger_entries WHERE account_id = $1",
    )
    .bind(ledger::system_account(SystemAccount::ShopSales))
    .fetch_one(db)
    .await
    .unwrap()
}

fn code_of(result: Result<impl std::fmt::Debug, ShopError>) -> ErrorCode {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(error) => error.code(),
    }
}

#[test]
fn every_product_validation_is_a_422_naming_its_field() {
    let base = input(ProductKind::Goods, 1_000, Some(5));
    let cases: Vec<(&str, ProductInput)> = vec![
        (
            "price",
            ProductInput {
                price: 0,
                ..base.clone()
            },
        ),
        (
            "price",
            ProductInput {
                price: 10_000_001,
                ..base.clone()
            },
        ),
        (
            "stock",
            ProductInput {
                stock: Some(-1),
                ..base.clone()
            },
        ),
        (
            "stock",
            ProductInput {
                stock: Some(1_000_001),
                ..base.clone()
            },
        ),
        (
            "name",
            ProductInput {
                name: " ".to_owned(),
                ..base.clone()
            },
        ),
        (
            "name",
            ProductInput {
                name: "x".repeat(101),
                ..base.clone()
            },
        ),
        (
            "description",
            ProductInput {
                description: "x".repeat(5_001),
                ..base.clone()
            },
        ),
        (
            "category",
            ProductInput {
                category: "a b".to_owned(),
                ..base.clone()
            },
        ),
        (
            "images",
            ProductInput {
                images: vec!["http://a.example/x.png".to_owned()],
                ..base.clone()
            },
        ),
        (
            "images",
            ProductInput {
                images: vec!["https://a.example/x".to_owned(); 9],
                ..base.clone()
            },
        ),
        (
            "per_user_limit",
            ProductInput {
                per_user_limit: Some(0),
                ..base.clone()
            },
        ),
        (
            "sale_starts_at",
            ProductInput {
                sale_starts_at: Some("2026-02-01T00:00:00Z".to_owned()),
                sale_ends_at: Some("2026-01-01T00:00:00Z".to_owned()),
                ..base.clone()
            },
        ),
        (
            "kind",
            ProductInput {
                kind: None,
                ..base.clone()
            },
        ),
        (
            "stock",
            ProductInput {
                kind: Some(ProductKind::GiftCard),
                stock: Some(3),
                ..base.clone()
            },
        ),
    ];
    for (field, case) in cases {
        let error: ProductError = ProductSpec::parse(&case).unwrap_err();
        assert_eq!(error.field(), field, "{case:?}");
        let error = ShopError::from(error);
        assert_eq!(error.code().http_status(), 422, "{field}");
        assert!(error.to_string().starts_with(field), "{error}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn the_schema_refuses_what_the_domain_refuses_and_stock_below_zero(db: PgPool) {
    let product = goods(&db, 1_000, 1).await;
    for statement in [
        "UPDATE shop_products SET price = 0 WHERE id = $1",
        "UPDATE shop_products SET price = 10000001 WHERE id = $1",
        "UPDATE shop_products SET stock = -1 WHERE id = $1",
        "UPDATE shop_products SET stock = 1000001 WHERE id = $1",
        "UPDATE shop_products SET name = '' WHERE id = $1",
        "UPDATE shop_products SET name = repeat('x', 101) WHERE id = $1",
        "UPDATE shop_products SET per_user_limit = 0 WHERE id = $1",
        "UPDATE shop_products SET sale_starts_at = now(), sale_ends_at = now() WHERE id = $1",
    ] {
        let refused = sqlx::query(statement).bind(product.id).execute(&db).await;
        assert!(refused.is_err(), "{statement} was stored");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn only_admins_create_edit_publish_restock_and_load_codes(db: PgPool) {
    let spec = ProductSpec::parse(&input(ProductKind::Goods, 1_000, Some(1))).unwrap();
    let refused = shop::create_product(&db, &admins(), "someone", &spec).await;
    assert_eq!(code_of(refused), ErrorCode::Forbidden);
    let product = shop::create_product(&db, &admins(), ADMIN, &spec)
        .await
        .unwrap();
    assert!(!product.published);
    let details = ProductDetails::parse(&input(ProductKind::Goods, 2_000, None)).unwrap();
    let id = product.id;
    assert_eq!(
        code_of(shop::edit_product(&db, &admins(), "someone", id, &details).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(shop::set_published(&db, &admins(), "someone", id, true).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(shop::restock(&db, &admins(), "someone", id, 5).await),
        ErrorCode::Forbidden
    );
    let codes = vec!["A".to_owned()];
    assert_eq!(
        code_of(shop::load_gift_codes(&db, &admins(), "someone", id, &codes).await),
        ErrorCode::Forbidden
    );
    let edited = shop::edit_product(&db, &admins(), ADMIN, id, &details)
        .await
        .unwrap();
    assert_eq!((edited.price, edited.stock), (2_000, Some(1)));
    let restocked = shop::restock(&db, &admins(), ADMIN, id, 4).await.unwrap();
    assert_eq!(restocked.stock, Some(5));
    assert_eq!(
        code_of(shop::restock(&db, &admins(), ADMIN, id, 1_000_000).await),
        ErrorCode::ValidationFailed
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_public_sees_published_products_by_category_a_page_at_a_time(db: PgPool) {
    let mut made = Vec::new();
    for i in 0..5 {
        let mut item = input(ProductKind::Goods, 100 + i, Some(3));
        item.category = if i % 2 == 0 { "cafe" } else { "goods" }.to_owned();
        made.push(published(&db, &item).await.id);
    }
    let hidden = shop::create_product(
        &db,
        &admins(),
        ADMIN,
        &ProductSpec::parse(&input(ProductKind::Goods, 5, Some(1))).unwrap(),
    )
    .await
    .unwrap();
    let first = shop::list_products(
        &db,
        &ProductQuery {
            category: Some("cafe".to_owned()),
            cursor: None,
            limit: Some(2),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        first.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![made[4], made[2]]
    );
    let rest = shop::list_products(
        &db,
        &ProductQuery {
            category: Some("cafe".to_owned()),
            cursor: first.next_cursor.clone(),
            limit: Some(2),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        rest.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![made[0]]
    );
    assert_eq!(rest.next_cursor, None);
    let all = shop::list_products(&db, &ProductQuery::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
    assert!(all.items.iter().all(|p| p.id != hidden.id));
    assert_eq!(
        code_of(shop::published_product(&db, hidden.id).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        shop::published_product(&db, made[1]).await.unwrap().price,
        101
    );
    let bad = ProductQuery {
        cursor: Some("nope".to_owned()),
        ..ProductQuery::default()
    };
    assert_eq!(
        code_of(shop::list_products(&db, &bad).await),
        ErrorCode::ValidationFailed
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn orders_are_refused_when_sold_out_over_the_limit_short_of_points_unpublished_or_off_sale(
    db: PgPool,
) {
    fund(&db, "buyer", &[10_000]).await;
    fund(&db, "poor", &[10]).await;
    let one = goods(&db, 1_000, 1).await;
    place(&db, "buyer", one.id).await.unwrap();
    assert_eq!(
        code_of(place(&db, "buyer", one.id).await),
        ErrorCode::SoldOut
    );

    let mut limited = input(ProductKind::Goods, 100, Some(10));
    limited.per_user_limit = Some(1);
    let limited = published(&db, &limited).await;
    place(&db, "buyer", limited.id).await.unwrap();
    assert_eq!(
        code_of(place(&db, "buyer", limited.id).await),
        ErrorCode::PurchaseLimitReached
    );

    let plenty = goods(&db, 1_000, 10).await;
    assert_eq!(
        code_of(place(&db, "poor", plenty.id).await),
        ErrorCode::InsufficientPoints
    );
    assert_eq!(
        stock(&db, plenty.id).await,
        Some(10),
        "a refused try keeps no unit"
    );

    shop::set_published(&db, &admins(), ADMIN, plenty.id, false)
        .await
        .unwrap();
    assert_eq!(
        code_of(place(&db, "buyer", plenty.id).await),
        ErrorCode::NotFound
    );

    let mut later = input(ProductKind::Goods, 100, Some(10));
    later.sale_starts_at = Some("2999-01-01T00:00:00Z".to_owned());
    let later = published(&db, &later).await;
    assert_eq!(
        code_of(place(&db, "buyer", later.id).await),
        ErrorCode::NotOnSale
    );
    let mut over = input(ProductKind::Goods, 100, Some(10));
    over.sale_starts_at = Some("2000-01-01T00:00:00Z".to_owned());
    over.sale_ends_at = Some("2001-01-01T00:00:00Z".to_owned());
    let over = published(&db, &over).await;
    assert_eq!(
        code_of(place(&db, "buyer", over.id).await),
        ErrorCode::NotOnSale
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn an_idempotency_key_places_one_order_and_refuses_another_product(db: PgPool) {
    fund(&db, "buyer", &[10_000]).await;
    let product = goods(&db, 1_000, 5).await;
    let other = goods(&db, 1_000, 5).await;
    let first = shop::place_order(&db, "buyer", product.id, &key("k-1"))
        .await
        .unwrap();
    let again = shop::place_order(&db, "buyer", product.id, &key("k-1"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(stock(&db, product.id).await, Some(4));
    assert_eq!(
        code_of(shop::place_order(&db, "buyer", other.id, &key("k-1")).await),
        ErrorCode::IdempotencyKeyReused
    );
    // Another user's identical key is another order.
    fund(&db, "second", &[10_000]).await;
    let theirs = shop::place_order(&db, "second", product.id, &key("k-1"))
        .await
        .unwrap();
    assert_ne!(theirs.id, first.id);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn two_hundred_buyers_racing_for_twenty_units_get_exactly_twenty(db: PgPool) {
    const PRICE: i64 = 3_000;
    let product = goods(&db, PRICE, 20).await;
    let users: Vec<String> = (0..200).map(|i| format!("racer-{i}")).collect();
    fund_many(&db, &users, 10_000).await;
    let mut tasks = Vec::new();
    for user in users.clone() {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let placed = place(&db, &user, product.id).await?;
            shop::confirm_order(&db, &user, placed.id).await
        }));
    }
    let mut confirmed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(order) => {
                assert_eq!(order.state, OrderState::Confirmed);
                confirmed += 1;
            }
            Err(error) => assert_eq!(error.code(), ErrorCode::SoldOut, "{error}"),
        }
    }
    assert_eq!(confirmed, 20);
    assert_eq!(stock(&db, product.id).await, Some(0));
    assert_eq!(shop_sales(&db).await, 20 * PRICE);
    let held: i64 = sqlx::query_scalar("SELECT coalesce(sum(held), 0)::int8 FROM ledger_wallets")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(held, 0, "no points left held by a refused try");
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn one_user_ordering_fifty_times_at_once_with_a_limit_of_two_gets_two(db: PgPool) {
    let mut limited = input(ProductKind::Goods, 500, Some(100));
    limited.per_user_limit = Some(2);
    let product = published(&db, &limited).await;
    let wallet = fund(&db, "eager", &[100_000]).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            place(&db, "eager", product.id).await
        }));
    }
    let mut placed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => placed += 1,
            Err(error) => assert_eq!(error.code(), ErrorCode::PurchaseLimitReached, "{error}"),
        }
    }
    assert_eq!(placed, 2);
    assert_eq!(stock(&db, product.id).await, Some(98));
    assert_eq!(balance(&db, wallet).await.held.get(), 1_000);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_try_never_confirmed_gives_back_its_points_and_unit_after_its_deadline(db: PgPool) {
    let product = goods(&db, 2_000, 1).await;
    let wallet = fund(&db, "slow", &[5_000]).await;
    let order = place(&db, "slow", product.id).await.unwrap();
    assert_eq!(balance(&db, wallet).await.available.get(), 3_000);
    assert_eq!(
        shop::expire_overdue(&db, 100).await.unwrap(),
        0,
        "not due yet"
    );
    sqlx::query("UPDATE test_clock SET offset_seconds = $1")
        .bind(shop::ORDER_CONFIRM_WINDOW_SECONDS)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        code_of(shop::confirm_order(&db, "slow", order.id).await),
        ErrorCode::OrderStateConflict,
        "a confirm after the deadline is refused"
    );
    assert_eq!(shop::expire_overdue(&db, 100).await.unwrap(), 1);
    let after = balance(&db, wallet).await;
    assert_eq!((after.balance.get(), after.held.get()), (5_000, 0));
    assert_eq!(stock(&db, product.id).await, Some(1));
    assert_eq!(
        shop::order(&db, "slow", order.id).await.unwrap().state,
        OrderState::Canceled
    );
    // The maintenance pass runs the same sweep; nothing is left for it or the ledger's.
    nene_core::maintenance::run_once(&db).await.unwrap();
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_try_whose_hold_the_ledger_released_first_still_gives_back_its_unit(db: PgPool) {
    let product = goods(&db, 2_000, 1).await;
    let wallet = fund(&db, "late", &[5_000]).await;
    let order = place(&db, "late", product.id).await.unwrap();
    // Past the hold's own expiry, and the ledger's sweep runs before the shop's.
    sqlx::query("UPDATE test_clock SET offset_seconds = $1")
        .bind(shop::ORDER_CONFIRM_WINDOW_SECONDS + shop::HOLD_GRACE_SECONDS)
        .execute(&db)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    assert_eq!(release_expired_holds_in_tx(&mut tx, 10).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert_eq!(shop::expire_overdue(&db, 100).await.unwrap(), 1);
    assert_eq!(stock(&db, product.id).await, Some(1));
    assert_eq!(balance(&db, wallet).await.available.get(), 5_000);
    assert_eq!(
        shop::order(&db, "late", order.id).await.unwrap().state,
        OrderState::Canceled
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn one_buyer_placing_confirming_and_canceling_at_once_never_deadlocks(db: PgPool) {
    let product = goods(&db, 100, 1_000).await;
    let wallet = fund(&db, "busy", &[1_000_000]).await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let order = place(&db, "busy", product.id).await?;
            shop::confirm_order(&db, "busy", order.id).await?;
            shop::cancel_order(&db, "busy", order.id).await
        }));
    }
    for task in tasks {
        let canceled = task.await.unwrap().unwrap();
        assert_eq!(canceled.state, OrderState::Canceled);
    }
    assert_eq!(stock(&db, product.id).await, Some(1_000));
    assert_eq!(balance(&db, wallet).await.balance.get(), 1_000_000);
    let counted: i32 = sqlx::query_scalar("SELECT units FROM shop_purchase_counts")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(counted, 0);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn canceling_a_confirmed_order_puts_the_points_back_into_the_same_lots(db: PgPool) {
    let product = goods(&db, 1_500, 3).await;
    // Two lots: the order takes all of the first and half of the second.
    let wallet = fund(&db, "lots", &[1_000, 1_000]).await;
    let before = balance(&db, wallet).await;
    let order = place(&db, "lots", product.id).await.unwrap();
    let confirmed = shop::confirm_order(&db, "lots", order.id).await.unwrap();
    assert_eq!(confirmed.state, OrderState::Confirmed);
    assert_eq!(balance(&db, wallet).await.balance.get(), 500);
    let canceled = shop::cancel_order(&db, "lots", order.id).await.unwrap();
    assert_eq!(canceled.state, OrderState::Canceled);
    let after = balance(&db, wallet).await;
    assert_eq!(after.balance, before.balance);
    let lots = |b: &WalletBalance| -> Vec<(LotId, i64)> {
        b.lots.iter().map(|l| (l.id, l.remaining.get())).collect()
    };
    assert_eq!(lots(&after), lots(&before), "the same lots, not a new one");
    assert_eq!(stock(&db, product.id).await, Some(3));
    assert_eq!(shop_sales(&db).await, 0);
    // Canceled is final; someone else's order is not there.
    assert_eq!(
        code_of(shop::confirm_order(&db, "lots", order.id).await),
        ErrorCode::OrderStateConflict
    );
    assert_eq!(
        code_of(shop::cancel_order(&db, "stranger", order.id).await),
        ErrorCode::NotFound
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_gift_card_sells_each_code_once_and_an_admin_refund_notifies_the_buyer(db: PgPool) {
    let card = published(&db, &input(ProductKind::GiftCard, 1_000, None)).await;
    assert!(card.sold_out);
    let codes: Vec<String> = vec!["CODE-1".into(), "CODE-2".into(), "CODE-1".into()];
    let loaded = shop::load_gift_codes(&db, &admins(), ADMIN, card.id, &codes)
        .await
        .unwrap();
    assert_eq!((loaded.loaded, loaded.duplicates, loaded.stock), (2, 1, 2));
    let wallet = fund(&db, "giver", &[5_000]).await;
    fund(&db, "other", &[5_000]).await;
    let mine = place(&db, "giver", card.id).await.unwrap();
    let theirs = place(&db, "other", card.id).await.unwrap();
    assert_eq!(
        code_of(place(&db, "giver", card.id).await),
        ErrorCode::SoldOut
    );
    let mine = shop::confirm_order(&db, "giver", mine.id).await.unwrap();
    let theirs = shop::confirm_order(&db, "other", theirs.id).await.unwrap();
    assert_eq!(mine.state, OrderState::Fulfilled);
    assert_ne!(mine.gift_code, theirs.gift_code);
    assert!(mine.gift_code.is_some());
    // Only the buyer sees the code; a fulfilled order is past the buyer's cancel.
    assert_eq!(
        code_of(shop::order(&db, "other", mine.id).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code_of(shop::cancel_order(&db, "giver", mine.id).await),
        ErrorCode::OrderStateConflict
    );
    assert_eq!(
        code_of(shop::admin_cancel(&db, &admins(), "giver", mine.id).await),
        ErrorCode::Forbidden
    );
    let refunded = shop::admin_cancel(&db, &admins(), ADMIN, mine.id)
        .await
        .unwrap();
    assert_eq!(refunded.state, OrderState::Refunded);
    assert_eq!(balance(&db, wallet).await.balance.get(), 5_000);
    // The code was shown: it is never sold again.
    assert_eq!(stock(&db, card.id).await, Some(0));
    let resold = sqlx::query("UPDATE shop_gift_codes SET order_id = $1 WHERE order_id = $2")
        .bind(Uuid::now_v7())
        .bind(mine.id)
        .execute(&db)
        .await;
    assert!(resold.is_err(), "a sold code was reassigned");
    let notified: Vec<(String, Value)> =
        sqlx::query_as("SELECT kind, payload FROM notifications WHERE user_id = 'giver'")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(notified.len(), 1);
    assert_eq!(notified[0].0, "shop_order_canceled");
    assert_eq!(notified[0].1["amount"], 1_000);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn an_admin_refund_of_fulfilled_goods_returns_the_unit_and_the_lots(db: PgPool) {
    let product = goods(&db, 700, 2).await;
    let wallet = fund(&db, "shopper", &[1_000]).await;
    let before = balance(&db, wallet).await;
    let order = place(&db, "shopper", product.id).await.unwrap();
    shop::confirm_order(&db, "shopper", order.id).await.unwrap();
    assert_eq!(
        code_of(shop::fulfil_order(&db, &admins(), "shopper", order.id).await),
        ErrorCode::Forbidden
    );
    let sent = shop::fulfil_order(&db, &admins(), ADMIN, order.id)
        .await
        .unwrap();
    assert_eq!(sent.state, OrderState::Fulfilled);
    shop::admin_cancel(&db, &admins(), ADMIN, order.id)
        .await
        .unwrap();
    let after = balance(&db, wallet).await;
    assert_eq!(after.balance, before.balance);
    assert_eq!(after.lots[0].id, before.lots[0].id);
    assert_eq!(stock(&db, product.id).await, Some(2));
    assert_eq!(
        code_of(shop::admin_cancel(&db, &admins(), ADMIN, order.id).await),
        ErrorCode::OrderStateConflict
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn order_events_cannot_be_updated_or_deleted(db: PgPool) {
    let product = goods(&db, 100, 1).await;
    fund(&db, "buyer", &[1_000]).await;
    let order = place(&db, "buyer", product.id).await.unwrap();
    for statement in [
        "UPDATE shop_order_events SET data = '{}' WHERE order_id = $1",
        "DELETE FROM shop_order_events WHERE order_id = $1",
    ] {
        let refused = sqlx::query(statement).bind(order.id).execute(&db).await;
        let error = refused.expect_err(statement);
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    let truncated = sqlx::query("TRUNCATE shop_order_events").execute(&db).await;
    assert!(truncated.is_err());
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM shop_order_events WHERE order_id = $1")
            .bind(order.id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(events, 3, "placed, stock reserved, points held");
}

/// Both projections as rows of JSON, in a fixed order.
async fn projections(db: &PgPool) -> (Vec<Value>, Vec<Value>) {
    let orders = sqlx::query_scalar("SELECT to_jsonb(o) FROM shop_orders o ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap();
    let lists =
        sqlx::query_scalar("SELECT to_jsonb(u) FROM shop_user_orders u ORDER BY user_id, order_id")
            .fetch_all(db)
            .await
            .unwrap();
    (orders, lists)
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rebuild_from_the_events_equals_the_live_projections_after_a_mixed_history(db: PgPool) {
    let product = goods(&db, 300, 10).await;
    let card = published(&db, &input(ProductKind::GiftCard, 200, None)).await;
    shop::load_gift_codes(&db, &admins(), ADMIN, card.id, &["G-1".to_owned()])
        .await
        .unwrap();
    for user in ["a", "b", "c", "d"] {
        fund(&db, user, &[5_000]).await;
    }
    // Reserved, confirmed, canceled before and after a confirm, fulfilled and refunded, expired.
    place(&db, "a", product.id).await.unwrap();
    let b = place(&db, "b", product.id).await.unwrap();
    shop::confirm_order(&db, "b", b.id).await.unwrap();
    let c = place(&db, "c", product.id).await.unwrap();
    shop::cancel_order(&db, "c", c.id).await.unwrap();
    let c2 = place(&db, "c", product.id).await.unwrap();
    shop::confirm_order(&db, "c", c2.id).await.unwrap();
    shop::cancel_order(&db, "c", c2.id).await.unwrap();
    let d = place(&db, "d", product.id).await.unwrap();
    shop::confirm_order(&db, "d", d.id).await.unwrap();
    shop::fulfil_order(&db, &admins(), ADMIN, d.id)
        .await
        .unwrap();
    shop::admin_cancel(&db, &admins(), ADMIN, d.id)
        .await
        .unwrap();
    let g = place(&db, "d", card.id).await.unwrap();
    shop::confirm_order(&db, "d", g.id).await.unwrap();
    sqlx::query("UPDATE test_clock SET offset_seconds = 10000")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(shop::expire_overdue(&db, 100).await.unwrap(), 1, "a's try");

    let live = projections(&db).await;
    assert_eq!(live.0.len(), 6);
    let written = shop::rebuild(&db).await.unwrap();
    assert_eq!(written, 6);
    let rebuilt = projections(&db).await;
    assert_eq!(rebuilt, live);
    let mut conn = db.acquire().await.unwrap();
    let folded = shop::projections_from_events(&mut conn).await.unwrap();
    let states: Vec<OrderState> = folded.iter().map(|o| o.state).collect();
    // By id, which is placement order: a expired, b confirmed, c and c2 canceled, d refunded, g
    // fulfilled.
    assert_eq!(
        states,
        vec![
            OrderState::Canceled,
            OrderState::Confirmed,
            OrderState::Canceled,
            OrderState::Canceled,
            OrderState::Refunded,
            OrderState::Fulfilled,
        ]
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rebuild_while_orders_are_placed_and_confirmed_neither_fails_nor_loses_a_step(
    db: PgPool,
) {
    let product = goods(&db, 100, 1_000).await;
    let users: Vec<String> = (0..30).map(|i| format!("shopper-{i}")).collect();
    fund_many(&db, &users, 1_000).await;
    let mut tasks = Vec::new();
    for user in users {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let order = place(&db, &user, product.id).await?;
            shop::confirm_order(&db, &user, order.id).await.map(|_| ())
        }));
    }
    for _ in 0..5 {
        shop::rebuild(&db).await.unwrap();
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let live = projections(&db).await;
    assert_eq!(live.0.len(), 30);
    shop::rebuild(&db).await.unwrap();
    assert_eq!(projections(&db).await, live);
    assert_sound(&db).await;
}

//! Products: an admin creates, edits, publishes, unpublishes and restocks them and loads gift
//! codes; anyone lists the published ones (by category, newest first, cursor paging) and views
//! one.

use nene_domain::{
    shop::{ProductDetails, ProductKind, ProductSpec, restock_units},
    time::format_rfc3339,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{ShopError, require_admin};

/// Longest page of products.
pub const PRODUCT_PAGE_LIMIT_MAX: i64 = 100;
/// A page of products when the client names no limit.
pub const PRODUCT_PAGE_LIMIT_DEFAULT: i64 = 20;
/// Most gift codes one load takes: one statement's array, and a list an admin can check by eye.
pub const GIFT_CODES_PER_LOAD_MAX: usize = 1_000;
/// Longest gift code, in characters (the column's CHECK).
pub const GIFT_CODE_CHARS_MAX: usize = 200;

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub kind: ProductKind,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: i64,
    /// Units left; `None` for goods without a limit.
    pub stock: Option<i64>,
    pub sold_out: bool,
    pub images: Vec<String>,
    pub per_user_limit: Option<i64>,
    pub sale_starts_at: Option<String>,
    pub sale_ends_at: Option<String>,
    pub published: bool,
}

/// A page of products, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// What a gift-code load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodesLoaded {
    /// New codes, now in stock.
    pub loaded: i64,
    /// Codes the product already had, skipped.
    pub duplicates: i64,
    /// The product's stock after the load.
    pub stock: i64,
}

/// A product's row, as every read selects it (times as unix seconds).
struct ProductRow {
    id: Uuid,
    kind: ProductKind,
    name: String,
    description: String,
    category: String,
    price: i64,
    stock: Option<i64>,
    images: Vec<String>,
    per_user_limit: Option<i64>,
    sale_starts_at: Option<i64>,
    sale_ends_at: Option<i64>,
    published: bool,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Product {
            id: row.id,
            kind: row.kind,
            name: row.name,
            description: row.description,
            category: row.category,
            price: row.price,
            sold_out: row.stock == Some(0),
            stock: row.stock,
            images: row.images,
            per_user_limit: row.per_user_limit,
            sale_starts_at: row.sale_starts_at.map(format_rfc3339),
            sale_ends_at: row.sale_ends_at.map(format_rfc3339),
            published: row.published,
        }
    }
}

/// A per-user limit as its column holds it; a limit past `i32` (never parsed: the bound fits) is
/// refused rather than stored as "no limit".
fn column_limit(limit: Option<u32>) -> Result<Option<i32>, ShopError> {
    limit
        .map(|limit| {
            i32::try_from(limit).map_err(|_| nene_domain::shop::ProductError::PerUserLimit.into())
        })
        .transpose()
}

/// The product `id` (published or not).
///
/// # Errors
/// `NotFound`, `Database`.
pub async fn product(conn: &mut PgConnection, id: Uuid) -> Result<Product, ShopError> {
    sqlx::query_as!(
        ProductRow,
        r#"SELECT id, kind AS "kind: ProductKind", name, description, category, price,
                  stock::int8 AS stock, images, per_user_limit::int8 AS per_user_limit,
                  extract(epoch FROM sale_starts_at)::int8 AS sale_starts_at,
                  extract(epoch FROM sale_ends_at)::int8 AS sale_ends_at, published
           FROM shop_products WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(Product::from)
    .ok_or(ShopError::NotFound("product"))
}

/// A published product, as the public sees it: an unpublished one does not exist for them.
///
/// # Errors
/// `NotFound`, `Database`.
pub async fn published_product(db: &PgPool, id: Uuid) -> Result<Product, ShopError> {
    let mut conn = db.acquire().await?;
    match product(&mut conn, id).await? {
        found if found.published => Ok(found),
        _ => Err(ShopError::NotFound("product")),
    }
}

/// Creates `spec` as an unpublished product.
///
/// # Errors
/// `NotAnAdmin`, `Database`.
pub async fn create_product(
    db: &PgPool,
    admins: &[String],
    user: &str,
    spec: &ProductSpec,
) -> Result<Product, ShopError> {
    require_admin(admins, user)?;
    let id = Uuid::now_v7();
    let details = &spec.details;
    let mut conn = db.acquire().await?;
    sqlx::query!(
        "INSERT INTO shop_products (id, kind, name, description, category, price, stock, images, \
             per_user_limit, sale_starts_at, sale_ends_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::int8), to_timestamp($11::int8))",
        id,
        spec.kind as ProductKind,
        details.name,
        details.description,
        details.category,
        details.price.get(),
        spec.stock.units(),
        &details.images,
        column_limit(details.per_user_limit)?,
        details.sale.starts_at,
        details.sale.ends_at,
    )
    .execute(&mut *conn)
    .await?;
    product(&mut conn, id).await
}

/// Replaces the editable fields of product `id` (its kind and stock stay).
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `Database`.
pub async fn edit_product(
    db: &PgPool,
    admins: &[String],
    user: &str,
    id: Uuid,
    details: &ProductDetails,
) -> Result<Product, ShopError> {
    require_admin(admins, user)?;
    let mut conn = db.acquire().await?;
    let updated = sqlx::query!(
        "UPDATE shop_products SET name = $2, description = $3, category = $4, price = $5, \
             images = $6, per_user_limit = $7, sale_starts_at = to_timestamp($8::int8), \
             sale_ends_at = to_timestamp($9::int8), updated_at = now() \
         WHERE id = $1",
        id,
        details.name,
        details.description,
        details.category,
        details.price.get(),
        &details.images,
        column_limit(details.per_user_limit)?,
        details.sale.starts_at,
        details.sale.ends_at,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(ShopError::NotFound("product"));
    }
    product(&mut conn, id).await
}

/// Publishes (`true`) or unpublishes product `id`. Orders already placed are not touched.
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `Database`.
pub async fn set_published(
    db: &PgPool,
    admins: &[String],
    user: &str,
    id: Uuid,
    published: bool,
) -> Result<Product, ShopError> {
    require_admin(admins, user)?;
    let mut conn = db.acquire().await?;
    let updated = sqlx::query!(
        "UPDATE shop_products SET published = $2, updated_at = now() WHERE id = $1",
        id,
        published
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(ShopError::NotFound("product"));
    }
    product(&mut conn, id).await
}

/// Adds `units` to the stock of goods `id`. A gift card's stock moves only with its codes, and
/// unlimited goods have no stock to add to.
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `Invalid` (units out of bounds, or the stock past its bound),
/// `InvalidRequest` (a gift card, or unlimited goods), `Database`.
pub async fn restock(
    db: &PgPool,
    admins: &[String],
    user: &str,
    id: Uuid,
    units: i64,
) -> Result<Product, ShopError> {
    require_admin(admins, user)?;
    let mut tx = db.begin().await?;
    let row = sqlx::query!(
        r#"SELECT kind AS "kind: ProductKind", stock::int8 AS stock
           FROM shop_products WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ShopError::NotFound("product"))?;
    if row.kind == ProductKind::GiftCard {
        return Err(ShopError::InvalidRequest(
            "a gift card's stock is its codes: load codes instead",
        ));
    }
    let on_hand = row.stock.ok_or(ShopError::InvalidRequest(
        "unlimited goods have no stock to add to",
    ))?;
    let units = restock_units(units, on_hand)?;
    sqlx::query!(
        "UPDATE shop_products SET stock = stock + $2, updated_at = now() WHERE id = $1",
        id,
        i32::try_from(units).map_err(|_| ShopError::Inconsistent("restock past i32"))?
    )
    .execute(&mut *tx)
    .await?;
    let product = product(&mut tx, id).await?;
    tx.commit().await?;
    Ok(product)
}

/// Loads `codes` into gift card `id`'s pool: each new code is a unit of stock; a code the product
/// already has is skipped (a load sent twice adds nothing).
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `InvalidRequest` (goods, an empty or over-long list or code),
/// `Invalid` (the stock past its bound), `Database`.
pub async fn load_gift_codes(
    db: &PgPool,
    admins: &[String],
    user: &str,
    id: Uuid,
    codes: &[String],
) -> Result<CodesLoaded, ShopError> {
    require_admin(admins, user)?;
    if codes.is_empty() || codes.len() > GIFT_CODES_PER_LOAD_MAX {
        return Err(ShopError::InvalidRequest("codes: 1–1,000 per load"));
    }
    let codes: Vec<String> = codes.iter().map(|code| code.trim().to_owned()).collect();
    if codes
        .iter()
        .any(|code| code.is_empty() || code.chars().count() > GIFT_CODE_CHARS_MAX)
    {
        return Err(ShopError::InvalidRequest("codes: each 1–200 characters"));
    }
    let mut tx = db.begin().await?;
    let row = sqlx::query!(
        r#"SELECT kind AS "kind: ProductKind", stock::int8 AS stock
           FROM shop_products WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ShopError::NotFound("product"))?;
    if row.kind != ProductKind::GiftCard {
        return Err(ShopError::InvalidRequest("only gift cards take codes"));
    }
    let ids: Vec<Uuid> = codes.iter().map(|_| Uuid::now_v7()).collect();
    let loaded = sqlx::query_scalar!(
        r#"WITH loaded AS (
               INSERT INTO shop_gift_codes (id, product_id, code)
               SELECT id, $1, code FROM UNNEST($2::uuid[], $3::text[]) AS c (id, code)
               ON CONFLICT ON CONSTRAINT shop_gift_codes_one_per_product DO NOTHING
               RETURNING 1)
           SELECT count(*) AS "count!" FROM loaded"#,
        id,
        &ids,
        &codes
    )
    .fetch_one(&mut *tx)
    .await?;
    let on_hand = row.stock.unwrap_or_default();
    let units = restock_units(loaded, on_hand)?;
    let stock = sqlx::query_scalar!(
        r#"UPDATE shop_products SET stock = stock + $2, updated_at = now() WHERE id = $1
           RETURNING stock::int8 AS "stock!""#,
        id,
        i32::try_from(units).map_err(|_| ShopError::Inconsistent("load past i32"))?
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let sent = i64::try_from(codes.len()).map_err(|_| ShopError::Inconsistent("code count"))?;
    Ok(CodesLoaded {
        loaded,
        duplicates: sent - loaded,
        stock,
    })
}

/// How the public list is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductQuery {
    pub category: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Published products, newest first, of one category or all, `limit` at a time after `cursor`
/// (the `next_cursor` of the page before).
///
/// # Errors
/// `InvalidRequest` for a malformed cursor or a limit out of range; `Database`.
pub async fn list_products(db: &PgPool, query: &ProductQuery) -> Result<ProductPage, ShopError> {
    let limit = query.limit.unwrap_or(PRODUCT_PAGE_LIMIT_DEFAULT);
    if !(1..=PRODUCT_PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ShopError::InvalidRequest("limit: 1–100"));
    }
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| Uuid::parse_str(cursor).map_err(|_| ShopError::InvalidRequest("cursor")))
        .transpose()?;
    let category = query.category.as_deref().map(str::trim);
    let mut items: Vec<Product> = sqlx::query_as!(
        ProductRow,
        r#"SELECT id, kind AS "kind: ProductKind", name, description, category, price,
                  stock::int8 AS stock, images, per_user_limit::int8 AS per_user_limit,
                  extract(epoch FROM sale_starts_at)::int8 AS sale_starts_at,
                  extract(epoch FROM sale_ends_at)::int8 AS sale_ends_at, published
           FROM shop_products
           WHERE published AND ($1::text IS NULL OR category = $1)
             AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
        category,
        after,
        limit + 1
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Product::from)
    .collect();
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| items.last().map(|last| last.id.to_string()))
        .flatten();
    Ok(ProductPage { items, next_cursor })
}

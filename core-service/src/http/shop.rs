//! The shop's internal HTTP API: the public list and detail, a user's orders (place, confirm,
//! cancel, view, list) and the admins' product and order management. The acting user is the one
//! the edge's signature vouches for; admins are the deployment's `SHOP_ADMINS`.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use nene_domain::{
    ErrorCode,
    internal_api::{self as api, shop as body},
    shop::{ProductDetails, ProductInput, ProductSpec},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{CoreJson, CorePath, CoreQuery, Mounted, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    shop::{
        self, CodesLoaded, OrderPage, OrderView, Product, ProductPage, ProductQuery, ShopError,
    },
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::SHOP_PRODUCTS, list)
        .at(api::SHOP_PRODUCT, detail)
        .at(api::SHOP_ORDER_PLACE, place)
        .at(api::SHOP_ORDER_CONFIRM, confirm)
        .at(api::SHOP_ORDER_CANCEL, cancel)
        .at(api::SHOP_ORDER, order)
        .at(api::SHOP_MY_ORDERS, my_orders)
        .at(api::SHOP_ADMIN_CREATE, create)
        .at(api::SHOP_ADMIN_EDIT, edit)
        .at(api::SHOP_ADMIN_PUBLISH, publish)
        .at(api::SHOP_ADMIN_RESTOCK, restock)
        .at(api::SHOP_ADMIN_GIFT_CODES, load_codes)
        .at(api::SHOP_ADMIN_FULFIL, fulfil)
        .at(api::SHOP_ADMIN_CANCEL, admin_cancel)
}

impl From<ShopError> for CoreApiError {
    fn from(error: ShopError) -> Self {
        match error {
            ShopError::Database(error) => CoreApiError::Database(error),
            ShopError::Ledger(error) => CoreApiError::Ledger(error),
            // The message names the field and its bound: it describes the request only.
            ShopError::Invalid(_) | ShopError::InvalidRequest(_) => CoreApiError::Input {
                code: error.code(),
                message: error.to_string(),
            },
            other => {
                let code = other.code();
                if code == ErrorCode::Internal {
                    tracing::error!(error = %other, "shop failed");
                }
                CoreApiError::Client(code)
            }
        }
    }
}

async fn list(
    State(state): State<Arc<AppState>>,
    CoreQuery(query): CoreQuery<ProductQuery>,
) -> Result<Json<ProductPage>, CoreApiError> {
    Ok(Json(shop::list_products(&state.db, &query).await?))
}

async fn detail(
    State(state): State<Arc<AppState>>,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<Product>, CoreApiError> {
    Ok(Json(shop::published_product(&state.db, id).await?))
}

async fn place(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
    CoreJson(order): CoreJson<body::OrderBody>,
) -> Result<(StatusCode, Json<OrderView>), CoreApiError> {
    let placed = shop::place_order(&state.db, &user, id, &order.idempotency_key).await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

async fn confirm(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<OrderView>, CoreApiError> {
    Ok(Json(shop::confirm_order(&state.db, &user, id).await?))
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<OrderView>, CoreApiError> {
    Ok(Json(shop::cancel_order(&state.db, &user, id).await?))
}

async fn order(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<OrderView>, CoreApiError> {
    Ok(Json(shop::order(&state.db, &user, id).await?))
}

#[derive(Debug, Deserialize)]
struct Paging {
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn my_orders(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreQuery(paging): CoreQuery<Paging>,
) -> Result<Json<OrderPage>, CoreApiError> {
    let page = shop::user_orders(&state.db, &user, paging.cursor.as_deref(), paging.limit).await?;
    Ok(Json(page))
}

async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreJson(input): CoreJson<ProductInput>,
) -> Result<(StatusCode, Json<Product>), CoreApiError> {
    // Who asks is checked before what is asked: a non-admin learns nothing of the rules.
    shop::require_admin(&state.shop_admins, &user)?;
    let spec = ProductSpec::parse(&input).map_err(ShopError::from)?;
    let product = shop::create_product(&state.db, &state.shop_admins, &user, &spec).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

async fn edit(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
    CoreJson(input): CoreJson<ProductInput>,
) -> Result<Json<Product>, CoreApiError> {
    shop::require_admin(&state.shop_admins, &user)?;
    let details = ProductDetails::parse(&input).map_err(ShopError::from)?;
    Ok(Json(
        shop::edit_product(&state.db, &state.shop_admins, &user, id, &details).await?,
    ))
}

async fn publish(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
    CoreJson(publish): CoreJson<body::PublishBody>,
) -> Result<Json<Product>, CoreApiError> {
    let product =
        shop::set_published(&state.db, &state.shop_admins, &user, id, publish.published).await?;
    Ok(Json(product))
}

async fn restock(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
    CoreJson(restock): CoreJson<body::RestockBody>,
) -> Result<Json<Product>, CoreApiError> {
    let product = shop::restock(&state.db, &state.shop_admins, &user, id, restock.units).await?;
    Ok(Json(product))
}

async fn load_codes(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
    CoreJson(codes): CoreJson<body::GiftCodesBody>,
) -> Result<Json<CodesLoaded>, CoreApiError> {
    let loaded =
        shop::load_gift_codes(&state.db, &state.shop_admins, &user, id, &codes.codes).await?;
    Ok(Json(loaded))
}

async fn fulfil(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<OrderView>, CoreApiError> {
    Ok(Json(
        shop::fulfil_order(&state.db, &state.shop_admins, &user, id).await?,
    ))
}

async fn admin_cancel(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CorePath(id): CorePath<Uuid>,
) -> Result<Json<OrderView>, CoreApiError> {
    Ok(Json(
        shop::admin_cancel(&state.db, &state.shop_admins, &user, id).await?,
    ))
}

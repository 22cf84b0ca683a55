//! The points shop in the core (issue 18, docs/decisions/0018-shop.md): products and their
//! management ([`products`]), orders as TCC over the ledger's holds ([`orders`]), and each order's
//! append-only events with the projections folded from them ([`events`]).
//!
//! Admins are a list in the configuration (`SHOP_ADMINS`), as reviewers are; every admin function
//! takes the list and the acting user and refuses anyone else first.

pub mod events;
pub mod orders;
pub mod products;

use nene_domain::{
    ErrorCode,
    shop::{IllegalTransition, ProductError},
};

use crate::ledger::LedgerError;

pub use events::{OrderProjection, UserOrderProjection, projections_from_events, rebuild};
pub use orders::*;
pub use products::*;

/// Why a shop operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// A product's input out of its bounds; the message names the field.
    #[error("{0}")]
    Invalid(#[from] ProductError),
    /// A request the shop cannot read (a cursor, a limit, a code list).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("only shop admins may do this")]
    NotAnAdmin,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("sold out")]
    SoldOut,
    #[error("the per-user purchase limit is reached")]
    PurchaseLimitReached,
    #[error("not on sale now")]
    NotOnSale,
    #[error("{0}")]
    IllegalStep(#[from] IllegalTransition),
    #[error("the order's deadline has passed")]
    DeadlinePassed,
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the shop's data is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event data: {0}")]
    EventData(#[from] serde_json::Error),
}

impl ShopError {
    /// The public error code for this failure.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            ShopError::Invalid(_) | ShopError::InvalidRequest(_) => ErrorCode::ValidationFailed,
            ShopError::NotAnAdmin => ErrorCode::Forbidden,
            ShopError::NotFound(_) => ErrorCode::NotFound,
            ShopError::SoldOut => ErrorCode::SoldOut,
            ShopError::PurchaseLimitReached => ErrorCode::PurchaseLimitReached,
            ShopError::NotOnSale => ErrorCode::NotOnSale,
            ShopError::IllegalStep(_) | ShopError::DeadlinePassed => ErrorCode::OrderStateConflict,
            ShopError::Ledger(error) => error.code(),
            ShopError::Inconsistent(_) | ShopError::Database(_) | ShopError::EventData(_) => {
                ErrorCode::Internal
            }
        }
    }
}

/// Whether `user` is one of the shop's `admins`.
#[must_use]
pub fn is_admin(admins: &[String], user: &str) -> bool {
    admins.iter().any(|admin| admin == user)
}

/// Refuses anyone but an admin.
///
/// # Errors
/// [`ShopError::NotAnAdmin`].
pub fn require_admin(admins: &[String], user: &str) -> Result<(), ShopError> {
    if is_admin(admins, user) {
        Ok(())
    } else {
        Err(ShopError::NotAnAdmin)
    }
}

//! The invariant checker: invariants 1, 2, 4 and 6 of docs/design.md §2 as one SQL function
//! (`ledger_check_invariants`, migration 0002). Tests call it after every scenario.

use serde::Serialize;
use sqlx::PgConnection;

use super::types::LedgerError;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Violation {
    pub invariant: String,
    pub subject: String,
    pub detail: String,
}

/// Every violation of the ledger's invariants; empty when the ledger is sound.
///
/// # Errors
/// When Postgres fails.
pub async fn check_invariants(conn: &mut PgConnection) -> Result<Vec<Violation>, LedgerError> {
    Ok(
        sqlx::query_as("SELECT invariant, subject, detail FROM ledger_check_invariants()")
            .fetch_all(conn)
            .await?,
    )
}

/// The checker's verdict in a word or two, as the benchmarks print it: `clean`, or how many
/// violations and the first of them.
#[must_use]
pub fn verdict(violations: &[Violation]) -> String {
    match violations.first() {
        None => "clean".to_owned(),
        Some(first) => format!(
            "{} violations, the first: {} {} ({})",
            violations.len(),
            first.invariant,
            first.subject,
            first.detail
        ),
    }
}

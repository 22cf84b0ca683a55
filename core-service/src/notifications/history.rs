//! A user's notifications, newest first, a page at a time (`GET /v1/notifications`).
//!
//! Ids are UUIDv7, so their order is the order they were queued in; the cursor is the last id of
//! the page before, and the next page is everything older (keyset pagination: a notification
//! queued between two page loads never shifts a page).

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A page holds this many items unless the caller asks for fewer.
pub const PAGE_LIMIT_DEFAULT: u32 = 20;
/// A page holds at most this many: one screen of a list and then some, and a bounded query.
pub const PAGE_LIMIT_MAX: u32 = 100;

/// One notification as the user's list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationItem {
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// One page, and where the next one starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationPage {
    pub items: Vec<NotificationItem>,
    pub next_cursor: Option<String>,
}

/// A page cursor: the id of the last item of the page before, as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(Uuid);

impl Cursor {
    /// `None` unless the text is a cursor this API handed out.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        Uuid::try_parse(text).ok().map(Cursor)
    }

    #[must_use]
    pub fn encode(id: Uuid) -> String {
        id.simple().to_string()
    }
}

/// A page size the caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// `None` outside `1..=PAGE_LIMIT_MAX`.
    #[must_use]
    pub fn new(limit: u32) -> Option<Self> {
        (1..=PAGE_LIMIT_MAX).contains(&limit).then_some(Self(limit))
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(PAGE_LIMIT_DEFAULT)
    }
}

type ItemRow = (Uuid, String, serde_json::Value, String, i32, String);

/// The page of `user`'s notifications after `cursor`, newest first.
///
/// # Errors
/// When Postgres fails.
#[tracing::instrument(skip(db))]
pub async fn list(
    db: &PgPool,
    user: &str,
    cursor: Option<Cursor>,
    limit: PageLimit,
) -> Result<NotificationPage, sqlx::Error> {
    let rows: Vec<ItemRow> = sqlx::query_as(
        r#"SELECT id, kind, payload, state::text, attempts,
               to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           FROM notifications
           WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
    )
    .bind(user)
    .bind(cursor.map(|Cursor(id)| id))
    .bind(i64::from(limit.0) + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() > limit.0 as usize;
    let items: Vec<NotificationItem> = rows
        .into_iter()
        .take(limit.0 as usize)
        .map(
            |(id, kind, payload, status, attempts, created_at)| NotificationItem {
                id,
                kind,
                payload,
                status,
                attempts,
                created_at,
            },
        )
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|item| Cursor::encode(item.id)))
        .flatten();
    Ok(NotificationPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_exactly_the_thirty_two_hex_digits_we_hand_out() {
        let id = Uuid::now_v7();
        assert_eq!(Cursor::parse(&Cursor::encode(id)), Some(Cursor(id)));
        assert!(Cursor::parse(&id.to_string()).is_none());
        assert!(Cursor::parse("zz").is_none());
        assert!(Cursor::parse(&"g".repeat(32)).is_none());
    }

    #[test]
    fn a_page_holds_one_to_a_hundred_items() {
        assert!(PageLimit::new(0).is_none());
        assert!(PageLimit::new(PAGE_LIMIT_MAX + 1).is_none());
        assert_eq!(
            PageLimit::new(PAGE_LIMIT_MAX),
            Some(PageLimit(PAGE_LIMIT_MAX))
        );
    }
}

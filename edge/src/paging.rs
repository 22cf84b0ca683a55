//! The query of a paged list (docs/api.md, "Paging": `?cursor=&limit=`, limit ≤ 100), passed to
//! the core rebuilt rather than copied: only `cursor` (in its list's alphabet) and `limit` (decimal
//! digits) pass, so nothing else reaches the signed call. The core checks their meaning (a cursor
//! it issued, a limit of 1 to 100).

use nene_domain::ErrorCode;

use crate::error::ApiError;

/// A limit is 1 to 100: three digits at most.
const LIMIT_CHARS_MAX: usize = 3;

/// The shape of a list's cursor.
#[derive(Debug, Clone, Copy)]
pub struct CursorShape {
    pub chars_max: usize,
    pub char_ok: fn(&u8) -> bool,
}

/// Notifications page by id: 32 hex digits (the core's `Cursor`).
pub const HEX_ID_CURSOR: CursorShape = CursorShape {
    chars_max: 32,
    char_ok: u8::is_ascii_hexdigit,
};

/// Ledger entries page by sequence number: a positive `i64` in decimal.
pub const SEQUENCE_CURSOR: CursorShape = CursorShape {
    chars_max: 19,
    char_ok: u8::is_ascii_digit,
};

/// The query to send the core (without its `?`): the client's `cursor` and `limit`, if any.
///
/// # Errors
/// `BAD_REQUEST` for any other parameter, a repeated one, or a value of the wrong shape.
pub fn core_query(query: Option<&str>, cursor: CursorShape) -> Result<String, ApiError> {
    let bad = || ApiError::new(ErrorCode::BadRequest);
    let mut cursor_value: Option<&str> = None;
    let mut limit: Option<&str> = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (slot, chars_max, char_ok): (&mut Option<&str>, usize, fn(&u8) -> bool) = match name {
            "cursor" => (&mut cursor_value, cursor.chars_max, cursor.char_ok),
            "limit" => (&mut limit, LIMIT_CHARS_MAX, u8::is_ascii_digit),
            _ => return Err(bad()),
        };
        if slot.is_some() || value.len() > chars_max || !value.bytes().all(|b| char_ok(&b)) {
            return Err(bad());
        }
        *slot = Some(value).filter(|value| !value.is_empty());
    }
    let parameters: Vec<String> = [("cursor", cursor_value), ("limit", limit)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}={value}")))
        .collect();
    Ok(parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cursor_of_the_lists_shape_and_a_numeric_limit_are_forwarded() {
        let cursor = "0190f5a27c1e7a4b9c3d1e2f3a4b5c6d";
        assert_eq!(
            core_query(Some(&format!("limit=50&cursor={cursor}")), HEX_ID_CURSOR).ok(),
            Some(format!("cursor={cursor}&limit=50"))
        );
        assert_eq!(core_query(None, HEX_ID_CURSOR).ok().as_deref(), Some(""));
        assert_eq!(
            core_query(Some("cursor=&limit="), HEX_ID_CURSOR)
                .ok()
                .as_deref(),
            Some("")
        );
        assert_eq!(
            core_query(Some("cursor=1234&limit=7"), SEQUENCE_CURSOR)
                .ok()
                .as_deref(),
            Some("cursor=1234&limit=7")
        );
        for bad in [
            "user=someone-else",
            "limit=1000",
            "limit=-1",
            "cursor=../../x",
            "cursor=%30",
            "limit=1&limit=2",
        ] {
            assert!(core_query(Some(bad), HEX_ID_CURSOR).is_err(), "{bad}");
        }
        // A hex cursor is not a sequence number, and a sequence number has at most 19 digits.
        assert!(core_query(Some("cursor=abc"), SEQUENCE_CURSOR).is_err());
        assert!(core_query(Some("cursor=12345678901234567890"), SEQUENCE_CURSOR).is_err());
    }
}

//! Text the stores cannot keep. Postgres refuses a NUL character (U+0000) in `text`, and every
//! other character JSON can carry is storable UTF-8 (serde_json refuses lone surrogates). So the
//! one character to refuse where input is parsed is NUL: in a JSON body (as the escape `\u0000`,
//! the only way JSON can carry it), in a query parameter or in a path segment (as `%00`).
//!
//! The edge refuses such input for every route in one place, before any handler runs, and the
//! core refuses it again where it parses bodies, so no route can forget it.

use serde_json::Value;

/// The only spelling of NUL inside a JSON document: raw control characters are not valid JSON,
/// and the escape's hex digits are all `0`, so it has no upper-case form.
const JSON_NUL_ESCAPE: &[u8] = b"\\u0000";

/// Where a NUL character sits in a JSON document: the field's path, dotted (`proof.time_zone`,
/// `items.2`), or `(body)` for a bare top-level string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NulAt(pub String);

impl std::fmt::Display for NulAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the field `{}` contains a NUL character", self.0)
    }
}

/// The first field of the JSON document `body` whose text (a string value or an object key)
/// contains a NUL character, or `None` when there is none or `body` is not JSON at all (the
/// caller's parser reports that).
///
/// Cheap for the common case: the document is only parsed when its bytes contain `\u0000`.
#[must_use]
pub fn json_nul_field(body: &[u8]) -> Option<NulAt> {
    if !body
        .windows(JSON_NUL_ESCAPE.len())
        .any(|window| window == JSON_NUL_ESCAPE)
    {
        return None;
    }
    // `\\u0000` (an escaped backslash, then the letters) also matches the scan; the parse tells.
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut path = Vec::new();
    first_nul(&value, &mut path).map(|()| {
        if path.is_empty() {
            NulAt("(body)".to_owned())
        } else {
            NulAt(path.join("."))
        }
    })
}

/// Depth-first search; on success `path` names the field. Recursion depth is bounded by
/// serde_json's own nesting limit (128), which `from_slice` enforced already.
fn first_nul(value: &Value, path: &mut Vec<String>) -> Option<()> {
    match value {
        Value::String(text) => text.contains('\0').then_some(()),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            path.push(index.to_string());
            let found = first_nul(item, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            path.push(key.replace('\0', "\\u0000"));
            if key.contains('\0') {
                return Some(());
            }
            let found = first_nul(item, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The first parameter of the raw (still percent-encoded) query string `query` whose name or
/// value decodes to text containing NUL, by name. `%00` is the only way a query carries NUL.
#[must_use]
pub fn query_nul_parameter(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (contains_encoded_nul(name) || contains_encoded_nul(value))
            .then(|| name.replace("%00", "").replace('+', " "))
    })
}

/// Whether percent-encoded text decodes to something containing NUL.
#[must_use]
pub fn contains_encoded_nul(encoded: &str) -> bool {
    encoded.contains("%00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_without_the_escape_is_not_parsed_and_has_no_nul() {
        assert_eq!(json_nul_field(br#"{"title":"run"}"#), None);
        assert_eq!(json_nul_field(b"not json at all"), None);
    }

    #[test]
    fn a_nul_in_a_nested_field_is_named_by_its_dotted_path() {
        let body = br#"{"title":"ok","proof":{"time_zone":"Asia/Seoul\u0000"}}"#;
        assert_eq!(
            json_nul_field(body),
            Some(NulAt("proof.time_zone".to_owned()))
        );
    }

    #[test]
    fn a_nul_inside_an_array_names_the_index() {
        let body = br#"{"tags":["a","b\u0000"]}"#;
        assert_eq!(json_nul_field(body), Some(NulAt("tags.1".to_owned())));
    }

    #[test]
    fn a_nul_in_an_object_key_is_found() {
        let body = br#"{"ti\u0000tle":"x"}"#;
        assert_eq!(json_nul_field(body), Some(NulAt("ti\\u0000tle".to_owned())));
    }

    #[test]
    fn an_escaped_backslash_before_the_letters_is_not_a_nul() {
        let body = br#"{"note":"C:\\u0000 is a path, not a NUL"}"#;
        assert_eq!(json_nul_field(body), None);
    }

    #[test]
    fn a_bare_string_body_with_a_nul_names_the_body() {
        assert_eq!(
            json_nul_field(br#""\u0000""#),
            Some(NulAt("(body)".to_owned()))
        );
    }

    #[test]
    fn a_query_parameter_with_an_encoded_nul_is_named() {
        assert_eq!(
            query_nul_parameter("state=RECRUITING&q=run%00ning"),
            Some("q".to_owned())
        );
        assert_eq!(query_nul_parameter("q=running&limit=5"), None);
        assert_eq!(query_nul_parameter("q%00=x"), Some("q".to_owned()));
    }
}

//! Request parameters: a query string or a form-encoded body, decoded once with bounds, and the
//! query strings the sandbox writes into redirects.

use std::collections::HashMap;

/// OAuth requests carry about ten parameters; more is a mistake or an attack.
pub const PARAMETERS_MAX: usize = 32;
/// Longer than any client id, redirect URI, state, nonce or scope a real client sends (Google
/// caps its own URLs near 2 KB); the bound also keeps stored codes small.
pub const PARAMETER_CHARS_MAX: usize = 2048;

/// Decoded parameters; an empty value counts as absent, as the providers treat `state=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a query string or a body).
    ///
    /// # Errors
    /// A message naming the problem: not decodable, a parameter given twice, too many, too long.
    pub fn parse(encoded: &[u8]) -> Result<Self, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(encoded)
            .map_err(|error| format!("malformed parameters: {error}"))?;
        let mut params = Self::default();
        for (name, value) in pairs {
            params.insert(name, value)?;
        }
        Ok(params)
    }

    /// Both sets; a name in both is an error, as a name given twice in one is.
    ///
    /// # Errors
    /// As [`Params::parse`].
    pub fn merge(mut self, other: Self) -> Result<Self, String> {
        for (name, value) in other.0 {
            self.insert(name, value)?;
        }
        Ok(self)
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), String> {
        if self.0.len() >= PARAMETERS_MAX {
            return Err(format!("at most {PARAMETERS_MAX} parameters"));
        }
        if value.chars().count() > PARAMETER_CHARS_MAX {
            return Err(format!(
                "{name} must be at most {PARAMETER_CHARS_MAX} characters"
            ));
        }
        if self.0.contains_key(&name) {
            return Err(format!("{name} is given more than once"));
        }
        self.0.insert(name, value);
        Ok(())
    }

    /// The value of `name`, unless absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// `redirect_uri` with `params` added to its query.
pub fn redirect_location(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    // Encoding string pairs cannot fail: serde_urlencoded only refuses non-pair shapes.
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let separator = match redirect_uri.rfind('?') {
        None => "?",
        Some(at) if at + 1 == redirect_uri.len() || redirect_uri.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{redirect_uri}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(encoded: &str) -> Result<Params, String> {
        Params::parse(encoded.as_bytes())
    }

    #[test]
    fn parameters_are_percent_decoded_and_an_empty_one_counts_as_absent() {
        let params = parse("state=a%2Bb+c&code=4%2F0Ab&nonce=").unwrap_or_default();
        assert_eq!(params.get("state"), Some("a+b c"));
        assert_eq!(params.get("code"), Some("4/0Ab"));
        assert_eq!(params.get("nonce"), None);
        assert_eq!(params.get("scope"), None);
    }

    #[test]
    fn a_parameter_given_twice_too_long_or_one_too_many_is_refused() {
        assert!(parse("code=a&code=b").is_err());
        let long = "x".repeat(PARAMETER_CHARS_MAX + 1);
        assert!(parse(&format!("state={long}")).is_err());
        let many: Vec<String> = (0..=PARAMETERS_MAX).map(|i| format!("p{i}=v")).collect();
        assert!(parse(&many.join("&")).is_err());
        let (query, body) = (parse("code=a"), parse("code=a"));
        let merged = query.and_then(|query| body.and_then(|body| query.merge(body)));
        assert!(merged.is_err());
    }

    #[test]
    fn a_redirect_keeps_the_callbacks_own_query_and_encodes_what_it_adds() {
        assert_eq!(
            redirect_location(
                "https://app.example/cb",
                &[("code", "4/0A"), ("state", "a b&c")]
            ),
            "https://app.example/cb?code=4%2F0A&state=a+b%26c"
        );
        assert_eq!(
            redirect_location("https://app.example/cb?from=login", &[("code", "x")]),
            "https://app.example/cb?from=login&code=x"
        );
        assert_eq!(
            redirect_location("https://app.example/cb?", &[("code", "x")]),
            "https://app.example/cb?code=x"
        );
    }
}

//! Small pure helpers for reading settings, shared by the core, its benchmarks and the tests.

/// `postgres://user@host:port/db?opts` with `db` replaced by `name`: how a tool that creates a
/// throwaway database points at it on the same server.
#[must_use]
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A setting parsed from the environment through `lookup`, or `default` when absent or malformed.
pub fn parsed_or<T: std::str::FromStr>(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> T {
    lookup(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_options_kept() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "bench_1"
            ),
            "postgres://postgres@127.0.0.1:5432/bench_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn a_missing_or_malformed_setting_takes_the_default() {
        let lookup = |name: &str| (name == "N").then(|| "12".to_owned());
        assert_eq!(parsed_or(lookup, "N", 5), 12);
        assert_eq!(parsed_or(lookup, "M", 5), 5);
        assert_eq!(parsed_or(|_| Some("x".to_owned()), "N", 5), 5);
    }
}

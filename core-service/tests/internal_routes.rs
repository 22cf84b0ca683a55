//! Every internal route the core mounts in production has a caller in production code: the edge
//! (`edge/src`) or the Durable Objects (`durable/src`). A route nobody calls is only an attack
//! surface: anyone holding the edge's signing secret can call it (the ledger's raw credit route
//! once minted points that way). Tests reach the core's operations as library functions.
//!
//! How the test knows: the core mounts only constants of `nene_domain::internal_api`
//! (`http::Mounted::at` takes nothing else), `http::mounted_routes` lists what it mounted, and
//! callers name the same constants as `internal_api::NAME`. The test reads the callers' sources
//! (comments and `#[cfg(test)]` code left out, so a mention in a comment or a unit test is not a
//! caller) and fails naming each mounted route no caller names.
//!
//! Dev-only routes (`Audience::DevOnly`, paths under `/internal/v1/dev/`) are exempt from the
//! caller rule: the test clock is called by the edge's own dev route, the fault switches only by
//! the end-to-end tests. Instead the test holds them to being dev-only: absent from the
//! production router, and under the dev prefix.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use nene_core::http::mounted_routes;
use nene_domain::internal_api::{self, Audience, DEV_PATH_PREFIX, Route};

/// The directories whose code counts as a production caller.
const CALLER_DIRS: [&str; 2] = ["edge/src", "durable/src"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the core's manifest has no parent directory")
        .to_owned()
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// A source file's production code: everything before its first `#[cfg(test)]`, without comments.
/// Both cuts can only hide a caller, never invent one, so the test errs towards failing.
fn production_code(source: &str) -> String {
    let source = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut code = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        let line_comment = rest.find("//");
        let block_comment = rest.find("/*");
        match (line_comment, block_comment) {
            (Some(line), block) if block.is_none_or(|block| line < block) => {
                code.push_str(&rest[..line]);
                rest = rest[line..]
                    .find('\n')
                    .map_or("", |end| &rest[line + end..]);
            }
            (_, Some(block)) => {
                code.push_str(&rest[..block]);
                rest = rest[block..]
                    .find("*/")
                    .map_or("", |end| &rest[block + end + 2..]);
            }
            (None, None) => {
                code.push_str(rest);
                rest = "";
            }
            (Some(_), None) => unreachable!("handled by the first arm"),
        }
    }
    code
}

/// The callers' production code, file by file.
fn callers() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in CALLER_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty(), "no caller sources under {CALLER_DIRS:?}");
    files
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, production_code(&source))
        })
        .collect()
}

/// Whether `code` names `internal_api::NAME` (and not a longer name that starts with it).
fn names(code: &str, route: &Route) -> bool {
    let needle = format!("internal_api::{}", route.name);
    code.match_indices(&needle).any(|(at, _)| {
        !code[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_alphanumeric() || next == '_')
    })
}

#[test]
fn every_internal_route_mounted_in_production_has_a_caller_in_the_edge_or_a_durable_object() {
    let callers = callers();
    let uncalled: Vec<String> = mounted_routes(false)
        .iter()
        .filter(|route| !callers.iter().any(|(_, code)| names(code, route)))
        .map(|route| {
            format!(
                "{} {} (internal_api::{})",
                route.method.as_str(),
                route.path,
                route.name
            )
        })
        .collect();
    assert!(
        uncalled.is_empty(),
        "mounted in production but called by nothing in {CALLER_DIRS:?}: {uncalled:#?}\n\
         Remove the route (tests call the core's functions), make it dev-only, or call it as \
         `internal_api::NAME` from the edge or a Durable Object."
    );
}

#[test]
fn dev_only_routes_are_absent_from_the_production_router_and_live_under_the_dev_prefix() {
    let production: HashSet<Route> = mounted_routes(false).into_iter().collect();
    let dev: HashSet<Route> = mounted_routes(true).into_iter().collect();
    for route in &production {
        assert_eq!(route.audience, Audience::Production, "{route:?}");
        assert!(!route.path.starts_with(DEV_PATH_PREFIX), "{route:?}");
    }
    let dev_only: Vec<&Route> = dev.difference(&production).collect();
    assert!(
        !dev_only.is_empty(),
        "dev mode mounts the test clock at least"
    );
    for route in dev_only {
        assert_eq!(route.audience, Audience::DevOnly, "{route:?}");
        assert!(route.path.starts_with(DEV_PATH_PREFIX), "{route:?}");
    }
}

#[test]
fn the_router_mounts_every_listed_route_and_nothing_else() {
    let listed = |audience: Option<Audience>| -> HashSet<Route> {
        internal_api::ALL
            .iter()
            .filter(|route| audience.is_none_or(|audience| route.audience == audience))
            .copied()
            .collect()
    };
    let production: HashSet<Route> = mounted_routes(false).into_iter().collect();
    assert_eq!(production, listed(Some(Audience::Production)));
    let dev: HashSet<Route> = mounted_routes(true).into_iter().collect();
    assert_eq!(dev, listed(None));
    // None is mounted twice.
    assert_eq!(mounted_routes(true).len(), internal_api::ALL.len());
}

#[test]
fn the_core_writes_no_internal_path_of_its_own_in_its_http_layer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for path in files {
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code = production_code(&source);
        // The signature check's prefix is the one literal allowed: it names no route.
        let literals: Vec<&str> = code
            .match_indices("\"/internal")
            .map(|(at, _)| &code[at..code.len().min(at + 40)])
            .filter(|literal| !literal.starts_with("\"/internal/\""))
            .collect();
        assert!(
            literals.is_empty(),
            "{}: mount routes with `Mounted::at(internal_api::…)`, not a path of its own: {literals:?}",
            path.display()
        );
    }
}

#[test]
fn the_source_reader_skips_comments_and_unit_tests_and_matches_whole_names() {
    let code = production_code(
        "call(internal_api::WALLET); // internal_api::HEALTH\n/* internal_api::ME */\n\
         #[cfg(test)]\nmod tests { internal_api::NOTIFICATIONS }",
    );
    assert!(names(&code, &internal_api::WALLET));
    assert!(!names(&code, &internal_api::HEALTH));
    assert!(!names(&code, &internal_api::ME));
    assert!(!names(&code, &internal_api::NOTIFICATIONS));
    // `internal_api::WALLET_ENTRIES` is not a call of `WALLET`.
    assert!(!names(
        "internal_api::WALLET_ENTRIES",
        &internal_api::WALLET
    ));
}

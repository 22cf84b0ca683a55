//! The edge's cache of search first pages, in process: a fake cache that keeps what it is given
//! and runs the after-response work when the test says, and a core that counts what it is asked.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{NOW, bearer, config, fake_host, header, send_for_headers};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{body::Body, http::Request};
use bytes::Bytes;
use nene_edge::{
    client_address::ClientAddressRule,
    platform::{
        AnswerCache, BoxFuture, CachedAnswer, OutboundRequest, OutboundResponse, Platform,
        Transport, TransportError,
    },
    search::{HEADER_CACHE, SEARCH_CACHE_FRESH_SECONDS, SEARCH_CACHE_STALE_SECONDS},
};

/// A core whose search answers are `answer`; it writes down every search call (not the
/// revocation checks, which answer "not revoked").
struct CountingCore {
    answer: Mutex<(u16, String)>,
    searches: Mutex<Vec<String>>,
}

impl CountingCore {
    fn answering(status: u16, body: &str) -> Arc<CountingCore> {
        Arc::new(CountingCore {
            answer: Mutex::new((status, body.to_owned())),
            searches: Mutex::new(Vec::new()),
        })
    }

    fn now_answers(&self, body: &str) {
        *self.answer.lock().unwrap() = (200, body.to_owned());
    }

    fn searches(&self) -> Vec<String> {
        self.searches.lock().unwrap().clone()
    }
}

impl Transport for CountingCore {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        let (status, body) = if request.url.ends_with("/internal/v1/auth/revoked") {
            (200, r#"{"revoked":false}"#.to_owned())
        } else {
            let path = request.url.trim_start_matches("https://core.test");
            self.searches.lock().unwrap().push(path.to_owned());
            self.answer.lock().unwrap().clone()
        };
        Box::pin(async move {
            Ok(OutboundResponse {
                status,
                body: Bytes::from(body),
            })
        })
    }
}

/// A cache that keeps every answer with the seconds it was asked to keep it, and holds the work
/// meant for after the response until [`FakeCache::run_after_response`].
#[derive(Default)]
struct FakeCache {
    entries: Mutex<HashMap<String, (CachedAnswer, u32)>>,
    after_response: Mutex<Vec<BoxFuture<()>>>,
}

impl FakeCache {
    fn entries(&self) -> HashMap<String, (CachedAnswer, u32)> {
        self.entries.lock().unwrap().clone()
    }

    fn waiting(&self) -> usize {
        self.after_response.lock().unwrap().len()
    }

    async fn run_after_response(&self) {
        let work = std::mem::take(&mut *self.after_response.lock().unwrap());
        for work in work {
            work.await;
        }
    }
}

impl AnswerCache for FakeCache {
    fn get(&self, key: &str) -> BoxFuture<Option<CachedAnswer>> {
        let found = self
            .entries
            .lock()
            .unwrap()
            .get(key)
            .map(|(answer, _)| answer.clone());
        Box::pin(async move { found })
    }

    fn put(&self, key: String, answer: CachedAnswer, keep_seconds: u32) -> BoxFuture<()> {
        self.entries
            .lock()
            .unwrap()
            .insert(key, (answer, keep_seconds));
        Box::pin(async {})
    }

    fn after_response(&self, work: BoxFuture<()>) {
        self.after_response.lock().unwrap().push(work);
    }
}

fn platform(core: &Arc<CountingCore>, cache: Option<&Arc<FakeCache>>) -> Platform {
    Platform {
        config: config(false),
        host: fake_host(),
        transport: Arc::clone(core) as Arc<dyn Transport>,
        rooms: None,
        cache: cache.map(|cache| Arc::clone(cache) as Arc<dyn AnswerCache>),
        client_address: ClientAddressRule::Cloudflare,
    }
}

/// `GET path` as user-1: the status, the cache header (empty when absent) and the body.
async fn get(platform: Platform, path: &str) -> (u16, String, String) {
    let request = Request::get(path)
        .header("authorization", bearer("user-1"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send_for_headers(platform, request).await;
    let body = String::from_utf8(body.to_vec()).unwrap();
    (status, header(&headers, HEADER_CACHE), body)
}

/// `/v1/search?` with `pairs` form-encoded.
fn search_path(route: &str, pairs: &[(&str, &str)]) -> String {
    format!("{route}?{}", serde_urlencoded::to_string(pairs).unwrap())
}

const PAGE: &str = r#"{"items":[{"id":"c-1","title":"Morning 아침 운동"}],"next_cursor":"20"}"#;

/// "아침" decomposed into jamo (NFD), as some keyboards and macOS file names write it.
const MORNING_NFD: &str = "\u{110B}\u{1161}\u{110E}\u{1175}\u{11B7}";

#[tokio::test]
async fn a_first_page_is_kept_under_its_normal_form_and_a_hit_never_reaches_the_core() {
    let core = CountingCore::answering(200, PAGE);
    let cache = Arc::new(FakeCache::default());

    let first = search_path("/v1/search", &[("q", "  Morning   아침 운동 ")]);
    let (status, how, body) = get(platform(&core, Some(&cache)), &first).await;
    assert_eq!((status, how.as_str(), body.as_str()), (200, "miss", PAGE));
    let normal = "q=morning+%EC%95%84%EC%B9%A8+%EC%9A%B4%EB%8F%99&type=challenges";
    assert_eq!(
        core.searches(),
        vec![format!("/internal/v1/search?{normal}")],
        "the core is asked the normal form"
    );

    // Stored after the response, for the fresh and the stale time together.
    assert!(cache.entries().is_empty());
    cache.run_after_response().await;
    let entries = cache.entries();
    let key = format!("https://search-cache.nene.internal/v1/search?{normal}");
    let (kept, keep_seconds) = entries.get(&key).expect("the first page is kept");
    assert_eq!(kept.body, Bytes::from_static(PAGE.as_bytes()));
    assert_eq!(kept.stored_at, NOW);
    assert_eq!(
        i64::from(*keep_seconds),
        SEARCH_CACHE_FRESH_SECONDS + SEARCH_CACHE_STALE_SECONDS
    );

    // Other spellings of the same query: case, spacing, jamo, the default type written out.
    let decomposed = format!("morning {MORNING_NFD}  운동");
    let spellings = [
        vec![("q", "MORNING 아침 운동")],
        vec![("q", decomposed.as_str()), ("type", "challenges")],
        vec![("type", "challenges"), ("q", "Morning\u{3000}아침 운동")],
    ];
    for pairs in &spellings {
        let path = search_path("/v1/search", pairs);
        let (status, how, body) = get(platform(&core, Some(&cache)), &path).await;
        assert_eq!(
            (status, how.as_str(), body.as_str()),
            (200, "hit", PAGE),
            "{path}"
        );
    }
    assert_eq!(core.searches().len(), 1, "a hit asked the core");
    assert_eq!(cache.waiting(), 0, "a fresh hit refreshed");

    // Deeper pages and filtered searches go to the core as they came, and are not kept.
    for pairs in [
        vec![("q", "morning 아침 운동"), ("cursor", "20")],
        vec![("q", "morning 아침 운동"), ("category", "fitness")],
        vec![("q", "morning 아침 운동"), ("limit", "5")],
        vec![
            ("q", "morning 아침 운동"),
            ("type", "users"),
            ("state", "RECRUITING"),
        ],
    ] {
        let path = search_path("/v1/search", &pairs);
        let (status, how, _) = get(platform(&core, Some(&cache)), &path).await;
        assert_eq!((status, how.as_str()), (200, ""), "{path}");
        let asked = core.searches();
        assert_eq!(
            asked.last().map(String::as_str),
            Some(path.replacen("/v1/", "/internal/v1/", 1).as_str())
        );
    }
    assert_eq!(core.searches().len(), 5);
    cache.run_after_response().await;
    assert_eq!(
        cache.entries().len(),
        1,
        "a deeper or filtered page was kept"
    );

    // Suggestions are kept the same way, under their own key.
    let suggest = search_path("/v1/search/suggest", &[("q", "Mor")]);
    let (_, how, _) = get(platform(&core, Some(&cache)), &suggest).await;
    assert_eq!(how, "miss");
    cache.run_after_response().await;
    let (_, how, _) = get(
        platform(&core, Some(&cache)),
        &search_path("/v1/search/suggest", &[("q", " mor ")]),
    )
    .await;
    assert_eq!(how, "hit");
    assert_eq!(
        core.searches().last().map(String::as_str),
        Some("/internal/v1/search/suggest?q=mor")
    );
    assert_eq!(core.searches().len(), 6);
}

#[tokio::test]
async fn a_stale_first_page_is_served_while_one_request_refreshes_it() {
    let core = CountingCore::answering(200, PAGE);
    let cache = Arc::new(FakeCache::default());
    let key = "https://search-cache.nene.internal/v1/search?q=%EB%8F%85%EC%84%9C&type=users";
    let stale = r#"{"items":[],"next_cursor":null}"#;
    cache
        .put(
            key.to_owned(),
            CachedAnswer {
                body: Bytes::from_static(stale.as_bytes()),
                stored_at: NOW - SEARCH_CACHE_FRESH_SECONDS,
            },
            60,
        )
        .await;

    let path = search_path("/v1/search", &[("q", "독서"), ("type", "users")]);
    for _ in 0..3 {
        let (status, how, body) = get(platform(&core, Some(&cache)), &path).await;
        assert_eq!((status, how.as_str(), body.as_str()), (200, "stale", stale));
    }
    assert!(
        core.searches().is_empty(),
        "a stale answer waited for the core"
    );
    assert_eq!(cache.waiting(), 1, "one refresh, not one per request");

    cache.run_after_response().await;
    assert_eq!(core.searches().len(), 1);
    let (status, how, body) = get(platform(&core, Some(&cache)), &path).await;
    assert_eq!((status, how.as_str(), body.as_str()), (200, "hit", PAGE));

    // Past the stale time an entry the cache still holds is a miss.
    let old = r#"{"items":[{"id":"old"}],"next_cursor":null}"#;
    cache
        .put(
            key.to_owned(),
            CachedAnswer {
                body: Bytes::from_static(old.as_bytes()),
                stored_at: NOW - SEARCH_CACHE_FRESH_SECONDS - SEARCH_CACHE_STALE_SECONDS,
            },
            60,
        )
        .await;
    core.now_answers(stale);
    let (status, how, body) = get(platform(&core, Some(&cache)), &path).await;
    assert_eq!((status, how.as_str(), body.as_str()), (200, "miss", stale));
    assert_eq!(core.searches().len(), 2);
}

#[tokio::test]
async fn a_refusal_or_failure_of_the_core_is_never_kept() {
    for (status, body, expected) in [
        (
            422,
            r#"{"error":{"code":"VALIDATION_FAILED","message":"type is not one of challenges, users, products","request_id":"r"}}"#,
            422,
        ),
        (500, "oops", 503),
    ] {
        let core = CountingCore::answering(status, body);
        let cache = Arc::new(FakeCache::default());
        let path = search_path("/v1/search", &[("q", "독서")]);
        let (answered, _, _) = get(platform(&core, Some(&cache)), &path).await;
        assert_eq!(answered, expected);
        cache.run_after_response().await;
        assert!(cache.entries().is_empty(), "{status} was kept");
    }
}

#[tokio::test]
async fn without_a_cache_every_search_goes_to_the_core_as_it_came() {
    let core = CountingCore::answering(200, PAGE);
    let path = search_path("/v1/search", &[("q", "  Morning ")]);
    for _ in 0..2 {
        let (status, how, body) = get(platform(&core, None), &path).await;
        assert_eq!((status, how.as_str(), body.as_str()), (200, "", PAGE));
    }
    assert_eq!(
        core.searches(),
        vec!["/internal/v1/search?q=++Morning+"; 2],
        "the Spin host's way: straight to the core"
    );
}

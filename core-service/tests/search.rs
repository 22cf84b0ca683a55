//! Search (issue 17): the index built from Postgres through the change feed, in Korean and
//! English, ranked, fresh, and rebuildable — through the core's search layer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use nene_core::{
    challenges::{self, NewChallenge, NewChallengeWire},
    search::{
        Hit, SearchIndex, SearchPage, SearchParams, SearchRequest, SearchType, feed,
        tantivy_index::{IndexLocation, TantivyIndex},
    },
};
use nene_domain::{ErrorCode, search::SearchText, states::ChallengeState};
use sqlx::PgPool;

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

async fn challenge(db: &PgPool, title: &str, description: &str) -> String {
    let mut wire = NewChallengeWire::one_week(title, 10_000, 100, now());
    wire.description = description.to_owned();
    let new = NewChallenge::parse(&wire).unwrap();
    challenges::create(db, Some("creator"), &new)
        .await
        .unwrap()
        .id
        .to_string()
}

async fn user(db: &PgPool, id: &str, nickname: &str, bio: &str) {
    sqlx::query("INSERT INTO users (id, nickname, bio) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(nickname)
        .bind(bio)
        .execute(db)
        .await
        .unwrap();
}

/// A fresh index in memory, brought up to date by the feed (as a replica's indexer would).
async fn indexed(db: &PgPool) -> Arc<dyn SearchIndex> {
    let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(&IndexLocation::Memory).unwrap());
    catch_up(db, &index).await;
    index
}

/// Applies the feed until the index has every change written so far. The feed takes a change
/// once every transaction older than it has ended, on the whole server: the other tests' running
/// transactions may hold it back a moment.
async fn catch_up(db: &PgPool, index: &Arc<dyn SearchIndex>) {
    let last: Option<(i64, i64)> = sqlx::query_as(
        "SELECT txid::text::int8, id FROM search_changes ORDER BY txid DESC, id DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await
    .unwrap();
    let Some(last) = last else { return };
    let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
    while index.cursor().is_none_or(|c| (c.txid, c.id) < last) {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed did not catch up"
        );
        if feed::step(db, index).await.unwrap() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// How long a test waits for the feed: generous, since transactions of the tests running beside
/// it on the same server hold the feed's horizon.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn search(index: &Arc<dyn SearchIndex>, query: &str, kind: SearchType) -> SearchPage {
    index
        .search(&SearchRequest::first_page(
            SearchText::parse(query).unwrap(),
            kind,
        ))
        .unwrap()
}

fn ids(page: &SearchPage) -> Vec<String> {
    page.items
        .iter()
        .map(|hit| match hit {
            Hit::Challenge(c) => c.id.clone(),
            Hit::User(u) => u.id.clone(),
        })
        .collect()
}

fn challenge_ids(index: &Arc<dyn SearchIndex>, query: &str) -> Vec<String> {
    ids(&search(index, query, SearchType::Challenges))
}

#[sqlx::test(migrations = "./migrations")]
async fn a_compound_is_found_however_the_query_spaces_it(db: PgPool) {
    let compound = challenge(&db, "아침운동 30일", "").await;
    let spaced = challenge(&db, "아침 운동 모임", "").await;
    let _other = challenge(&db, "저녁 독서", "").await;
    let index = indexed(&db).await;
    for query in ["아침운동", "아침 운동", "  아침   운동 "] {
        let mut found = challenge_ids(&index, query);
        found.sort();
        let mut expected = vec![compound.clone(), spaced.clone()];
        expected.sort();
        assert_eq!(found, expected, "{query}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_two_syllable_query_finds_its_place_inside_a_compound(db: PgPool) {
    let id = challenge(&db, "매일영어회화챌린지", "").await;
    let index = indexed(&db).await;
    for query in ["영어", "회화", "영어 회화"] {
        assert_eq!(
            challenge_ids(&index, query),
            std::slice::from_ref(&id),
            "{query}"
        );
    }
    assert!(challenge_ids(&index, "중국어").is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn mixed_korean_and_latin_match_together_and_latin_is_stemmed_and_forgiving(db: PgPool) {
    let id = challenge(
        &db,
        "No Sugar 챌린지",
        "Running every morning, 매일 달리기, healthy",
    )
    .await;
    let index = indexed(&db).await;
    for query in [
        "no sugar",
        "SUGAR 챌린지",
        "run",
        "runs 달리기",
        "mornings",
        "helthy",
    ] {
        assert_eq!(
            challenge_ids(&index, query),
            std::slice::from_ref(&id),
            "{query}"
        );
    }
    let page = search(&index, "sugar", SearchType::Challenges);
    let Hit::Challenge(hit) = &page.items[0] else {
        panic!("{page:?}")
    };
    assert_eq!(hit.title_highlighted, "No <b>Sugar</b> 챌린지");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_recruiting_exact_title_outranks_an_ended_partial_match(db: PgPool) {
    let ended = challenge(&db, "독서 습관 만들기 모임과 글쓰기", "매일 독서").await;
    sqlx::query("UPDATE challenges SET state = 'ended' WHERE id::text = $1")
        .bind(&ended)
        .execute(&db)
        .await
        .unwrap();
    let recruiting = challenge(&db, "독서", "").await;
    let index = indexed(&db).await;
    assert_eq!(challenge_ids(&index, "독서"), [recruiting, ended]);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_write_becomes_searchable_through_the_feed_without_a_rebuild(db: PgPool) {
    let index = indexed(&db).await;
    assert!(challenge_ids(&index, "필라테스").is_empty());
    let id = challenge(&db, "필라테스 2주", "").await;
    catch_up(&db, &index).await;
    assert_eq!(challenge_ids(&index, "필라테스"), [id]);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_edit_and_a_state_change_are_reflected_and_filters_follow_them(db: PgPool) {
    let id = challenge(&db, "새벽 수영", "").await;
    let index = indexed(&db).await;
    sqlx::query(
        "UPDATE challenges SET title = '새벽 요가', state = 'canceled' WHERE id::text = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .unwrap();
    catch_up(&db, &index).await;
    assert!(challenge_ids(&index, "수영").is_empty());
    assert_eq!(challenge_ids(&index, "요가"), std::slice::from_ref(&id));
    let filtered = |state| {
        let mut request =
            SearchRequest::first_page(SearchText::parse("요가").unwrap(), SearchType::Challenges);
        request.state = Some(state);
        ids(&index.search(&request).unwrap())
    };
    assert_eq!(filtered(ChallengeState::Canceled), [id]);
    assert!(filtered(ChallengeState::Recruiting).is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rebuild_gives_the_same_results_as_the_incremental_path(db: PgPool) {
    for (title, description) in [
        ("아침 운동", "매일 7시"),
        ("아침운동 인증", ""),
        ("영어 회화 스터디", "English conversation"),
        ("No sugar 30일", "설탕 끊기"),
        ("독서 모임", "한 달에 네 권"),
    ] {
        challenge(&db, title, description).await;
    }
    user(&db, "u1", "운동왕", "아침마다 달립니다").await;
    let incremental = indexed(&db).await;
    let rebuilt: Arc<dyn SearchIndex> =
        Arc::new(TantivyIndex::open(&IndexLocation::Memory).unwrap());
    feed::rebuild(&db, &rebuilt).await.unwrap();
    for query in ["아침 운동", "운동", "english", "설탕", "독서", "30일"] {
        for kind in [SearchType::Challenges, SearchType::Users] {
            assert_eq!(
                ids(&search(&incremental, query, kind)),
                ids(&search(&rebuilt, query, kind)),
                "{query}"
            );
        }
    }
    // The rebuilt index then follows the feed from where its read began.
    let later = challenge(&db, "아침 산책", "").await;
    catch_up(&db, &rebuilt).await;
    assert!(challenge_ids(&rebuilt, "아침").contains(&later));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rebuilt_index_on_disk_resumes_from_its_cursor_after_a_restart(db: PgPool) {
    let dir = std::env::temp_dir().join(format!("nene-search-test-{}", uuid::Uuid::new_v4()));
    let location = IndexLocation::Disk(dir.clone());
    let first = challenge(&db, "등산 모임", "").await;
    {
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(&location).unwrap());
        assert!(feed::needs_rebuild(index.as_ref()));
        feed::rebuild(&db, &index).await.unwrap();
    }
    let second = challenge(&db, "등산 초보", "").await;
    let reopened: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(&location).unwrap());
    assert!(!feed::needs_rebuild(reopened.as_ref()));
    assert_eq!(
        challenge_ids(&reopened, "등산"),
        std::slice::from_ref(&first)
    );
    catch_up(&db, &reopened).await;
    let mut found = challenge_ids(&reopened, "등산");
    found.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(found, expected);
    drop(reopened);
    let _ = std::fs::remove_dir_all(dir);
}

#[sqlx::test(migrations = "./migrations")]
async fn people_are_found_by_nickname_and_bio_and_never_by_private_fields(db: PgPool) {
    user(
        &db,
        "kakao-secret-4242",
        "달리기요정",
        "Marathon runner, 서울 거주",
    )
    .await;
    sqlx::query(
        "INSERT INTO user_identities (provider, provider_user_id, user_id) \
         VALUES ('kakao', 'hidden-provider-id', 'kakao-secret-4242')",
    )
    .execute(&db)
    .await
    .unwrap();
    let index = indexed(&db).await;
    for query in ["달리기", "요정", "marathon", "서울"] {
        assert_eq!(
            ids(&search(&index, query, SearchType::Users)),
            ["kakao-secret-4242"],
            "{query}"
        );
    }
    for query in ["hidden-provider-id", "kakao-secret-4242", "secret", "kakao"] {
        assert!(
            search(&index, query, SearchType::Users).items.is_empty(),
            "{query}"
        );
    }
    // People are not challenges, and products answer nothing until the shop exists.
    assert!(challenge_ids(&index, "달리기").is_empty());
    assert!(
        search(&index, "달리기", SearchType::Products)
            .items
            .is_empty()
    );
    // A changed nickname is found under the new one only.
    sqlx::query("UPDATE users SET nickname = '수영요정' WHERE id = 'kakao-secret-4242'")
        .execute(&db)
        .await
        .unwrap();
    catch_up(&db, &index).await;
    assert!(
        search(&index, "달리기요정", SearchType::Users)
            .items
            .is_empty()
    );
    assert_eq!(
        ids(&search(&index, "수영", SearchType::Users)),
        ["kakao-secret-4242"]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn suggestions_complete_titles_and_nicknames_from_the_first_character(db: PgPool) {
    let id = challenge(&db, "아침 운동 30일", "").await;
    user(&db, "u2", "아침형인간", "").await;
    let index = indexed(&db).await;
    let suggest = |query: &str| {
        index
            .suggest(&SearchText::parse(query).unwrap())
            .unwrap()
            .items
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    for query in ["아", "아침", "아침운", "아침 운동"] {
        assert!(suggest(query).contains(&id), "{query}");
    }
    assert!(suggest("아침형").contains(&"u2".to_owned()));
    assert!(suggest("운동").contains(&id));
    assert!(suggest("저녁").is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn pages_follow_one_another_without_repeating(db: PgPool) {
    for n in 0..5 {
        challenge(&db, &format!("걷기 {n}"), "").await;
    }
    let index = indexed(&db).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let params = SearchParams {
            q: Some("걷기".to_owned()),
            cursor: cursor.clone(),
            limit: Some(2),
            ..SearchParams::default()
        };
        let page = index.search(&params.parse().unwrap()).unwrap();
        seen.extend(ids(&page));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[test]
fn a_bad_query_is_refused_as_a_validation_failure_with_a_clear_message() {
    for (q, message) in [
        ("", "the query is empty"),
        ("   ", "the query is empty"),
        ("a\u{7}b", "the query contains a control character"),
    ] {
        let error = SearchParams {
            q: Some(q.to_owned()),
            ..SearchParams::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(error.code(), ErrorCode::ValidationFailed);
        assert_eq!(error.to_string(), message);
    }
    let long = SearchParams {
        q: Some("가".repeat(101)),
        ..SearchParams::default()
    };
    assert_eq!(
        long.parse().unwrap_err().to_string(),
        "the query is longer than 100 characters"
    );
}

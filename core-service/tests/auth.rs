//! Sign-in against the real Postgres and the sandbox's Kakao, Naver and Google (in-process, over
//! real HTTP, with their fault injection): logins, state replay, id_token checks, a provider that
//! is down, refresh rotation and reuse, logout, the profile and devices, rate limits.

use std::time::{Duration, Instant};

use nene_core::auth::{
    self, Auth, AuthConfig, AuthError,
    oauth::{Endpoints, Provider, ProviderClient, ProviderError},
    users::{self, Device, DevicePlatform, MeChange},
};
use serde_json::{Value, json};
use sqlx::PgPool;

const REDIRECT: &str = "https://app.nene.test/auth/done";

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

struct Fixture {
    auth: Auth,
    sandbox: String,
    browser: reqwest::Client,
}

async fn fixture(db: PgPool) -> Fixture {
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let address = ok(listener.local_addr());
    tokio::spawn(async move {
        let _ = axum::serve(listener, nene_sandbox::router()).await;
    });
    let sandbox = format!("http://{address}");
    let providers = Provider::ALL
        .into_iter()
        .map(|provider| ProviderClient {
            provider,
            client_id: format!("nene-test-{}", provider.as_str()),
            client_secret: "test-secret".to_owned(),
            endpoints: Endpoints::of(provider, Some(&sandbox)),
        })
        .collect();
    let auth = ok(Auth::new(
        db,
        AuthConfig {
            redirect_uris: vec![REDIRECT.to_owned()],
            providers,
            tls: nene_core::tls::Trust::public_roots(),
        },
    ));
    let browser = ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build());
    Fixture {
        auth,
        sandbox,
        browser,
    }
}

impl Fixture {
    /// What the user's browser does: follows the authorize URL (the sandbox approves at once as
    /// `who`) and lands on our redirect URI with `code` and `state`.
    async fn authorize(&self, provider: &str, who: &str) -> (String, String) {
        let url = ok(auth::start(&self.auth, provider, REDIRECT, "10.0.0.1").await);
        let response = ok(self
            .browser
            .get(format!("{url}&sandbox_user={who}"))
            .send()
            .await);
        assert_eq!(response.status().as_u16(), 302);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let params: Vec<(String, String)> = ok(serde_urlencoded::from_str(query));
        let find = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {location}"))
        };
        (find("code"), find("state"))
    }

    async fn login(&self, provider: &str, who: &str) -> Result<auth::Session, AuthError> {
        let (code, state) = self.authorize(provider, who).await;
        auth::callback(&self.auth, provider, &code, &state, "10.0.0.1").await
    }

    async fn fault(&self, rule: Value) {
        let response = ok(self
            .browser
            .post(format!("{}/sandbox/oauth/faults", self.sandbox))
            .json(&rule)
            .send()
            .await);
        assert!(response.status().is_success(), "fault {rule}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn each_provider_signs_in_and_a_second_login_finds_the_same_user(db: PgPool) {
    let f = fixture(db).await;
    for provider in ["kakao", "naver", "google"] {
        let first = ok(f.login(provider, "alice").await);
        assert!(first.user.is_new, "{provider}");
        assert!(first.user.nickname.starts_with("네네"));
        let again = ok(f.login(provider, "alice").await);
        assert!(!again.user.is_new);
        assert_eq!(
            again.user.id, first.user.id,
            "{provider}: one user per identity"
        );
        assert_ne!(again.family, first.family, "a new sign-in is a new family");
    }
    let users: i64 = ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&f.auth.db)
        .await);
    assert_eq!(users, 3, "one user per provider identity");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_redirect_uri_outside_the_allow_list_is_refused(db: PgPool) {
    let f = fixture(db).await;
    for uri in [
        "https://evil.test/cb",
        "https://app.nene.test/auth/done/../../evil",
        "https://app.nene.test/auth/done?next=https://evil.test",
    ] {
        let refused = auth::start(&f.auth, "kakao", uri, "10.0.0.1").await;
        assert!(
            matches!(refused, Err(AuthError::RedirectUriNotAllowed)),
            "{uri}"
        );
    }
    let unknown = auth::start(&f.auth, "facebook", REDIRECT, "10.0.0.1").await;
    assert!(matches!(unknown, Err(AuthError::UnknownProvider)));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_state_works_once_for_its_provider_and_never_when_unknown_or_expired(db: PgPool) {
    let f = fixture(db).await;
    let (code, state) = f.authorize("google", "bob").await;
    // Another provider's callback cannot use this state.
    let crossed = auth::callback(&f.auth, "kakao", &code, &state, "10.0.0.1").await;
    assert!(matches!(crossed, Err(AuthError::LoginState)), "{crossed:?}");
    ok(auth::callback(&f.auth, "google", &code, &state, "10.0.0.1").await);
    let replay = auth::callback(&f.auth, "google", &code, &state, "10.0.0.1").await;
    assert!(matches!(replay, Err(AuthError::LoginState)), "{replay:?}");
    let unknown = auth::callback(&f.auth, "google", &code, "made-up", "10.0.0.1").await;
    assert!(matches!(unknown, Err(AuthError::LoginState)));
    let (code, state) = f.authorize("google", "bob").await;
    ok(
        sqlx::query("UPDATE auth_states SET expires_at = now() - interval '1 second'")
            .execute(&f.auth.db)
            .await,
    );
    let expired = auth::callback(&f.auth, "google", &code, &state, "10.0.0.1").await;
    assert!(matches!(expired, Err(AuthError::LoginState)));
}

#[sqlx::test(migrations = "./migrations")]
async fn an_id_token_with_a_bad_signature_nonce_audience_or_expiry_is_rejected(db: PgPool) {
    let f = fixture(db).await;
    for (provider, kind) in [
        ("kakao", "bad_signature"),
        ("google", "bad_signature"),
        ("kakao", "wrong_nonce"),
        ("google", "wrong_audience"),
        ("google", "expired_id_token"),
    ] {
        f.fault(json!({ "provider": provider, "endpoint": "token", "kind": kind }))
            .await;
        let rejected = f.login(provider, "mallory").await;
        assert!(
            matches!(
                rejected,
                Err(AuthError::Provider(ProviderError::Rejected(_)))
            ),
            "{provider} {kind}: {rejected:?}"
        );
        assert_eq!(
            rejected.map(|_| ()).map_err(|e| e.code()),
            Err(nene_domain::ErrorCode::IdentityRejected)
        );
    }
    let users: i64 = ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&f.auth.db)
        .await);
    assert_eq!(users, 0, "no user from an unverified identity");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_provider_that_is_down_or_hangs_is_a_prompt_provider_unavailable(db: PgPool) {
    let f = fixture(db).await;
    f.fault(json!({ "provider": "naver", "endpoint": "token", "kind": "error", "status": 503 }))
        .await;
    let down = f.login("naver", "carol").await;
    assert!(
        matches!(
            down,
            Err(AuthError::Provider(ProviderError::Unavailable(_)))
        ),
        "{down:?}"
    );
    f.fault(json!({ "provider": "kakao", "endpoint": "token", "kind": "hang" }))
        .await;
    let began = Instant::now();
    let hung = f.login("kakao", "carol").await;
    assert!(matches!(
        hung,
        Err(AuthError::Provider(ProviderError::Unavailable(_)))
    ));
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "bounded by the provider deadline, not the provider"
    );
    assert_eq!(
        hung.map(|_| ()).map_err(|e| e.code()),
        Err(nene_domain::ErrorCode::ProviderUnavailable)
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family(db: PgPool) {
    let f = fixture(db).await;
    let session = ok(f.login("kakao", "dave").await);
    let first = ok(auth::refresh(&f.auth.db, &session.refresh_token).await);
    assert_eq!(first.user_id, session.user.id);
    assert_eq!(first.family, session.family);
    assert_ne!(first.refresh_token, session.refresh_token);
    let second = ok(auth::refresh(&f.auth.db, &first.refresh_token).await);
    // The first token again: someone holds a copy. The family dies, its newest token too.
    let reused = auth::refresh(&f.auth.db, &session.refresh_token).await;
    assert!(
        matches!(reused, Err(AuthError::RefreshTokenReused)),
        "{reused:?}"
    );
    let newest = auth::refresh(&f.auth.db, &second.refresh_token).await;
    assert!(matches!(newest, Err(AuthError::RefreshTokenInvalid)));
    let jti = format!("{}.any", session.family);
    assert!(ok(auth::is_revoked(&f.auth.db, &jti).await));
    let garbage = auth::refresh(&f.auth.db, "not-a-token").await;
    assert!(matches!(garbage, Err(AuthError::RefreshTokenInvalid)));
    let stored: i64 = ok(sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_sha256 = convert_to($1, 'UTF8')",
    )
    .bind(&session.refresh_token)
    .fetch_one(&f.auth.db)
    .await);
    assert_eq!(stored, 0, "tokens are stored only as hashes");
}

#[sqlx::test(migrations = "./migrations")]
async fn logout_revokes_the_access_token_and_its_refresh_family(db: PgPool) {
    let f = fixture(db).await;
    let session = ok(f.login("google", "erin").await);
    let other_device = ok(f.login("google", "erin").await);
    let jti = format!("{}.abc", session.family);
    assert!(!ok(auth::is_revoked(&f.auth.db, &jti).await));
    ok(auth::logout(&f.auth.db, &session.user.id, &jti, 2_000_000_000).await);
    assert!(ok(auth::is_revoked(&f.auth.db, &jti).await));
    assert!(ok(auth::is_revoked(
        &f.auth.db,
        &format!("{}.other", session.family)
    )
    .await));
    let refreshed = auth::refresh(&f.auth.db, &session.refresh_token).await;
    assert!(matches!(refreshed, Err(AuthError::RefreshTokenInvalid)));
    // Another device's session is untouched.
    ok(auth::refresh(&f.auth.db, &other_device.refresh_token).await);
    // Logging out with someone else's family does nothing to it.
    let foreign = format!("{}.x", other_device.family);
    ok(auth::logout(&f.auth.db, "someone-else", &foreign, 2_000_000_000).await);
    assert!(!ok(auth::is_revoked(
        &f.auth.db,
        &format!("{}.y", other_device.family)
    )
    .await));
}

#[sqlx::test(migrations = "./migrations")]
async fn nicknames_are_unique_and_the_profile_and_devices_can_be_changed(db: PgPool) {
    let f = fixture(db).await;
    let a = ok(f.login("naver", "frank").await).user;
    let b = ok(f.login("naver", "grace").await).user;
    let change: MeChange = ok(serde_json::from_value(json!({
        "nickname": "아침달리기", "bio": "매일 5km"
    })));
    let me = ok(users::change_me(&f.auth.db, &a.id, &change).await);
    assert_eq!(
        (me.nickname.as_str(), me.bio.as_str()),
        ("아침달리기", "매일 5km")
    );
    let taken: MeChange = ok(serde_json::from_value(json!({ "nickname": "아침달리기" })));
    let refused = users::change_me(&f.auth.db, &b.id, &taken).await;
    assert!(matches!(refused, Err(AuthError::NicknameTaken)));
    assert!(serde_json::from_value::<MeChange>(json!({ "nickname": "x" })).is_err());
    let device = Device {
        platform: DevicePlatform::Android,
        token: "fcm-token-1".to_owned(),
    };
    assert!(ok(
        users::put_device(&f.auth.db, &a.id, "pixel-8", &device).await
    ));
    assert!(!ok(users::put_device(
        &f.auth.db, &a.id, "pixel-8", &device
    )
    .await));
    ok(users::delete_device(&f.auth.db, &a.id, "pixel-8").await);
    let left: i64 = ok(sqlx::query_scalar("SELECT count(*) FROM user_devices")
        .fetch_one(&f.auth.db)
        .await);
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn logins_from_one_ip_are_rate_limited(db: PgPool) {
    let f = fixture(db).await;
    let mut refused = 0;
    for _ in 0..(auth::LOGINS_PER_IP_PER_MINUTE + 5) {
        if matches!(
            auth::start(&f.auth, "kakao", REDIRECT, "192.0.2.7").await,
            Err(AuthError::RateLimited)
        ) {
            refused += 1;
        }
    }
    assert!(refused >= 5, "{refused}");
    // Another address is not affected.
    ok(auth::start(&f.auth, "kakao", REDIRECT, "192.0.2.8").await);
}

#[sqlx::test(migrations = "./migrations")]
async fn maintenance_removes_expired_login_states_and_old_rate_limit_windows_only(db: PgPool) {
    let f = fixture(db).await;
    ok(auth::start(&f.auth, "kakao", REDIRECT, "10.0.0.9").await);
    ok(auth::start(&f.auth, "kakao", REDIRECT, "10.0.0.9").await);
    ok(sqlx::query(
        "UPDATE auth_states SET expires_at = now() - interval '2 days' \
         WHERE state = (SELECT state FROM auth_states LIMIT 1)",
    )
    .execute(&f.auth.db)
    .await);
    ok(sqlx::query(
        "INSERT INTO rate_limit_windows (bucket, window_start, hits) \
         VALUES ('ip:old', now() - interval '2 hours', 3)",
    )
    .execute(&f.auth.db)
    .await);
    ok(sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) \
         VALUES ('gone', now() - interval '1 minute'), ('live', now() + interval '5 minutes')",
    )
    .execute(&f.auth.db)
    .await);
    ok(nene_core::maintenance::run_once(&f.auth.db).await);
    let counts: (i64, i64, i64) = ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM auth_states), \
                (SELECT count(*) FROM rate_limit_windows), \
                (SELECT count(*) FROM revoked_access_tokens)",
    )
    .fetch_one(&f.auth.db)
    .await);
    assert_eq!(
        counts,
        (1, 1, 1),
        "the fresh state, this minute's window, the live token"
    );
    assert!(ok(auth::is_revoked(&f.auth.db, "live").await));
}

//! Sign-in against the real Postgres and the sandbox's Kakao, Naver and Google (in-process, over
//! real HTTP, with their fault injection): logins, state replay, id_token checks, a provider that
//! is down, refresh rotation and reuse, logout, the profile and devices, rate limits, and the
//! binding of a callback to the client that started the login (its PKCE verifier).

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use nene_core::auth::{
    self, Auth, AuthConfig, AuthError,
    oauth::{self, ProviderError},
    users::{self, Device, DevicePlatform, MeChange},
};
use nene_domain::pkce::{CodeChallenge, CodeVerifier};
use serde_json::{Value, json};
use sqlx::PgPool;

const REDIRECT: &str = "https://app.nene.test/auth/done";

/// What the client that starts a login keeps: its secret verifier, fresh for each login.
fn client_verifier() -> String {
    oauth::random_token()
}

/// The S256 challenge the client sends to `start` for `verifier`.
fn challenge_of(verifier: &str) -> CodeChallenge {
    CodeChallenge::of(&CodeVerifier::parse(verifier).unwrap())
}

/// A challenge for calls whose login is never finished.
fn any_challenge() -> CodeChallenge {
    challenge_of(&client_verifier())
}

/// What comes back to the client's redirect URI, and the verifier only that client holds.
struct Authorized {
    code: String,
    state: String,
    verifier: String,
}

struct Fixture {
    auth: Auth,
    sandbox: String,
    browser: reqwest::Client,
}

async fn fixture(db: PgPool) -> Fixture {
    let sandbox = common::spawn_sandbox().await;
    let providers = common::providers_at(&sandbox);
    let auth = Auth::new(
        db,
        AuthConfig {
            redirect_uris: vec![REDIRECT.to_owned()],
            providers,
            tls: nene_core::tls::Trust::public_roots(),
        },
    )
    .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Fixture {
        auth,
        sandbox,
        browser,
    }
}

impl Fixture {
    /// What the app and the user's browser do: the app starts a login with the challenge of a
    /// fresh verifier, the browser follows the authorize URL (the sandbox approves at once as
    /// `who`) and lands on our redirect URI with `code` and `state`.
    async fn authorize(&self, provider: &str, who: &str) -> Authorized {
        let verifier = client_verifier();
        let url = auth::start(
            &self.auth,
            provider,
            REDIRECT,
            &challenge_of(&verifier),
            "10.0.0.1",
        )
        .await
        .unwrap();
        let response = self
            .browser
            .get(format!("{url}&sandbox_user={who}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 302);
        let location = common::location(&response);
        assert!(location.starts_with(REDIRECT), "{location}");
        Authorized {
            code: common::query_param(&location, "code"),
            state: common::query_param(&location, "state"),
            verifier,
        }
    }

    async fn login(&self, provider: &str, who: &str) -> Result<auth::Session, AuthError> {
        let login = self.authorize(provider, who).await;
        callback(&self.auth, provider, &login, Some(&login.verifier)).await
    }

    async fn fault(&self, rule: Value) {
        let response = self
            .browser
            .post(format!("{}/sandbox/oauth/faults", self.sandbox))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "fault {rule}");
    }
}

/// The client's callback with `verifier` for `login`'s code and state.
async fn callback(
    auth: &Auth,
    provider: &str,
    login: &Authorized,
    verifier: Option<&str>,
) -> Result<auth::Session, AuthError> {
    auth::callback(
        auth,
        provider,
        &login.code,
        &login.state,
        verifier,
        "10.0.0.1",
    )
    .await
}

#[sqlx::test(migrations = "./migrations")]
async fn each_provider_signs_in_and_a_second_login_finds_the_same_user(db: PgPool) {
    let f = fixture(db).await;
    for provider in ["kakao", "naver", "google"] {
        let first = f.login(provider, "alice").await.unwrap();
        assert!(first.user.is_new, "{provider}");
        assert!(first.user.nickname.starts_with("네네"));
        let again = f.login(provider, "alice").await.unwrap();
        assert!(!again.user.is_new);
        assert_eq!(
            again.user.id, first.user.id,
            "{provider}: one user per identity"
        );
        assert_ne!(again.family, first.family, "a new sign-in is a new family");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&f.auth.db)
        .await
        .unwrap();
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
        let refused = auth::start(&f.auth, "kakao", uri, &any_challenge(), "10.0.0.1").await;
        assert!(
            matches!(refused, Err(AuthError::RedirectUriNotAllowed)),
            "{uri}"
        );
    }
    let unknown = auth::start(&f.auth, "facebook", REDIRECT, &any_challenge(), "10.0.0.1").await;
    assert!(matches!(unknown, Err(AuthError::UnknownProvider)));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_state_works_once_for_its_provider_and_never_when_unknown_or_expired(db: PgPool) {
    let f = fixture(db).await;
    let login = f.authorize("google", "bob").await;
    let verifier = Some(login.verifier.as_str());
    // Another provider's callback cannot use this state.
    let crossed = callback(&f.auth, "kakao", &login, verifier).await;
    assert!(matches!(crossed, Err(AuthError::LoginState)), "{crossed:?}");
    callback(&f.auth, "google", &login, verifier).await.unwrap();
    let replay = callback(&f.auth, "google", &login, verifier).await;
    assert!(matches!(replay, Err(AuthError::LoginState)), "{replay:?}");
    let made_up = Authorized {
        code: login.code.clone(),
        state: "made-up".to_owned(),
        verifier: login.verifier.clone(),
    };
    let unknown = callback(&f.auth, "google", &made_up, verifier).await;
    assert!(matches!(unknown, Err(AuthError::LoginState)));
    let login = f.authorize("google", "bob").await;
    sqlx::query("UPDATE auth_states SET expires_at = now() - interval '1 second'")
        .execute(&f.auth.db)
        .await
        .unwrap();
    let expired = callback(&f.auth, "google", &login, Some(&login.verifier)).await;
    assert!(matches!(expired, Err(AuthError::LoginState)));
}

/// Rows that a sign-in would have written: users, identities, refresh families and tokens.
async fn sign_in_rows(db: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM user_identities), \
                (SELECT count(*) FROM auth_families), (SELECT count(*) FROM refresh_tokens)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Whether the login state is spent.
async fn state_is_used(db: &PgPool, state: &str) -> bool {
    sqlx::query_scalar("SELECT used_at IS NOT NULL FROM auth_states WHERE state = $1")
        .bind(state)
        .fetch_one(db)
        .await
        .unwrap()
}

impl Fixture {
    /// Redeems `login`'s code at the provider directly, with the core's own PKCE verifier: it
    /// works only if nobody (the core included) has redeemed it yet.
    async fn code_is_unused_at_google(&self, login: &Authorized) -> bool {
        let core_verifier: String =
            sqlx::query_scalar("SELECT code_verifier FROM auth_states WHERE state = $1")
                .bind(&login.state)
                .fetch_one(&self.auth.db)
                .await
                .unwrap();
        let response = self
            .browser
            .post(format!("{}/google/token", self.sandbox))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", login.code.as_str()),
                ("client_id", "nene-test-google"),
                ("client_secret", "test-secret"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", core_verifier.as_str()),
            ])
            .send()
            .await
            .unwrap();
        response.status().is_success()
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_intercepted_code_and_state_without_the_clients_verifier_sign_nobody_in(db: PgPool) {
    let f = fixture(db).await;
    // Another app received the redirect: it has the code and the state, not the verifier.
    let login = f.authorize("google", "victim").await;
    let refused = callback(&f.auth, "google", &login, None).await;
    assert!(
        matches!(refused, Err(AuthError::ClientNotVerified)),
        "{refused:?}"
    );
    let code = refused.map(|_| ()).map_err(|e| e.code());
    assert_eq!(code, Err(nene_domain::ErrorCode::LoginStateInvalid));
    assert_eq!(code.map_err(nene_domain::ErrorCode::http_status), Err(401));
    assert_eq!(
        sign_in_rows(&f.auth.db).await,
        (0, 0, 0, 0),
        "no user, no identity, no session, no refresh token"
    );
    assert!(
        state_is_used(&f.auth.db, &login.state).await,
        "the state is spent"
    );
    // Spent for the rightful client too: the state works once, whoever tries first.
    let retried = callback(&f.auth, "google", &login, Some(&login.verifier)).await;
    assert!(matches!(retried, Err(AuthError::LoginState)), "{retried:?}");
    assert_eq!(sign_in_rows(&f.auth.db).await, (0, 0, 0, 0));
    // The provider was never asked: the code is still unredeemed there.
    assert!(f.code_is_unused_at_google(&login).await);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_wrong_or_malformed_verifier_is_refused_before_the_provider_and_spends_the_state(
    db: PgPool,
) {
    let f = fixture(db).await;
    let other = f.authorize("google", "someone-else").await;
    let wrong = [
        client_verifier(),
        // The verifier of another login.
        other.verifier.clone(),
        // Not verifiers at all.
        "a".repeat(42),
        format!("{}+", "a".repeat(43)),
        String::new(),
    ];
    // `None`: the challenge itself, as a `plain` client would answer.
    for guess in wrong.iter().map(Some).chain([None]) {
        let login = f.authorize("google", "victim").await;
        let guess = match guess {
            Some(wrong) => wrong.clone(),
            None => {
                sqlx::query_scalar("SELECT client_code_challenge FROM auth_states WHERE state = $1")
                    .bind(&login.state)
                    .fetch_one(&f.auth.db)
                    .await
                    .unwrap()
            }
        };
        let refused = callback(&f.auth, "google", &login, Some(&guess)).await;
        assert!(
            matches!(refused, Err(AuthError::ClientNotVerified)),
            "{guess}: {refused:?}"
        );
        assert!(state_is_used(&f.auth.db, &login.state).await, "{guess}");
        let retried = callback(&f.auth, "google", &login, Some(&login.verifier)).await;
        assert!(matches!(retried, Err(AuthError::LoginState)), "{guess}");
        assert!(f.code_is_unused_at_google(&login).await, "{guess}");
    }
    assert_eq!(sign_in_rows(&f.auth.db).await, (0, 0, 0, 0));
}

#[sqlx::test(migrations = "./migrations")]
async fn the_client_that_started_the_login_finishes_it_with_its_verifier(db: PgPool) {
    let f = fixture(db).await;
    let login = f.authorize("kakao", "minji").await;
    let stored: String =
        sqlx::query_scalar("SELECT client_code_challenge FROM auth_states WHERE state = $1")
            .bind(&login.state)
            .fetch_one(&f.auth.db)
            .await
            .unwrap();
    assert_eq!(stored, challenge_of(&login.verifier).as_base64url());
    let session = callback(&f.auth, "kakao", &login, Some(&login.verifier))
        .await
        .unwrap();
    assert!(session.user.is_new);
    assert_eq!(sign_in_rows(&f.auth.db).await, (1, 1, 1, 1));
    assert!(state_is_used(&f.auth.db, &login.state).await);
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
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&f.auth.db)
        .await
        .unwrap();
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
    let session = f.login("kakao", "dave").await.unwrap();
    let first = auth::refresh(&f.auth.db, &session.refresh_token)
        .await
        .unwrap();
    assert_eq!(first.user_id, session.user.id);
    assert_eq!(first.family, session.family);
    assert_ne!(first.refresh_token, session.refresh_token);
    let second = auth::refresh(&f.auth.db, &first.refresh_token)
        .await
        .unwrap();
    // The first token again: someone holds a copy. The family dies, its newest token too.
    let reused = auth::refresh(&f.auth.db, &session.refresh_token).await;
    assert!(
        matches!(reused, Err(AuthError::RefreshTokenReused)),
        "{reused:?}"
    );
    let newest = auth::refresh(&f.auth.db, &second.refresh_token).await;
    assert!(matches!(newest, Err(AuthError::RefreshTokenInvalid)));
    let jti = format!("{}.any", session.family);
    assert!(auth::is_revoked(&f.auth.db, &jti).await.unwrap());
    let garbage = auth::refresh(&f.auth.db, "not-a-token").await;
    assert!(matches!(garbage, Err(AuthError::RefreshTokenInvalid)));
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_sha256 = convert_to($1, 'UTF8')",
    )
    .bind(&session.refresh_token)
    .fetch_one(&f.auth.db)
    .await
    .unwrap();
    assert_eq!(stored, 0, "tokens are stored only as hashes");
}

#[sqlx::test(migrations = "./migrations")]
async fn logout_revokes_the_access_token_and_its_refresh_family(db: PgPool) {
    let f = fixture(db).await;
    let session = f.login("google", "erin").await.unwrap();
    let other_device = f.login("google", "erin").await.unwrap();
    let jti = format!("{}.abc", session.family);
    assert!(!auth::is_revoked(&f.auth.db, &jti).await.unwrap());
    auth::logout(&f.auth.db, &session.user.id, &jti, 2_000_000_000)
        .await
        .unwrap();
    assert!(auth::is_revoked(&f.auth.db, &jti).await.unwrap());
    assert!(
        auth::is_revoked(&f.auth.db, &format!("{}.other", session.family))
            .await
            .unwrap()
    );
    let refreshed = auth::refresh(&f.auth.db, &session.refresh_token).await;
    assert!(matches!(refreshed, Err(AuthError::RefreshTokenInvalid)));
    // Another device's session is untouched.
    auth::refresh(&f.auth.db, &other_device.refresh_token)
        .await
        .unwrap();
    // Logging out with someone else's family does nothing to it.
    let foreign = format!("{}.x", other_device.family);
    auth::logout(&f.auth.db, "someone-else", &foreign, 2_000_000_000)
        .await
        .unwrap();
    assert!(
        !auth::is_revoked(&f.auth.db, &format!("{}.y", other_device.family))
            .await
            .unwrap()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn nicknames_are_unique_and_the_profile_and_devices_can_be_changed(db: PgPool) {
    let f = fixture(db).await;
    let a = f.login("naver", "frank").await.unwrap().user;
    let b = f.login("naver", "grace").await.unwrap().user;
    let change: MeChange = serde_json::from_value(json!({
        "nickname": "아침달리기", "bio": "매일 5km"
    }))
    .unwrap();
    let me = users::change_me(&f.auth.db, &a.id, &change).await.unwrap();
    assert_eq!(
        (me.nickname.as_str(), me.bio.as_str()),
        ("아침달리기", "매일 5km")
    );
    let taken: MeChange = serde_json::from_value(json!({ "nickname": "아침달리기" })).unwrap();
    let refused = users::change_me(&f.auth.db, &b.id, &taken).await;
    assert!(matches!(refused, Err(AuthError::NicknameTaken)));
    assert!(serde_json::from_value::<MeChange>(json!({ "nickname": "x" })).is_err());
    let device = Device {
        platform: DevicePlatform::Android,
        token: "fcm-token-1".to_owned(),
    };
    assert!(
        users::put_device(&f.auth.db, &a.id, "pixel-8", &device)
            .await
            .unwrap()
    );
    assert!(
        !users::put_device(&f.auth.db, &a.id, "pixel-8", &device)
            .await
            .unwrap()
    );
    users::delete_device(&f.auth.db, &a.id, "pixel-8")
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM user_devices")
        .fetch_one(&f.auth.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn two_nicknames_that_differ_only_in_normalization_are_one_name(db: PgPool) {
    let f = fixture(db).await;
    let a = f.login("naver", "hyejin").await.unwrap().user;
    let b = f.login("naver", "impostor").await.unwrap().user;
    let composed = "네네달리기";
    // The same name with each 네 typed as its two jamo (ᄂ + ᅦ).
    let decomposed = "\u{1102}\u{1166}\u{1102}\u{1166}달리기";
    assert_ne!(composed, decomposed);
    let change = |nickname: &str| -> MeChange {
        serde_json::from_value(json!({ "nickname": nickname })).unwrap()
    };
    let me = users::change_me(&f.auth.db, &a.id, &change(composed))
        .await
        .unwrap();
    assert_eq!(me.nickname, composed);
    let refused = users::change_me(&f.auth.db, &b.id, &change(decomposed)).await;
    assert!(
        matches!(refused, Err(AuthError::NicknameTaken)),
        "{refused:?}"
    );
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.code()),
        Err(nene_domain::ErrorCode::NicknameTaken)
    );
    // Stored normalized: the first user typing jamo gets the composed name.
    let freed = users::change_me(&f.auth.db, &a.id, &change("다른이름"))
        .await
        .unwrap();
    assert_eq!(freed.nickname, "다른이름");
    let me = users::change_me(&f.auth.db, &b.id, &change(decomposed))
        .await
        .unwrap();
    assert_eq!(me.nickname, composed);
    // The schema holds the rule too: a nickname written around the parser must be NFC.
    let bypass = sqlx::query("UPDATE users SET nickname = $2 WHERE id = $1")
        .bind(&a.id)
        .bind("\u{1100}\u{1161}나다")
        .execute(&f.auth.db)
        .await;
    assert!(
        bypass.is_err(),
        "a non-NFC nickname is refused by the schema"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_chosen_nickname_may_not_be_blank_invisible_or_a_default_one(db: PgPool) {
    let f = fixture(db).await;
    let a = f.login("google", "jiwoo").await.unwrap().user;
    for nickname in [
        "\u{3164}\u{3164}",
        "\u{115F}\u{1160}",
        "\u{FFA0}\u{FFA0}",
        "달리기\u{200B}",
        "runner\u{202E}kim",
        "네네123456",
    ] {
        let parsed = serde_json::from_value::<MeChange>(json!({ "nickname": nickname }));
        assert!(parsed.is_err(), "{nickname:?}");
    }
    let me = users::me(&f.auth.db, &a.id).await.unwrap();
    assert_eq!(me.nickname, a.nickname, "unchanged");
}

#[sqlx::test(migrations = "./migrations")]
async fn logins_from_one_ip_are_rate_limited(db: PgPool) {
    let f = fixture(db).await;
    let mut refused = 0;
    for _ in 0..(auth::LOGINS_PER_IP_PER_MINUTE + 5) {
        if matches!(
            auth::start(&f.auth, "kakao", REDIRECT, &any_challenge(), "192.0.2.7").await,
            Err(AuthError::RateLimited)
        ) {
            refused += 1;
        }
    }
    assert!(refused >= 5, "{refused}");
    // Another address is not affected.
    auth::start(&f.auth, "kakao", REDIRECT, &any_challenge(), "192.0.2.8")
        .await
        .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn maintenance_removes_expired_login_states_and_old_rate_limit_windows_only(db: PgPool) {
    let f = fixture(db).await;
    auth::start(&f.auth, "kakao", REDIRECT, &any_challenge(), "10.0.0.9")
        .await
        .unwrap();
    auth::start(&f.auth, "kakao", REDIRECT, &any_challenge(), "10.0.0.9")
        .await
        .unwrap();
    sqlx::query(
        "UPDATE auth_states SET expires_at = now() - interval '2 days' \
         WHERE state = (SELECT state FROM auth_states LIMIT 1)",
    )
    .execute(&f.auth.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rate_limit_windows (bucket, window_start, hits) \
         VALUES ('ip:old', now() - interval '2 hours', 3)",
    )
    .execute(&f.auth.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) \
         VALUES ('gone', now() - interval '1 minute'), ('live', now() + interval '5 minutes')",
    )
    .execute(&f.auth.db)
    .await
    .unwrap();
    nene_core::maintenance::run_once(&f.auth.db).await.unwrap();
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM auth_states), \
                (SELECT count(*) FROM rate_limit_windows), \
                (SELECT count(*) FROM revoked_access_tokens)",
    )
    .fetch_one(&f.auth.db)
    .await
    .unwrap();
    assert_eq!(
        counts,
        (1, 1, 1),
        "the fresh state, this minute's window, the live token"
    );
    assert!(auth::is_revoked(&f.auth.db, "live").await.unwrap());
}

/// Two first logins of one identity at once: the second waits on the first's identity row, finds
/// it taken when the first commits, drops the user it had just created and signs in as the first's.
#[sqlx::test(migrations = "./migrations")]
async fn two_first_logins_of_one_identity_at_once_make_one_user(db: PgPool) {
    let mut first = db.begin().await.unwrap();
    let created = users::find_or_create_in_tx(&mut first, oauth::Provider::Kakao, "kakao_twice")
        .await
        .unwrap();
    assert!(created.is_new);
    let second = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let user = users::find_or_create_in_tx(&mut tx, oauth::Provider::Kakao, "kakao_twice")
                .await
                .unwrap();
            tx.commit().await.unwrap();
            user
        }
    });
    // The second login waits on the first's uncommitted identity row.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the second login never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.commit().await.unwrap();
    let signed_in = second.await.unwrap();
    assert_eq!(
        (signed_in.id.as_str(), signed_in.is_new),
        (created.id.as_str(), false)
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 1, "the second login's user was dropped");
}

//! Sign-in end to end through the Worker under `wrangler dev`, with the sandbox playing Kakao,
//! Naver and Google: the browser's round trip, tokens that must be refused, refresh rotation and
//! reuse, logout biting at once where money moves, a provider that is down, and a code and state
//! that reach someone other than the client that started the login (its PKCE verifier).

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use nene_e2e::{
    ClientPkce, Core, E2E_REDIRECT_URI, Sandbox, TOKEN_KEYS, Wrangler, client, location,
    query_param, scratch_dir, token_for,
};
use serde_json::{Value, json};

struct Stack {
    sandbox: Sandbox,
    _core: Core,
    wrangler: Wrangler,
}

async fn stack(test: &str) -> Stack {
    let dir = scratch_dir(test);
    let sandbox = Sandbox::start(&dir).await;
    let core = Core::start_with_toss(&dir, &sandbox.url).await;
    let wrangler = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    Stack {
        sandbox,
        _core: core,
        wrangler,
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(nene_e2e::REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// What comes back to the redirect URI, and the verifier only the client that started holds.
struct Authorized {
    code: String,
    state: String,
    verifier: String,
}

impl Authorized {
    /// The callback's body from the client that started the login.
    fn callback(&self) -> Value {
        json!({ "code": self.code, "state": self.state, "code_verifier": self.verifier })
    }
}

impl Stack {
    /// The app's and the browser's part: our start (with the app's PKCE challenge) → the provider
    /// (approves as `who`) → our redirect URI.
    async fn authorize(&self, provider: &str, who: &str) -> Authorized {
        let pkce = ClientPkce::new();
        let start = browser()
            .get(format!(
                "{}/v1/auth/{provider}/start?{}",
                self.wrangler.url,
                pkce.start_query(E2E_REDIRECT_URI)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status().as_u16(), 302, "start");
        let authorize = location(&start);
        assert!(authorize.starts_with(&self.sandbox.url), "{authorize}");
        assert_eq!(query_param(&authorize, "code_challenge_method"), "S256");
        let approved = browser()
            .get(format!("{authorize}&sandbox_user={who}"))
            .send()
            .await
            .unwrap();
        let back = location(&approved);
        assert!(back.starts_with(E2E_REDIRECT_URI), "{back}");
        Authorized {
            code: query_param(&back, "code"),
            state: query_param(&back, "state"),
            verifier: pkce.verifier,
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = client()
            .post(format!("{}{path}", self.wrangler.url))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = client()
            .get(format!("{}{path}", self.wrangler.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, provider: &str, who: &str) -> Value {
        let login = self.authorize(provider, who).await;
        let (status, session) = self
            .post(
                &format!("/v1/auth/{provider}/callback"),
                None,
                &login.callback(),
            )
            .await;
        assert_eq!(status, 200, "{provider}: {session}");
        session
    }
}

fn urlencode(raw: &str) -> String {
    serde_urlencoded::to_string([("v", raw)])
        .unwrap_or_default()
        .trim_start_matches("v=")
        .to_owned()
}

#[tokio::test]
async fn signing_in_with_each_provider_gives_tokens_that_work_rotate_and_log_out() {
    let stack = stack("auth_flow").await;
    for provider in ["kakao", "naver", "google"] {
        let session = stack.login(provider, "minji").await;
        assert_eq!(session["token_type"], "Bearer");
        assert_eq!(session["user"]["is_new"], true, "{session}");
        let access = session["access_token"].as_str().unwrap_or_default();
        let (status, me) = stack.get("/v1/me", access).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["id"], session["user"]["id"]);
        assert_eq!(me["nickname"], session["user"]["nickname"]);
    }
    // The same person again: the same user.
    let session = stack.login("kakao", "minji").await;
    assert_eq!(session["user"]["is_new"], false);

    // A replayed state is refused.
    let body = stack.authorize("google", "minji").await.callback();
    let (status, _) = stack.post("/v1/auth/google/callback", None, &body).await;
    assert_eq!(status, 200);
    let (status, replay) = stack.post("/v1/auth/google/callback", None, &body).await;
    assert_eq!(
        (status, &replay["error"]["code"]),
        (401, &json!("LOGIN_STATE_INVALID"))
    );

    // An open redirect is refused before anything is stored.
    let response = browser()
        .get(format!(
            "{}/v1/auth/kakao/start?{}",
            stack.wrangler.url,
            ClientPkce::new().start_query("https://evil.test/steal")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);

    // Refresh rotates; the old refresh token again revokes the family.
    let first = session["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, rotated) = stack
        .post("/v1/auth/refresh", None, &json!({ "refresh_token": first }))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, reused) = stack
        .post("/v1/auth/refresh", None, &json!({ "refresh_token": first }))
        .await;
    assert_eq!(
        (status, &reused["error"]["code"]),
        (401, &json!("REFRESH_TOKEN_REUSED"))
    );
    let (status, _) = stack
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": rotated["refresh_token"] }),
        )
        .await;
    assert_eq!(status, 401, "the whole family is revoked");
    let revoked_access = rotated["access_token"].as_str().unwrap_or_default();
    let (status, _) = stack
        .post(
            "/v1/payments/orders",
            Some(revoked_access),
            &json!({ "amount": 10_000 }),
        )
        .await;
    assert_eq!(
        status, 401,
        "a revoked family's access token moves no money"
    );

    // Logout: the access token is refused at once where money moves.
    let session = stack.login("naver", "jisoo").await;
    let access = session["access_token"].as_str().unwrap_or_default();
    let (status, order) = stack
        .post(
            "/v1/payments/orders",
            Some(access),
            &json!({ "amount": 10_000 }),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let (status, _) = stack
        .post("/v1/auth/logout", Some(access), &json!({}))
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack
        .post(
            "/v1/payments/orders",
            Some(access),
            &json!({ "amount": 10_000 }),
        )
        .await;
    assert_eq!(status, 401);
    // A read reuses a cached answer for a minute, but not in the isolate that logged out.
    let (status, _) = stack.get("/v1/me", access).await;
    assert_eq!(status, 401, "refused where the logout happened, at once");
    let (status, _) = stack
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": session["refresh_token"] }),
        )
        .await;
    assert_eq!(status, 401);
}

fn forge(header: &Value, claims: &Value, key: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(key).unwrap();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        claims,
        &key,
    );
    token.unwrap()
}

#[tokio::test]
async fn forged_expired_misaddressed_or_tampered_access_tokens_are_refused() {
    let stack = stack("auth_tokens").await;
    let (kid, secret) = TOKEN_KEYS.split_once(':').unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let claims = |aud: &str, iat: i64| json!({ "sub": "user_x", "iat": iat, "exp": iat + 600, "jti": "j1", "aud": aud });
    let header = json!({ "kid": kid });
    let good = forge(&header, &claims("nene-api", now), secret.as_bytes());
    let (status, _) = stack.get("/v1/wallet", &good).await;
    assert_eq!(status, 200, "the forging helper makes valid tokens");

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("nene-api", now).to_string())
    );
    let wrong_key = forge(
        &header,
        &claims("nene-api", now),
        b"another-key-another-key-another-key!!",
    );
    let expired = forge(&header, &claims("nene-api", now - 3_600), secret.as_bytes());
    let wrong_audience = forge(&header, &claims("someone-else", now), secret.as_bytes());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(
        json!({ "sub": "user_admin", "iat": now, "exp": now + 600, "jti": "j1", "aud": "nene-api" })
            .to_string(),
    );
    let tampered = parts.join(".");
    for (name, token) in [
        ("alg none", none),
        ("wrong key", wrong_key),
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("tampered payload", tampered),
    ] {
        let (status, body) = stack.get("/v1/wallet", &token).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("UNAUTHORIZED")),
            "{name}"
        );
    }
    // The test helper's tokens are ordinary tokens.
    let (status, _) = stack.get("/v1/wallet", &token_for("user_y")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_clear_502_not_a_hang() {
    let stack = stack("auth_provider_down").await;
    let login = stack.authorize("google", "hana").await;
    let response = client()
        .post(format!("{}/sandbox/oauth/faults", stack.sandbox.url))
        .json(&json!({ "provider": "google", "endpoint": "token", "kind": "hang" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let began = std::time::Instant::now();
    let (status, body) = stack
        .post("/v1/auth/google/callback", None, &login.callback())
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &json!("PROVIDER_UNAVAILABLE")),
        "{body}"
    );
    assert!(began.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn an_id_token_with_a_bad_signature_or_nonce_signs_nobody_in() {
    let stack = stack("auth_id_token").await;
    for (provider, kind) in [("kakao", "bad_signature"), ("google", "wrong_nonce")] {
        let login = stack.authorize(provider, "intruder").await;
        let response = client()
            .post(format!("{}/sandbox/oauth/faults", stack.sandbox.url))
            .json(&json!({ "provider": provider, "endpoint": "token", "kind": kind }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let (status, body) = stack
            .post(
                &format!("/v1/auth/{provider}/callback"),
                None,
                &login.callback(),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("IDENTITY_REJECTED")),
            "{provider} {kind}: {body}"
        );
    }
}

#[tokio::test]
async fn an_intercepted_code_and_state_without_the_apps_verifier_sign_nobody_in() {
    let stack = stack("auth_intercepted").await;
    // Another app on the phone registered the redirect scheme and got the code and the state.
    let login = stack.authorize("kakao", "victim").await;
    let stolen = json!({ "code": login.code, "state": login.state });
    let (status, body) = stack.post("/v1/auth/kakao/callback", None, &stolen).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("LOGIN_STATE_INVALID")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    // The state is spent: not even the rightful app can use it now; it starts again.
    let (status, body) = stack
        .post("/v1/auth/kakao/callback", None, &login.callback())
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("LOGIN_STATE_INVALID"))
    );
    // A guessed verifier fares no better.
    let login = stack.authorize("kakao", "victim").await;
    let guessed = json!({
        "code": login.code, "state": login.state, "code_verifier": ClientPkce::new().verifier,
    });
    let (status, _) = stack.post("/v1/auth/kakao/callback", None, &guessed).await;
    assert_eq!(status, 401);
    // The rightful app, starting again, signs in.
    let session = stack.login("kakao", "victim").await;
    assert_eq!(session["user"]["is_new"], true, "nobody signed in before");
}

#[tokio::test]
async fn a_login_start_with_the_plain_method_or_no_challenge_is_refused() {
    let stack = stack("auth_start_challenge").await;
    let pkce = ClientPkce::new();
    for (query, status, code) in [
        (
            serde_urlencoded::to_string([
                ("redirect_uri", E2E_REDIRECT_URI),
                ("code_challenge", pkce.verifier.as_str()),
                ("code_challenge_method", "plain"),
            ])
            .unwrap_or_default(),
            422,
            "VALIDATION_FAILED",
        ),
        (
            format!("redirect_uri={}", urlencode(E2E_REDIRECT_URI)),
            400,
            "BAD_REQUEST",
        ),
    ] {
        let response = browser()
            .get(format!(
                "{}/v1/auth/kakao/start?{query}",
                stack.wrangler.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{query}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("code_challenge")),
            "{body}"
        );
    }
}

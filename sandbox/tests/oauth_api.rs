//! The Kakao, Naver and Google stand-ins over HTTP, in process: each provider's login as our edge
//! will run it (authorize → token → user info, the id_token checked against the published JWKS),
//! and the control plane's faults as the edge's tests will drive them.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Answer, app, request, send};

use std::time::{Duration, Instant};

use axum::{
    Router,
    body::Body,
    http::{StatusCode, header},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use nene_sandbox::oauth::{
    id_token::{IdTokenClaims, WRONG_NONCE},
    keys::{GOOGLE_KID, KAKAO_KID},
    pkce::s256,
};
use serde_json::{Value, json};

const REDIRECT_URI: &str = "https://app.example/auth/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query).unwrap()
}

async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    send(app, request("GET", uri, headers, Body::empty())).await
}

async fn post_form(app: &Router, uri: &str, form: &[(&str, &str)]) -> Answer {
    let content_type = [("content-type", "application/x-www-form-urlencoded")];
    send(
        app,
        request("POST", uri, &content_type, Body::from(encode(form))),
    )
    .await
}

async fn post_json(app: &Router, uri: &str, body: Value) -> Answer {
    let content_type = [("content-type", "application/json")];
    let body = Body::from(body.to_string());
    send(app, request("POST", uri, &content_type, body)).await
}

async fn bearer_get(app: &Router, uri: &str, token: &str) -> Answer {
    let authorization = format!("Bearer {token}");
    get(app, uri, &[("authorization", &authorization)]).await
}

/// Visits the authorize endpoint and returns the redirect's query, checking it is a 302 to
/// the callback.
async fn authorize(app: &Router, path: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
    let answer = get(app, &format!("{path}?{}", encode(params)), &[]).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.json);
    let location = answer
        .headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let (callback, query) = location.split_once('?').unwrap_or_default();
    assert_eq!(callback, REDIRECT_URI);
    decode_query(query)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Verifies an id_token as a client would: the JWKS key named by the header's kid.
fn verify(
    jwks: &Value,
    token: &str,
    issuer: &str,
    client_id: &str,
) -> Result<IdTokenClaims, String> {
    let header = decode_header(token).map_err(|error| error.to_string())?;
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|key| key["kid"].as_str() == header.kid.as_deref())
        .ok_or("no published key has the token's kid")?;
    let decoding = DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap_or_default(),
        key["e"].as_str().unwrap_or_default(),
    )
    .map_err(|error| error.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[issuer]);
    decode::<IdTokenClaims>(token, &decoding, &validation)
        .map(|data| data.claims)
        .map_err(|error| error.to_string())
}

async fn kakao_code(app: &Router, user: &str, nonce: &str) -> String {
    let challenge = s256(VERIFIER);
    let query = authorize(
        app,
        "/kakao/oauth/authorize",
        &[
            ("client_id", "kakao-app"),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("state", "st-1"),
            ("scope", "openid,profile_nickname"),
            ("nonce", nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("sandbox_user", user),
        ],
    )
    .await;
    param(&query, "code").unwrap_or_default().to_owned()
}

async fn kakao_token(app: &Router, code: &str) -> Answer {
    post_form(
        app,
        "/kakao/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "kakao-app"),
            ("redirect_uri", REDIRECT_URI),
            ("code", code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn google_code(app: &Router, user: &str) -> String {
    let challenge = s256(VERIFIER);
    let query = authorize(
        app,
        "/google/o/oauth2/v2/auth",
        &[
            ("client_id", "google-app.apps.googleusercontent.com"),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "openid email profile"),
            ("state", "g-state"),
            ("nonce", "g-nonce"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("sandbox_user", user),
        ],
    )
    .await;
    param(&query, "code").unwrap_or_default().to_owned()
}

async fn google_token(app: &Router, code: &str) -> Answer {
    post_form(
        app,
        "/google/token",
        &[
            ("code", code),
            ("client_id", "google-app.apps.googleusercontent.com"),
            ("client_secret", "GOCSPX-sandbox"),
            ("redirect_uri", REDIRECT_URI),
            ("grant_type", "authorization_code"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn naver_code(app: &Router, user: &str) -> String {
    let query = authorize(
        app,
        "/naver/oauth2.0/authorize",
        &[
            ("response_type", "code"),
            ("client_id", "naver-app"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "n-state"),
            ("sandbox_user", user),
        ],
    )
    .await;
    param(&query, "code").unwrap_or_default().to_owned()
}

fn naver_token_query(code: &str) -> String {
    encode(&[
        ("grant_type", "authorization_code"),
        ("client_id", "naver-app"),
        ("client_secret", "naver-secret"),
        ("code", code),
        ("state", "n-state"),
    ])
}

async fn add_fault(app: &Router, rule: Value) {
    let answer = post_json(app, "/sandbox/oauth/faults", rule).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
}

#[tokio::test]
async fn kakao_login_runs_from_authorize_to_user_me_with_a_verifiable_id_token() {
    let app = app();
    let challenge = s256(VERIFIER);
    let query = authorize(
        &app,
        "/kakao/oauth/authorize",
        &[
            ("client_id", "kakao-app"),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("state", "a b+c/=&d"),
            ("scope", "openid,profile_nickname"),
            ("nonce", "n-0"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("sandbox_user", "alice"),
        ],
    )
    .await;
    assert_eq!(param(&query, "state"), Some("a b+c/=&d"), "echoed exactly");
    let code = param(&query, "code").unwrap_or_default();
    let token = kakao_token(&app, code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.json);
    assert_eq!(token.json["token_type"], "bearer");
    assert_eq!(token.json["expires_in"], 21599);
    assert_eq!(token.json["refresh_token_expires_in"], 5_183_999);
    assert!(token.json["refresh_token"].is_string());
    assert_eq!(token.json["scope"], "profile_nickname openid");

    let jwks = get(&app, "/kakao/.well-known/jwks.json", &[]).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.json["keys"][0]["kid"], KAKAO_KID);
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let claims = verify(&jwks.json, id_token, "https://kauth.kakao.com", "kakao-app");
    let claims = claims.unwrap();
    assert_eq!(claims.nonce.as_deref(), Some("n-0"));
    assert_eq!(claims.exp - claims.iat, 3600);

    let access_token = token.json["access_token"].as_str().unwrap_or_default();
    let me = bearer_get(&app, "/kakao/v2/user/me", access_token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.json);
    assert!(me.json["id"].is_u64(), "a number: {}", me.json["id"]);
    assert_eq!(me.json["id"].to_string(), claims.sub);
    assert_eq!(me.json["kakao_account"]["profile"]["nickname"], "alice");
    let connected_at = me.json["connected_at"].as_str().unwrap_or_default();
    assert!(
        connected_at.ends_with('Z') && connected_at.len() == 20,
        "{connected_at}"
    );
}

#[tokio::test]
async fn naver_login_runs_from_authorize_to_the_profile_with_a_string_expires_in() {
    let app = app();
    let code = naver_code(&app, "bob").await;
    // Naver's documented form: every parameter in the query string.
    let token = get(
        &app,
        &format!("/naver/oauth2.0/token?{}", naver_token_query(&code)),
        &[],
    )
    .await;
    assert_eq!(token.status, StatusCode::OK);
    assert_eq!(token.json["token_type"], "bearer");
    assert_eq!(token.json["expires_in"], "3600");
    assert!(token.json.get("id_token").is_none());
    let access_token = token.json["access_token"].as_str().unwrap_or_default();
    let me = bearer_get(&app, "/naver/v1/nid/me", access_token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["resultcode"], "00");
    assert_eq!(me.json["message"], "success");
    assert!(me.json["response"]["id"].is_string());
    assert_eq!(me.json["response"]["nickname"], "bob");
    assert_eq!(me.json["response"]["email"], "bob@example.com");
}

#[tokio::test]
async fn naver_takes_its_token_parameters_as_a_post_form_too() {
    let app = app();
    let code = naver_code(&app, "bob").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "naver-app"),
        ("client_secret", "naver-secret"),
        ("code", code.as_str()),
        ("state", "n-state"),
    ];
    let token = post_form(&app, "/naver/oauth2.0/token", &form).await;
    assert_eq!(token.status, StatusCode::OK);
    assert!(token.json["access_token"].is_string(), "{}", token.json);
}

#[tokio::test]
async fn google_login_runs_from_authorize_to_userinfo_with_pkce() {
    let app = app();
    let code = google_code(&app, "carol").await;
    assert!(code.starts_with("4/0A"), "{code}");
    let token = google_token(&app, &code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.json);
    assert_eq!(token.json["token_type"], "Bearer");
    assert_eq!(token.json["expires_in"], 3599);
    assert_eq!(
        token.json["scope"],
        "openid https://www.googleapis.com/auth/userinfo.email \
         https://www.googleapis.com/auth/userinfo.profile"
    );
    let certs = get(&app, "/google/oauth2/v3/certs", &[]).await;
    assert_eq!(certs.json["keys"][0]["kid"], GOOGLE_KID);
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let client_id = "google-app.apps.googleusercontent.com";
    let claims = verify(
        &certs.json,
        id_token,
        "https://accounts.google.com",
        client_id,
    );
    let claims = claims.unwrap();
    assert_eq!(claims.nonce.as_deref(), Some("g-nonce"));
    assert_eq!(claims.email.as_deref(), Some("carol@example.com"));

    let access_token = token.json["access_token"].as_str().unwrap_or_default();
    for path in ["/google/v1/userinfo", "/google/oauth2/v3/userinfo"] {
        let me = bearer_get(&app, path, access_token).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.json["sub"], claims.sub.as_str());
        assert_eq!(me.json["name"], "carol");
        assert_eq!(me.json["email"], "carol@example.com");
        assert_eq!(me.json["email_verified"], true);
    }
}

#[tokio::test]
async fn a_second_exchange_of_a_code_is_refused_in_each_providers_words() {
    let app = app();
    let code = kakao_code(&app, "alice", "n").await;
    assert_eq!(kakao_token(&app, &code).await.status, StatusCode::OK);
    let again = kakao_token(&app, &code).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.json["error"], "invalid_grant");
    assert_eq!(again.json["error_code"], "KOE320");

    let code = google_code(&app, "alice").await;
    assert_eq!(google_token(&app, &code).await.status, StatusCode::OK);
    let again = google_token(&app, &code).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        again.json,
        json!({"error": "invalid_grant", "error_description": "Bad Request"})
    );

    let code = naver_code(&app, "alice").await;
    let uri = format!("/naver/oauth2.0/token?{}", naver_token_query(&code));
    assert!(get(&app, &uri, &[]).await.json["access_token"].is_string());
    let again = get(&app, &uri, &[]).await;
    assert_eq!(again.status, StatusCode::OK, "Naver's errors are 200s");
    assert_eq!(again.json["error"], "invalid_request");
}

#[tokio::test]
async fn a_wrong_pkce_verifier_or_redirect_uri_is_refused() {
    let app = app();
    let code = google_code(&app, "alice").await;
    let wrong_verifier = post_form(
        &app,
        "/google/token",
        &[
            ("code", code.as_str()),
            ("client_id", "google-app.apps.googleusercontent.com"),
            ("client_secret", "s"),
            ("redirect_uri", REDIRECT_URI),
            ("grant_type", "authorization_code"),
            ("code_verifier", &"x".repeat(43)),
        ],
    )
    .await;
    assert_eq!(wrong_verifier.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_verifier.json["error"], "invalid_grant");

    let code = kakao_code(&app, "alice", "n").await;
    let other_redirect = post_form(
        &app,
        "/kakao/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "kakao-app"),
            ("redirect_uri", "https://app.example/other"),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(other_redirect.status, StatusCode::BAD_REQUEST);
    assert_eq!(other_redirect.json["error_code"], "KOE303");
}

#[tokio::test]
async fn user_info_without_a_valid_token_is_401_in_each_providers_shape() {
    let app = app();
    let kakao = bearer_get(&app, "/kakao/v2/user/me", "nope").await;
    assert_eq!(kakao.status, StatusCode::UNAUTHORIZED);
    assert_eq!(kakao.json["code"], -401);
    let naver = get(&app, "/naver/v1/nid/me", &[]).await;
    assert_eq!(naver.status, StatusCode::UNAUTHORIZED);
    assert_eq!(naver.json["resultcode"], "028");
    let naver = bearer_get(&app, "/naver/v1/nid/me", "nope").await;
    assert_eq!(naver.json["resultcode"], "024");
    let google = bearer_get(&app, "/google/v1/userinfo", "nope").await;
    assert_eq!(google.status, StatusCode::UNAUTHORIZED);
    assert_eq!(google.json["error_description"], "Invalid Credentials");
    assert!(google.headers.contains_key(header::WWW_AUTHENTICATE));

    // A token from one provider means nothing at another.
    let code = google_code(&app, "alice").await;
    let token = google_token(&app, &code).await;
    let access_token = token.json["access_token"].as_str().unwrap_or_default();
    let elsewhere = bearer_get(&app, "/kakao/v2/user/me", access_token).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_same_sandbox_user_gets_the_same_id_on_every_login_and_another_user_another() {
    let app = app();
    let mut ids = Vec::new();
    for user in ["dave", "dave", "erin"] {
        let code = kakao_code(&app, user, "n").await;
        let token = kakao_token(&app, &code).await;
        let access_token = token.json["access_token"].as_str().unwrap_or_default();
        ids.push(
            bearer_get(&app, "/kakao/v2/user/me", access_token)
                .await
                .json["id"]
                .clone(),
        );
    }
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test]
async fn an_authorize_request_without_a_redirect_uri_is_an_error_page_not_a_redirect() {
    let app = app();
    let query = encode(&[("client_id", "kakao-app"), ("response_type", "code")]);
    let answer = get(&app, &format!("/kakao/oauth/authorize?{query}"), &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(!answer.headers.contains_key(header::LOCATION));
    let query = encode(&[
        ("client_id", "kakao-app"),
        ("redirect_uri", REDIRECT_URI),
        ("response_type", "token"),
        ("state", "s"),
    ]);
    let answer = get(&app, &format!("/kakao/oauth/authorize?{query}"), &[]).await;
    assert_eq!(answer.status, StatusCode::FOUND);
}

#[tokio::test]
async fn an_injected_error_answers_in_the_providers_shape_and_leaves_the_code_usable() {
    let app = app();
    add_fault(
        &app,
        json!({"provider": "google", "endpoint": "token", "kind": "error"}),
    )
    .await;
    let code = google_code(&app, "alice").await;
    let failed = google_token(&app, &code).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.json["error"], "server_error");
    let retried = google_token(&app, &code).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.json);

    add_fault(
        &app,
        json!({"provider": "kakao", "endpoint": "jwks", "kind": "error", "status": 500}),
    )
    .await;
    let jwks = get(&app, "/kakao/.well-known/jwks.json", &[]).await;
    assert_eq!(jwks.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(jwks.json["error_code"], "KOE003");
    assert_eq!(
        get(&app, "/kakao/.well-known/jwks.json", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_bad_signature_fault_yields_one_id_token_the_published_keys_reject() {
    let app = app();
    add_fault(
        &app,
        json!({"provider": "kakao", "endpoint": "token", "kind": "bad_signature"}),
    )
    .await;
    let jwks = get(&app, "/kakao/.well-known/jwks.json", &[]).await.json;
    let code = kakao_code(&app, "alice", "n").await;
    let token = kakao_token(&app, &code).await;
    assert_eq!(token.status, StatusCode::OK);
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let header = decode_header(id_token).ok();
    assert_eq!(
        header.and_then(|header| header.kid).as_deref(),
        Some(KAKAO_KID)
    );
    let verified = verify(&jwks, id_token, "https://kauth.kakao.com", "kakao-app");
    assert!(
        verified.is_err_and(|error| error.contains("InvalidSignature")),
        "bad signature"
    );

    let code = kakao_code(&app, "alice", "n").await;
    let token = kakao_token(&app, &code).await;
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    assert!(verify(&jwks, id_token, "https://kauth.kakao.com", "kakao-app").is_ok());
}

#[tokio::test]
async fn each_claim_fault_breaks_the_check_it_names() {
    let app = app();
    let certs = get(&app, "/google/oauth2/v3/certs", &[]).await.json;
    let client_id = "google-app.apps.googleusercontent.com";
    let issuer = "https://accounts.google.com";

    add_fault(
        &app,
        json!({"provider": "any", "endpoint": "any", "kind": "wrong_nonce"}),
    )
    .await;
    let token = google_token(&app, &google_code(&app, "alice").await).await;
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let claims = verify(&certs, id_token, issuer, client_id);
    assert_eq!(
        claims.map(|claims| claims.nonce),
        Ok(Some(WRONG_NONCE.to_owned()))
    );

    add_fault(
        &app,
        json!({"provider": "google", "endpoint": "token", "kind": "expired_id_token"}),
    )
    .await;
    let token = google_token(&app, &google_code(&app, "alice").await).await;
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let verified = verify(&certs, id_token, issuer, client_id);
    assert!(verified.is_err_and(|error| error.contains("ExpiredSignature")));

    add_fault(
        &app,
        json!({"provider": "google", "endpoint": "token", "kind": "wrong_audience"}),
    )
    .await;
    let token = google_token(&app, &google_code(&app, "alice").await).await;
    let id_token = token.json["id_token"].as_str().unwrap_or_default();
    let verified = verify(&certs, id_token, issuer, client_id);
    assert!(verified.is_err_and(|error| error.contains("InvalidAudience")));
}

#[tokio::test]
async fn a_latency_fault_delays_the_answer_and_a_hang_never_answers_in_time() {
    let app = app();
    add_fault(
        &app,
        json!({"provider": "naver", "endpoint": "userinfo", "kind": "latency", "latencyMs": 200}),
    )
    .await;
    let started = Instant::now();
    let me = get(&app, "/naver/v1/nid/me", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "then answered normally"
    );

    add_fault(
        &app,
        json!({"provider": "google", "endpoint": "jwks", "kind": "hang"}),
    )
    .await;
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        get(&app, "/google/oauth2/v3/certs", &[]),
    )
    .await;
    assert!(hung.is_err(), "no answer within the client's timeout");
    assert_eq!(
        get(&app, "/google/oauth2/v3/certs", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_control_plane_lists_clears_counts_and_resets() {
    let app = app();
    let refused = post_json(
        &app,
        "/sandbox/oauth/faults",
        json!({"provider": "naver", "endpoint": "token", "kind": "bad_signature"}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.json["error"], "invalid_request");

    add_fault(
        &app,
        json!({"provider": "any", "endpoint": "userinfo", "kind": "hang", "count": 3}),
    )
    .await;
    let listed = get(&app, "/sandbox/oauth/faults", &[]).await.json;
    assert_eq!(
        listed,
        json!({"rules": [{"provider": "any", "endpoint": "userinfo", "kind": "hang", "count": 3}]})
    );
    let cleared = send(
        &app,
        request("DELETE", "/sandbox/oauth/faults", &[], Body::empty()),
    )
    .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, "/sandbox/oauth/faults", &[]).await.json,
        json!({"rules": []})
    );

    let code = naver_code(&app, "frank").await;
    let uri = format!("/naver/oauth2.0/token?{}", naver_token_query(&code));
    let _ = get(&app, &uri, &[]).await;
    let _ = get(&app, "/kakao/.well-known/jwks.json", &[]).await;
    let stats = get(&app, "/sandbox/oauth/stats", &[]).await.json;
    assert_eq!(
        stats["naver"],
        json!({"authorize": 1, "token": 1, "userinfo": 0, "jwks": 0})
    );
    assert_eq!(stats["kakao"]["jwks"], 1);
    assert_eq!(stats["google"]["token"], 0);

    let code = naver_code(&app, "frank").await;
    let reset = send(
        &app,
        request("POST", "/sandbox/oauth/reset", &[], Body::empty()),
    )
    .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    let stats = get(&app, "/sandbox/oauth/stats", &[]).await.json;
    assert_eq!(stats["naver"]["authorize"], 0);
    let uri = format!("/naver/oauth2.0/token?{}", naver_token_query(&code));
    let forgotten = get(&app, &uri, &[]).await;
    assert_eq!(
        forgotten.json["error_description"],
        "no valid data in session"
    );
}

#[tokio::test]
async fn health_lists_the_login_providers() {
    let health = get(&app(), "/health", &[]).await;
    assert_eq!(
        health.json["services"],
        json!(["toss", "kakao", "naver", "google", "fcm"])
    );
}

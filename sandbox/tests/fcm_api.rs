//! The FCM stand-in over HTTP: in process, the sender's whole flow as the core will run it (the
//! served service account → an assertion → an access token → sends → the delivery log), Google's
//! errors, the control plane's faults; over real TCP, a dropped connection as a client sees it,
//! and a throughput smoke figure.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Answer, app, call};

use std::time::{Duration, Instant};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use nene_sandbox::fcm::{
    CLIENT_EMAIL, PROJECT_ID,
    grant::{AssertionClaims, FIREBASE_MESSAGING_SCOPE, GOOGLE_TOKEN_URL, JWT_BEARER_GRANT_TYPE},
    service_account::{Registry, ServiceAccountKey},
};
use serde_json::{Value, json};
use tower::ServiceExt;

const SEND_PATH: &str = "/fcm/v1/projects/nene-sandbox/messages:send";

fn now_seconds() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

fn registry() -> &'static Registry {
    Registry::embedded().unwrap()
}

async fn control(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Answer {
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    call(
        app,
        method,
        uri,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn assertion(key: &ServiceAccountKey, audience: &str) -> String {
    let claims = AssertionClaims::for_key(key, audience, now_seconds());
    key.sign(&claims).unwrap()
}

fn token_form(assertion: &str) -> String {
    serde_urlencoded::to_string([
        ("grant_type", JWT_BEARER_GRANT_TYPE),
        ("assertion", assertion),
    ])
    .unwrap()
}

async fn exchange(app: &Router, assertion: &str, host: Option<&str>) -> Answer {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(host) = host {
        headers.push(("host", host));
    }
    call(
        app,
        "POST",
        "/fcm/token",
        &headers,
        Body::from(token_form(assertion)),
    )
    .await
}

async fn access_token(app: &Router) -> String {
    let answer = exchange(
        app,
        &assertion(registry().registered(), GOOGLE_TOKEN_URL),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn send_to(app: &Router, path: &str, bearer: Option<&str>, body: &Value) -> Answer {
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("authorization", authorization.as_str()));
    }
    call(app, "POST", path, &headers, Body::from(body.to_string())).await
}

async fn send(app: &Router, bearer: &str, body: &Value) -> Answer {
    send_to(app, SEND_PATH, Some(bearer), body).await
}

async fn add_fault(app: &Router, rule: Value) {
    let answer = control(app, "POST", "/sandbox/fcm/faults", Some(rule)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
}

fn to_device(token: &str) -> Value {
    json!({"message": {
        "token": token,
        "notification": {"title": "챌린지 정산", "body": "환급금 5,000원이 도착했어요"},
        "data": {"challengeId": "c-42", "kind": "settled"},
        "android": {"priority": "high", "ttl": "86400s", "notification": {"channel_id": "settlement"}},
    }})
}

fn error_code(answer: &Answer) -> &Value {
    &answer.json["error"]["details"][0]["errorCode"]
}

#[tokio::test]
async fn a_sender_exchanges_its_assertion_sends_and_the_delivery_log_shows_the_message() {
    let app = app();
    let issued = exchange(
        &app,
        &assertion(registry().registered(), GOOGLE_TOKEN_URL),
        None,
    )
    .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.json);
    assert_eq!(issued.json["token_type"], "Bearer");
    assert_eq!(issued.json["expires_in"], 3599);
    let token = issued.json["access_token"].as_str().unwrap_or_default();
    assert!(token.starts_with("ya29."), "{token}");

    let sent = send(&app, token, &to_device("device-token-1")).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.json);
    let name = sent.json["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("projects/nene-sandbox/messages/0:"),
        "{name}"
    );
    assert_eq!(
        sent.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json; charset=UTF-8"[..])
    );
    send(&app, token, &to_device("device-token-2")).await;

    let log = control(
        &app,
        "GET",
        "/sandbox/fcm/deliveries?token=device-token-1",
        None,
    )
    .await;
    assert_eq!(log.status, StatusCode::OK);
    let log = log.json.as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["name"], name);
    assert_eq!(log[0]["token"], "device-token-1");
    assert_eq!(log[0]["notification"]["title"], "챌린지 정산");
    assert_eq!(log[0]["data"]["kind"], "settled");
    assert_eq!(
        log[0]["android"]["notification"]["channel_id"],
        "settlement"
    );
    assert!(log[0]["at"].as_str().is_some_and(|at| at.ends_with('Z')));

    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["sent"], 2);
    assert_eq!(stats["tokens_issued"], 1);
    assert_eq!(stats["rejected_by_kind"]["unregistered"], 0);
    let everything = control(&app, "GET", "/sandbox/fcm/deliveries", None).await;
    assert_eq!(everything.json.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_served_service_account_is_what_a_client_loads_and_signs_with() {
    let app = app();
    let file = control(&app, "GET", "/sandbox/fcm/service-account.json", None).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.json["type"], "service_account");
    assert_eq!(file.json["project_id"], PROJECT_ID);
    assert_eq!(file.json["client_email"], CLIENT_EMAIL);
    assert_eq!(file.json["token_uri"], GOOGLE_TOKEN_URL);
    assert!(
        file.json["private_key"]
            .as_str()
            .is_some_and(|pem| pem.starts_with("-----BEGIN PRIVATE KEY-----"))
    );
    let key = ServiceAccountKey::from_json(&file.json.to_string()).unwrap();
    let issued = exchange(&app, &assertion(&key, GOOGLE_TOKEN_URL), None).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.json);

    let rogue = control(
        &app,
        "GET",
        "/sandbox/fcm/unregistered-service-account.json",
        None,
    )
    .await;
    let rogue = ServiceAccountKey::from_json(&rogue.json.to_string()).unwrap();
    let refused = exchange(&app, &assertion(&rogue, GOOGLE_TOKEN_URL), None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    );
}

#[tokio::test]
async fn the_sandboxs_own_token_url_is_an_accepted_audience_and_others_are_not() {
    let app = app();
    let own = assertion(registry().registered(), "http://sandbox:8090/fcm/token");
    let accepted = exchange(&app, &own, Some("sandbox:8090")).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.json);
    let elsewhere = exchange(&app, &own, Some("other:8090")).await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        elsewhere.json["error_description"],
        "Invalid JWT: Failed audience check."
    );
}

#[tokio::test]
async fn token_requests_are_refused_as_google_refuses_them() {
    let app = app();
    let key = registry().registered();
    let sign = |claims: &AssertionClaims| key.sign(claims).unwrap();
    let now = now_seconds();
    let honest = AssertionClaims::for_key(key, GOOGLE_TOKEN_URL, now);
    let cases = [
        (
            sign(&AssertionClaims {
                exp: now - 1,
                iat: now - 100,
                ..honest.clone()
            }),
            "invalid_grant",
        ),
        (
            sign(&AssertionClaims {
                exp: now + 3601,
                ..honest.clone()
            }),
            "invalid_grant",
        ),
        (
            sign(&AssertionClaims {
                scope: Some("https://www.googleapis.com/auth/drive".to_owned()),
                ..honest.clone()
            }),
            "invalid_scope",
        ),
        (
            sign(&AssertionClaims {
                iss: "nobody@nene-sandbox.iam.gserviceaccount.com".to_owned(),
                ..honest.clone()
            }),
            "invalid_grant",
        ),
    ];
    for (assertion, error) in cases {
        let answer = exchange(&app, &assertion, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
        assert_eq!(answer.json["error"], error, "{}", answer.json);
    }
    let wrong_grant = call(
        &app,
        "POST",
        "/fcm/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        Body::from("grant_type=client_credentials&assertion=x"),
    )
    .await;
    assert_eq!(wrong_grant.json["error"], "unsupported_grant_type");
    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["tokens_issued"], 0);
    assert_eq!(honest.scope.as_deref(), Some(FIREBASE_MESSAGING_SCOPE));
}

#[tokio::test]
async fn the_send_path_has_a_literal_colon_and_nothing_else_routes_there() {
    let app = app();
    let token = access_token(&app).await;
    for path in [
        "/fcm/v1/projects/nene-sandbox/messages/send",
        "/fcm/v1/projects/nene-sandbox/messages:sendx",
        "/fcm/v1/projects/nene-sandbox/messages",
        "/v1/projects/nene-sandbox/messages:send",
    ] {
        let answer = send_to(&app, path, Some(&token), &to_device("d")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let encoded = "/fcm/v1/projects/nene-sandbox/messages%3Asend";
    let answer = send_to(&app, encoded, Some(&token), &to_device("d")).await;
    assert_ne!(answer.status, StatusCode::OK, "{encoded}");
    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["sent"], 0);
}

#[tokio::test]
async fn sends_are_refused_with_googles_error_shape_and_status() {
    let app = app();
    let token = access_token(&app).await;

    let missing = send_to(&app, SEND_PATH, None, &to_device("d")).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(
        missing.json["error"]["details"][0]["reason"],
        "CREDENTIALS_MISSING"
    );
    assert!(missing.headers.contains_key(header::WWW_AUTHENTICATE));
    let unknown = send_to(&app, SEND_PATH, Some("ya29.forged"), &to_device("d")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    let other_project = "/fcm/v1/projects/someone-else/messages:send";
    let mismatch = send_to(&app, other_project, Some(&token), &to_device("d")).await;
    assert_eq!(mismatch.status, StatusCode::FORBIDDEN);
    assert_eq!(mismatch.json["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(*error_code(&mismatch), "SENDER_ID_MISMATCH");

    let non_string = json!({"message": {"token": "d", "data": {"points": 500}}});
    let invalid = send(&app, &token, &non_string).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        invalid.json,
        json!({"error": {
            "code": 400,
            "message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 500",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"},
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{
                    "field": "message.data[0].value",
                    "description": "Invalid value at 'message.data[0].value' (TYPE_STRING), 500",
                }]},
            ],
        }})
    );

    let unregistered = control(
        &app,
        "POST",
        "/sandbox/fcm/tokens/old-phone/unregister",
        None,
    )
    .await;
    assert_eq!(unregistered.status, StatusCode::NO_CONTENT);
    let gone = send(&app, &token, &to_device("old-phone")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json["error"]["status"], "NOT_FOUND");
    assert_eq!(*error_code(&gone), "UNREGISTERED");

    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["sent"], 0);
    assert_eq!(
        stats["rejected_by_kind"],
        json!({
            "unauthenticated": 2, "sender_id_mismatch": 1, "invalid_argument": 1,
            "unregistered": 1, "quota_exceeded": 0, "unavailable": 0, "internal": 0,
            "third_party_auth_error": 0, "drop_connection": 0,
        })
    );
}

#[tokio::test]
async fn injected_faults_answer_each_fcm_error_and_then_lapse() {
    let app = app();
    let token = access_token(&app).await;
    let table = [
        ("unregistered", 404, "UNREGISTERED"),
        ("invalid_argument", 400, "INVALID_ARGUMENT"),
        ("quota_exceeded", 429, "QUOTA_EXCEEDED"),
        ("unavailable", 503, "UNAVAILABLE"),
        ("internal", 500, "INTERNAL"),
        ("sender_id_mismatch", 403, "SENDER_ID_MISMATCH"),
        ("third_party_auth_error", 401, "THIRD_PARTY_AUTH_ERROR"),
    ];
    for (kind, status, code) in table {
        add_fault(&app, json!({"token": "flaky", "kind": kind})).await;
        let untouched = send(&app, &token, &to_device("steady")).await;
        assert_eq!(untouched.status, StatusCode::OK, "{kind}");
        let faulted = send(&app, &token, &to_device("flaky")).await;
        assert_eq!(faulted.status.as_u16(), status, "{kind}: {}", faulted.json);
        assert_eq!(*error_code(&faulted), code, "{kind}");
        let lapsed = send(&app, &token, &to_device("flaky")).await;
        assert_eq!(lapsed.status, StatusCode::OK, "{kind}");
    }
    add_fault(
        &app,
        json!({"kind": "quota_exceeded", "retryAfterSeconds": 2}),
    )
    .await;
    let quota = send(&app, &token, &to_device("anyone")).await;
    assert_eq!(quota.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(quota.json["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        quota.headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    add_fault(
        &app,
        json!({"kind": "unavailable", "retryAfterSeconds": 1, "count": 0}),
    )
    .await;
    for _ in 0..3 {
        let down = send(&app, &token, &to_device("anyone")).await;
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(down.headers.contains_key(header::RETRY_AFTER));
    }
    let listed = control(&app, "GET", "/sandbox/fcm/faults", None).await;
    assert_eq!(listed.json["rules"][0]["kind"], "unavailable");
    assert_eq!(listed.json["rules"][0]["count"], 0);
    let cleared = control(&app, "DELETE", "/sandbox/fcm/faults", None).await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    let back = send(&app, &token, &to_device("anyone")).await;
    assert_eq!(back.status, StatusCode::OK);
    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["rejected_by_kind"]["unavailable"], 4);
    assert_eq!(stats["sent"], 7 * 2 + 1);
}

#[tokio::test]
async fn a_latency_fault_answers_late_but_delivers() {
    let app = app();
    let token = access_token(&app).await;
    add_fault(&app, json!({"kind": "latency", "latencyMs": 200})).await;
    let started = Instant::now();
    let late = send(&app, &token, &to_device("d")).await;
    assert_eq!(late.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["sent"], 1);
}

#[tokio::test]
async fn validate_only_answers_a_fake_name_and_delivers_nothing() {
    let app = app();
    let token = access_token(&app).await;
    let mut body = to_device("d");
    body["validate_only"] = json!(true);
    let checked = send(&app, &token, &body).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert_eq!(
        checked.json["name"],
        "projects/nene-sandbox/messages/fake_message_id"
    );
    let log = control(&app, "GET", "/sandbox/fcm/deliveries", None).await;
    assert_eq!(log.json, json!([]));
}

#[tokio::test]
async fn the_control_plane_refuses_bad_rules_and_a_reset_keeps_the_access_token() {
    let app = app();
    let token = access_token(&app).await;
    for rule in [
        json!({"kind": "explode"}),
        json!({"kind": "latency"}),
        json!({"kind": "unregistered", "retryAfterSeconds": 1}),
    ] {
        let refused = control(&app, "POST", "/sandbox/fcm/faults", Some(rule)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.json["error"]["status"], "INVALID_ARGUMENT");
    }
    let bad_query = control(&app, "GET", "/sandbox/fcm/deliveries?tokn=x", None).await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);

    control(&app, "POST", "/sandbox/fcm/tokens/old/unregister", None).await;
    add_fault(&app, json!({"kind": "internal", "count": 0})).await;
    send(&app, &token, &to_device("d")).await;
    let reset = control(&app, "POST", "/sandbox/fcm/reset", None).await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    let after = send(&app, &token, &to_device("old")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.json);
    let stats = control(&app, "GET", "/sandbox/fcm/stats", None).await.json;
    assert_eq!(stats["sent"], 1);
    assert_eq!(stats["rejected_by_kind"]["internal"], 0);
}

#[tokio::test]
async fn health_lists_fcm() {
    let health = control(&app(), "GET", "/health", None).await;
    assert!(
        health.json["services"]
            .as_array()
            .is_some_and(|services| services.contains(&json!("fcm")))
    );
}

/// The whole sandbox on 127.0.0.1:0; its base URL.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
    let listener = listener.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    format!("http://{address}")
}

async fn tcp_access_token(client: &reqwest::Client, base: &str) -> String {
    let audience = format!("{base}/fcm/token");
    let response = client
        .post(&audience)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(token_form(&assertion(registry().registered(), &audience)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap_or_default().to_owned()
}

async fn add_tcp_fault(client: &reqwest::Client, base: &str) {
    let fault = client
        .post(format!("{base}/sandbox/fcm/faults"))
        .json(&json!({"token": "doomed", "kind": "drop_connection"}))
        .send()
        .await;
    assert_eq!(
        fault.map(|response| response.status()).ok(),
        Some(reqwest::StatusCode::CREATED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connection_closes_the_connection_without_any_answer() {
    let base = serve().await;
    let client = reqwest::Client::new();
    let token = tcp_access_token(&client, &base).await;
    add_tcp_fault(&client, &base).await;
    let send = |device: &'static str| {
        client
            .post(format!("{base}{SEND_PATH}"))
            .bearer_auth(&token)
            .json(&to_device(device))
            .send()
    };
    let dropped = tokio::time::timeout(Duration::from_secs(10), send("doomed")).await;
    let dropped = dropped.expect("the sandbox neither answered nor hung up");
    match dropped {
        Ok(response) => unreachable!("the client got an answer: {}", response.status()),
        Err(error) => {
            assert!(error.status().is_none(), "{error:?}");
            assert!(error.is_request() || error.is_connect(), "{error:?}");
        }
    }
    let next = send("doomed").await;
    assert_eq!(
        next.map(|response| response.status()).ok(),
        Some(reqwest::StatusCode::OK)
    );

    // On the wire: not one byte comes back before the sandbox closes the connection.
    add_tcp_fault(&client, &base).await;
    let body = to_device("doomed").to_string();
    let address = base.trim_start_matches("http://");
    let raw = format!(
        "POST {SEND_PATH} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let address = address.to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(raw.as_bytes())?;
        let mut answer = Vec::new();
        // A timeout here is an error: the sandbox kept the connection open.
        stream.read_to_end(&mut answer).map(|_| answer)
    })
    .await
    .unwrap();
    let answer = answer.expect("no end of stream");
    assert_eq!(String::from_utf8_lossy(&answer), "");
    let stats: Value = client
        .get(format!("{base}/sandbox/fcm/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["sent"], 1);
    assert_eq!(stats["rejected_by_kind"]["drop_connection"], 2);
}

/// Prints figures, asserts only correctness: timing depends on the build and the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_smoke_prints_sends_per_second() {
    const IN_PROCESS_SENDS: u32 = 20_000;
    const TCP_SENDS_PER_CLIENT: u32 = 1_000;
    const TCP_CLIENTS: u32 = 8;

    let app = app();
    let token = access_token(&app).await;
    let bodies: Vec<String> = (0..IN_PROCESS_SENDS)
        .map(|index| to_device(&format!("device-{index}")).to_string())
        .collect();
    let authorization = format!("Bearer {token}");
    let started = Instant::now();
    for body in bodies {
        let request = Request::builder()
            .method("POST")
            .uri(SEND_PATH)
            .header("authorization", &authorization)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await;
        let status = response.map(|response| response.status()).ok();
        assert_eq!(status, Some(StatusCode::OK));
    }
    let elapsed = started.elapsed();
    println!(
        "fcm in-process: {IN_PROCESS_SENDS} sends in {elapsed:?}: {:.0}/s",
        f64::from(IN_PROCESS_SENDS) / elapsed.as_secs_f64()
    );

    let base = serve().await;
    let client = reqwest::Client::new();
    let token = tcp_access_token(&client, &base).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TCP_CLIENTS {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            for index in 0..TCP_SENDS_PER_CLIENT {
                let response = client
                    .post(format!("{base}{SEND_PATH}"))
                    .bearer_auth(&token)
                    .json(&to_device(&format!("device-{task}-{index}")))
                    .send()
                    .await;
                let status = response.map(|response| response.status()).ok();
                assert_eq!(status, Some(reqwest::StatusCode::OK));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let sends = TCP_CLIENTS * TCP_SENDS_PER_CLIENT;
    println!(
        "fcm over TCP ({TCP_CLIENTS} keep-alive clients, client in the same process): {sends} \
         sends in {elapsed:?}: {:.0}/s",
        f64::from(sends) / elapsed.as_secs_f64()
    );
}

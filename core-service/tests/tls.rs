//! TLS out of the core, proved against servers that speak it: the sandbox served over HTTPS, a
//! throwaway Postgres cluster with `ssl = on` and a `redis-server` with a TLS port, each with a
//! certificate for `localhost` and 127.0.0.1 signed by a CA this test makes (`rcgen`). The core
//! trusts that CA through its extra roots (`EXTRA_CA_FILE` in production), or does not, and:
//! - trusted, a Toss confirm credits the points, a Kakao login returns a user and a push is
//!   delivered over HTTP/2; Postgres connects with `sslmode=verify-full`, Redis with `rediss://`;
//! - not trusted, each call fails as a TLS failure, and nothing is lost: the payment stays
//!   unknown (never declined, never credited) until the reconciler settles it once trust is
//!   fixed, the login is a 502 `PROVIDER_UNAVAILABLE`, the push is retried.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::Request, http::Version, middleware::Next};
use nene_core::{
    auth::{
        self, Auth, AuthConfig, AuthError,
        oauth::{self, ProviderError},
    },
    config::{CoreConfig, DbSettings},
    ledger::{ensure_wallet_in_tx, wallet_balance},
    notifications::{
        self, NotificationKind,
        dispatcher::{Dispatcher, DispatcherSettings, Source},
        fcm::{FcmClient, FcmConfig, ServiceAccount},
        outcome::Backoff,
    },
    payments::{
        self, ConfirmRequest, PaymentSettings, PaymentState, Payments, PointsState,
        toss::{TossConfig, TossError},
        worker,
    },
    tls::{HttpVersions, Trust},
};
use nene_domain::{
    ErrorCode,
    payments::PaymentKey,
    pkce::{CodeChallenge, CodeVerifier},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const USER: &str = "user_tls";
const REDIRECT: &str = "https://app.nene.test/auth/done";

// --- certificates ---------------------------------------------------------------------------

/// A CA of this test's own and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf_cert.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }

    /// Mozilla's roots and this CA: what `EXTRA_CA_FILE` holding the CA gives the core.
    fn trusted(&self) -> Trust {
        Trust::with_extra_pem(self.ca_pem.as_bytes()).unwrap()
    }
}

/// Mozilla's roots only: the test CA is not among them.
fn not_trusted() -> Trust {
    Trust::public_roots()
}

// --- the sandbox over HTTPS -----------------------------------------------------------------

/// The whole sandbox behind a TLS listener, recording the HTTP version of every request.
struct HttpsSandbox {
    /// The test's own client (the browser, the Toss widget, the control plane): trusts the CA.
    client: common::Sandbox,
    versions: Arc<Mutex<Vec<(String, Version)>>>,
}

impl HttpsSandbox {
    async fn start(pki: &Pki) -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let config =
            nene_sandbox::tls::server_config(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes())
                .unwrap();
        let versions: Arc<Mutex<Vec<(String, Version)>>> = Arc::default();
        let seen = Arc::clone(&versions);
        let router = nene_sandbox::router().layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let seen = Arc::clone(&seen);
                async move {
                    if let Ok(mut seen) = seen.lock() {
                        seen.push((request.uri().path().to_owned(), request.version()));
                    }
                    next.run(request).await
                }
            },
        ));
        let listener = nene_sandbox::tls::TlsListener::new(tcp, config);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let http = pki
            .trusted()
            .http(HttpVersions::Http1)
            .unwrap()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        HttpsSandbox {
            client: common::Sandbox {
                // A name, not an address: the certificate is checked against the host name.
                url: format!("https://localhost:{port}"),
                http,
            },
            versions,
        }
    }

    fn url(&self) -> &str {
        &self.client.url
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.client.post(path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.client.get(path).await
    }

    /// The HTTP versions the requests to paths starting with `prefix` came in.
    fn versions_of(&self, prefix: &str) -> Vec<Version> {
        self.versions
            .lock()
            .map(|seen| {
                seen.iter()
                    .filter(|(path, _)| path.starts_with(prefix))
                    .map(|(_, version)| *version)
                    .collect()
            })
            .unwrap_or_default()
    }
}

// --- payments -------------------------------------------------------------------------------

fn payments_trusting(db: PgPool, sandbox: &HttpsSandbox, tls: Trust) -> Payments {
    Payments::new(
        db,
        &TossConfig {
            base_url: sandbox.url().to_owned(),
            secret_key: "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R".to_owned(),
            timeout: Duration::from_secs(5),
            tls,
        },
        PaymentSettings {
            toss_timeout: Duration::from_secs(5),
            ..PaymentSettings::fast()
        },
    )
    .unwrap()
}

/// An order, paid in the (HTTPS) Toss widget: its payment key.
async fn paid_order(payments: &Payments, sandbox: &HttpsSandbox) -> ConfirmRequest {
    let order = payments::create_order(&payments.db, USER, 10_000)
        .await
        .unwrap();
    let paid = sandbox
        .post(
            "/sandbox/toss/pay",
            &json!({ "orderId": order.order_id.as_str(), "amount": order.amount }),
        )
        .await;
    ConfirmRequest {
        payment_key: PaymentKey::parse(paid["paymentKey"].as_str().unwrap_or_default()).unwrap(),
        order_id: order.order_id,
        amount: order.amount,
    }
}

async fn balance(db: &PgPool) -> i64 {
    let mut conn = db.acquire().await.unwrap();
    let wallet = ensure_wallet_in_tx(&mut conn, USER).await.unwrap();
    wallet_balance(&mut conn, wallet)
        .await
        .unwrap()
        .balance
        .get()
}

async fn confirms_executed(sandbox: &HttpsSandbox) -> i64 {
    sandbox.get("/sandbox/toss/stats").await["confirms_executed"]
        .as_i64()
        .unwrap_or(-1)
}

#[sqlx::test(migrations = "./migrations")]
async fn over_https_with_the_ca_trusted_a_toss_confirm_credits_the_points(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let payments = payments_trusting(db, &sandbox, pki.trusted());
    let request = paid_order(&payments, &sandbox).await;
    let view = payments::confirm(&payments, USER, &request).await.unwrap();
    assert_eq!(
        (view.status, view.points),
        (PaymentState::Done, PointsState::Credited)
    );
    assert_eq!(balance(&payments.db).await, 10_000);
    assert_eq!(confirms_executed(&sandbox).await, 1);
    // Toss is spoken to in HTTP/1.1, as before TLS.
    assert_eq!(
        sandbox.versions_of("/v1/payments/confirm"),
        [Version::HTTP_11]
    );
    common::assert_sound(&payments.db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn with_the_ca_not_trusted_a_confirm_is_a_tls_failure_left_unknown_until_trust_is_fixed(
    db: PgPool,
) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let untrusting = payments_trusting(db.clone(), &sandbox, not_trusted());
    let request = paid_order(&untrusting, &sandbox).await;

    // The client says what went wrong: TLS, not a timeout or a refusal.
    let read = untrusting
        .toss
        .payment_by_order(request.order_id.as_str())
        .await;
    let Err(TossError::Unknown(reason)) = read else {
        panic!("an untrusted certificate must be an unknown outcome: {read:?}");
    };
    assert!(reason.starts_with("tls: "), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");

    // The confirm: unknown, so the payment waits for the reconciler — not declined, no points.
    let view = payments::confirm(&untrusting, USER, &request)
        .await
        .unwrap();
    assert_eq!(
        (view.status, view.points),
        (PaymentState::Confirming, PointsState::None)
    );
    assert_eq!(confirms_executed(&sandbox).await, 0, "nothing reached Toss");
    assert_eq!(balance(&db).await, 0);

    // Past its lease the reconciler asks Toss, still without trusting it: still unknown.
    let lease_over = || async {
        sqlx::query("UPDATE payments SET updated_at = now() - interval '1 hour'")
            .execute(&db)
            .await
            .unwrap();
    };
    lease_over().await;
    worker::run_once(&untrusting).await.unwrap();
    let view = payments::get_payment(&db, USER, request.order_id.as_str())
        .await
        .unwrap();
    assert_eq!(
        (view.status, view.points),
        (PaymentState::Confirming, PointsState::None),
        "a TLS failure never declines a payment"
    );

    // Trust fixed: the CA put in `EXTRA_CA_FILE` and the core restarted (its configuration read
    // again, its payment worker built from it); the reconciler settles the payment.
    let files = Scratch::new("extra-ca");
    let extra_ca = files.write("extra-ca.pem", &pki.ca_pem);
    let restarted = CoreConfig::from_lookup(|name| match name {
        "NENE_ENV" => Some("dev".to_owned()),
        "DATABASE_URL" => Some("postgres://unused@127.0.0.1/unused".to_owned()),
        "CORE_SIGNING_SECRET" => Some("tls-test-signing-secret-0123456789abcdef".to_owned()),
        "TOSS_API_URL" => Some(sandbox.url().to_owned()),
        "EXTRA_CA_FILE" => Some(extra_ca.display().to_string()),
        _ => None,
    })
    .unwrap();
    assert_eq!(restarted.toss.tls.extra_roots(), 1);
    let trusting = Payments::new(db.clone(), &restarted.toss, PaymentSettings::fast()).unwrap();
    lease_over().await;
    let began = Instant::now();
    loop {
        worker::run_once(&trusting).await.unwrap();
        let view = payments::get_payment(&db, USER, request.order_id.as_str())
            .await
            .unwrap();
        if view.points == PointsState::Credited {
            assert_eq!(view.status, PaymentState::Done);
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "never settled: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // More passes change nothing: credited exactly once, confirmed at Toss once.
    for _ in 0..3 {
        lease_over().await;
        worker::run_once(&trusting).await.unwrap();
    }
    assert_eq!(balance(&db).await, 10_000);
    assert_eq!(confirms_executed(&sandbox).await, 1);
    let toss = sandbox
        .get(&format!(
            "/sandbox/toss/payments/{}",
            request.payment_key.as_str()
        ))
        .await;
    assert_eq!(toss["status"], "DONE");
    let lots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE charge_lot_id IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(lots, 1);
    common::assert_sound(&db).await;
}

// --- sign-in --------------------------------------------------------------------------------

fn auth_trusting(db: PgPool, sandbox: &HttpsSandbox, tls: Trust) -> Auth {
    let providers = common::providers_at(sandbox.url());
    Auth::new(
        db,
        AuthConfig {
            redirect_uris: vec![REDIRECT.to_owned()],
            providers,
            tls,
        },
    )
    .unwrap()
}

/// The app starts a login with a fresh PKCE verifier's challenge and the user's browser goes to
/// Kakao (the HTTPS sandbox approves at once as `who`): code, state and the app's verifier.
async fn authorize(auth: &Auth, sandbox: &HttpsSandbox, who: &str) -> (String, String, String) {
    let verifier = oauth::random_token();
    let challenge = CodeChallenge::of(&CodeVerifier::parse(&verifier).unwrap());
    let url = auth::start(auth, "kakao", REDIRECT, &challenge, "10.0.0.1")
        .await
        .unwrap();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let response = sandbox
        .client
        .http
        .get(format!("{url}&sandbox_user={who}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = common::location(&response);
    (
        common::query_param(&location, "code"),
        common::query_param(&location, "state"),
        verifier,
    )
}

#[sqlx::test(migrations = "./migrations")]
async fn over_https_with_the_ca_trusted_a_kakao_login_returns_a_user(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let auth = auth_trusting(db, &sandbox, pki.trusted());
    let (code, state, verifier) = authorize(&auth, &sandbox, "alice").await;
    let session = auth::callback(&auth, "kakao", &code, &state, Some(&verifier), "10.0.0.1")
        .await
        .unwrap();
    assert!(session.user.is_new);
    assert!(session.user.nickname.starts_with("네네"));
    // The code exchange and the JWKS went over HTTPS, in HTTP/1.1.
    assert_eq!(
        sandbox.versions_of("/kakao/oauth/token"),
        [Version::HTTP_11]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn with_the_ca_not_trusted_a_kakao_login_is_provider_unavailable(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let auth = auth_trusting(db, &sandbox, not_trusted());
    let (code, state, verifier) = authorize(&auth, &sandbox, "alice").await;
    let refused = auth::callback(&auth, "kakao", &code, &state, Some(&verifier), "10.0.0.1").await;
    let Err(AuthError::Provider(ProviderError::Unavailable(reason))) = &refused else {
        panic!("an untrusted provider must be unavailable: {refused:?}");
    };
    assert!(reason.starts_with("tls: "), "{reason}");
    let code = refused.map(|_| ()).map_err(|error| error.code());
    assert_eq!(code, Err(ErrorCode::ProviderUnavailable));
    assert_eq!(ErrorCode::ProviderUnavailable.http_status(), 502);
    assert!(sandbox.versions_of("/kakao/oauth/token").is_empty());
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&auth.db)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

// --- push -----------------------------------------------------------------------------------

fn fcm_trusting(sandbox: &HttpsSandbox, tls: Trust) -> FcmClient {
    FcmClient::new(FcmConfig {
        api_url: format!("{}/fcm", sandbox.url()),
        token_url: format!("{}/fcm/token", sandbox.url()),
        account: ServiceAccount::from_json(nene_sandbox::fcm::SERVICE_ACCOUNT_JSON).unwrap(),
        send_timeout: Duration::from_secs(5),
        tls,
    })
    .unwrap()
}

fn dispatcher(db: &PgPool, fcm: FcmClient, redis: Option<redis::Client>) -> Dispatcher {
    Dispatcher::new(
        db.clone(),
        fcm,
        redis,
        DispatcherSettings {
            claim_batch_max: 50,
            batches_in_flight: 1,
            sends_per_batch_in_flight: 8,
            visibility_timeout: Duration::from_secs(5),
            idle_interval: Duration::from_millis(20),
            backoff: Backoff {
                base_ms: 10,
                max_ms: 100,
            },
            redis_prefix: format!("nene:test:{}", Uuid::new_v4().simple()),
        },
    )
}

/// A user with one Android phone and a notification for them: its id.
async fn notification(db: &PgPool) -> Uuid {
    sqlx::query("INSERT INTO users (id, nickname) VALUES ($1, $1)")
        .bind(USER)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO user_devices (user_id, device_id, platform, token) \
         VALUES ($1, 'phone', 'android', 'token-tls')",
    )
    .bind(USER)
    .execute(db)
    .await
    .unwrap();
    let key = format!("test:{}", Uuid::new_v4());
    let mut tx = db.begin().await.unwrap();
    notifications::enqueue_in_tx(
        &mut tx,
        USER,
        NotificationKind::PointsCredited,
        &json!({ "order_id": "order_1", "points": 5_000 }),
        &key,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query_scalar("SELECT id FROM notifications WHERE dedup_key = $1")
        .bind(&key)
        .fetch_one(db)
        .await
        .unwrap()
}

/// (state, attempts, last_error).
async fn row(db: &PgPool, id: Uuid) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state::text, attempts, last_error FROM notifications WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Feeds and works until the notification is no longer PENDING; the sources of the passes.
async fn drain(db: &PgPool, dispatcher: &Dispatcher, id: Uuid) -> Vec<Source> {
    let began = Instant::now();
    let mut sources = Vec::new();
    while row(db, id).await.0 == "pending" {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "still pending: {:?}",
            row(db, id).await
        );
        dispatcher.feed_once().await.unwrap();
        let pass = dispatcher.work_once().await.unwrap();
        if pass.attempted > 0 {
            sources.push(pass.source);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    sources
}

async fn deliveries_of(sandbox: &HttpsSandbox, id: Uuid) -> usize {
    let log = sandbox.get("/sandbox/fcm/deliveries").await;
    log.as_array()
        .map(|deliveries| {
            deliveries
                .iter()
                .filter(|delivery| delivery["data"]["notification_id"] == id.to_string())
                .count()
        })
        .unwrap_or(0)
}

#[sqlx::test(migrations = "./migrations")]
async fn over_https_with_the_ca_trusted_a_push_is_delivered_over_http2(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let id = notification(&db).await;
    let dispatcher = dispatcher(&db, fcm_trusting(&sandbox, pki.trusted()), None);
    drain(&db, &dispatcher, id).await;
    assert_eq!(row(&db, id).await.0, "sent");
    assert_eq!(deliveries_of(&sandbox, id).await, 1);
    // FCM and its token endpoint were asked in HTTP/2 (ALPN), as fcm.googleapis.com answers.
    assert_eq!(sandbox.versions_of("/fcm/v1/"), [Version::HTTP_2]);
    assert_eq!(sandbox.versions_of("/fcm/token"), [Version::HTTP_2]);
}

#[sqlx::test(migrations = "./migrations")]
async fn with_the_ca_not_trusted_a_push_is_retried_not_lost(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let id = notification(&db).await;
    let untrusting = dispatcher(&db, fcm_trusting(&sandbox, not_trusted()), None);
    let pass = untrusting.work_once().await.unwrap();
    assert_eq!(pass.attempted, 1);
    let (state, attempts, last_error) = row(&db, id).await;
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 1),
        "kept for a retry"
    );
    let last_error = last_error.unwrap_or_default();
    assert!(last_error.contains("tls: "), "{last_error}");
    assert_eq!(deliveries_of(&sandbox, id).await, 0);
    // Trust fixed: the retry delivers it, once.
    let trusting = dispatcher(&db, fcm_trusting(&sandbox, pki.trusted()), None);
    drain(&db, &trusting, id).await;
    assert_eq!(row(&db, id).await.0, "sent");
    assert_eq!(deliveries_of(&sandbox, id).await, 1);
}

// --- Redis over TLS -------------------------------------------------------------------------

/// A directory of this test's own under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nene-tls-{what}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own serving TLS only (no plain port), killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
    _files: Scratch,
}

impl TlsRedis {
    async fn start(pki: &Pki) -> Self {
        let files = Scratch::new("redis");
        let cert = files.write("redis.crt", &pki.leaf_pem);
        let key = files.write("redis.key", &pki.leaf_key_pem);
        let ca = files.write("ca.pem", &pki.ca_pem);
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        let redis = TlsRedis {
            port,
            child,
            _files: files,
        };
        // Listening is enough to know it started; whether TLS works is the tests' question.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the TLS redis-server did not start on port {port}");
    }

    fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ping(client: &redis::Client) -> redis::RedisResult<String> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut connection).await
}

#[tokio::test]
async fn rediss_reaches_a_tls_redis_whose_ca_is_trusted_and_is_refused_by_name_otherwise() {
    let pki = Pki::new("NeNe test CA");
    let redis = TlsRedis::start(&pki).await;
    for host in ["localhost", "127.0.0.1"] {
        let client = pki.trusted().redis_client(&redis.url(host)).unwrap();
        assert_eq!(ping(&client).await.unwrap(), "PONG", "{host}");
    }
    let untrusting = not_trusted().redis_client(&redis.url("localhost")).unwrap();
    let refused = ping(&untrusting).await;
    let error = refused
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("UnknownIssuer") || error.contains("certificate"),
        "{error}"
    );
    // A CA that signed nothing of this server's is no better.
    let stranger = Pki::new("Another CA");
    let wrong = stranger
        .trusted()
        .redis_client(&redis.url("localhost"))
        .unwrap();
    assert!(ping(&wrong).await.is_err());
}

#[sqlx::test(migrations = "./migrations")]
async fn the_notification_schedule_runs_on_a_tls_redis_and_fcm_over_https(db: PgPool) {
    let pki = Pki::new("NeNe test CA");
    let sandbox = HttpsSandbox::start(&pki).await;
    let redis = TlsRedis::start(&pki).await;
    let id = notification(&db).await;
    let client = pki.trusted().redis_client(&redis.url("localhost")).unwrap();
    let dispatcher = dispatcher(&db, fcm_trusting(&sandbox, pki.trusted()), Some(client));
    let sources = drain(&db, &dispatcher, id).await;
    assert_eq!(sources, [Source::Redis], "claimed from the TLS Redis");
    assert_eq!(row(&db, id).await.0, "sent");
    assert_eq!(deliveries_of(&sandbox, id).await, 1);
}

// --- Postgres over TLS ----------------------------------------------------------------------

/// Where Debian puts Postgres' server binaries (initdb, pg_ctl), newest major first, or `PATH`.
fn postgres_bin() -> PathBuf {
    let mut majors: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    majors.sort();
    if let Some(bin) = majors.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "Postgres' server binaries (initdb, pg_ctl) are not installed: this test starts a \
             cluster with ssl = on. scripts/setup.sh installs them (apt-get install postgresql)."
        )
    })
}

fn run(what: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway Postgres cluster with `ssl = on` and the test CA's leaf as its certificate,
/// listening on 127.0.0.1 only; stopped and removed on drop. Run as `postgres` when the test runs
/// as root (initdb refuses root), as `scripts/lib.sh` does.
struct TlsPostgres {
    bin: PathBuf,
    port: u16,
    run_as: Vec<String>,
    files: Scratch,
}

impl TlsPostgres {
    fn start(pki: &Pki) -> Self {
        let bin = postgres_bin();
        let files = Scratch::new("postgres");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
        let run_as: Vec<String> = if root {
            ["runuser", "-u", "postgres", "--"]
                .map(str::to_owned)
                .to_vec()
        } else {
            Vec::new()
        };
        let cert = files.write("server.crt", &pki.leaf_pem);
        let key = files.write("server.key", &pki.leaf_key_pem);
        // Postgres refuses a key others can read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if root {
            run(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&files.0),
            );
        }
        let data = files.0.join("data");
        let command = |program: &str| {
            let mut command = Command::new(run_as.first().map_or(bin.join(program), PathBuf::from));
            command.args(run_as.iter().skip(1));
            if !run_as.is_empty() {
                command.arg(bin.join(program));
            }
            command
        };
        run(
            "initdb",
            command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust"]),
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1,127.0.0.2 -c fsync=off -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={}",
            files.0.display(),
            cert.display(),
            key.display()
        );
        run(
            "pg_ctl start",
            command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(files.0.join("server.log"))
                .args(["-w", "-o", &options, "start"]),
        );
        TlsPostgres {
            bin,
            port,
            run_as,
            files,
        }
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    /// A file the test (root or not) and nobody else needs: the client's root certificate.
    fn client_file(&self, name: &str, contents: &str) -> PathBuf {
        self.files.write(name, contents)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = match self.run_as.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&pg_ctl);
                command
            }
            None => Command::new(&pg_ctl),
        };
        let _ = command
            .arg("-D")
            .arg(self.files.0.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether the pool's connection is encrypted, as Postgres itself reports it.
async fn connection_is_tls(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_with_ssl_on_is_reached_with_verify_full_and_the_test_ca_and_refused_otherwise() {
    let pki = Pki::new("NeNe test CA");
    let postgres = TlsPostgres::start(&pki);
    let ca = postgres.client_file("ca.pem", &pki.ca_pem);
    let stranger = Pki::new("Another CA");
    let wrong_ca = postgres.client_file("wrong-ca.pem", &stranger.ca_pem);
    let settings = DbSettings::default();

    // The URL names the CA (sslrootcert), as a managed Postgres' documentation says to.
    for host in ["127.0.0.1", "localhost"] {
        let url = postgres.url(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        );
        let pool = nene_core::connect_database(&url, &settings, &not_trusted())
            .await
            .unwrap();
        assert!(connection_is_tls(&pool).await, "{host}");
        pool.close().await;
    }

    // The extra CA stands in when the URL names none: the core's start, as `main` runs it —
    // the migrations on a connection of their own, then the pool with its statement timeout.
    let url = postgres.url("localhost", "sslmode=verify-full");
    let mut migrations = nene_core::connect_one(&url, &pki.trusted()).await.unwrap();
    nene_core::migrate_connection(&mut migrations)
        .await
        .unwrap();
    sqlx::Connection::close(migrations).await.unwrap();
    let pool = nene_core::connect_database(&url, &settings, &pki.trusted())
        .await
        .unwrap();
    assert!(connection_is_tls(&pool).await);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(applied > 0);
    let statement_timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(statement_timeout, "1min");
    pool.close().await;

    // verify-full checks the name: 127.0.0.2 is the same server, but not in its certificate.
    let elsewhere = postgres.url("127.0.0.2", "sslmode=verify-full");
    let refused = nene_core::connect_database(&elsewhere, &settings, &pki.trusted()).await;
    assert_eq!(not_valid_for_name(refused), Some(true));
    // The same address with `require` (encrypted, nothing verified) connects: the name was why.
    // (Not `verify-ca`: sqlx 0.8.6 checks the name there too with this rustls, launchbadge/sqlx
    // issue 3793 — stricter than libpq, never looser.)
    let unverified = postgres.url("127.0.0.2", "sslmode=require");
    let pool = nene_core::connect_database(&unverified, &settings, &not_trusted())
        .await
        .unwrap();
    assert!(connection_is_tls(&pool).await);
    pool.close().await;

    // Mozilla's roots alone do not vouch for it; nor does another CA.
    let refused = nene_core::connect_database(&url, &settings, &not_trusted()).await;
    assert_eq!(unknown_issuer(refused), Some(true));
    let refused = nene_core::connect_one(&url, &not_trusted()).await;
    assert_eq!(
        unknown_issuer(refused),
        Some(true),
        "nor are the migrations"
    );
    let url = postgres.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", wrong_ca.display()),
    );
    let refused = nene_core::connect_database(&url, &settings, &pki.trusted()).await;
    assert_eq!(
        unknown_issuer(refused),
        Some(true),
        "the URL's root certificate wins over the extra CA"
    );
}

/// Whether a connection failed because the certificate does not name the host it was reached by
/// (`None`: it did not fail, or not as TLS).
fn not_valid_for_name<T>(connected: Result<T, sqlx::Error>) -> Option<bool> {
    let error = connected.err()?;
    let tls = nene_core::tls::tls_cause(&error)?;
    Some(matches!(
        tls,
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        )
    ))
}

/// Whether a connection failed because its certificate chains to no root we trust (`None`: it
/// did not fail, or not as TLS).
fn unknown_issuer<T>(connected: Result<T, sqlx::Error>) -> Option<bool> {
    let error = connected.err()?;
    let tls = nene_core::tls::tls_cause(&error)?;
    Some(matches!(
        tls,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    ))
}

#[test]
fn a_server_certificate_and_key_that_do_not_parse_cannot_be_served() {
    let pki = Pki::new("NeNe test CA");
    assert!(nene_sandbox::tls::server_config(b"", pki.leaf_key_pem.as_bytes()).is_err());
    assert!(nene_sandbox::tls::server_config(pki.leaf_pem.as_bytes(), b"").is_err());
    let other = Pki::new("Another CA");
    assert!(
        nene_sandbox::tls::server_config(pki.leaf_pem.as_bytes(), other.leaf_key_pem.as_bytes())
            .is_err(),
        "a key that is not the certificate's"
    );
}

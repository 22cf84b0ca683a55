//! Harness of the end-to-end tests: starts the real processes of the platform on free loopback
//! ports and stops them (their whole process groups) when dropped.
//!
//! `./nene test` builds everything first and passes the paths in the environment; a test whose
//! environment is incomplete fails with the name of what is missing — it never skips.

// The harness of the tests (and of the join-storm load tool): a panic is how a test fails, so
// it unwraps like a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long a process may take to answer its first request. wrangler dev is ready in ~3 s on
/// this machine; a cold workerd start under load can take several times that.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one test request may take. Every endpoint here answers in milliseconds; the bound
/// turns a hang into a failure instead of a stuck CI run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The secret the stack's edge and core share in tests. Published here, so listed in
/// `nene_domain::deployment::PUBLISHED_SECRETS`: a configuration outside dev mode refuses it.
pub const SIGNING_SECRET: &str = "e2e-signing-secret-0123456789abcdef0123";
/// The edge's access-token key in tests; tests mint tokens with it. Listed as published too.
pub const TOKEN_KEYS: &str = "e2e:e2e-access-token-key-e2e-access-token-key";

/// An access token for `user`, as the edge would issue at login.
///
/// # Panics
/// Never for the test key.
#[must_use]
pub fn token_for(user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
        .and_then(|keys| keys.issue(user, &format!("jti-{user}-{now}"), now))
        .unwrap()
}

/// The body of `POST /v1/challenges` for a one-week daily challenge (Seoul time, proofs all day)
/// that recruits until the next Seoul midnight at least a day away.
#[must_use]
pub fn challenge_body(title: &str, entry_fee: i64, capacity: i64) -> serde_json::Value {
    const SEOUL_OFFSET_SECONDS: i64 = 9 * 3_600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let starts_at =
        ((now + SEOUL_OFFSET_SECONDS).div_euclid(86_400) + 2) * 86_400 - SEOUL_OFFSET_SECONDS;
    let at = nene_domain::time::format_rfc3339;
    serde_json::json!({
        "title": title, "entry_fee": entry_fee, "capacity": capacity, "min_participants": 2,
        "recruit_ends_at": at(starts_at), "starts_at": at(starts_at),
        "ends_at": at(starts_at + 7 * 86_400),
        "proof": { "days_per_week": 7, "window_start": "00:00", "window_end": "24:00",
                   "time_zone": "Asia/Seoul" },
    })
}

/// Reads a required variable set by `./nene test`.
///
/// # Panics
/// When it is not set: the test must fail, not skip, if its runtime is missing.
#[must_use]
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `./nene test`")
    })
}

/// A loopback port that nothing listens on right now.
///
/// # Panics
/// When the OS cannot give one.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port")
}

/// A started process; dropping it stops its whole process group (wrangler's workerd children
/// included) and waits for it.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Process {
    /// Starts `command` in a process group of its own, its output to `log_dir/name.log`.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn start(name: &str, mut command: Command, log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log,
            stopped: false,
        }
    }

    /// The process's id (its group's too): for reading its `/proc` figures.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the process's output, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops the process group and waits for the leader.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = format!("-{}", self.child.id());
        signal_group("-TERM", &group);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Children that ignored TERM go now.
                signal_group("-KILL", &group);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group("-KILL", &group);
        let _ = self.child.wait();
    }

    /// Sends SIGTERM to the process alone, as an orchestrator stops a container (its group is
    /// left alone). Returns when the signal was sent.
    ///
    /// # Panics
    /// When `kill` cannot be run.
    pub fn sigterm(&self) -> Instant {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -TERM {}: {e}", self.name));
        assert!(sent.success(), "kill -TERM {} failed", self.name);
        Instant::now()
    }

    /// Waits for the process to exit on its own, at most `within`; returns its exit status.
    ///
    /// # Panics
    /// When it is still running after `within` (it is then killed).
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let began = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                return status;
            }
            if began.elapsed() > within {
                self.stop();
                panic!(
                    "{} was still running {within:?} after it was told to stop:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `url` answers anything at all.
    ///
    /// # Panics
    /// When it does not within [`START_TIMEOUT`] or the process exits first.
    pub async fn wait_until_answering(&mut self, url: &str) {
        let client = client();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if client.get(url).send().await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before answering:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} did not answer {url} within {START_TIMEOUT:?}:\n{}",
            self.name,
            self.log_tail()
        );
    }
}

/// How long a process gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `kill SIGNAL -- -PGID`; a group that is already gone is not an error.
fn signal_group(signal: &str, group: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", group])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client with the test request timeout.
///
/// # Panics
/// When the TLS-less client cannot be built (never, in practice).
#[must_use]
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// A fresh Postgres database for one stack, dropped with it.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    /// Creates `nene_e2e_<random>` on the server of `DATABASE_URL`.
    ///
    /// # Panics
    /// When Postgres does not answer.
    pub async fn create() -> Database {
        let admin_url = required_env("DATABASE_URL");
        let name = format!("nene_e2e_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connect(&admin_url).await)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = nene_domain::settings::with_database(&admin_url, &name);
        Database {
            admin_url,
            name,
            url,
        }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; a short-lived runtime of its own does it.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut connect(&admin_url).await)
                        .await;
                });
            }
        })
        .join();
    }
}

/// The user the end-to-end stack's core lets review proofs.
pub const E2E_REVIEWER: &str = "e2e-reviewer";

/// The one redirect URI the end-to-end stack's logins may return to.
pub const E2E_REDIRECT_URI: &str = "https://app.nene.test/auth/done";

/// What a client that signs in keeps and sends (PKCE, RFC 7636): a fresh secret `verifier` for
/// the callback, and its S256 `challenge` for the start.
#[derive(Debug, Clone)]
pub struct ClientPkce {
    pub verifier: String,
    pub challenge: String,
}

impl ClientPkce {
    /// A fresh pair: 64 random hex digits as the verifier.
    ///
    /// # Panics
    /// Never: the verifier is in the RFC's alphabet and length.
    #[must_use]
    pub fn new() -> Self {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let parsed = nene_domain::pkce::CodeVerifier::parse(&verifier).unwrap();
        let challenge = nene_domain::pkce::CodeChallenge::of(&parsed).as_base64url();
        ClientPkce {
            verifier,
            challenge,
        }
    }

    /// The query of `GET /v1/auth/{provider}/start` for this client and `redirect_uri`.
    #[must_use]
    pub fn start_query(&self, redirect_uri: &str) -> String {
        serde_urlencoded::to_string([
            ("redirect_uri", redirect_uri),
            ("code_challenge", self.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .unwrap_or_default()
    }
}

impl Default for ClientPkce {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a core without a sandbox sends Toss calls: the discard port, where nothing listens, so
/// a stack that does not test payments can never reach the real Toss.
const TOSS_URL_NOWHERE: &str = "http://127.0.0.1:9";

/// The core service on a fresh database.
pub struct Core {
    pub url: String,
    pub process: Process,
    pub database: Database,
    toss_url: String,
    edge_url: Option<String>,
    /// The tests' own connections to the core's database, opened on first use.
    pool: tokio::sync::OnceCell<sqlx::PgPool>,
}

impl Core {
    /// Starts `nene-core` (migrations applied at start) on a free port.
    pub async fn start(log_dir: &Path) -> Core {
        Self::start_with_toss(log_dir, TOSS_URL_NOWHERE).await
    }

    /// Starts `nene-core` calling Toss and the login providers at `toss_url` (a [`Sandbox`]),
    /// with fast payment retries.
    pub async fn start_with_toss(log_dir: &Path, toss_url: &str) -> Core {
        Self::start_with(log_dir, Some(toss_url), None).await
    }

    /// Starts `nene-core` with Toss and the login providers at `toss_url` (or nowhere) and the
    /// edge at `edge_url` (for the scheduler's pushes into the rooms).
    pub async fn start_with(
        log_dir: &Path,
        toss_url: Option<&str>,
        edge_url: Option<&str>,
    ) -> Core {
        let database = Database::create().await;
        let port = free_port();
        let toss_url = toss_url.unwrap_or(TOSS_URL_NOWHERE).to_owned();
        let edge_url = edge_url.map(str::to_owned);
        let process = Self::spawn(
            &database,
            port,
            &toss_url,
            edge_url.as_deref(),
            log_dir,
            "core",
        )
        .await;
        Core {
            url: format!("http://127.0.0.1:{port}"),
            process,
            database,
            toss_url,
            edge_url,
            pool: tokio::sync::OnceCell::new(),
        }
    }

    /// Stops the core and starts it again on the same port and database (a crash and a restart,
    /// as the edge sees them).
    pub async fn restart(&mut self, log_dir: &Path) {
        self.process.stop();
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url));
        self.process = Self::spawn(
            &self.database,
            port,
            &self.toss_url,
            self.edge_url.as_deref(),
            log_dir,
            "core-restarted",
        )
        .await;
    }

    /// A pool on the core's database, for reaching the core's ledger as a library: funding wallets
    /// and checking invariants have no HTTP route (a route would let a leaked signing secret
    /// mint points).
    ///
    /// # Panics
    /// When Postgres does not answer.
    pub async fn db(&self) -> &sqlx::PgPool {
        self.pool
            .get_or_init(|| async {
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(LEDGER_POOL_CONNECTIONS_MAX)
                    .connect(&self.database.url)
                    .await
                    .expect("cannot connect to the core's database")
            })
            .await
    }

    async fn spawn(
        database: &Database,
        port: u16,
        toss_url: &str,
        edge_url: Option<&str>,
        log_dir: &Path,
        name: &str,
    ) -> Process {
        let mut command = Command::new(required_env("NENE_CORE_BIN"));
        command
            .env("DATABASE_URL", &database.url)
            .env("REDIS_URL", std::env::var("REDIS_URL").unwrap_or_default())
            .env("CORE_SIGNING_SECRET", SIGNING_SECRET)
            .env("CORE_BIND", format!("127.0.0.1:{port}"))
            .env("NENE_ENV", "dev")
            .env("TOSS_API_URL", toss_url)
            // The sandbox also plays Kakao, Naver and Google.
            .env("OAUTH_SANDBOX_URL", toss_url)
            .env("AUTH_REDIRECT_URIS", E2E_REDIRECT_URI)
            .env("CHALLENGE_REVIEWERS", E2E_REVIEWER)
            .env("TOSS_TIMEOUT_MS", "1000")
            .env("PAYMENT_RETRY_BASE_MS", "20")
            .env("PAYMENT_RETRY_MAX_MS", "200")
            .env("PAYMENT_CREDIT_ATTEMPTS_MAX", "5")
            .env("EDGE_URL", edge_url.unwrap_or_default());
        let mut process = Process::start(name, command, log_dir);
        process
            .wait_until_answering(&format!("http://127.0.0.1:{port}/healthz"))
            .await;
        process
    }
}

/// The sandbox (Toss stand-in) on a free port.
pub struct Sandbox {
    pub url: String,
    pub process: Process,
}

impl Sandbox {
    /// Starts `nene-sandbox`; its Toss webhooks go to `webhook_url` (set later with
    /// `PUT /sandbox/toss/webhook` when the edge is not up yet), retried every few milliseconds
    /// instead of Toss's minutes.
    pub async fn start(log_dir: &Path) -> Sandbox {
        let port = free_port();
        let mut command = Command::new(required_env("NENE_SANDBOX_BIN"));
        command
            .env("SANDBOX_BIND", format!("127.0.0.1:{port}"))
            .env("SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS", "20");
        let mut process = Process::start("sandbox", command, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        process.wait_until_answering(&format!("{url}/health")).await;
        Sandbox { url, process }
    }
}

/// A call to the edge at `edge_url` as `user` (an access token for them), with a JSON body or
/// none: `(status, JSON body or null)`.
///
/// # Panics
/// When the edge cannot be reached.
pub async fn edge_call(
    edge_url: &str,
    method: &str,
    path: &str,
    user: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = client()
        .request(
            method.parse().unwrap_or(reqwest::Method::GET),
            format!("{edge_url}{path}"),
        )
        .bearer_auth(token_for(user));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A signed call to the core's internal API, as the edge makes it: `(status, JSON body)`.
///
/// # Panics
/// When the core cannot be reached.
pub async fn core_call(
    core: &Core,
    method: &str,
    path: &str,
    user: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    signed_call(&core.url, method, path, user, body).await
}

/// [`core_call`] to the core at `core_url` (a [`CoreContainer`]'s, or any other).
///
/// # Panics
/// When the core cannot be reached.
pub async fn signed_call(
    core_url: &str,
    method: &str,
    path: &str,
    user: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    let method = method.parse().unwrap_or(reqwest::Method::GET);
    let request = signed_request(&client(), core_url, method, path, user, &bytes);
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A request to the core at `core_url`, signed as the edge signs it (as `user`; none when empty).
///
/// # Panics
/// Never for the test secret.
pub fn signed_request(
    client: &reqwest::Client,
    core_url: &str,
    method: reqwest::Method,
    path_and_query: &str,
    user: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let signature = nene_domain::signing::SigningSecret::parse(SIGNING_SECRET)
        .unwrap()
        .sign(&nene_domain::signing::SignedParts {
            method: method.as_str(),
            path_and_query,
            timestamp_unix_seconds: now,
            user,
            body,
        });
    let mut request = client
        .request(method, format!("{core_url}{path_and_query}"))
        .header(nene_domain::signing::HEADER_TIMESTAMP, now.to_string())
        .header(nene_domain::signing::HEADER_SIGNATURE, signature)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if !user.is_empty() {
        request = request.header(nene_domain::signing::HEADER_USER, user);
    }
    request
}

/// The tests' connections to a core's database: enough for a test's parallel funding, few enough
/// to leave the core its own pool.
const LEDGER_POOL_CONNECTIONS_MAX: u32 = 8;

/// Gives `user` a wallet holding `points` (a charge lot, key `charge:{user}`) through the core's
/// ledger functions, and returns the wallet's account id.
///
/// # Panics
/// When the ledger refuses.
pub async fn fund_user(core: &Core, user: &str, points: i64) -> String {
    use nene_core::ledger::{self, Credit, IdempotencyKey, LotSource, SystemAccount};
    let db = core.db().await;
    let mut conn = db.acquire().await.unwrap();
    let wallet = ledger::ensure_wallet_in_tx(&mut conn, user)
        .await
        .unwrap_or_else(|e| panic!("wallet of {user}: {e}"));
    drop(conn);
    let credit = Credit {
        key: IdempotencyKey::parse(&format!("charge:{user}")).unwrap(),
        wallet,
        from: ledger::system_account(SystemAccount::PaymentClearing),
        amount: nene_domain::Points::new(points).unwrap(),
        source: LotSource::Charge,
    };
    ledger::credit(db, &credit)
        .await
        .unwrap_or_else(|e| panic!("credit of {user}: {e}"));
    wallet.0.to_string()
}

/// The ledger's invariant violations on the core's database (`[]` when sound), as JSON.
///
/// # Panics
/// When Postgres fails.
pub async fn ledger_violations(core: &Core) -> serde_json::Value {
    let mut conn = core.db().await.acquire().await.unwrap();
    let violations = nene_core::ledger::check_invariants(&mut conn)
        .await
        .unwrap();
    serde_json::to_value(violations).unwrap()
}

/// The newest `limit` entries of an account (an escrow, say) and whether there are more.
///
/// # Panics
/// When the account id is not a UUID or Postgres fails.
pub async fn account_entries(core: &Core, account: &str, limit: u32) -> serde_json::Value {
    let account = uuid::Uuid::parse_str(account).unwrap_or_else(|e| panic!("{account}: {e}"));
    let mut conn = core.db().await.acquire().await.unwrap();
    let page = nene_core::ledger::history(
        &mut conn,
        nene_core::ledger::AccountId(account),
        None,
        limit,
    )
    .await
    .unwrap();
    serde_json::to_value(page).unwrap()
}

/// The edge Worker and its Durable Objects under `wrangler dev` (workerd).
pub struct Wrangler {
    pub url: String,
    pub process: Process,
}

impl Wrangler {
    /// Starts `wrangler dev` on the prebuilt Worker, pointed at `core_url`, keeping Durable Object
    /// state in `persist_dir`.
    pub async fn start(core_url: &str, persist_dir: &Path, log_dir: &Path) -> Wrangler {
        Self::start_on(free_port(), core_url, persist_dir, log_dir).await
    }

    /// [`Wrangler::start`] on a port chosen beforehand (so the core can be told where the edge is).
    pub async fn start_on(
        port: u16,
        core_url: &str,
        persist_dir: &Path,
        log_dir: &Path,
    ) -> Wrangler {
        let root = required_env("NENE_ROOT");
        let node_bin = required_env("NENE_NODE_BIN");
        let inspector_port = free_port();
        let path = format!("{node_bin}:{}", std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(required_env("NENE_WRANGLER"));
        command
            .current_dir(&root)
            .env("PATH", path)
            .env("NENE_EDGE_PREBUILT", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("WRANGLER_LOG_PATH", log_dir)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &inspector_port.to_string()])
            .arg("--persist-to")
            .arg(persist_dir)
            .args(["--var", &format!("CORE_URL:{core_url}")])
            .args(["--var", &format!("CORE_SIGNING_SECRET:{SIGNING_SECRET}")])
            .args(["--var", &format!("ACCESS_TOKEN_KEYS:{TOKEN_KEYS}")])
            .args(["--var", "NENE_ENV:dev"])
            .arg("--show-interactive-dev-session=false");
        let mut process = Process::start("wrangler", command, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        process
            .wait_until_answering(&format!("{url}/v1/health"))
            .await;
        Wrangler { url, process }
    }
}

/// The edge as a Spin component under `wasmtime serve` (Spin's own runtime is built on wasmtime).
pub struct SpinHost {
    pub url: String,
    pub process: Process,
}

impl SpinHost {
    /// The component in dev mode with the end-to-end stack's values, in front of `core_url`.
    pub async fn start(core_url: &str, log_dir: &Path) -> SpinHost {
        SpinHost::start_with_env(
            &[
                ("CORE_URL", core_url),
                ("CORE_SIGNING_SECRET", SIGNING_SECRET),
                ("ACCESS_TOKEN_KEYS", TOKEN_KEYS),
                ("NENE_ENV", "dev"),
            ],
            log_dir,
        )
        .await
    }

    /// The component with exactly the environment `env`: spin.toml sets none of it (production
    /// by default), and `spin up --env` passes it the same way.
    pub async fn start_with_env(env: &[(&str, &str)], log_dir: &Path) -> SpinHost {
        let port = free_port();
        let mut command = Command::new(required_env("NENE_WASMTIME"));
        command
            .arg("serve")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg("-Scli");
        for (name, value) in env {
            command.args(["--env", &format!("{name}={value}")]);
        }
        command.arg(required_env("NENE_SPIN_WASM"));
        let mut process = Process::start("spin", command, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        process
            .wait_until_answering(&format!("{url}/v1/health"))
            .await;
        SpinHost { url, process }
    }
}

/// A scratch directory for one test's logs and state, kept on failure for inspection.
///
/// # Panics
/// When it cannot be created.
#[must_use]
pub fn scratch_dir(test: &str) -> PathBuf {
    let base = std::env::var("NENE_E2E_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let dir = base.join(format!("{test}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// An HTTP client that does not follow redirects: a browser's hops, one at a time.
///
/// # Panics
/// When the client cannot be built (never, in practice).
#[must_use]
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// `name`'s value in the query of `url`.
///
/// # Panics
/// When it is not there.
#[must_use]
pub fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    params
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// The `Location` of a redirect, or "".
#[must_use]
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs `who` in with `provider` through the edge at `edge_url`, the sandbox playing the
/// provider, as an app does: our start with the app's PKCE challenge → the provider (approves as
/// `who`) → our redirect URI → `POST /v1/auth/{provider}/callback` with the verifier. Returns the
/// session (`access_token`, `refresh_token`, `user`). The one place a suite outside `auth` signs
/// in, so a change to the login's protocol is made here once.
///
/// # Panics
/// When any hop answers other than a working login would.
pub async fn sign_in(edge_url: &str, provider: &str, who: &str) -> serde_json::Value {
    let pkce = ClientPkce::new();
    let start = browser()
        .get(format!(
            "{edge_url}/v1/auth/{provider}/start?{}",
            pkce.start_query(E2E_REDIRECT_URI)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status().as_u16(),
        302,
        "start of the {provider} login"
    );
    let authorize = location(&start);
    let approved = browser()
        .get(format!("{authorize}&sandbox_user={who}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{authorize}: {e}"));
    let back = location(&approved);
    assert!(
        back.starts_with(E2E_REDIRECT_URI),
        "{provider} sent to {back}"
    );
    let body = serde_json::json!({
        "code": query_param(&back, "code"),
        "state": query_param(&back, "state"),
        "code_verifier": pkce.verifier,
    });
    let response = client()
        .post(format!("{edge_url}/v1/auth/{provider}/callback"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let session: serde_json::Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{provider} callback: {session}");
    session
}

/// podman's global options on this machine: its default runtime (crun) fails on these hosts'
/// cgroups, runc works.
const PODMAN: [&str; 2] = ["--runtime", "runc"];

/// What every `podman run` needs here: without explicit limits podman's setrlimit is refused.
/// Both are at or under the machine's hard limits and far above what one core uses.
const PODMAN_RUN_LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(PODMAN);
    command
}

/// `podman` with `args` to its end: (success, stdout and stderr together).
///
/// # Panics
/// When podman cannot be started.
#[must_use]
pub fn podman_output(args: &[&str]) -> (bool, String) {
    let output = podman()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run podman");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `podman run` of the core's image (`NENE_CORE_IMAGE`, built by `./nene test`) on the host's
/// network, with `env`, as a one-off command (`migrate`): (success, its output).
///
/// # Panics
/// When podman cannot be started.
#[must_use]
pub fn run_core_image(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let image = required_env("NENE_CORE_IMAGE");
    let mut command = vec!["run", "--rm", "--pull=never", "--network=host"];
    command.extend(PODMAN_RUN_LIMITS);
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for pair in &env {
        command.extend(["--env", pair.as_str()]);
    }
    command.push(&image);
    command.extend(args);
    podman_output(&command)
}

/// The core's image running as a container on the host's network (so it reaches the local
/// Postgres, Redis and sandbox on loopback, as they reach it), on a database of its own, told not
/// to migrate: the deploy's migration step is the test's to run. Dropping it removes the
/// container, whatever state it is in.
pub struct CoreContainer {
    pub name: String,
    pub url: String,
    /// `podman run` in the foreground: its log is the container's output.
    pub process: Process,
    pub database: Database,
}

impl CoreContainer {
    /// Starts the image in dev mode, calling Toss and the login providers and FCM at
    /// `sandbox_url`, and waits until it answers `/healthz`. No `EDGE_URL`: the scheduler's pushes
    /// into the rooms are the lifecycle suite's, and the edge's port is best chosen only when the
    /// Worker starts (a port chosen earlier can be taken meanwhile by anything on the machine).
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start(log_dir: &Path, database: Database, sandbox_url: &str) -> CoreContainer {
        let image = required_env("NENE_CORE_IMAGE");
        let name = format!("nene-e2e-core-{}", uuid::Uuid::new_v4().simple());
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let env = [
            ("DATABASE_URL", database.url.clone()),
            ("REDIS_URL", std::env::var("REDIS_URL").unwrap_or_default()),
            ("CORE_SIGNING_SECRET", SIGNING_SECRET.to_owned()),
            ("CORE_BIND", format!("127.0.0.1:{port}")),
            ("CORE_MIGRATE_ON_START", "false".to_owned()),
            ("NENE_ENV", "dev".to_owned()),
            ("TOSS_API_URL", sandbox_url.to_owned()),
            ("OAUTH_SANDBOX_URL", sandbox_url.to_owned()),
            ("FCM_SANDBOX_URL", sandbox_url.to_owned()),
            ("AUTH_REDIRECT_URIS", E2E_REDIRECT_URI.to_owned()),
        ];
        let mut command = podman();
        command
            .args(["run", "--pull=never", "--network=host", "--name", &name])
            .args(PODMAN_RUN_LIMITS);
        for (key, value) in &env {
            command.args(["--env", &format!("{key}={value}")]);
        }
        command.arg(&image);
        let mut process = Process::start("core-container", command, log_dir);
        process
            .wait_until_answering(&format!("{url}/healthz"))
            .await;
        CoreContainer {
            name,
            url,
            process,
            database,
        }
    }

    /// The image's own HEALTHCHECK, run now (`podman healthcheck run`): `true` when healthy.
    #[must_use]
    pub fn healthcheck(&self) -> (bool, String) {
        podman_output(&["healthcheck", "run", &self.name])
    }

    /// `podman stop` (SIGTERM, then SIGKILL after `seconds`) and the container's exit code.
    ///
    /// # Panics
    /// When podman cannot stop or inspect it.
    #[must_use]
    pub fn stop(&mut self, seconds: u32) -> i64 {
        let (ok, output) = podman_output(&["stop", "--time", &seconds.to_string(), &self.name]);
        assert!(ok, "podman stop: {output}");
        let (ok, code) = podman_output(&[
            "container",
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &self.name,
        ]);
        assert!(ok, "podman inspect: {code}");
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("exit code {code:?}"))
    }
}

impl Drop for CoreContainer {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "--force", "--time", "0", &self.name]);
        self.process.stop();
    }
}

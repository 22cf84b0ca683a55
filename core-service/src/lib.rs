//! The core service: the Postgres ledger and everything that moves money, behind an internal
//! HTTP API that only the edge may call (every request signed, see [`http::signature`]).

/// mimalloc for every binary of the core (the service, its benches and tests): under a
/// multi-threaded runtime that frees on other threads than it allocates, glibc's malloc spent a
/// fifth of the notification bench's CPU in arena locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod auth;
pub mod challenges;
pub mod clock;
pub mod config;
pub mod faults;
pub mod health;
pub mod http;
pub mod ledger;
pub mod lifecycle;
pub mod maintenance;
pub mod notifications;
pub mod payments;
pub mod proofs;
pub mod schema;
pub mod scratch;
pub mod search;
pub mod shop;
pub mod shutdown;
pub mod tls;

use std::sync::Arc;

use nene_domain::signing::SigningSecret;
use sqlx::{Connection, PgConnection, PgPool};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// `/readyz`'s own connection: a pool saturated by requests must not read as a database
    /// outage, or every busy replica would leave the rotation at once and the load with them.
    pub probe_db: PgPool,
    /// `None` when Redis is not configured: the platform runs without it.
    pub redis: Option<redis::Client>,
    pub signing_secret: SigningSecret,
    pub wall_clock: Arc<dyn clock::WallClock>,
    pub payments: payments::Payments,
    pub auth: auth::Auth,
    /// Dev mode (`NENE_ENV=dev`): fault-injection and test-clock routes exist.
    pub dev_mode: bool,
    /// Users who may review proofs (`CHALLENGE_REVIEWERS`).
    pub reviewers: Vec<String>,
    /// Users who may manage the shop (`SHOP_ADMINS`).
    pub shop_admins: Vec<String>,
    /// Pushes closed recruitments to the edge's rooms (`EDGE_URL`), if configured.
    pub room_pusher: Option<lifecycle::RoomPusher>,
    /// Whether the process is draining (SIGTERM), and its requests in flight.
    pub shutdown: shutdown::Shutdown,
    /// This replica's search index (`None`: search answers 503, for tests and benches that do
    /// not search).
    pub search: Option<Arc<dyn search::SearchIndex>>,
}

impl AppState {
    /// A core over `db` whose partners are out of reach: Toss at the discard port, no sign-in
    /// providers, no Redis, no search index, no edge to push to. For benchmarks and tests of what
    /// needs only the core and Postgres; a field they need is set over it
    /// (`AppState { redis, ..AppState::offline(…)? }`).
    ///
    /// # Errors
    /// When the HTTP clients cannot be built (the platform's TLS roots are unreadable).
    pub fn offline(
        db: PgPool,
        signing_secret: SigningSecret,
        wall_clock: Arc<dyn clock::WallClock>,
    ) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        let payments = payments::Payments::new(
            db.clone(),
            &payments::toss::TossConfig {
                // Nothing listens on the discard port.
                base_url: "http://127.0.0.1:9".to_owned(),
                secret_key: "test_sk_unused".to_owned(),
                timeout: std::time::Duration::from_secs(1),
                tls: tls::Trust::public_roots(),
            },
            payments::PaymentSettings::fast(),
        )?;
        let auth = auth::Auth::new(
            db.clone(),
            auth::AuthConfig {
                redirect_uris: Vec::new(),
                providers: Vec::new(),
                tls: tls::Trust::public_roots(),
            },
        )?;
        Ok(AppState {
            probe_db: db.clone(),
            db,
            redis: None,
            signing_secret,
            wall_clock,
            payments,
            auth,
            dev_mode: false,
            reviewers: Vec::new(),
            shop_admins: Vec::new(),
            room_pusher: None,
            shutdown: shutdown::Shutdown::default(),
            search: None,
        })
    }
}

/// The core's Postgres pool for `url` with `settings` (size, timeouts), whose `sslmode` and
/// `sslrootcert` are honoured, trusting `trust`'s roots (see [`tls::Trust::postgres_options`]).
/// Connects once before answering, so a refused certificate stops the core at start.
///
/// # Errors
/// When `url` cannot be read or Postgres cannot be reached (TLS included).
pub async fn connect_database(
    url: &str,
    settings: &config::DbSettings,
    trust: &tls::Trust,
) -> Result<PgPool, sqlx::Error> {
    settings
        .pool_options()
        .connect_with(trust.postgres_options(url)?)
        .await
}

/// One connection to Postgres outside the pool (the migrations at start), over TLS as the
/// pool's are.
///
/// # Errors
/// When `url` cannot be read or Postgres cannot be reached (TLS included).
pub async fn connect_one(url: &str, trust: &tls::Trust) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&trust.postgres_options(url)?).await
}

/// The migrations this binary embeds (`migrations/`): what `nene-core migrate` applies, and what the
/// service (at start and in `/readyz`) checks the database's `_sqlx_migrations` against
/// ([`schema`]).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies the embedded migrations on one of `db`'s connections (the benches' and tests'
/// shortcut; the service and the `migrate` subcommand use a connection of their own).
///
/// # Errors
/// When Postgres is unreachable or a migration fails.
pub async fn migrate(db: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut connection = db.acquire().await?;
    schema::apply(&mut connection).await.map(drop)
}

/// Applies the embedded migrations on one connection (the core's start-up and `nene-core migrate`
/// use one outside the pool, so the pool's statement timeout does not bound a migration).
///
/// # Errors
/// When a migration fails.
pub async fn migrate_connection(
    connection: &mut sqlx::PgConnection,
) -> Result<(), sqlx::migrate::MigrateError> {
    schema::apply(connection).await.map(drop)
}

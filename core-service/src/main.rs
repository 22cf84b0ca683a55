//! `nene-core`: serves the internal API until SIGTERM or SIGINT (applying the migrations first in
//! dev mode, checking that they are applied elsewhere), then drains (`nene_core::shutdown`) and
//! exits 0.
//!
//!   nene-core               serve
//!   nene-core migrate       apply the migrations the database lacks, print them, exit
//!   nene-core search-rebuild  rebuild the search index at `SEARCH_INDEX_DIR` from Postgres, exit
//!                           (a stopped replica's; a running core rebuilds its own at start when
//!                           the index is missing, of an older schema, or behind the feed)
//!   nene-core shop-rebuild  rebuild the shop's order projections from their events, exit
//!   nene-core healthcheck   exit 0 when this container's core answers `/healthz`, else 1 (the
//!                           image's HEALTHCHECK: the image has no shell and no curl)

use std::{process::ExitCode, sync::Arc, time::Duration};

use nene_core::{
    AppState,
    clock::SystemClock,
    config::CoreConfig,
    health::READINESS_DATABASE_TIMEOUT,
    http::{self, server::Server},
    schema,
    shutdown::{self, CLOSE_TIMEOUT, Loops, RUNTIME_STOP_TIMEOUT, Shutdown},
};
use sqlx::{Connection, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;

/// How long `nene-core migrate` waits to connect to Postgres before giving up: a deploy step that
/// cannot reach the database should fail and say so, not hang the deploy.
const MIGRATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: nene-core [migrate | search-rebuild | shop-rebuild | healthcheck]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nene-core could not start its runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => runtime.block_on(serve()),
        ["migrate"] => runtime.block_on(migrate()),
        ["search-rebuild"] => runtime.block_on(search_rebuild()),
        ["shop-rebuild"] => runtime.block_on(shop_rebuild()),
        ["healthcheck"] => runtime.block_on(healthcheck()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    };
    // Whatever outlived the drain (a request or a loop past its bound) is dropped here; blocking
    // work (a DNS lookup) gets a bounded wait, so the exit never hangs on it.
    runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
    code
}

/// `nene-core migrate`: the deploy's migration step. Reads only `DATABASE_URL` (the schema
/// owner's), so the job that runs it needs none of the service's secrets.
async fn migrate() -> ExitCode {
    let Ok(url) = std::env::var(nene_core::config::VAR_DATABASE_URL) else {
        eprintln!("nene-core migrate: DATABASE_URL is not set");
        return ExitCode::FAILURE;
    };
    let outcome = async {
        // One connection: the migrations run one after another on it, under its advisory lock,
        // and without the service pool's statement timeout.
        // Over TLS as the service's own connections are (`sslmode`, `EXTRA_CA_FILE`).
        let trust = nene_core::config::trust(&|name| std::env::var(name).ok())?;
        let mut connection = tokio::time::timeout(
            MIGRATE_CONNECT_TIMEOUT,
            nene_core::connect_one(&url, &trust),
        )
        .await
        .map_err(|_| format!("no connection to Postgres within {MIGRATE_CONNECT_TIMEOUT:?}"))??;
        let applied = schema::apply(&mut connection).await?;
        connection.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(applied)
    }
    .await;
    match outcome {
        Ok(applied) => {
            for migration in &applied {
                println!("applied {migration}");
            }
            let latest = schema::latest_version();
            if applied.is_empty() {
                println!("nothing to apply: the schema is at version {latest:04}");
            } else {
                println!(
                    "{} applied: the schema is at version {latest:04}",
                    applied.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nene-core migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `nene-core search-rebuild`: rebuilds the index at `SEARCH_INDEX_DIR` from Postgres
/// (`DATABASE_URL`). Refused while a core holds that index (its writer's lock).
async fn search_rebuild() -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    let outcome = async {
        let Ok(url) = std::env::var(nene_core::config::VAR_DATABASE_URL) else {
            return Err::<_, Box<dyn std::error::Error>>("DATABASE_URL is not set".into());
        };
        let location = nene_core::config::search_index_location(&lookup);
        if location == nene_core::search::tantivy_index::IndexLocation::Memory {
            return Err(
                "SEARCH_INDEX_DIR is not set: an index in memory is rebuilt at start".into(),
            );
        }
        let trust = nene_core::config::trust(&lookup)?;
        let db = nene_core::connect_database(&url, &Default::default(), &trust).await?;
        let index: Arc<dyn nene_core::search::SearchIndex> = Arc::new(
            nene_core::search::tantivy_index::TantivyIndex::open(&location)?,
        );
        let started = std::time::Instant::now();
        let documents = nene_core::search::feed::rebuild(&db, &index).await?;
        Ok((documents, started.elapsed()))
    }
    .await;
    match outcome {
        Ok((documents, took)) => {
            println!("search index rebuilt: {documents} documents in {took:?}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nene-core search-rebuild: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `nene-core shop-rebuild`: both order projections (`shop_orders`, `shop_user_orders`) folded
/// again from `shop_order_events` in one transaction (`nene_core::shop::rebuild`); safe while the
/// core serves (order steps wait for it; reads do not).
async fn shop_rebuild() -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    let outcome = async {
        let Ok(url) = std::env::var(nene_core::config::VAR_DATABASE_URL) else {
            return Err::<_, Box<dyn std::error::Error>>("DATABASE_URL is not set".into());
        };
        let trust = nene_core::config::trust(&lookup)?;
        let db = nene_core::connect_database(&url, &Default::default(), &trust).await?;
        let started = std::time::Instant::now();
        let orders = nene_core::shop::rebuild(&db).await?;
        Ok((orders, started.elapsed()))
    }
    .await;
    match outcome {
        Ok((orders, took)) => {
            println!("shop projections rebuilt: {orders} orders in {took:?}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nene-core shop-rebuild: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `nene-core healthcheck`: GETs `/healthz` on the address `CORE_BIND` names (its loopback when
/// it names every interface), for the image's HEALTHCHECK.
async fn healthcheck() -> ExitCode {
    let bind = std::env::var(nene_core::config::VAR_BIND)
        .unwrap_or_else(|_| nene_core::config::BIND_DEFAULT.to_owned());
    match nene_core::health::probe_self(&bind).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nene-core healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "nene-core stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = CoreConfig::from_lookup(|name| std::env::var(name).ok())?;
    tracing::info!(
        extra_roots = config.tls.extra_roots(),
        "TLS trusts Mozilla's roots and the extra CA file's (EXTRA_CA_FILE)"
    );
    // Migrations (or the check that they are applied) run on a connection of their own, outside
    // the pool and its statement timeout: building an index on a large table may rightly take
    // longer than any request's statement.
    let mut migrations = nene_core::connect_one(&config.database_url, &config.tls).await?;
    if config.migrate_on_start {
        for migration in schema::apply(&mut migrations).await? {
            tracing::info!(%migration, "migration applied");
        }
    } else {
        let current = schema::check_current(&mut migrations).await?;
        if !current.ahead.is_empty() {
            tracing::warn!(
                ahead = ?current.ahead,
                "the database carries migrations this build does not know (a newer release migrated it)"
            );
        }
    }
    migrations.close().await?;
    let db = nene_core::connect_database(&config.database_url, &config.db, &config.tls).await?;
    // One connection, apart from the requests' pool, for `/readyz`; over TLS as the pool's.
    let probe_db = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(READINESS_DATABASE_TIMEOUT)
        .connect_lazy_with(config.tls.postgres_options(&config.database_url)?);
    let redis = config
        .redis_url
        .as_deref()
        .map(|url| config.tls.redis_client(url))
        .transpose()?;
    let shutdown = Shutdown::new(config.drain_timeout);
    let force = CancellationToken::new();
    let _signals = shutdown::listen_for_signals(shutdown.clone(), force.clone())?;
    let mut loops = Loops::default();
    let payments =
        nene_core::payments::Payments::new(db.clone(), &config.toss, config.payments.clone())?;
    loops.spawn(
        "payments",
        nene_core::payments::worker::run(payments.clone(), shutdown.token()),
    );
    let room_pusher = config
        .edge_url
        .as_deref()
        .map(|url| {
            nene_core::lifecycle::RoomPusher::new(url, config.signing_secret.clone(), &config.tls)
        })
        .transpose()?;
    let search: Arc<dyn nene_core::search::SearchIndex> = Arc::new(
        nene_core::search::tantivy_index::TantivyIndex::open(&config.search_index)?,
    );
    loops.spawn(
        "search indexer",
        nene_core::search::feed::run(db.clone(), Arc::clone(&search), shutdown.token()),
    );
    let state = AppState {
        search: Some(search),
        auth: nene_core::auth::Auth::new(db.clone(), config.auth.clone())?,
        payments,
        dev_mode: config.dev_mode,
        reviewers: config.reviewers.clone(),
        shop_admins: config.shop_admins.clone(),
        room_pusher: room_pusher.clone(),
        db,
        probe_db,
        redis,
        signing_secret: config.signing_secret,
        wall_clock: Arc::new(SystemClock),
        shutdown: shutdown.clone(),
    };
    loops.spawn(
        "maintenance",
        nene_core::maintenance::run(state.db.clone(), shutdown.token()),
    );
    if let Some(dispatcher) = nene_core::notifications::start::spawn(
        &config.notifications,
        state.db.clone(),
        state.redis.clone(),
        shutdown.token(),
    )? {
        loops.add("notifications", dispatcher);
    }
    loops.spawn(
        "lifecycle",
        nene_core::lifecycle::run(state.db.clone(), room_pusher, shutdown.token()),
    );
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "nene-core listening");
    let server = Server::start(listener, http::router(state));
    shutdown.draining().await;
    let drained = shutdown::drain(&shutdown, loops, &force).await;
    let connections_cut = server.close(CLOSE_TIMEOUT).await;
    tracing::info!(
        drain_ms = shutdown.elapsed().as_millis(),
        loops_cut = ?drained.loops_cut,
        requests_cut = drained.requests_cut,
        connections_cut,
        "nene-core stopped"
    );
    Ok(())
}

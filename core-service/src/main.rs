//! `nene-core`: applies the migrations and serves the internal API until SIGTERM or SIGINT, then
//! drains (`nene_core::shutdown`) and exits 0.

use std::{process::ExitCode, sync::Arc};

use nene_core::{
    AppState,
    clock::SystemClock,
    config::CoreConfig,
    health::READINESS_DATABASE_TIMEOUT,
    http::{self, server::Server},
    migrate_connection,
    shutdown::{self, CLOSE_TIMEOUT, Loops, RUNTIME_STOP_TIMEOUT, Shutdown},
};
use sqlx::{Connection, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "nene-core could not start its runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run());
    // Whatever outlived the drain (a request or a loop past its bound) is dropped here; blocking
    // work (a DNS lookup) gets a bounded wait, so the exit never hangs on it.
    runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "nene-core stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = CoreConfig::from_lookup(|name| std::env::var(name).ok())?;
    // Migrations run on a connection of their own, outside the pool and its statement timeout:
    // building an index on a large table may rightly take longer than any request's statement.
    let mut migrations = sqlx::PgConnection::connect(&config.database_url).await?;
    migrate_connection(&mut migrations).await?;
    migrations.close().await?;
    let db = config
        .db
        .pool_options()
        .connect(&config.database_url)
        .await?;
    // One connection, apart from the requests' pool, for `/readyz`.
    let probe_db = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(READINESS_DATABASE_TIMEOUT)
        .connect_lazy(&config.database_url)?;
    let redis = config
        .redis_url
        .as_deref()
        .map(redis::Client::open)
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
        .map(|url| nene_core::lifecycle::RoomPusher::new(url, config.signing_secret.clone()))
        .transpose()?;
    let state = AppState {
        auth: nene_core::auth::Auth::new(db.clone(), config.auth.clone())?,
        payments,
        dev_mode: config.dev_mode,
        reviewers: config.reviewers.clone(),
        room_pusher: room_pusher.clone(),
        debits: nene_core::ledger::DebitBatcher::spawn(db.clone()),
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

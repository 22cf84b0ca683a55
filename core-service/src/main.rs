//! `nene-core`: applies the migrations and serves the internal API until SIGINT or SIGTERM.

use std::{process::ExitCode, sync::Arc};

use nene_core::{AppState, clock::SystemClock, config::CoreConfig, http, migrate_connection};
use sqlx::Connection;

#[tokio::main]
async fn main() -> ExitCode {
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
    // Migrations run on a connection of their own, outside the pool and its statement timeout:
    // building an index on a large table may rightly take longer than any request's statement.
    let mut migrations = nene_core::connect_one(&config.database_url, &config.tls).await?;
    migrate_connection(&mut migrations).await?;
    migrations.close().await?;
    let db = nene_core::connect_database(&config.database_url, &config.db, &config.tls).await?;
    let redis = config
        .redis_url
        .as_deref()
        .map(|url| config.tls.redis_client(url))
        .transpose()?;
    let payments =
        nene_core::payments::Payments::new(db.clone(), &config.toss, config.payments.clone())?;
    tokio::spawn(nene_core::payments::worker::run_forever(payments.clone()));
    let room_pusher = config
        .edge_url
        .as_deref()
        .map(|url| {
            nene_core::lifecycle::RoomPusher::new(url, config.signing_secret.clone(), &config.tls)
        })
        .transpose()?;
    let state = AppState {
        auth: nene_core::auth::Auth::new(db.clone(), config.auth.clone())?,
        payments,
        dev_mode: config.dev_mode,
        reviewers: config.reviewers.clone(),
        room_pusher: room_pusher.clone(),
        db,
        redis,
        signing_secret: config.signing_secret,
        wall_clock: Arc::new(SystemClock),
    };
    tokio::spawn(nene_core::maintenance::run_forever(state.db.clone()));
    nene_core::notifications::start::spawn(
        &config.notifications,
        state.db.clone(),
        state.redis.clone(),
    )?;
    tokio::spawn(nene_core::lifecycle::run_forever(
        state.db.clone(),
        room_pusher,
    ));
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "nene-core listening");
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("nene-core stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
}

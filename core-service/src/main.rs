//! `nene-core`: serves the internal API until SIGINT or SIGTERM (applying the migrations first in
//! dev mode, checking that they are applied elsewhere).
//!
//!   nene-core               serve
//!   nene-core migrate       apply the migrations the database lacks, print them, exit
//!   nene-core healthcheck   exit 0 when this container's core answers `/healthz`, else 1 (the
//!                           image's HEALTHCHECK: the image has no shell and no curl)

use std::{process::ExitCode, sync::Arc, time::Duration};

use nene_core::{AppState, clock::SystemClock, config::CoreConfig, http, schema};
use sqlx::Connection;

/// How long `nene-core migrate` waits to connect to Postgres before giving up: a deploy step that
/// cannot reach the database should fail and say so, not hang the deploy.
const MIGRATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: nene-core [migrate | healthcheck]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve().await,
        ["migrate"] => migrate().await,
        ["healthcheck"] => healthcheck().await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
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

//! `nene-sandbox`: serves the stand-ins on `SANDBOX_BIND` (default 127.0.0.1:8090).
//!
//! Toss webhooks start out going to `SANDBOX_TOSS_WEBHOOK_URL` (none if unset) with retries every
//! `SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS` × Toss's schedule (default 60000, Toss's minute); tests
//! change both through `PUT /sandbox/toss/webhook`.

use std::process::ExitCode;

/// Loopback by default: the sandbox is for this machine's stack only.
const BIND_DEFAULT: &str = "127.0.0.1:8090";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().json().init();
    let bind = std::env::var("SANDBOX_BIND").unwrap_or_else(|_| BIND_DEFAULT.to_owned());
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, %bind, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%bind, "nene-sandbox listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, nene_sandbox::router())
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "nene-sandbox stopped");
            ExitCode::FAILURE
        }
    }
}

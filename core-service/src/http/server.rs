//! The core's HTTP/1.1 server loop, written for its shutdown.
//!
//! `axum::serve` with graceful shutdown stops accepting the moment shutdown begins and drops any
//! connection it accepted whose first bytes it had not read yet — under a burst, requests the
//! client had already sent would see their connection closed without an answer. Here the listener
//! stays open through the drain (requests arriving then are answered 503 by the router's
//! admission layer, so a caller hears "not me, try again" rather than a reset), and only
//! [`Server::close`] stops accepting: it first takes every connection already queued in the
//! kernel, then asks each connection to finish the request it has (hyper answers a connection's
//! first request even when asked to shut down before reading it) and close.
//!
//! HTTP/1.1 only: the edge (Workers' `fetch`, Spin's outbound HTTP) speaks it to the core.

use std::{io, time::Duration};

use axum::Router;
use futures::FutureExt;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// After an accept error that is not about one connection (out of file descriptors, say), the
/// loop waits this long before trying again rather than spinning.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A running server.
pub struct Server {
    close: CancellationToken,
    accept: JoinHandle<()>,
    connections: TaskTracker,
}

impl Server {
    /// Serves `app` on `listener` until [`Server::close`].
    #[must_use]
    pub fn start(listener: TcpListener, app: Router) -> Server {
        let close = CancellationToken::new();
        let connections = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            app,
            close.clone(),
            connections.clone(),
        ));
        Server {
            close,
            accept,
            connections,
        }
    }

    /// Stops accepting (after taking the connections already queued), asks every connection to
    /// finish the request in hand and close, and waits up to `timeout` for them. Returns how many
    /// connections were still open at the bound (they are dropped with the runtime).
    pub async fn close(self, timeout: Duration) -> usize {
        self.close.cancel();
        if let Err(error) = self.accept.await {
            tracing::error!(%error, "the accept loop failed");
        }
        self.connections.close();
        match tokio::time::timeout(timeout, self.connections.wait()).await {
            Ok(()) => 0,
            Err(_) => self.connections.len(),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    close: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = close.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, app.clone(), close.clone()));
            }
            Err(error) if is_about_one_connection(&error) => {}
            Err(error) => {
                tracing::error!(%error, "accept failed; pausing");
                tokio::select! {
                    () = close.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
    // Connections the kernel completed before we stopped: their clients have sent (or are
    // sending) a request and would see a reset if the listener dropped them. Take them and answer.
    let mut queued = 0_usize;
    while let Some(Ok((stream, _))) = listener.accept().now_or_never() {
        connections.spawn(serve_connection(stream, app.clone(), close.clone()));
        queued += 1;
    }
    tracing::info!(queued, "the listener is closed");
}

fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(stream: TcpStream, app: Router, close: CancellationToken) {
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = close.cancelled() => {
            // Idle keep-alive connections close now; one with a request in hand (or one not read
            // yet) answers it first.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, "connection ended with an error");
    }
}

//! Serving the sandbox over HTTPS, as the real providers are served: a certificate chain and key
//! given by the caller (tests make a CA and a leaf with `rcgen`), HTTP/2 and HTTP/1.1 offered by
//! ALPN, as `fcm.googleapis.com` does. `main` keeps serving plain HTTP for `./nene up`.
//!
//! ```no_run
//! # async fn run(chain: &[u8], key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let listener = nene_sandbox::tls::TlsListener::new(tcp, nene_sandbox::tls::server_config(chain, key)?);
//! axum::serve(listener, nene_sandbox::router()).await?;
//! # Ok(()) }
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// A client gets this long to finish its handshake; one that stalls is dropped instead of holding
/// a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them: the sandbox takes them at once,
/// so this only smooths a burst.
pub const ACCEPTED_QUEUE_MAX: usize = 256;

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("certificate chain: {0}")]
    Chain(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// A server configuration for `cert_chain_pem` (leaf first) and `key_pem` (PKCS#8, SEC1 or
/// PKCS#1), with the ring provider, offering HTTP/2 and HTTP/1.1.
///
/// # Errors
/// [`TlsSetupError`] when the PEM cannot be read or the key does not match.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsSetupError::Chain(error.to_string()))?;
    if chain.is_empty() {
        return Err(TlsSetupError::Chain("no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| TlsSetupError::Key(error.to_string()))?;
    // ring, as the core uses: rustls deprecates it for lacking post-quantum key exchange, which
    // only aws-lc-rs (clang and cmake to build) offers; a test server does not need it.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener for [`axum::serve`] whose connections are TLS. Handshakes run in their own tasks,
/// so a client that stalls or fails its handshake (one that does not trust the certificate) does
/// not hold up the others; failed handshakes are logged and dropped.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: std::io::Result<SocketAddr>,
}

impl TlsListener {
    /// Starts accepting on `tcp` (in a background task, which ends with the listener).
    #[must_use]
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        let local_addr = tcp.local_addr();
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE_MAX);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause as axum's own listener does.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::info!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self {
            accepted,
            local_addr,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(address) => Ok(*address),
            Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
        }
    }
}

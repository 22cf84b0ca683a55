//! TLS out of the core: the one place that says whom the core trusts and builds its outbound
//! clients — every HTTP client (Toss, the login providers, FCM, the edge), the Postgres connection
//! options and the Redis client.
//!
//! Trust is Mozilla's root program (`webpki-roots`, compiled in: a container image needs no CA
//! bundle) plus, optionally, the certificates of `EXTRA_CA_FILE` (private roots: a corporate
//! proxy, a self-hosted Postgres, a test CA). The crypto is rustls with the `ring` provider, given
//! to each client's configuration explicitly rather than installed process-wide (aws-lc-rs, the
//! other provider, needs clang and cmake to build). Why: `docs/decisions/0011-tls.md`.

use std::{io, path::Path, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use sqlx::postgres::PgConnectOptions;

/// `EXTRA_CA_FILE` is read up to this size. Mozilla's whole bundle as PEM is about 220 KB; a
/// file far larger than that is not a list of roots.
pub const EXTRA_CA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The names under which sqlx reads a root certificate from a Postgres URL's query.
const POSTGRES_ROOT_CERT_PARAMS: [&str; 3] = ["sslrootcert", "ssl-root-cert", "ssl-ca"];

/// Why the extra roots cannot be used. The messages name the file, never its contents.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {error}")]
    Unreadable { path: String, error: String },
    #[error("{path}: {size} bytes is not a certificate file (at most {EXTRA_CA_FILE_BYTES_MAX})")]
    TooLarge { path: String, size: u64 },
    #[error("no PEM certificate in it")]
    NoCertificate,
    #[error("not a PEM certificate: {0}")]
    NotPem(String),
    #[error("not a usable root certificate: {0}")]
    NotARoot(String),
}

/// Why an outbound client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Which HTTP versions a client offers (by ALPN over TLS; plain-HTTP URLs, the local sandbox,
/// always speak HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.1 only: Toss and the login providers — few, short calls, which their
    /// documentation shows as HTTP/1.1.
    Http1,
    /// HTTP/2 when the server offers it, else HTTP/1.1: FCM, whose sends multiplex over one
    /// connection instead of one connection per send in flight.
    Http2Preferred,
}

/// Whom the core trusts: Mozilla's roots, plus the extra roots of `EXTRA_CA_FILE` if any. Cheap
/// to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Trust {
    extra: Arc<[CertificateDer<'static>]>,
    /// The extra roots as PEM, for Postgres and Redis (which take PEM).
    extra_pem: Arc<[u8]>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Trust")
            .field("extra_roots", &self.extra.len())
            .finish()
    }
}

/// The crypto of every TLS connection the core opens: ring. rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange (X25519MLKEM768), which only aws-lc-rs offers; aws-lc-rs
/// needs clang and cmake, which our build machines do not have (`docs/decisions/0011-tls.md`).
#[allow(deprecated)]
fn ring() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring())
}

impl Trust {
    /// Mozilla's roots only.
    #[must_use]
    pub fn public_roots() -> Self {
        Self::default()
    }

    /// Mozilla's roots and the certificates of `pem` (one or more `CERTIFICATE` blocks; other
    /// blocks are ignored).
    ///
    /// # Errors
    /// [`TrustError`] when `pem` holds no certificate or one that cannot be a root.
    pub fn with_extra_pem(pem: &[u8]) -> Result<Self, TrustError> {
        let extra = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TrustError::NotPem(error.to_string()))?;
        if extra.is_empty() {
            return Err(TrustError::NoCertificate);
        }
        // Each must parse as a trust anchor now, not at the first connection.
        let mut store = RootCertStore::empty();
        for certificate in &extra {
            store
                .add(certificate.clone())
                .map_err(|error| TrustError::NotARoot(error.to_string()))?;
        }
        Ok(Self {
            extra_pem: pem_of(&extra).into(),
            extra: extra.into(),
        })
    }

    /// [`Trust::with_extra_pem`] of a file (`EXTRA_CA_FILE`).
    ///
    /// # Errors
    /// [`TrustError`]: missing, unreadable or too large, or no usable certificate in it.
    pub fn with_extra_file(path: &Path) -> Result<Self, TrustError> {
        let shown = path.display().to_string();
        let unreadable = |error: io::Error| TrustError::Unreadable {
            path: shown.clone(),
            error: error.to_string(),
        };
        let size = std::fs::metadata(path).map_err(unreadable)?.len();
        if size > EXTRA_CA_FILE_BYTES_MAX {
            return Err(TrustError::TooLarge { path: shown, size });
        }
        Self::with_extra_pem(&std::fs::read(path).map_err(unreadable)?)
    }

    /// How many roots beside Mozilla's.
    #[must_use]
    pub fn extra_roots(&self) -> usize {
        self.extra.len()
    }

    fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // Checked in `with_extra_pem`: every one parses.
        store.add_parsable_certificates(self.extra.iter().cloned());
        store
    }

    /// The rustls configuration of a client offering `versions`.
    ///
    /// # Errors
    /// When rustls refuses the protocol versions (never with the ring provider's defaults).
    pub fn client_config(&self, versions: HttpVersions) -> Result<ClientConfig, rustls::Error> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        config.alpn_protocols = match versions {
            HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersions::Http2Preferred => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Ok(config)
    }

    /// An HTTP client builder with this trust and `versions`; the caller adds its timeouts.
    ///
    /// # Errors
    /// [`ClientError::Tls`], see [`Trust::client_config`].
    pub fn http(&self, versions: HttpVersions) -> Result<reqwest::ClientBuilder, ClientError> {
        let builder =
            reqwest::Client::builder().use_preconfigured_tls(self.client_config(versions)?);
        Ok(match versions {
            HttpVersions::Http1 => builder.http1_only(),
            HttpVersions::Http2Preferred => builder,
        })
    }

    /// Postgres' connection options from `url`. sqlx reads `sslmode` (`verify-full` checks the
    /// chain and the host name) and `sslrootcert` from the URL and trusts Mozilla's roots plus
    /// that file; when the URL names no root certificate, the extra roots stand in for it.
    ///
    /// # Errors
    /// When `url` is not a Postgres URL sqlx can read.
    pub fn postgres_options(&self, url: &str) -> Result<PgConnectOptions, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        if self.extra.is_empty() || names_root_cert(url) {
            return Ok(options);
        }
        Ok(options.ssl_root_cert_from_pem(self.extra_pem.to_vec()))
    }

    /// A Redis client for `url`. `rediss://` is TLS, trusting Mozilla's roots, and the extra
    /// roots if any; `redis://` is plain TCP.
    ///
    /// # Errors
    /// When `url` is not a Redis URL.
    pub fn redis_client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if !url.starts_with("rediss://") {
            return redis::Client::open(url);
        }
        // redis-rs builds its rustls configuration with the process-wide provider (it takes no
        // configuration of ours); rustls would pick ring, the only one built in, on its own. An
        // `Err` means one is installed already.
        let _ = ring().install_default();
        if self.extra.is_empty() {
            return redis::Client::open(url);
        }
        // Extra roots replace redis-rs' own, so Mozilla's go with them.
        let mut roots = public_roots_pem();
        roots.extend_from_slice(&self.extra_pem);
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots),
            },
        )
    }
}

/// Mozilla's roots as PEM certificates.
fn public_roots_pem() -> Vec<u8> {
    pem_of(webpki_root_certs::TLS_SERVER_ROOT_CERTS)
}

/// `certificates` as PEM `CERTIFICATE` blocks.
fn pem_of(certificates: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut pem = Vec::new();
    for certificate in certificates {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let base64 = STANDARD.encode(certificate.as_ref());
        for line in base64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// Whether a Postgres URL names its own root certificate.
fn names_root_cert(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    params
        .iter()
        .any(|(name, _)| POSTGRES_ROOT_CERT_PARAMS.contains(&name.as_str()))
}

/// How an HTTP call failed before an answer came, in words safe to log (no URL, no body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    TimedOut,
    /// The TLS handshake failed: an untrusted or mismatched certificate is a configuration
    /// problem (`EXTRA_CA_FILE`?), not a passing fault.
    Tls(String),
    CannotConnect,
    Other(String),
}

impl TransportFailure {
    #[must_use]
    pub fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            TransportFailure::TimedOut
        } else if let Some(tls) = tls_cause(error) {
            TransportFailure::Tls(tls.to_string())
        } else if error.is_connect() {
            TransportFailure::CannotConnect
        } else {
            TransportFailure::Other(error.to_string())
        }
    }

    #[must_use]
    pub fn is_tls(&self) -> bool {
        matches!(self, TransportFailure::Tls(_))
    }
}

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportFailure::TimedOut => formatter.write_str("timed out"),
            TransportFailure::Tls(error) => write!(formatter, "tls: {error}"),
            TransportFailure::CannotConnect => formatter.write_str("cannot connect"),
            TransportFailure::Other(error) => write!(formatter, "transport: {error}"),
        }
    }
}

/// The rustls error somewhere in `error`'s chain of causes (an HTTP call's, a Postgres or Redis
/// connection's): whether it failed as TLS. tokio-rustls reports it inside an `io::Error`, which
/// reqwest's connector wraps in another; an `io::Error`'s `source()` skips what it wraps, so
/// each is opened instead.
#[must_use]
pub fn tls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_a_certificate_or_with_a_broken_one_is_refused() {
        assert!(matches!(
            Trust::with_extra_pem(b""),
            Err(TrustError::NoCertificate)
        ));
        assert!(matches!(
            Trust::with_extra_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(TrustError::NoCertificate)
        ));
        assert!(
            Trust::with_extra_pem(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
    }

    #[test]
    fn mozillas_roots_as_pem_are_every_root_and_read_back() {
        let pem = public_roots_pem();
        let read = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        assert_eq!(read.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(read.len() > 100);
    }

    #[test]
    fn a_postgres_url_naming_its_root_certificate_is_seen() {
        assert!(names_root_cert(
            "postgres://u@db:5432/p?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        ));
        assert!(!names_root_cert(
            "postgres://u@db:5432/p?sslmode=verify-full"
        ));
        assert!(!names_root_cert("postgres://u@db:5432/p"));
    }

    #[test]
    fn toss_and_the_providers_offer_http1_and_fcm_offers_http2_first() {
        let trust = Trust::public_roots();
        let http1 = trust.client_config(HttpVersions::Http1);
        let http2 = trust.client_config(HttpVersions::Http2Preferred);
        assert_eq!(
            http1.map(|config| config.alpn_protocols).ok(),
            Some(vec![b"http/1.1".to_vec()])
        );
        assert_eq!(
            http2.map(|config| config.alpn_protocols).ok(),
            Some(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        );
    }
}

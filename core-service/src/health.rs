//! Probes of the stores the core depends on, each bounded by a timeout so a hung store makes the
//! report say "down" instead of making the caller wait.

use std::time::Duration;

use nene_domain::{health::PartStatus, limits::HEALTH_PROBE_TIMEOUT_MS};
use sqlx::PgPool;

use crate::{
    schema::{self, SchemaError},
    shutdown::Shutdown,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(HEALTH_PROBE_TIMEOUT_MS);

/// How long `/readyz` waits for Postgres. Kubernetes gives a probe 1 s by default
/// (`timeoutSeconds`); answering 503 within half of it means a slow database is reported as
/// "not ready" rather than as a probe that timed out.
pub const READINESS_DATABASE_TIMEOUT: Duration = Duration::from_millis(500);
const _: () = assert!(READINESS_DATABASE_TIMEOUT.as_millis() < 1_000);

/// The readiness check that failed; its name is all `/readyz` says (no internal detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The process received SIGTERM: it finishes what it has and takes nothing new.
    Draining,
    /// Postgres did not answer within [`READINESS_DATABASE_TIMEOUT`].
    Database,
    /// The schema is not this build's: a migration it embeds is missing, failed part-way or
    /// differs from its copy.
    Migrations,
}

impl NotReady {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::Database => "database",
            NotReady::Migrations => "migrations",
        }
    }
}

/// Whether this process should receive traffic: not draining, Postgres answering, and the schema
/// current — the same check the core makes at start when it does not migrate
/// ([`crate::schema::check_current`]: every migration this build embeds applied, whole and
/// unchanged). A database *ahead* of the binary (a newer release migrated it during a rolling
/// deploy) is ready: migrations keep working for the release before them.
///
/// # Errors
/// The first check that failed.
#[tracing::instrument(skip_all)]
pub async fn readiness(db: &PgPool, shutdown: &Shutdown) -> Result<(), NotReady> {
    if shutdown.is_draining() {
        return Err(NotReady::Draining);
    }
    let check = async {
        let mut connection = db.acquire().await.map_err(SchemaError::Database)?;
        schema::check_current(&mut connection).await
    };
    match tokio::time::timeout(READINESS_DATABASE_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(SchemaError::Database(error))) => {
            tracing::warn!(%error, "readiness: the database did not answer");
            Err(NotReady::Database)
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the schema is not this build's");
            Err(NotReady::Migrations)
        }
        Err(_) => {
            tracing::warn!("readiness: the database timed out");
            Err(NotReady::Database)
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn probe_database(db: &PgPool) -> PartStatus {
    let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(db);
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(1)) => PartStatus::Ok,
        Ok(Ok(_)) => PartStatus::Down,
        Ok(Err(error)) => {
            tracing::warn!(%error, "database probe failed");
            PartStatus::Down
        }
        Err(_) => {
            tracing::warn!("database probe timed out");
            PartStatus::Down
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn probe_redis(redis: Option<&redis::Client>) -> PartStatus {
    let Some(client) = redis else {
        return PartStatus::Disabled;
    };
    let probe = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(pong)) if pong == "PONG" => PartStatus::Ok,
        Ok(Ok(_)) => PartStatus::Down,
        Ok(Err(error)) => {
            tracing::warn!(%error, "redis probe failed");
            PartStatus::Down
        }
        Err(_) => {
            tracing::warn!("redis probe timed out");
            PartStatus::Down
        }
    }
}

/// How long the container's health probe waits for `/healthz`, which answers without touching a
/// store: a core that takes longer is hung, not busy. Under the image's HEALTHCHECK timeout
/// (3 s), so the probe reports its own reason instead of being killed.
pub const SELF_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/healthz` URL of a core listening on `bind`: its loopback when `bind` names every
/// interface (`0.0.0.0:8081` in the image), since nothing can connect to the wildcard address.
///
/// # Errors
/// When `bind` is not a socket address.
pub fn self_probe_url(bind: &str) -> Result<String, String> {
    let mut addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|_| format!("{bind:?} is not a socket address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}/healthz"))
}

/// GETs the core's own `/healthz` on `bind`; `Ok` only for a 200 within [`SELF_PROBE_TIMEOUT`].
///
/// # Errors
/// What went wrong, for the health check's log.
pub async fn probe_self(bind: &str) -> Result<(), String> {
    let url = self_probe_url(bind)?;
    // No proxy: a proxy variable in the container's environment must not send the probe away.
    let client = reqwest::Client::builder()
        .timeout(SELF_PROBE_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    if response.status() == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("{url}: {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_of_a_core_bound_to_every_interface_goes_to_its_loopback() {
        assert_eq!(
            self_probe_url("0.0.0.0:8081").as_deref(),
            Ok("http://127.0.0.1:8081/healthz")
        );
        assert_eq!(
            self_probe_url("[::]:8081").as_deref(),
            Ok("http://[::1]:8081/healthz")
        );
        assert_eq!(
            self_probe_url("10.1.2.3:9000").as_deref(),
            Ok("http://10.1.2.3:9000/healthz")
        );
        assert!(self_probe_url("localhost").is_err());
    }
}

//! Probes of the stores the core depends on, each bounded by a timeout so a hung store makes the
//! report say "down" instead of making the caller wait.

use std::time::Duration;

use nene_domain::{health::PartStatus, limits::HEALTH_PROBE_TIMEOUT_MS};
use sqlx::PgPool;

const PROBE_TIMEOUT: Duration = Duration::from_millis(HEALTH_PROBE_TIMEOUT_MS);

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

//! Wire types of `GET /v1/health` (edge) and `GET /internal/v1/health` (core).

use serde::{Deserialize, Serialize};

/// The state of one part of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartStatus {
    Ok,
    Down,
    /// Not configured (Redis is optional: the platform runs without it).
    Disabled,
}

/// What the core reports about itself and the stores it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreHealth {
    pub core: PartStatus,
    pub database: PartStatus,
    pub redis: PartStatus,
    /// The platform clock (wall clock plus the dev test-clock offset), when the database answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_time_unix_seconds: Option<i64>,
}

/// What the edge answers on `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformHealth {
    /// `ok` when the edge, the core and the database are up; Redis being down degrades nothing
    /// that loses data, so it does not fail the check.
    pub status: PartStatus,
    /// Which host serves the edge: `workers` or `spin` (or `test` in-process).
    pub runtime: String,
    pub edge: PartStatus,
    pub core: PartStatus,
    pub database: PartStatus,
    pub redis: PartStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_time_unix_seconds: Option<i64>,
}

impl PlatformHealth {
    /// Combines the edge's own view with the core's report.
    #[must_use]
    pub fn from_core(runtime: &str, core: &CoreHealth) -> Self {
        let healthy = core.core == PartStatus::Ok && core.database == PartStatus::Ok;
        PlatformHealth {
            status: if healthy {
                PartStatus::Ok
            } else {
                PartStatus::Down
            },
            runtime: runtime.to_owned(),
            edge: PartStatus::Ok,
            core: core.core,
            database: core.database,
            redis: core.redis,
            platform_time_unix_seconds: core.platform_time_unix_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_without_redis_is_still_healthy() {
        let core = CoreHealth {
            core: PartStatus::Ok,
            database: PartStatus::Ok,
            redis: PartStatus::Disabled,
            platform_time_unix_seconds: None,
        };
        assert_eq!(
            PlatformHealth::from_core("test", &core).status,
            PartStatus::Ok
        );
    }

    #[test]
    fn a_platform_whose_database_is_down_is_not_healthy() {
        let core = CoreHealth {
            core: PartStatus::Ok,
            database: PartStatus::Down,
            redis: PartStatus::Ok,
            platform_time_unix_seconds: None,
        };
        assert_eq!(
            PlatformHealth::from_core("test", &core).status,
            PartStatus::Down
        );
    }
}

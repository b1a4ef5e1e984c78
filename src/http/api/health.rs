//! `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /healthz`: the process is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"status": "ok"})))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: every worker runs and the database is reachable and migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"status": "ready", "schemaVersion": 14, "database": {
    "host": "10.0.0.11", "port": 5432, "inRecovery": false,
    "synchronousStandbyNames": "ANY 1 (pg2, pg3)", "synchronousCommit": "on",
    "commitsWaitForStandby": true, "synchronousStandbys": 1}})))]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    pub schema_version: i32,
    pub database: DatabaseProtection,
}

/// The server this process writes to, and what protects its commits (docs/operating.md, "Operating
/// PostgreSQL").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({
    "host": "10.0.0.11", "port": 5432, "inRecovery": false,
    "synchronousStandbyNames": "ANY 1 (pg2, pg3)", "synchronousCommit": "on",
    "commitsWaitForStandby": true, "synchronousStandbys": null})))]
pub struct DatabaseProtection {
    /// The server's address as this process reached it; `null` over a Unix socket.
    pub host: Option<String>,
    /// The server's port.
    pub port: i32,
    /// `true` when the server is a standby (then this process is not ready to write).
    pub in_recovery: bool,
    /// The server's `synchronous_standby_names`; empty when no standby confirms commits.
    pub synchronous_standby_names: String,
    /// `synchronous_commit` of the service's sessions (the service sets `on`).
    pub synchronous_commit: String,
    /// `true` when a commit is acknowledged only once a synchronous standby has it (the two
    /// settings above say so); `false` means an acknowledged write lives on the primary's disk
    /// alone.
    pub commits_wait_for_standby: bool,
    /// Synchronous standbys attached now (`sync` or `quorum` in `pg_stat_replication`); `null`
    /// when the service's role may not read their state (grant it `pg_monitor` to see it).
    pub synchronous_standbys: Option<i64>,
}

impl From<crate::database::primary::Protection> for DatabaseProtection {
    fn from(p: crate::database::primary::Protection) -> DatabaseProtection {
        DatabaseProtection {
            commits_wait_for_standby: p.commits_wait_for_standby(),
            host: p.host,
            port: p.port,
            in_recovery: p.in_recovery,
            synchronous_standby_names: p.synchronous_standby_names,
            synchronous_commit: p.synchronous_commit,
            synchronous_standbys: p.synchronous_standbys,
        }
    }
}

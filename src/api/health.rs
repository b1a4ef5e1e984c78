//! `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the process is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: every worker runs and the database is reachable and migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    pub schema_version: i32,
}

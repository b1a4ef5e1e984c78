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
#[schema(examples(json!({"status": "ready", "schemaVersion": 14})))]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    pub schema_version: i32,
}

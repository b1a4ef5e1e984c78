//! `GET /` for API clients: where everything else is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({
    "service": "dts-ledger",
    "version": "0.1.0",
    "links": {
        "console": "/console/",
        "apiReference": "/docs/",
        "openapi": "/openapi.json",
        "healthz": "/healthz",
        "readyz": "/readyz",
        "metrics": "/metrics"
    }
})))]
pub struct Landing {
    /// Always `dts-ledger`.
    pub service: String,
    /// The version of the running build.
    pub version: String,
    pub links: Links,
}

/// Paths on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"console": "/console/", "apiReference": "/docs/", "openapi": "/openapi.json", "healthz": "/healthz", "readyz": "/readyz", "metrics": "/metrics"})))]
pub struct Links {
    /// The customer console (customers sign in from the marketplace).
    pub console: String,
    /// The API reference page, rendered from `openapi`.
    pub api_reference: String,
    /// The OpenAPI 3.1 document of this API.
    pub openapi: String,
    pub healthz: String,
    pub readyz: String,
    /// Prometheus metrics (admin token).
    pub metrics: String,
}

//! `GET /v1/ledger`: a page of the raw ledger.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerPage {
    pub events: Vec<LedgerEvent>,
    /// The `after` of the next page: the last position of this one (or the request's `after`).
    pub next: i64,
}

/// One recorded event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event_version: i32,
    pub data: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// Hex.
    pub prev_hash: String,
    /// Hex.
    pub hash: String,
}

impl From<crate::store::RecordedEvent> for LedgerEvent {
    fn from(e: crate::store::RecordedEvent) -> LedgerEvent {
        LedgerEvent {
            position: e.position,
            stream_id: e.stream_id,
            version: e.version,
            event_type: e.event_type,
            event_version: e.event_version,
            data: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
        }
    }
}

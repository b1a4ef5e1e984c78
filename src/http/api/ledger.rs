//! `GET /v1/ledger`: a page of the raw ledger.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"events": [{"position": 1, "streamId": "package-dts-1", "version": 1, "type": "OrderCreated", "eventVersion": 1, "data": {"instanceId": "dts-1", "bytesGranted": 536870912000u64}, "metadata": {"requestId": "5f0c4c1e-0b7a-4a3e-9c57-8d1f1c7e2a10", "source": "marketplace", "actor": "marketplace"}, "recordedAt": "2026-11-26T08:00:00Z", "prevHash": "0000000000000000000000000000000000000000000000000000000000000000", "hash": "3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b"}], "next": 1})))]
pub struct LedgerPage {
    pub events: Vec<LedgerEvent>,
    /// The `after` of the next page (the last position of this one) when more events follow;
    /// `null` when this page reaches the ledger's end: to follow new events, ask again later with
    /// `after` = the last position you have.
    pub next: Option<i64>,
}

/// One recorded event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"position": 1, "streamId": "package-dts-1", "version": 1, "type": "OrderCreated", "eventVersion": 1, "data": {"instanceId": "dts-1", "bytesGranted": 536870912000u64}, "metadata": {"requestId": "5f0c4c1e-0b7a-4a3e-9c57-8d1f1c7e2a10", "source": "marketplace", "actor": "marketplace"}, "recordedAt": "2026-11-26T08:00:00Z", "prevHash": "0000000000000000000000000000000000000000000000000000000000000000", "hash": "3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b"})))]
pub struct LedgerEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event_version: i32,
    /// The event's payload, as recorded; its shape depends on `type` and `eventVersion`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// `requestId`, `source` and `actor` of the request that recorded the event.
    #[schema(value_type = Object)]
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
            // Resolved by the store's page reader (a row of hash version 4 may store none).
            metadata: e.metadata.unwrap_or(Value::Null),
            recorded_at: e.recorded_at,
            // Derived by the store's page reader where the row stores none (migration 25).
            prev_hash: e.prev_hash.as_deref().map(hex::encode).unwrap_or_default(),
            hash: hex::encode(&e.hash),
        }
    }
}

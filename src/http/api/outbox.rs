//! `GET /v1/outbox` and `POST /v1/outbox/{position}/retry`.

use crate::outbox::entries::Entry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of undelivered webhook entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"entries": [{"position": 4711, "subject": "task-task-1", "type": "TaskStopped", "recordedAt": "2026-11-26T08:00:00Z", "state": "dead", "attempts": 12, "firstAttemptAt": "2026-11-26T08:00:01Z", "nextAttemptAt": "2026-11-26T08:10:00Z", "deadAt": "2026-11-27T08:00:01Z", "lastError": "HTTP 500 from the receiver", "behind": null}], "next": 4711})))]
pub struct OutboxPage {
    pub entries: Vec<Entry>,
    /// The `after` of the next page when more entries follow; `null` on the last page.
    pub next: Option<i64>,
}

/// A dead letter queued again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"position": 4711, "state": "pending"})))]
pub struct Requeued {
    pub position: i64,
    /// Always `pending`.
    pub state: String,
}

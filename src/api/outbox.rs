//! `GET /v1/outbox` and `POST /v1/outbox/{position}/retry`.

use crate::outbox::entries::Entry;
use serde::Serialize;

/// A page of undelivered webhook entries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxPage {
    pub entries: Vec<Entry>,
    /// The `after` of the next page.
    pub next: i64,
}

/// A dead letter queued again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requeued {
    pub position: i64,
    /// Always `pending`.
    pub state: String,
}

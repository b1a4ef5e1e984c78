//! `POST /v1/traffic`: one result per report, in the order sent.

use crate::http::api::error::ErrorDetail;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"results": [{"taskId": "task-1", "reportId": "r-1", "status": "accepted", "action": "continue", "bytesRemaining": 536869863424u64}, {"taskId": "task-1", "reportId": "r-2", "status": "rejected", "action": "continue", "bytesRemaining": 0, "error": {"code": "invalid_bytes", "message": "bytes must be a whole number, 0 or more"}}]})))]
pub struct TrafficResponse {
    pub results: Vec<ReportResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"taskId": "task-1", "reportId": "r-9", "status": "accepted", "action": "stop", "bytesRemaining": 0, "reason": "quota_exhausted"})))]
pub struct ReportResult {
    /// As sent, when it was a string; `null` otherwise.
    pub task_id: Option<String>,
    /// As sent, when it was a string; `null` otherwise.
    pub report_id: Option<String>,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: String,
    /// `continue` or `stop`.
    pub action: String,
    pub bytes_remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why a report was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// One traffic report, as an agent sends it: the bytes the task moved since its previous report.
/// The service reads each report on its own (a malformed one is rejected in its result, not the
/// whole request), so this type documents the shape rather than being how it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"taskId": "task-1", "reportId": "r-1", "bytes": 1048576, "periodStart": "2026-11-26T08:00:00Z", "periodEnd": "2026-11-26T08:01:00Z"})))]
pub struct TrafficReport {
    pub task_id: String,
    /// With `taskId`, what makes the report unique: a repeat is answered `duplicate`.
    pub report_id: String,
    /// At most `report_bytes_max`.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<chrono::DateTime<chrono::Utc>>,
    /// At most an hour ahead.
    pub period_end: chrono::DateTime<chrono::Utc>,
}

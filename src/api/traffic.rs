//! `POST /v1/traffic`: one result per report, in the order sent.

use crate::api::error::ErrorDetail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficResponse {
    pub results: Vec<ReportResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// As sent, when it was a string; `null` otherwise.
    pub task_id: Option<String>,
    /// As sent, when it was a string; `null` otherwise.
    pub report_id: Option<String>,
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

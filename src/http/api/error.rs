//! `{"error": {"code", "message"}}`: every error the API answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error the API answers; `code` is stable, each route lists the codes it can answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"error": {"code": "order_not_found", "message": "instanceId dts-1 is not known"}})))]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"code": "invalid_bytes", "message": "bytes must be a whole number, 0 or more"})))]
pub struct ErrorDetail {
    /// Stable, snake_case; clients match on it.
    pub code: String,
    /// For people; may change wording between versions.
    pub message: String,
}

impl ErrorResponse {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

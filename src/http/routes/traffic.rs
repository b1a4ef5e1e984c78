//! `POST /v1/traffic`: traffic reports from DTS agents, charged through the ingest pipeline.

use crate::domain::traffic::{Status, Verdict};
use crate::http::api::error::ErrorDetail;
use crate::http::api::refusals::StaffOnly;
use crate::http::api::traffic::{ReportResult, TrafficResponse};
use crate::http::auth::Staff;
use crate::http::body::{self, Encodings};
use crate::http::error::ApiError;
use crate::http::state::{AppState, RequestId};
use crate::ingest::report;
use crate::ingest::IngestError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use projections::events::ReportAction;
use serde::Deserialize;
use serde_json::Value;

/// Most reports per request: a request is answered only when all of its reports are committed,
/// and it travels whole through one batch per lane.
pub const REPORTS_PER_REQUEST_MAX: usize = 10_000;
/// Largest body of a traffic request: 10,000 reports with ids at their length limits.
pub const TRAFFIC_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Up to 10,000 reports. Each is judged on its own: a malformed one is rejected in its result
/// while the others are charged.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(examples(json!({"reports": [
    {"taskId": "task-1", "reportId": "r-1", "bytes": 1048576, "periodStart": "2026-11-26T08:00:00Z", "periodEnd": "2026-11-26T08:01:00Z"},
    {"taskId": "task-1", "reportId": "r-2", "bytes": 0, "periodEnd": "2026-11-26T08:02:00Z"}
]})))]
pub struct TrafficBody {
    #[schema(value_type = Vec<crate::http::api::traffic::TrafficReport>)]
    reports: Vec<Value>,
}

/// A report's id field as sent, when it is a string.
fn sent_id(raw: &Value, field: &str) -> Option<String> {
    raw.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn report_result(raw: &Value, verdict: &Verdict) -> ReportResult {
    ReportResult {
        task_id: sent_id(raw, "taskId"),
        report_id: sent_id(raw, "reportId"),
        status: verdict.status.as_str().to_owned(),
        action: match verdict.action {
            ReportAction::Continue => "continue",
            ReportAction::Stop => "stop",
        }
        .to_owned(),
        bytes_remaining: verdict.bytes_remaining.get(),
        reason: verdict.reason.map(|reason| reason.as_str().to_owned()),
        error: verdict.error.as_ref().map(|(code, message)| ErrorDetail {
            code: (*code).to_owned(),
            message: message.clone(),
        }),
    }
}

fn check_count(reports: usize) -> Result<(), ApiError> {
    if reports > REPORTS_PER_REQUEST_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_reports",
            format!("{reports} reports in one request; the limit is {REPORTS_PER_REQUEST_MAX}"),
        ));
    }
    Ok(())
}

/// Every failure is worth a retry: nothing of the failed batch was recorded, and reports another
/// lane did record come back as duplicates.
fn submit_failed(error: IngestError) -> ApiError {
    let code = match error {
        IngestError::Unavailable => "database_unavailable",
        IngestError::ReadOnly => "database_read_only",
        IngestError::Overloaded => "overloaded",
        IngestError::Closed => "shutting_down",
        IngestError::Failed => "batch_failed",
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, error.to_string())
}

/// Charges traffic reports.
///
/// Exactly once per `(taskId, reportId)`; answers one result per report, in the order sent, so
/// an agent learns at once whether to stop. Takes `Content-Encoding: gzip`
/// (the 8 MiB limit counts the inflated bytes). A `503` recorded nothing of the failed batch:
/// retrying is always safe (reports another lane recorded come back `duplicate`).
#[utoipa::path(post, path = "/v1/traffic", tag = "traffic", request_body = TrafficBody, security(("reporter" = []), ("admin" = [])),
    responses(
        (status = 200, description = "One result per report; rejected reports carry `error` with \
            `invalid_report`, `invalid_task_id`, `invalid_report_id`, `invalid_bytes`, \
            `bytes_too_large`, `invalid_period`, `report_too_late` (`periodEnd` older than \
            `[traffic] key_retention_days`, 45 by default), `unknown_task`, `task_destroyed`, \
            `unchargeable`", body = TrafficResponse),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = crate::http::api::error::ErrorResponse),
        (status = 405, description = "`method_not_allowed`", body = crate::http::api::error::ErrorResponse),
        (status = 413, description = "`too_many_reports` (over 10,000), `payload_too_large` \
            (over 8 MiB once inflated)", body = crate::http::api::error::ErrorResponse),
        (status = 415, description = "`unsupported_media_type`, `unsupported_encoding`", body = crate::http::api::error::ErrorResponse),
        (status = 503, description = "`database_unavailable`, `database_read_only`, `overloaded`, `batch_failed`, \
            `shutting_down`", body = crate::http::api::error::ErrorResponse),
        StaffOnly,
    ))]
pub async fn post_traffic(
    Staff(caller): Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Agents may gzip their batches; the limit counts the inflated bytes.
    let body: TrafficBody = body::read_json(
        &req,
        payload,
        TRAFFIC_BODY_BYTES_MAX,
        Encodings::IdentityOrGzip,
    )
    .await?;
    let raw = body.reports;
    check_count(raw.len())?;
    let now = Utc::now();
    let key_retention = state.config.key_retention();
    let mut verdicts: Vec<Option<Verdict>> = vec![None; raw.len()];
    let mut valid = Vec::with_capacity(raw.len());
    let mut valid_at = Vec::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        match report::parse(value, state.config.report_bytes_max, now, key_retention) {
            Ok(report) => {
                valid.push(report);
                valid_at.push(index);
            }
            Err(rejection) => {
                verdicts[index] = Some(Verdict::rejected(rejection.code, rejection.message));
            }
        }
    }
    let metadata = RequestId::of(&req).metadata("traffic", caller.actor());
    let charged = state
        .ingest
        .submit(valid, metadata)
        .await
        .map_err(submit_failed)?;
    for (index, verdict) in valid_at.into_iter().zip(charged) {
        verdicts[index] = Some(verdict);
    }
    let results: Vec<ReportResult> = raw
        .iter()
        .zip(&verdicts)
        .map(|(value, verdict)| report_result(value, verdict.as_ref().expect("all judged")))
        .collect();
    let rejected = verdicts
        .iter()
        .flatten()
        .filter(|v| v.status == Status::Rejected)
        .count();
    if rejected > 0 {
        tracing::info!(rejected, reports = raw.len(), "traffic reports rejected");
    }
    Ok(HttpResponse::Ok().json(TrafficResponse { results }))
}

//! `GET /metrics`: the Prometheus text exposition (admin token; see README, "Metrics").

use crate::auth;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::require_admin(&req, &state.tokens())?;
    Ok(render(&state))
}

/// The page, with the gauges that are read at scrape time brought up to date first.
pub fn render(state: &AppState) -> HttpResponse {
    metrics::observe_now(&state.pool, state.ingest.queued_reports());
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics::install().render())
}

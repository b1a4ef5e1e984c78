//! `GET /metrics`: the Prometheus text exposition (docs/operating.md, "Metrics"). On the main
//! listener it needs the admin token; on the `[metrics] listen` address it needs none, and that
//! address answers nothing else.

use crate::http::api::refusals::AdminOnly;
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics;
use actix_web::body::MessageBody;
use actix_web::dev::Payload;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use std::future::{ready, Ready};
use std::net::SocketAddr;

/// The address `[metrics] listen` bound (the port resolved), when configured.
#[derive(Debug, Clone, Copy)]
pub struct MetricsAddress(pub Option<SocketAddr>);

fn on_metrics_address(req: &HttpRequest) -> bool {
    req.app_data::<MetricsAddress>()
        .and_then(|address| address.0)
        .is_some_and(|address| address == req.app_config().local_addr())
}

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus text exposition (admin; no token on the `[metrics] listen` address).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every series (docs/operating.md, \"Metrics\")", body = String,
            content_type = "text/plain; version=0.0.4"),
        AdminOnly,
    ))]
pub async fn metrics(_: Scraper, state: web::Data<AppState>) -> HttpResponse {
    render(&state)
}

/// Who may read `/metrics`: anyone on the `[metrics] listen` address, the admin elsewhere.
pub struct Scraper;

impl FromRequest for Scraper {
    type Error = ApiError;
    type Future = Ready<Result<Scraper, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if on_metrics_address(req) {
            return ready(Ok(Scraper));
        }
        ready(
            Admin::from_request(req, payload)
                .into_inner()
                .map(|_| Scraper),
        )
    }
}

/// The page, with the gauges that are read at scrape time brought up to date first.
pub fn render(state: &AppState) -> HttpResponse {
    metrics::observe_now(&state.pool, state.ingest.queued_reports());
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics::install().render())
}

/// The middleware keeping the metrics address to `/metrics`: the address is meant for a
/// Prometheus server on a private network, and the API's routes are not.
pub async fn metrics_address_only(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if on_metrics_address(req.request()) && req.path() != "/metrics" {
        return Err(
            ApiError::not_found("not_found", "only /metrics is served on this address").into(),
        );
    }
    next.call(req).await
}

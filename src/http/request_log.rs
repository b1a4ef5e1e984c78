//! What each HTTP request leaves behind: one log line when it ends (route pattern, method,
//! status, latency, request id) and its id returned as `x-request-id`, the same id the ledger's
//! metadata records.

use super::request_metrics::{method_label, UNMATCHED};
use super::state::RequestId;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use std::time::Instant;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

/// The target of the one line logged per request: `RUST_LOG=info,dts_ledger::request=warn`
/// keeps only the failed ones on a busy hot path.
pub const REQUEST_TARGET: &str = "dts_ledger::request";

/// The span of each HTTP request (`tracing-actix-web`'s middleware opens and closes it), and the
/// line logged when it ends: route pattern, method, status, latency and request id.
///
/// Instead of the default span, which records the raw target with its query string: the
/// marketplace's callback carries its signature there, and ids belong in the ledger, not in
/// every log line.
pub struct RequestSpan;

/// When the request reached the middleware.
#[derive(Clone, Copy)]
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // The middleware's id, inserted just before: one id for the log, the `x-request-id`
        // header and the ledger's metadata.
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), ToString::to_string);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        request.extensions_mut().insert(Started(Instant::now()));
        let route = request
            .match_pattern()
            .unwrap_or_else(|| UNMATCHED.to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = method_label(request.method()),
            route = %route,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, latency_ms, request) = match outcome {
            Ok(response) => {
                let request = response.request();
                let started = request.extensions().get::<Started>().copied();
                let latency_ms = started.map(|s| s.0.elapsed().as_micros() as f64 / 1e3);
                (response.status(), latency_ms, Some(request))
            }
            Err(error) => (error.as_response_error().status_code(), None, None),
        };
        let request_id = request
            .and_then(|r| r.extensions().get::<RequestId>().cloned())
            .map(|id| id.0)
            .unwrap_or_default();
        let route = request
            .and_then(HttpRequest::match_pattern)
            .unwrap_or_else(|| UNMATCHED.to_owned());
        let method = request.map_or("", |r| method_label(r.method()));
        let _entered = span.enter();
        // One line per request, its level and message by its outcome (a level is fixed where a
        // line is written).
        macro_rules! request_line {
            ($level:expr, $message:literal) => {
                tracing::event!(
                    target: REQUEST_TARGET,
                    $level,
                    request_id,
                    method,
                    route,
                    status = status.as_u16(),
                    latency_ms,
                    $message
                )
            };
        }
        if status.is_server_error() {
            request_line!(tracing::Level::WARN, "request failed");
        } else {
            request_line!(tracing::Level::INFO, "request served");
        }
    }
}

/// Returns the request's id as `x-request-id` (`middleware::from_fn`), for clients to quote.
pub async fn request_id_header(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = request.extensions().get::<RequestId>().cloned();
    let mut response = next.call(request).await?;
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id.0).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

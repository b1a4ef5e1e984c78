//! Structured logs: human-readable by default, one JSON object per line with
//! `LEDGER_LOG_FORMAT=json`. `RUST_LOG` picks the levels (default `info`).
//!
//! Nothing here knows about secrets: they are kept out of logs by never formatting them
//! ([`crate::configuration::Secret`] prints `***`).

use crate::state::RequestId;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use std::io::IsTerminal;
use std::time::Instant;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_subscriber::{fmt, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; later calls (several test apps in one process) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

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
            .unwrap_or_else(|| crate::metrics::http::UNMATCHED.to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = crate::metrics::http::method_label(request.method()),
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
            .unwrap_or_else(|| crate::metrics::http::UNMATCHED.to_owned());
        let method = request.map_or("", |r| crate::metrics::http::method_label(r.method()));
        let _entered = span.enter();
        if status.is_server_error() {
            tracing::warn!(
                target: REQUEST_TARGET,
                request_id,
                method,
                route,
                status = status.as_u16(),
                latency_ms,
                "request failed"
            );
        } else {
            tracing::info!(
                target: REQUEST_TARGET,
                request_id,
                method,
                route,
                status = status.as_u16(),
                latency_ms,
                "request served"
            );
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

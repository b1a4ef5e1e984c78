//! Counts every HTTP request by route pattern, method and status, with its latency.
//!
//! Hand-written: the crates that do this for actix-web either bring another metrics library
//! (`prometheus`) or label by raw path; this is one function over the `metrics` facade, labelled
//! by the pattern the router matched (`/v1/tasks/{task_id}`), so ids never become series.

use crate::metrics::{HTTP_REQUESTS, HTTP_REQUEST_DURATION};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use metrics::{counter, histogram};
use std::time::Instant;

/// The route label of a request no route matched: unknown paths share one series.
pub const UNMATCHED: &str = "unmatched";

/// The middleware (`middleware::from_fn(request_metrics::record)`).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    let method = method_label(req.method());
    let response = next.call(req).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    counter!(
        HTTP_REQUESTS,
        "route" => route.clone(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    histogram!(HTTP_REQUEST_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method, or `other` for extension methods: a client must not be able to mint series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

//! What HTTP asks of every answer, whatever the route: `405` names the methods a path takes
//! (`Allow`), `401` says how to authenticate (`WWW-Authenticate`), answers over https pin the
//! browser to https (`Strict-Transport-Security`), and no request may take longer than
//! [`REQUEST_TIME_MAX`], however slowly its client sends it.

use crate::http::error::error_body;
use crate::http::state::{AppState, RequestId};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{guard, web, Error, HttpMessage, HttpRequest, HttpResponse};
use std::time::Duration;

/// The longest one request may take, from its head being read to its answer: its body included
/// (a client sending a byte every ten seconds holds a connection and a worker's attention for
/// ever otherwise; actix bounds only the head, at 5 s) and the handler's work. Half a minute
/// carries the largest body accepted (8 MiB of traffic) over a link of about 2 Mbit/s, and is
/// several times the longest legitimate handler (a traffic batch retried after lock timeouts,
/// a callback the marketplace waits 10 s for). A request cut is answered `408` and its connection
/// closed; its work is either committed whole or not at all, and every input is idempotent, so
/// the client's retry is safe.
pub const REQUEST_TIME_MAX: Duration = Duration::from_secs(30);

/// How long a browser keeps to https once told: a year, as browsers' preload lists ask. Without
/// `includeSubDomains`: the service cannot speak for the domain's other hosts.
pub const HSTS_MAX_AGE_S: u64 = 365 * 86_400;

/// What a `401` answers in `WWW-Authenticate`: the API takes bearer tokens.
const AUTHENTICATE: &str = "Bearer realm=\"dts-ledger\"";

/// The route of one table entry: `GET` also takes `HEAD`, which actix answers without the body.
pub fn method_route(method: &str) -> actix_web::Route {
    let method = Method::from_bytes(method.as_bytes()).expect("a route table names HTTP methods");
    if method == Method::GET {
        web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
    } else {
        web::route().guard(guard::Method(method))
    }
}

/// Each path of a route table, in the order first registered, with its `Allow` value: the
/// methods of its entries, `HEAD` after `GET`.
pub fn allowed_by_path(routes: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut paths: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for &(method, path) in routes {
        let methods = match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => methods,
            None => {
                paths.push((path, Vec::new()));
                &mut paths.last_mut().expect("just pushed").1
            }
        };
        methods.push(method);
        if method == "GET" {
            methods.push("HEAD");
        }
    }
    paths
        .into_iter()
        .map(|(path, methods)| (path, methods.join(", ")))
        .collect()
}

/// The API's answer to a method a path does not take.
pub async fn method_not_allowed(_req: HttpRequest, allow: String) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(error_body(
            "method_not_allowed",
            "this route does not take that method; Allow lists those it does",
        ))
}

/// Whether customers reach the service over https (`public_url`).
fn is_https(request: &ServiceRequest) -> bool {
    request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.public_url.starts_with("https://"))
}

fn hsts() -> HeaderValue {
    HeaderValue::from_str(&format!("max-age={HSTS_MAX_AGE_S}")).expect("digits are a header value")
}

/// Adds what a status or the connection calls for: `WWW-Authenticate` to a `401` that has none,
/// and `Strict-Transport-Security` when customers reach the service over https (`public_url`).
/// The header is ignored by browsers over plain http, so sending it behind a TLS-terminating
/// proxy is right.
pub async fn every_answer(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let https = is_https(&request);
    let mut response = next.call(request).await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        let headers = response.headers_mut();
        if !headers.contains_key(header::WWW_AUTHENTICATE) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(AUTHENTICATE),
            );
        }
    }
    if https {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts());
    }
    Ok(response)
}

/// Cuts a request that is not answered within [`REQUEST_TIME_MAX`]: `408`, and the connection
/// closed (its body was not read to the end).
///
/// The answer is given as an error: the request itself went into the cut work (actix routes a
/// request it holds alone), so there is none left to build a response on. The middlewares
/// outside log and count it like any answer; what they would add to it (`x-request-id`, HSTS)
/// is added here.
pub async fn bound_request_time(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = request.extensions().get::<RequestId>().cloned();
    let https = is_https(&request);
    match tokio::time::timeout(REQUEST_TIME_MAX, next.call(request)).await {
        Ok(answered) => answered,
        Err(_) => {
            tracing::warn!(
                bound_s = REQUEST_TIME_MAX.as_secs(),
                "request cut: not complete within its time (a slow body, or a stuck handler)"
            );
            let mut response = HttpResponse::RequestTimeout();
            if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id.0).ok()) {
                response.insert_header((HeaderName::from_static("x-request-id"), id));
            }
            if https {
                response.insert_header((header::STRICT_TRANSPORT_SECURITY, hsts()));
            }
            let mut response = response.json(error_body(
                "request_timeout",
                &format!(
                    "the request was not complete within {} s",
                    REQUEST_TIME_MAX.as_secs()
                ),
            ));
            response
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            Err(InternalError::from_response("request timeout", response).into())
        }
    }
}

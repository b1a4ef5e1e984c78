//! `GET /`: where to go from here, as a page for browsers and as JSON for API clients.

use crate::http::api::landing::{Landing, Links};
use actix_web::http::header::{self, Accept, HeaderValue};
use actix_web::{mime, HttpMessage, HttpRequest, HttpResponse};
use maud::{html, DOCTYPE};

/// The page has no script, image or form, and only the console's stylesheet: nothing else may
/// load or be sent from it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn links() -> Links {
    Links {
        console: "/console/".to_owned(),
        api_reference: "/docs/".to_owned(),
        openapi: "/openapi.json".to_owned(),
        healthz: "/healthz".to_owned(),
        readyz: "/readyz".to_owned(),
        metrics: "/metrics".to_owned(),
    }
}

/// Whether the client ranks HTML above JSON: browsers do; `curl` (`*/*`) and API clients get JSON.
pub(crate) fn wants_html(req: &HttpRequest) -> bool {
    let Some(accept) = req.get_header::<Accept>() else {
        return false;
    };
    for mime in accept.ranked() {
        if mime.type_() == mime::TEXT && mime.subtype() == mime::HTML {
            return true;
        }
        if mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON) {
            return false;
        }
    }
    false
}

/// Where to go from here.
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    description = "A small page linking the console, the API reference, this document, the \
        health probes and the metrics, for a browser (`Accept` ranking `text/html` above JSON); \
        the same links as JSON for everyone else.",
    responses(
        (status = 200, description = "The links", content(
            (Landing = "application/json"),
            (String = "text/html"),
        ), headers(("vary" = String, description = "`Accept`"))),
    ),
)]
pub async fn landing(req: HttpRequest) -> HttpResponse {
    let links = links();
    let mut response = if wants_html(&req) {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "dts-ledger" }
                    // The console's stylesheet: one look for everything a person opens.
                    link rel="stylesheet" href="/console/console.css";
                }
                body {
                    header.bar { a.brand href="/" { "dts-ledger" } }
                    main.landing {
                        h1 { "dts-ledger" }
                        p { "Billing ledger for DTS traffic packages sold on the JD Cloud marketplace." }
                        p.landing-console {
                            a.button #to-console href=(links.console) {
                                "Customer console · " span lang="zh-CN" { "客户控制台" }
                            }
                        }
                        ul.landing-links.card {
                            li { a href=(links.api_reference) { "API reference" } }
                            li { a href=(links.openapi) { "OpenAPI document" } }
                            li { a href=(links.healthz) { "Health" } " and " a href=(links.readyz) { "readiness" } }
                            li { a href=(links.metrics) { "Metrics" } " (admin token)" }
                        }
                    }
                }
            }
        };
        HttpResponse::Ok()
            .content_type(mime::TEXT_HTML_UTF_8)
            .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .body(page.into_string())
    } else {
        HttpResponse::Ok().json(Landing {
            service: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            links,
        })
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, generated from the handlers and the
//! types they answer with; `GET /docs/`: the API reference page (Swagger UI) over it, served from
//! assets compiled into the binary, so that it loads without any third-party site.

use crate::http::api;
use crate::http::routes;
use crate::http::routes::console_doc::ConsolePages;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use std::sync::{Arc, LazyLock};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::Config;

/// Where the reference page finds the document.
const DOCUMENT_PATH: &str = "/openapi.json";

/// The reference page's policy: its own scripts and styles only, and requests only to this
/// server. Swagger UI sets inline styles on the elements it renders and draws icons as `data:`
/// images; it runs no inline script and needs no `eval`.
const REFERENCE_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dts-ledger",
        description = "Tamper-evident billing ledger for DTS traffic packages sold on the JD Cloud \
            marketplace.\n\nEvery error is `{\"error\": {\"code\", \"message\"}}` \
            (`ErrorResponse`), where `code` is stable; each operation lists the codes it answers. \
            Every response carries an `x-request-id` header. Byte counts are JSON integers \
            (int64, never negative); money is a decimal string. Bearer tokens go in \
            `Authorization: Bearer <token>`: a missing or unknown one is `401 unauthorized` \
            (with `WWW-Authenticate: Bearer`), a token of the wrong kind `403 forbidden`.\n\n\
            Every `GET` route also answers `HEAD`. A method a path does not take is `405 \
            method_not_allowed`, its `Allow` header listing those it does. A request not \
            complete within 30 s (its body included) is `408 request_timeout`, and its \
            connection closed. Over https every answer carries `Strict-Transport-Security`.",
    ),
    paths(
        routes::traffic::post_traffic,
        routes::health::healthz,
        routes::health::readyz,
        routes::metrics::metrics,
        routes::cloud_order::cloud_order,
        routes::orders::get_order,
        routes::orders::get_usage,
        routes::orders::erase_details,
        routes::reconciliation::expire_order,
        routes::orders::rotate_credential,
        routes::reconciliation::list_held_notices,
        routes::reconciliation::list_refused,
        routes::ledger::read_ledger,
        routes::outbox::list_outbox,
        routes::outbox::retry_outbox_entry,
        routes::tasks::create_task,
        routes::tasks::get_task,
        routes::tasks::destroy_task,
        routes::tasks::renew_task,
        routes::landing::landing,
        document,
        reference_page_moved,
        reference_page,
    ),
    components(schemas(
        api::error::ErrorResponse,
        api::error::ErrorDetail,
        api::marketplace::CallbackAction,
        routes::outbox::State,
    )),
    modifiers(&BearerTokens, &ConsolePages, &IdConstraints, &Limits),
    tags(
        (name = "traffic", description = "Traffic reports from DTS agents (the data plane)."),
        (name = "tasks", description = "DTS tasks, for the DTS control plane and agents."),
        (name = "orders", description = "Packages and their balances."),
        (name = "marketplace", description = "The JD Cloud marketplace's order callbacks."),
        (name = "operations", description = "The raw ledger, the webhook outbox and what operators \
            reconcile with the marketplace (refused callbacks, held expiry notices)."),
        (name = "service", description = "Health, readiness, this document and its page."),
        (name = "console", description = "The customer console: HTML pages and forms, signed in \
            from the marketplace (`verify`) or with an order's `authCode`."),
    ),
)]
pub struct ApiDoc;

/// The bearer tokens: configured `admin_tokens`, `reporter_tokens`, and an order's `authCode`.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("admin", "An `admin_tokens` entry: every route."),
            (
                "reporter",
                "A `reporter_tokens` entry: traffic reports and tasks (DTS agents and control \
                 plane).",
            ),
            (
                "authCode",
                "An order's `authCode` (from `createInstance`): that order only.",
            ),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(description.to_owned());
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// What the API's ids are (`projections::ids`), in every place the document names one: path
/// parameters, query parameters and properties named like the ids. The limits are the parser's
/// own constants, so the document cannot drift from what is accepted.
struct IdConstraints;

/// Names of ids that URLs carry as a path segment (they may not be `.` or `..`).
const PATH_IDS: &[&str] = &[
    "instanceId",
    "instance_id",
    "taskId",
    "task_id",
    "orderBizId",
];
/// Names of the other ids.
const OTHER_IDS: &[&str] = &["reportId", "jdPin", "skuId", "orderId", "orderNumber"];

/// An id's schema; `example`: the id the document's own examples use, so that a client trying
/// them meets a package and a task that exist where those examples were made.
fn id_schema(path: bool, example: Option<&str>) -> utoipa::openapi::Schema {
    use projections::ids::{ID_CHARS_MAX, ID_PATTERN, PATH_ID_PATTERN};
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    utoipa::openapi::Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .min_length(Some(1))
            .max_length(Some(ID_CHARS_MAX))
            .pattern(Some(if path { PATH_ID_PATTERN } else { ID_PATTERN }))
            .examples(example)
            .build(),
    )
}

fn example_id(name: &str) -> Option<&'static str> {
    match name {
        "instanceId" | "instance_id" => Some("dts-1"),
        "taskId" | "task_id" => Some("task-1"),
        _ => None,
    }
}

fn id_kind(name: &str) -> Option<bool> {
    if PATH_IDS.contains(&name) {
        Some(true)
    } else if OTHER_IDS.contains(&name) {
        Some(false)
    } else {
        None
    }
}

impl Modify for IdConstraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let Some(path) = id_kind(&parameter.name) {
                        parameter.schema =
                            Some(RefOr::T(id_schema(path, example_id(&parameter.name))));
                    }
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, schema) in components.schemas.iter_mut() {
            // A report's result echoes its ids as sent, also the ones it was rejected for.
            if name == "ReportResult" {
                continue;
            }
            let RefOr::T(Schema::Object(object)) = schema else {
                continue;
            };
            for (name, property) in object.properties.iter_mut() {
                let Some(path) = id_kind(name) else {
                    continue;
                };
                // Keep a property's own description and nullability: only the string's rules
                // change.
                match property {
                    RefOr::T(Schema::Object(field)) => {
                        let RefOr::T(Schema::Object(rules)) = RefOr::T(id_schema(path, None))
                        else {
                            unreachable!("an id schema is an object schema");
                        };
                        field.min_length = rules.min_length;
                        field.max_length = rules.max_length;
                        field.pattern = rules.pattern;
                    }
                    _ => continue,
                }
            }
        }
    }
}

/// The limits the document states in its schemas, each the constant its parser checks: utoipa's
/// attributes take literal numbers only. (The limits its text states are held to the same
/// constants by a test, `tests/api/openapi.rs`.)
struct Limits;

impl Modify for Limits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::http::api::limits::{integer, page_limit, text};
        use crate::marketplace::params::{CODE_CHARS_MAX, EMAIL_CHARS_MAX, MOBILE_CHARS_MAX};
        use utoipa::openapi::schema::KnownFormat;
        use utoipa::openapi::{RefOr, Schema};
        let list_limit = page_limit(crate::ledger::orders::LIST_LIMIT_MAX);
        let query_parameters = [
            ("/v1/ledger", "limit", page_limit(routes::ledger::LIMIT_MAX)),
            (
                "/v1/outbox",
                "limit",
                page_limit(crate::outbox::entries::LIST_LIMIT_MAX),
            ),
            ("/v1/expiry-notices", "limit", list_limit.clone()),
            ("/v1/marketplace/refused", "limit", list_limit),
            (
                "/v1/orders/{instanceId}/usage",
                "days",
                integer(KnownFormat::Int64, 1, crate::usage::DAYS_MAX.into()),
            ),
            (
                "/v1/cloud/order",
                "accountNum",
                integer(
                    KnownFormat::Int32,
                    1,
                    crate::domain::orders::UNITS_MAX.into(),
                ),
            ),
            ("/v1/cloud/order", "serviceCode", text(CODE_CHARS_MAX)),
            ("/v1/cloud/order", "template", text(CODE_CHARS_MAX)),
            ("/v1/cloud/order", "mobile", text(MOBILE_CHARS_MAX)),
            ("/v1/cloud/order", "email", text(EMAIL_CHARS_MAX)),
        ];
        for (path, name, schema) in query_parameters {
            let parameter = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
                .and_then(|operation| operation.parameters.as_mut())
                .and_then(|parameters| parameters.iter_mut().find(|p| p.name == name))
                .unwrap_or_else(|| panic!("GET {path} documents its parameter {name}"));
            parameter.schema = Some(schema);
        }
        let schemas = &mut openapi
            .components
            .as_mut()
            .expect("the document has components")
            .schemas;
        match property(schemas, "TrafficBody", "reports") {
            RefOr::T(Schema::Array(reports)) => {
                reports.max_items = Some(crate::http::routes::traffic::REPORTS_PER_REQUEST_MAX);
            }
            _ => panic!("TrafficBody's reports are an array"),
        }
        match property(schemas, "RunwayResponse", "days") {
            RefOr::T(Schema::Object(days)) => {
                days.maximum = Some(crate::usage::RUNWAY_DAYS_MAX.into());
            }
            _ => panic!("RunwayResponse's days are an integer"),
        }
    }
}

/// Property `name` of the object schema named `schema`.
fn property<'a>(
    schemas: &'a mut std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::Schema>,
    >,
    schema: &str,
    name: &str,
) -> &'a mut utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::{RefOr, Schema};
    match schemas.get_mut(schema) {
        Some(RefOr::T(Schema::Object(object))) => object
            .properties
            .get_mut(name)
            .unwrap_or_else(|| panic!("{schema} documents its property {name}")),
        _ => panic!("the document has the object {schema}"),
    }
}

/// The document, generated once: it cannot change while the process runs.
static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the generated document serialises")
});

static REFERENCE_CONFIG: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::new([DOCUMENT_PATH])));

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)),
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::mime::APPLICATION_JSON)
        .body(DOCUMENT_JSON.as_str())
}

/// The API reference page lives at `/docs/`: its assets are addressed relative to it.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "service",
    responses((status = 308, description = "To `/docs/`",
        headers(("location" = String, description = "`/docs/`")))),
)]
pub async fn reference_page_moved() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The API reference page (`/docs/`, Swagger UI) and its assets, from the binary itself.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "service",
    params(("file" = String, Path, description = "An asset of the page; empty for the page")),
    responses(
        (status = 200, description = "The page (text/html) or one of its assets", content(
            (String = "text/html"), (String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "No such asset: `asset_not_found`", body = api::error::ErrorResponse),
    ),
)]
pub async fn reference_page(file: web::Path<String>) -> HttpResponse {
    let served = utoipa_swagger_ui::serve(&file, REFERENCE_CONFIG.clone());
    let mut response = match served {
        Ok(Some(asset)) => HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(asset.bytes.into_owned()),
        Ok(None) => HttpResponse::NotFound().json(crate::http::error::error_body(
            "asset_not_found",
            "the API reference page has no such file",
        )),
        Err(error) => {
            tracing::error!(%error, "the API reference page could not be served");
            HttpResponse::InternalServerError().json(crate::http::error::error_body(
                "internal",
                "the API reference page could not be served",
            ))
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REFERENCE_CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

// Over 600 lines: the API document checked whole, one subject in one file.
//! `GET /openapi.json`, the API reference page at `/docs/`, and the landing page `GET /`.

use crate::helpers::{shaped, spawn_app, TestApp};
use dts_ledger::http::api;
use dts_ledger::http::console::CONSOLE_ROUTES;
use dts_ledger::http::routes::{tasks, traffic};
use dts_ledger::http::startup::API_ROUTES;
use projections::ids::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.expect("the document is JSON")
}

/// `/v1/orders/{instance_id}` and `/v1/orders/{instanceId}` route the same requests: parameters
/// are compared by position, not name, and an actix pattern's regex (`{file:.*}`) is dropped.
fn route_shape(path: &str) -> String {
    let mut shape = String::with_capacity(path.len());
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                shape.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if !in_parameter => shape.push(c),
            _ => {}
        }
    }
    shape
}

/// Every (method, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// A value for a path parameter, by name: one the route parses, so its answer comes from its
/// handler (an unknown id is `order_not_found`, not the router's `not_found`).
fn sample(parameter: &str) -> &'static str {
    match parameter {
        "instanceId" => "dts-probe",
        "taskId" => "task-probe",
        "position" => "1",
        "file" => "index.html",
        "code" => "en",
        "instance_id" => "dts-probe",
        "task_id" => "task-probe",
        other => panic!("no sample value for the path parameter {other}"),
    }
}

fn filled(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closed") + start;
        out.push_str(&rest[..start]);
        out.push_str(sample(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|v| collect_references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

/// The schema the OpenAPI Initiative publishes for 3.1 documents
/// (`https://spec.openapis.org/oas/3.1/schema/2022-10-07`, Apache-2.0): every object and field
/// of the document, short of the JSON Schemas inside it, which utoipa writes from the types.
const OPENAPI_3_1_SCHEMA: &str = include_str!("../fixtures/openapi-3.1-schema.json");

#[tokio::test]
async fn the_document_is_valid_against_the_published_openapi_3_1_schema() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schema: Value = serde_json::from_str(OPENAPI_3_1_SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid OpenAPI 3.1 document: {errors:#?}"
    );

    // The check has teeth: a response without its required `description` is refused.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["200"]
        .as_object_mut()
        .expect("GET /healthz documents its 200")
        .remove("description");
    assert!(!validator.is_valid(&broken));
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_says_how_bytes_money_errors_and_tokens_look() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "OpenAPI {version}");
    let typed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("the document parses as OpenAPI");
    assert!(!typed.paths.paths.is_empty());

    let schemas = &doc["components"]["schemas"];
    let mut references = Vec::new();
    collect_references(&doc, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {reference}"));
        assert!(schemas.get(name).is_some(), "{reference} leads nowhere");
    }
    let balance = &schemas["PackageBalance"]["properties"];
    for field in [
        "bytesGranted",
        "bytesConsumed",
        "bytesRemaining",
        "bytesOverage",
    ] {
        assert_eq!(balance[field]["type"], "integer", "{field}");
        assert_eq!(balance[field]["format"], "int64", "{field}");
        assert_eq!(balance[field]["minimum"], 0, "{field}");
    }
    let granted = &schemas["PackageInfo"]["properties"]["bytesGranted"];
    assert_eq!(
        granted["type"], "string",
        "the marketplace reads it as text"
    );
    assert_eq!(granted["pattern"], "^[0-9]+$");

    let error = &schemas["ErrorResponse"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    assert_eq!(
        schemas["ErrorDetail"]["required"],
        serde_json::json!(["code", "message"])
    );

    // What holds of every route, said once.
    let description = doc["info"]["description"].as_str().unwrap();
    for rule in [
        "WWW-Authenticate: Bearer",
        "also answers `HEAD`",
        "`Allow` header",
        "`408 request_timeout`",
    ] {
        assert!(description.contains(rule), "{rule}: {description}");
    }
    assert!(description.contains(&format!(
        "within {} s",
        dts_ledger::http::protocol::REQUEST_TIME_MAX.as_secs()
    )));

    let tokens = &doc["components"]["securitySchemes"];
    for scheme in ["admin", "reporter", "authCode"] {
        assert_eq!(tokens[scheme]["type"], "http", "{scheme}");
        assert_eq!(tokens[scheme]["scheme"], "bearer", "{scheme}");
    }
    let order = &doc["paths"]["/v1/orders/{instanceId}"]["get"];
    assert_eq!(
        order["security"],
        serde_json::json!([{"admin": []}, {"authCode": []}])
    );
    assert_eq!(
        order["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorResponse"
    );
    assert!(order["responses"]["404"]["description"]
        .as_str()
        .unwrap()
        .contains("`order_not_found`"));
    let traffic = &doc["paths"]["/v1/traffic"]["post"];
    assert_eq!(
        traffic["security"],
        serde_json::json!([{"reporter": []}, {"admin": []}])
    );
}

#[tokio::test]
async fn the_marketplace_callback_is_documented_as_the_marketplace_s_contract() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let callback = &doc["paths"]["/v1/cloud/order"]["get"];
    assert!(callback.get("security").is_none(), "no bearer token");
    let description = callback["description"].as_str().unwrap();
    assert!(description.contains("&key=<ISV key>"), "{description}");
    assert!(description.contains("MD5"), "{description}");
    let parameters: BTreeSet<&str> = callback["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|p| assert_eq!(p["in"], "query"))
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "action",
        "token",
        "orderBizId",
        "instanceId",
        "jdPin",
        "orderId",
        "serviceCode",
        "skuId",
        "accountNum",
        "expiredOn",
        "timeStamp",
        "mobile",
        "email",
        "template",
        "extraInfo",
        "additionInfo",
    ] {
        assert!(parameters.contains(name), "{name} is not documented");
    }
    let actions = &doc["components"]["schemas"]["CallbackAction"]["enum"];
    assert_eq!(
        actions,
        &serde_json::json!([
            "createInstance",
            "renewInstance",
            "upgradeInstance",
            "dilateInstance",
            "expiredInstance",
            "releaseInstance",
            "verify"
        ])
    );
    // Both reply shapes, and the failure shape of createInstance.
    let replies: Vec<&str> = doc["components"]["schemas"]["CallbackReply"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["$ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            "#/components/schemas/Created",
            "#/components/schemas/CreateFailed",
            "#/components/schemas/Done"
        ]
    );
    assert!(callback["responses"]["302"]["headers"]
        .get("location")
        .is_some());
}

#[tokio::test]
async fn every_registered_route_is_documented_and_every_documented_route_is_served() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let registered: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .chain(CONSOLE_ROUTES)
        .map(|route| (route.method.to_owned(), route_shape(route.path)))
        .collect();
    let documented = documented(&doc);
    let documented_shapes: BTreeSet<(String, String)> = documented
        .iter()
        .map(|(method, path)| (method.clone(), route_shape(path)))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented_shapes).collect();
    assert!(
        undocumented.is_empty(),
        "registered, not documented: {undocumented:?}"
    );
    let unregistered: Vec<_> = documented_shapes.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "documented, not registered: {unregistered:?}"
    );

    // The tables are what the application registers; the server is the judge of that: every
    // documented route reaches a handler, whose answer is never the router's own.
    for (method, path) in &documented {
        let url = format!("{}{}", app.address, filled(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        assert!(
            !matches!(code.as_deref(), Some("not_found" | "method_not_allowed")),
            "{method} {url}: {status} {body}"
        );
    }
}

/// Checks `example` against the Rust type `T`: it parses, and (for the types the service writes)
/// writes back unchanged.
fn answer<T: DeserializeOwned + serde::Serialize>(example: &Value) {
    shaped::<T>(example.clone());
}

fn request<T: DeserializeOwned>(example: &Value) {
    serde_json::from_value::<T>(example.clone()).unwrap_or_else(|e| {
        panic!(
            "the example is not a {}: {e}: {example}",
            std::any::type_name::<T>()
        )
    });
}

/// A traffic report example must pass the service's own report parser, not only the type that
/// documents it.
fn traffic_report(example: &Value) {
    answer::<api::traffic::TrafficReport>(example);
    // The examples' times are fixed: judged on their shape, not on how old they have become.
    let retention =
        chrono::Duration::days(dts_ledger::configuration::KEY_RETENTION_DAYS_MAX as i64);
    dts_ledger::ingest::report::parse(example, Bytes::MAX, chrono::Utc::now(), retention)
        .unwrap_or_else(|rejection| panic!("{example} is rejected: {rejection:?}"));
}

fn traffic_request(example: &Value) {
    request::<traffic::TrafficBody>(example);
    for report in example["reports"].as_array().expect("reports") {
        traffic_report(report);
    }
}

/// The Rust type of each schema of the document, by the name the document gives it. A schema
/// missing here fails the test: a new type in the document needs its check.
fn check_example(schema: &str, example: &Value) {
    use api::{error, health, landing, ledger, marketplace, orders, outbox};
    match schema {
        "ErrorResponse" => answer::<error::ErrorResponse>(example),
        "ErrorDetail" => answer::<error::ErrorDetail>(example),
        "Health" => answer::<health::Health>(example),
        "Ready" => answer::<health::Ready>(example),
        "DatabaseProtection" => answer::<health::DatabaseProtection>(example),
        "Landing" => answer::<landing::Landing>(example),
        "Links" => answer::<landing::Links>(example),
        "LedgerPage" => answer::<ledger::LedgerPage>(example),
        "LedgerEvent" => answer::<ledger::LedgerEvent>(example),
        "CallbackReply" => answer::<marketplace::CallbackReply>(example),
        "Created" => answer::<marketplace::Created>(example),
        "AppInfo" => answer::<marketplace::AppInfo>(example),
        "PackageInfo" => answer::<marketplace::PackageInfo>(example),
        "CreateFailed" => answer::<marketplace::CreateFailed>(example),
        "Done" => answer::<marketplace::Done>(example),
        "CallbackAction" => answer::<marketplace::CallbackAction>(example),
        "TaskResponse" => answer::<orders::TaskResponse>(example),
        "PackageBalance" => answer::<orders::PackageBalance>(example),
        "OrderResponse" => answer::<orders::OrderResponse>(example),
        "OrderAsOfResponse" => answer::<orders::OrderAsOfResponse>(example),
        "OrderReply" => answer::<orders::OrderReply>(example),
        "RunwayResponse" => answer::<orders::RunwayResponse>(example),
        "UsageResponse" => answer::<orders::UsageResponse>(example),
        "TaskUsageResponse" => answer::<orders::TaskUsageResponse>(example),
        "DailyTaskUsage" => answer::<orders::DailyTaskUsage>(example),
        "DetailsErased" => answer::<orders::DetailsErased>(example),
        "ExpireRequest" => request::<orders::ExpireRequest>(example),
        "CredentialRotated" => answer::<orders::CredentialRotated>(example),
        "OrderExpiredByOperator" => answer::<orders::OrderExpiredByOperator>(example),
        "HeldNoticesPage" => answer::<orders::HeldNoticesPage>(example),
        "HeldNotice" => answer::<dts_ledger::ledger::orders::HeldNotice>(example),
        "RefusedPage" => answer::<orders::RefusedPage>(example),
        "RefusedCallback" => answer::<dts_ledger::marketplace::refusals::RefusedCallback>(example),
        "OutboxPage" => answer::<outbox::OutboxPage>(example),
        "Entry" => answer::<dts_ledger::outbox::entries::Entry>(example),
        "Requeued" => answer::<outbox::Requeued>(example),
        "OutboxState" => assert!(["pending", "dead"].contains(&example.as_str().unwrap())),
        "TrafficResponse" => answer::<api::traffic::TrafficResponse>(example),
        "ReportResult" => answer::<api::traffic::ReportResult>(example),
        "TrafficReport" => traffic_report(example),
        "TrafficBody" => traffic_request(example),
        "NewTask" => request::<tasks::NewTask>(example),
        "Renewal" => request::<tasks::Renewal>(example),
        other => panic!("no Rust type is known for the schema {other}"),
    }
}

#[tokio::test]
async fn every_example_in_the_document_parses_into_its_type() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut checked = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let examples = schema["examples"].as_array().cloned().unwrap_or_default();
        let alternatives = schema.get("oneOf").is_some() || schema.get("enum").is_some();
        assert!(
            alternatives || !examples.is_empty(),
            "the schema {name} has no example"
        );
        for example in &examples {
            check_example(name, example);
            checked += 1;
        }
        for value in schema["enum"].as_array().into_iter().flatten() {
            check_example(name, value);
        }
    }
    // Every request body and every JSON answer refers to a schema checked above.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let bodies = operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .chain(
                    operation["responses"]
                        .as_object()
                        .unwrap()
                        .values()
                        .filter_map(|r| r["content"].as_object()),
                );
            for content in bodies {
                let Some(json) = content.get("application/json") else {
                    continue;
                };
                let schema = &json["schema"];
                if schema["type"] == "object" && schema.get("properties").is_none() {
                    continue; // This document itself.
                }
                let reference = schema["$ref"].as_str().unwrap_or_else(|| {
                    panic!("{method} {path}: a JSON body without a named schema: {schema}")
                });
                let name = reference.trim_start_matches("#/components/schemas/");
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{method} {path}: {reference}"
                );
            }
        }
    }
    assert!(checked >= 20, "only {checked} examples");
}

#[tokio::test]
async fn the_api_reference_page_and_its_assets_load_from_the_server() {
    let app = spawn_app().await;
    let moved = app.get("/docs").await;
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    // Every script, stylesheet and icon the page names, from this server.
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            assets.push(target.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.len() >= 5, "{assets:?}");
    for asset in &assets {
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let expected = match asset.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "png" => "image/png",
            other => panic!("an asset of an unexpected kind: {other}"),
        };
        assert!(
            content_type.starts_with(expected),
            "{asset}: {content_type}"
        );
        assert!(response.headers().contains_key("content-security-policy"));
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{asset}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        initializer.contains("\"/openapi.json\""),
        "the page reads this server's document: {initializer}"
    );
    let missing = app.get("/docs/no-such-file.js").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "asset_not_found");
}

#[tokio::test]
async fn the_landing_page_is_html_for_browsers_and_json_for_api_clients() {
    let app = spawn_app().await;
    let browser = app
        .http
        .get(format!("{}/", app.address))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    assert!(browser.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(browser.headers()["vary"], "accept");
    let policy = browser.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let html = browser.text().await.unwrap();
    for link in [
        "/console/",
        "/docs/",
        "/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}: {html}");
    }

    for accept in [Some("application/json"), Some("*/*"), None] {
        let mut request = app.http.get(format!("{}/", app.address));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{accept:?}"
        );
        let body = shaped::<api::landing::Landing>(response.json().await.unwrap());
        assert_eq!(body["service"], "dts-ledger");
        assert_eq!(body["links"]["openapi"], "/openapi.json");
        assert_eq!(body["links"]["apiReference"], "/docs/");
        assert_eq!(body["links"]["metrics"], "/metrics");
    }
    // The links this server answers itself lead somewhere.
    for link in [
        "/console/",
        "/docs/",
        "/openapi.json",
        "/healthz",
        "/readyz",
    ] {
        let status = app.get(link).await.status().as_u16();
        assert!(status == 200 || status == 303, "{link}: {status}");
    }
}

#[tokio::test]
async fn the_documents_id_rules_accept_and_refuse_exactly_what_the_parser_does() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let parameter = doc["paths"]["/v1/tasks/{taskId}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "taskId")
        .unwrap()
        .clone();
    let validator = jsonschema::validator_for(&parameter["schema"]).expect("a valid schema");
    let samples = [
        "task-1".to_owned(),
        "任务-1".to_owned(),
        "a/b?c#d".to_owned(),
        "..a".to_owned(),
        "a b".to_owned(),
        "流".repeat(128),
        String::new(),
        " a".to_owned(),
        "a\u{3000}".to_owned(),
        "a\nb".to_owned(),
        "\u{85}x".to_owned(),
        "x\u{9f}".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
        "x".repeat(129),
        "\u{feff}x".to_owned(),
    ];
    for sample in samples {
        let parsed = projections::ids::TaskId::parse(sample.clone()).is_ok();
        let documented = validator.is_valid(&Value::String(sample.clone()));
        assert_eq!(
            documented, parsed,
            "{sample:?}: document {documented}, parser {parsed}"
        );
    }
}

/// A count as the document's text writes it: `10,000`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn query_parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path} has parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("GET {path} documents {name}"))
}

fn says(text: &Value, what: &str, place: &str) {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("{place} has a text"));
    assert!(text.contains(what), "{place} says {what:?}: {text:?}");
}

#[tokio::test]
async fn every_limit_the_document_states_is_the_constant_its_parser_checks() {
    use dts_ledger::domain::orders::UNITS_MAX;
    use dts_ledger::marketplace::params::{
        CODE_CHARS_MAX, EMAIL_CHARS_MAX, JSON_BYTES_MAX, MOBILE_CHARS_MAX,
    };
    let app = spawn_app().await;
    let doc = document(&app).await;

    // Pages: `limit` 1 to the read's maximum, in the schema and in the text.
    for (path, maximum) in [
        ("/v1/ledger", dts_ledger::http::routes::ledger::LIMIT_MAX),
        ("/v1/outbox", dts_ledger::outbox::entries::LIST_LIMIT_MAX),
        (
            "/v1/expiry-notices",
            dts_ledger::ledger::orders::LIST_LIMIT_MAX,
        ),
        (
            "/v1/marketplace/refused",
            dts_ledger::ledger::orders::LIST_LIMIT_MAX,
        ),
    ] {
        let limit = query_parameter(&doc, path, "limit");
        assert_eq!(limit["schema"]["minimum"], 1, "{path}");
        assert_eq!(limit["schema"]["maximum"], maximum, "{path}");
        says(&limit["description"], &format!("1 to {maximum} "), path);
    }
    let days = query_parameter(&doc, "/v1/orders/{instanceId}/usage", "days");
    assert_eq!(days["schema"]["maximum"], dts_ledger::usage::DAYS_MAX);
    says(
        &days["description"],
        &format!("1 to {}", dts_ledger::usage::DAYS_MAX),
        "days",
    );

    // The marketplace's callback.
    let callback = "/v1/cloud/order";
    let units = query_parameter(&doc, callback, "accountNum");
    assert_eq!(units["schema"]["maximum"], UNITS_MAX);
    says(
        &units["description"],
        &format!("1 to {UNITS_MAX} units"),
        "accountNum",
    );
    for (name, chars_max) in [
        ("serviceCode", CODE_CHARS_MAX),
        ("template", CODE_CHARS_MAX),
        ("mobile", MOBILE_CHARS_MAX),
        ("email", EMAIL_CHARS_MAX),
    ] {
        let parameter = query_parameter(&doc, callback, name);
        assert_eq!(parameter["schema"]["maxLength"], chars_max, "{name}");
        says(
            &parameter["description"],
            &format!("at most {chars_max} characters"),
            name,
        );
    }
    for name in ["extraInfo", "additionInfo"] {
        let parameter = query_parameter(&doc, callback, name);
        says(
            &parameter["description"],
            &format!("at most {JSON_BYTES_MAX} bytes"),
            name,
        );
    }
    says(
        &doc["paths"][callback]["get"]["description"],
        &format!(
            "The query may be {} KiB",
            dts_ledger::marketplace::query::QUERY_BYTES_MAX / 1024
        ),
        callback,
    );

    // Traffic: reports per request, and the body's size once inflated.
    let reports_max = traffic::REPORTS_PER_REQUEST_MAX;
    let body = &doc["components"]["schemas"]["TrafficBody"];
    assert_eq!(body["properties"]["reports"]["maxItems"], reports_max);
    says(
        &body["description"],
        &format!("Up to {} reports", grouped(reports_max)),
        "TrafficBody",
    );
    let post = &doc["paths"]["/v1/traffic"]["post"];
    let body_mib = traffic::TRAFFIC_BODY_BYTES_MAX / (1024 * 1024);
    says(
        &post["description"],
        &format!("the {body_mib} MiB limit"),
        "POST /v1/traffic",
    );
    let too_large = &post["responses"]["413"]["description"];
    says(too_large, &format!("over {}", grouped(reports_max)), "413");
    says(too_large, &format!("over {body_mib} MiB"), "413");

    // The control plane's JSON bodies, and the console's forms.
    let json_kib = dts_ledger::http::body::JSON_BODY_BYTES_MAX / 1024;
    let form_kib = dts_ledger::http::console::FORM_BYTES_MAX / 1024;
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(answer) = item["post"]["responses"]["413"]["description"].as_str() else {
            continue;
        };
        let limit = if path.starts_with("/console/") {
            format!("larger than {form_kib} KiB")
        } else if path == "/v1/traffic" {
            continue;
        } else {
            format!("over {json_kib} KiB")
        };
        assert!(answer.contains(&limit), "POST {path}: {answer:?}");
        bodies += 1;
    }
    assert!(bodies >= 8, "{bodies} bodies with a limit");

    // What the answers hold at most.
    let schemas = &doc["components"]["schemas"];
    let runway_days = &schemas["RunwayResponse"]["properties"]["days"];
    assert_eq!(runway_days["maximum"], dts_ledger::usage::RUNWAY_DAYS_MAX);
    says(
        &runway_days["description"],
        &format!("at most {}", dts_ledger::usage::RUNWAY_DAYS_MAX),
        "RunwayResponse.days",
    );
    says(
        &schemas["UsageResponse"]["properties"]["tasks"]["description"],
        &format!("at most {} tasks", dts_ledger::usage::PACKAGE_TASKS_MAX),
        "UsageResponse.tasks",
    );
}

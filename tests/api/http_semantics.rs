//! HTTP as clients and tools expect it of every route, the API's and the console's alike: `HEAD`
//! wherever `GET` works, `405` with `Allow` for a method a route does not take, `401` with
//! `WWW-Authenticate`, and a bound on how long one request may take.

use crate::helpers::*;
use dts_ledger::http::console::CONSOLE_ROUTES;
use dts_ledger::http::protocol::REQUEST_TIME_MAX;
use dts_ledger::http::startup::API_ROUTES;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An actix pattern with each `{parameter}` (a `{name:regex}` too) replaced by `value(name)`.
fn substitute(pattern: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&rest[..start]);
        out.push_str(&value(rest[start + 1..end].split(':').next().unwrap()));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A request path for an actix pattern: each `{parameter}` filled with a value the route parses.
fn filled(pattern: &str) -> String {
    substitute(pattern, |name| {
        match name {
            "file" => "index.html",
            "position" => "1",
            "code" => "en",
            _ => "probe-1",
        }
        .to_owned()
    })
}

/// Every registered path with the methods it takes.
fn methods_by_path() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut paths: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for route in API_ROUTES.iter().chain(CONSOLE_ROUTES) {
        let methods = paths.entry(route.path).or_default();
        methods.insert(route.method);
        if route.method == "GET" {
            methods.insert("HEAD");
        }
    }
    paths
}

#[tokio::test]
async fn head_answers_wherever_get_does_without_a_body() {
    let app = spawn_app().await;
    for (path, methods) in methods_by_path() {
        if !methods.contains("GET") {
            continue;
        }
        let url = format!("{}{}", app.address, filled(path));
        let get = app
            .http
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let head = app
            .http
            .head(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has a body"
        );
    }
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_allow() {
    let app = spawn_app().await;
    let mut checked = 0;
    for (path, methods) in methods_by_path() {
        let allow: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            if methods.contains(method) {
                continue;
            }
            let url = format!("{}{}", app.address, filled(path));
            let response = app
                .http
                .request(method.parse().unwrap(), &url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            let header = response
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
                .to_str()
                .unwrap()
                .to_owned();
            let listed: BTreeSet<String> = header.split(", ").map(str::to_owned).collect();
            assert_eq!(listed, allow, "{method} {path}: Allow {header}");
            if path.starts_with("/v1/") && method != "HEAD" {
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(
                    body["error"]["code"], "method_not_allowed",
                    "{method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
    // An unknown path is still 404.
    assert_eq!(app.get("/v1/nothing-here").await.status(), 404);
}

#[tokio::test]
async fn every_401_says_how_to_authenticate() {
    let app = spawn_app().await;
    let mut unauthorized = 0;
    for route in API_ROUTES {
        for token in [None, Some("not-a-token")] {
            let url = format!("{}{}", app.address, filled(route.path));
            let mut request = app.http.request(route.method.parse().unwrap(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            if response.status() == 401 {
                unauthorized += 1;
                assert_eq!(
                    response.headers()["www-authenticate"],
                    "Bearer realm=\"dts-ledger\"",
                    "{} {}",
                    route.method,
                    route.path
                );
            }
        }
    }
    assert!(unauthorized >= 20, "{unauthorized} answers were 401");
    // The console's refused sign-in too.
    let wrong = app.login("biz-404", "0").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
}

/// An actix pattern with each `{parameter}` malformed: ids past their length limit, a position
/// that is no number.
fn malformed(pattern: &str) -> String {
    substitute(pattern, |name| match name {
        "position" => "not-a-position".to_owned(),
        _ => "x".repeat(300),
    })
}

/// `/v1/orders/{instance_id}` as the document writes it: `/v1/orders/{instanceId}`.
fn documented_path(pattern: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in pattern.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn a_caller_without_a_token_is_refused_before_anything_of_the_request_is_read() {
    let app = spawn_app().await;
    let document: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut walked = 0;
    for route in API_ROUTES {
        let operation =
            &document["paths"][documented_path(route.path)][route.method.to_lowercase()];
        let Some(security) = operation["security"].as_array() else {
            continue;
        };
        let admin_only = security.iter().all(|scheme| scheme.get("admin").is_some());
        // A malformed path, a query of unknown names and values of the wrong type, and a body
        // that is no JSON of any declared type, larger than the control plane takes.
        let url = format!(
            "{}{}?limit=x&after=-1&days=x&asOf=never&state=x&unknown=1",
            app.address,
            malformed(route.path)
        );
        let send = |token: Option<&str>| {
            let mut request = app
                .http
                .request(route.method.parse().unwrap(), &url)
                .header("content-type", "text/plain")
                .header("content-encoding", "br")
                .body(vec![b'{'; 128 * 1024]);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        for token in [None, Some("not-a-token")] {
            let response = send(token).await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                (status.as_u16(), &body["error"]["code"]),
                (401, &serde_json::json!("unauthorized")),
                "{} {} with {token:?}",
                route.method,
                route.path
            );
        }
        if admin_only {
            let response = send(Some(REPORTER_TOKEN)).await.unwrap();
            assert_eq!(
                response.status(),
                403,
                "{} {} with a reporter token",
                route.method,
                route.path
            );
        }
        walked += 1;
    }
    assert!(walked >= 16, "{walked} routes take a token");
}

/// An order id may hold `/`, `%`, `+`, `?` and spaces (the marketplace's `orderBizId` is free
/// text); percent-encoded in the path, it reaches every order route as the id itself, whether the
/// admin or the order's own credential asks.
#[tokio::test]
async fn an_order_id_with_reserved_characters_reaches_every_order_route_decoded() {
    let app = spawn_app().await;
    let id = "biz/1 %+?x";
    let code = app.buy_with_code(id, "pin-reserved").await;
    let encoded = "biz%2F1%20%25%2B%3Fx";
    let mut walked = 0;
    for route in API_ROUTES
        .iter()
        .filter(|route| route.method == "GET" && route.path.starts_with("/v1/orders/{instance_id}"))
    {
        let path = substitute(route.path, |_| encoded.to_owned());
        for token in [ADMIN_TOKEN, code.as_str()] {
            let response = app.get_as(&path, token).await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 200, "GET {path}: {body}");
            if route.path == "/v1/orders/{instance_id}" {
                assert_eq!(body["instanceId"], id, "GET {path}");
            }
        }
        walked += 1;
    }
    assert_eq!(walked, 2, "GET routes of one order");
    // The admin's routes that change an order decode it alike.
    let erased = app
        .http
        .delete(format!("{}/v1/orders/{encoded}/details", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200, "DELETE details");
}

/// Sends a request head promising `body_bytes`, then one byte every ten seconds (a slow-body
/// attack), and returns what the server answered, if it answered before the bytes ran out.
async fn trickle(app: &TestApp, head: &str, body_bytes: usize) -> Option<String> {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Bounded by the body's length: at 10 s a byte, the server's bound comes long before.
    let mut reading = reading;
    for _ in 0..body_bytes {
        let _ = writer.write_all(b"x").await;
        if let Ok(answer) = tokio::time::timeout(Duration::from_secs(10), &mut reading).await {
            return Some(answer.unwrap());
        }
    }
    reading.abort();
    None
}

#[tokio::test]
async fn a_body_trickling_in_is_cut_at_the_request_bound() {
    let app = spawn_app().await;
    // Enough bytes to outlast the bound several times over at one per ten seconds.
    let body_bytes = (REQUEST_TIME_MAX.as_secs() / 10 * 3) as usize;
    let console = format!(
        "POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {body_bytes}\r\n\r\n"
    );
    let traffic = format!(
        "POST /v1/traffic HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {REPORTER_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {body_bytes}\r\n\r\n"
    );
    let (console, traffic) = tokio::join!(
        trickle(&app, &console, body_bytes),
        trickle(&app, &traffic, body_bytes)
    );
    for (route, answer) in [("console", console), ("traffic", traffic)] {
        let answer = answer.unwrap_or_else(|| panic!("{route}: never cut"));
        assert!(answer.starts_with("HTTP/1.1 408"), "{route}: {answer}");
        assert!(answer.contains("connection: close"), "{route}: {answer}");
    }
}

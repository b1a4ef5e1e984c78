// Over 600 lines: the end-to-end tests of one protocol revision, one subject in one file.
//! The marketplace as its notify interface's current revision speaks (DESIGN §3–4): orders named
//! by `orderNumber`, `orderId` deprecated, raw JSON and stray spaces in the example URLs, expiry
//! notices after a refund, renewals of packages bought by the unit; and what operators reconcile
//! (refused callbacks, held notices).

use crate::helpers::{
    cst, signed_query, spawn_app, spawn_app_with, test_config, TestApp, ADMIN_TOKEN,
    MARKETPLACE_KEY, REPORTER_TOKEN,
};
use chrono::{Duration, Utc};
use dts_ledger::configuration::Catalog;
use dts_ledger::database::Role;
use serde_json::{json, Value};

const SKU_1TB: &str = "FW_GOODS-500232-1";
const TIB: i64 = 1 << 40;
/// The revision's example order number.
const ORDER_NUMBER: &str = "529107885755794112";

async fn call(app: &TestApp, params: &[(&str, &str)]) -> (u16, Value) {
    let response = app.callback(params).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A purchase named the current revision's way: `orderNumber`, no `orderId`.
fn purchase<'a>(biz: &'a str, order_number: &'a str, units: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("action", "createInstance"),
        ("jdPin", "jd_customer"),
        ("orderBizId", biz),
        ("orderNumber", order_number),
        ("serviceCode", "dts"),
        ("skuId", SKU_1TB),
        ("accountNum", units),
    ]
}

/// Sends `query` exactly as written (no client-side escaping); status and JSON body.
async fn raw_get(app: &TestApp, query: &str) -> (u16, Value) {
    let (status, answer) = raw_get_status(app, query).await;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no body: {answer}"));
    // The body may be chunked; the JSON object is between the first `{` and the last `}`.
    let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else {
        panic!("no JSON: {answer}");
    };
    (status, serde_json::from_str(&body[start..=end]).unwrap())
}

/// The status line's code of a GET of `query` sent exactly as written.
async fn raw_get_status(app: &TestApp, query: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v1/cloud/order?{query} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    (answer[9..12].parse().unwrap(), answer)
}

/// The token of parameters exactly as the marketplace signs them: decoded, sorted by name, joined
/// with `&`, the key appended (written out here independently of the service's code).
fn token_of(decoded: &[(&str, &str)]) -> String {
    use md5::{Digest, Md5};
    let mut sorted = decoded.to_vec();
    sorted.sort();
    let joined: Vec<String> = sorted.iter().map(|(n, v)| format!("{n}={v}")).collect();
    hex::encode(Md5::digest(format!(
        "{}&key={MARKETPLACE_KEY}",
        joined.join("&")
    )))
}

#[tokio::test]
async fn a_purchase_named_by_order_number_alone_is_provisioned() {
    let app = spawn_app().await;
    let (status, reply) = call(&app, &purchase("7001", ORDER_NUMBER, "1")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["instanceId"], "7001");
    assert_eq!(reply["appInfo"]["authCode"].as_str().unwrap().len(), 32);
    let created = app.events_of("OrderCreated").await;
    assert_eq!(created[0]["eventVersion"], 2);
    assert_eq!(created[0]["data"]["orderNumber"], ORDER_NUMBER);
    assert!(created[0]["data"].get("orderId").is_none(), "none was sent");

    // The same purchase again: the identical reply, one event.
    let (_, again) = call(&app, &purchase("7001", ORDER_NUMBER, "1")).await;
    assert_eq!(again, reply);
    assert_eq!(app.events_of("OrderCreated").await.len(), 1);

    // Neither orderNumber nor orderId: the one thing a purchase cannot go without.
    let mut neither = purchase("7002", ORDER_NUMBER, "1");
    neither.retain(|(name, _)| *name != "orderNumber");
    let (status, reply) = call(&app, &neither).await;
    assert_eq!((status, reply["instanceId"].clone()), (400, json!("0")));
    assert!(
        reply["message"].as_str().unwrap().contains("orderNumber"),
        "{reply}"
    );
}

#[tokio::test]
async fn both_order_number_and_order_id_are_recorded_and_exported() {
    let app = spawn_app().await;
    let mut both = purchase("7001", ORDER_NUMBER, "1");
    both.push(("orderId", "556596"));
    let (status, reply) = call(&app, &both).await;
    assert_eq!(status, 200, "{reply}");
    let created = &app.events_of("OrderCreated").await[0];
    assert_eq!(created["data"]["orderNumber"], ORDER_NUMBER);
    assert_eq!(created["data"]["orderId"], "556596");
    let (code, csv, stderr) = app.db.run_cli(&["export", "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (cell("orderId"), cell("orderNumber")),
        ("556596", ORDER_NUMBER)
    );
}

#[tokio::test]
async fn the_revisions_example_urls_with_raw_json_and_a_name_ending_in_a_space_are_provisioned() {
    let app = spawn_app().await;
    // As the revision's examples send it: JSON unencoded in the query (not even valid JSON), and
    // a parameter name with a trailing space, all signed as received. Every byte a request line
    // may hold goes as it is (`{`, `}`, `:`, `,`); a quote is `%22`, as every HTTP client and
    // URL parser sends it (an unescaped `"` is not allowed in a request line: see below).
    let extra = r#"{"key1":"1","key1","2"}"#;
    let addition = r#"{"region":"cn-north-1"}"#;
    let decoded = [
        ("action", "createInstance"),
        ("jdPin", "bujiaban"),
        ("orderBizId", "444181"),
        ("orderNumber", ORDER_NUMBER),
        ("serviceCode", "FW_GOODS-500232"),
        ("skuId", SKU_1TB),
        ("accountNum", "1"),
        ("extraInfo", extra),
        ("additionInfo ", addition),
        ("mobile", ""),
    ];
    let token = token_of(&decoded);
    let as_sent = |json: &str| json.replace('"', "%22");
    let query = format!(
        "action=createInstance&jdPin=bujiaban&orderBizId=444181&orderNumber={ORDER_NUMBER}\
         &serviceCode=FW_GOODS-500232&skuId={SKU_1TB}&accountNum=1&extraInfo={}\
         &additionInfo+={}&mobile=&token={token}",
        as_sent(extra),
        as_sent(addition)
    );
    assert!(query.contains("extraInfo={%22key1%22:%221%22,%22key1%22,%222%22}"));
    let (status, reply) = raw_get(&app, &query).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["instanceId"], "444181");
    let details = app
        .db
        .client()
        .await
        .query_one(
            "SELECT extra_info, addition_info, invalid_params, order_number, order_id
               FROM order_details WHERE instance_id = '444181'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(details.get::<_, Option<String>>(0).as_deref(), Some(extra));
    assert_eq!(
        details.get::<_, Option<String>>(1).as_deref(),
        Some(addition)
    );
    assert_eq!(
        details.get::<_, Vec<String>>(2),
        ["extraInfo"],
        "kept, flagged: not JSON"
    );
    assert_eq!(
        details.get::<_, Option<String>>(3).as_deref(),
        Some(ORDER_NUMBER)
    );
    assert_eq!(details.get::<_, Option<String>>(4), None);

    // An unescaped quote never reaches the service: the HTTP parser refuses the request line
    // (RFC 3986 does not allow it in a query), as every server built on the `http` crate does.
    let (status, _) = raw_get_status(
        &app,
        &format!("action=createInstance&orderBizId=444182&extraInfo={extra}&token={token}"),
    )
    .await;
    assert_eq!(status, 400);

    // The published test vector still holds (DESIGN §3).
    let vector = [
        ("accountNum", "1"),
        ("action", "createInstance"),
        ("email", "bujiaban@jd.com"),
        ("expiredOn", "2018-06-30 23:59:59"),
        ("jdPin", "bujiaban"),
        ("mobile", ""),
        ("orderBizId", "444181"),
        ("orderId", "556596"),
        ("serviceCode", "FW_GOODS-500232"),
        ("skuId", "FW_GOODS-500232-1"),
        ("template", ""),
    ];
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = vector
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let key = dts_ledger::configuration::Secret::new("qweqeqeqe123123123131");
    assert_eq!(
        dts_ledger::marketplace::token::expected(&pairs, &key),
        "9512df22a941f172a9f28068b758ee3e"
    );
}

#[tokio::test]
async fn a_renewal_recorded_under_order_id_is_matched_by_its_retry_with_order_number() {
    let app = spawn_app().await;
    let (status, _) = call(&app, &purchase("7001", "1", "1")).await;
    assert_eq!(status, 200);
    let expiry = cst(Utc::now() + Duration::days(400));
    // Recorded the way callbacks were before the revision: by orderId alone.
    let by_id = [
        ("action", "renewInstance"),
        ("instanceId", "7001"),
        ("orderId", "556596"),
        ("expiredOn", expiry.as_str()),
    ];
    let (status, first) = call(&app, &by_id).await;
    assert_eq!(status, 200, "{first}");
    // The marketplace's retry now names the order both ways: the same answer, nothing new.
    let mut both = by_id.to_vec();
    both.push(("orderNumber", ORDER_NUMBER));
    let (status, again) = call(&app, &both).await;
    assert_eq!((status, &again), (200, &first));
    // And a renewal recorded with both is matched by either alone.
    let second_expiry = cst(Utc::now() + Duration::days(800));
    let next = [
        ("action", "renewInstance"),
        ("instanceId", "7001"),
        ("orderId", "556597"),
        ("orderNumber", "529107885755794113"),
        ("expiredOn", second_expiry.as_str()),
    ];
    let (status, recorded) = call(&app, &next).await;
    assert_eq!(status, 200, "{recorded}");
    for alone in ["orderId", "orderNumber"] {
        let retry: Vec<(&str, &str)> = next
            .iter()
            .copied()
            .filter(|(name, _)| *name != alone)
            .collect();
        let (status, reply) = call(&app, &retry).await;
        assert_eq!((status, &reply), (200, &recorded), "without {alone}");
    }
    let renewed = app.events_of("OrderRenewed").await;
    assert_eq!(renewed.len(), 2, "two orders, each granted once");
    assert_eq!(app.order("7001").await["bytesGranted"], 3 * TIB);
    assert_eq!(renewed[1]["data"]["orderNumber"], "529107885755794113");
    assert_eq!(renewed[1]["data"]["orderId"], "556597");
}

#[tokio::test]
async fn a_renewal_grants_a_term_for_every_unit_bought() {
    let app = spawn_app().await;
    let (status, _) = call(&app, &purchase("7001", ORDER_NUMBER, "3")).await;
    assert_eq!(status, 200);
    assert_eq!(app.order("7001").await["bytesGranted"], 3 * TIB);
    let expiry = cst(Utc::now() + Duration::days(400));
    let (status, reply) = call(
        &app,
        &[
            ("action", "renewInstance"),
            ("instanceId", "7001"),
            ("orderNumber", "529107885755794199"),
            ("expiredOn", expiry.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.order("7001").await["bytesGranted"], 6 * TIB);
    let renewed = &app.events_of("OrderRenewed").await[0];
    assert_eq!(renewed["eventVersion"], 2);
    assert_eq!(renewed["data"]["units"], 3);
    assert_eq!(renewed["data"]["bytesGranted"], 3 * TIB);
    assert_eq!(renewed["data"]["amount"], "3000.00");
    // Replay folds the new version like the service did.
    let (code, stdout, stderr) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// The counter of held notices, from the process-wide recorder (other tests add to it too).
async fn held_counter(app: &TestApp) -> f64 {
    let text = app
        .get_as("/metrics", ADMIN_TOKEN)
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("dts_ledger_expiry_notices_held_total "))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn an_early_expiry_notice_is_held_listed_counted_and_applied_by_an_operator() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut bought = purchase("7001", ORDER_NUMBER, "1");
    bought.push(("expiredOn", expired_on.as_str()));
    assert_eq!(call(&app, &bought).await.0, 200);
    assert_eq!(app.create_task("t-1", "7001").await.0, 201);
    let before = held_counter(&app).await;

    // The refund's notice, then the marketplace repeats it: the package stays active, the notice
    // is kept once.
    let notice = [("action", "expiredInstance"), ("instanceId", "7001")];
    for _ in 0..3 {
        let (status, reply) = call(&app, &notice).await;
        assert_eq!(
            (status, reply["success"].clone()),
            (200, json!(true)),
            "{reply}"
        );
        assert!(
            reply["message"].as_str().unwrap().contains("held"),
            "{reply}"
        );
    }
    assert_eq!(app.order("7001").await["status"], "active");
    assert_eq!(app.task("t-1").await["state"], "running");
    let held = app.events_of("OrderExpiryHeld").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["data"]["instanceId"], "7001");
    assert!(held_counter(&app).await >= before + 1.0);

    // Operators see it: the admin route and the command line.
    let page: Value = app
        .get_as("/v1/expiry-notices", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["notices"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["notices"][0]["instanceId"], "7001");
    assert_eq!(
        page["notices"][0]["heldAgainst"],
        held[0]["data"]["expiresAt"]
    );
    assert_eq!(page["next"], Value::Null);
    let (code, table, stderr) = app.db.run_cli(&["orders", "held"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.lines().nth(1).unwrap().contains("7001"), "{table}");

    // Nothing to apply on a package without a held notice.
    assert_eq!(call(&app, &purchase("7002", "2", "1")).await.0, 200);
    let (code, _, stderr) = app
        .db
        .run_cli(&["orders", "expire", "7002", "--reason", "refund"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no held expiry notice"), "{stderr}");
    let refused = app
        .post_as(
            "/v1/orders/7002/expire",
            ADMIN_TOKEN,
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_held_notice");
    let reporter = app
        .post_as(
            "/v1/orders/7001/expire",
            REPORTER_TOKEN,
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(reporter.status(), 403);
    let unknown_reason = app
        .post_as(
            "/v1/orders/7001/expire",
            ADMIN_TOKEN,
            &json!({"reason": "whim"}),
        )
        .await;
    assert_eq!(unknown_reason.status(), 400);

    // The operator applies it: the package expires now, its task stops, in the ledger.
    let (code, stdout, stderr) = app.db.run_cli_as(
        Role::Service,
        &["orders", "expire", "7001", "--reason", "refund"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(app.order("7001").await["status"], "expired");
    let task = app.task("t-1").await;
    assert_eq!(
        (task["state"].clone(), task["stopReason"].clone()),
        (json!("stopped"), json!("order_expired"))
    );
    let expired = app.events_of("OrderExpired").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["eventVersion"], 2);
    assert_eq!(expired[0]["data"]["source"], "operator");
    assert_eq!(expired[0]["data"]["reason"], "refund");
    assert_eq!(expired[0]["metadata"]["source"], "operator");
    // Settled: no longer listed; applying again changes nothing.
    let page: Value = app
        .get_as("/v1/expiry-notices", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["notices"], json!([]));
    let again = app
        .post_as(
            "/v1/orders/7001/expire",
            ADMIN_TOKEN,
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["expiredNow"], false);
    assert_eq!(app.events_of("OrderExpired").await.len(), 1);
    let (code, stdout, stderr) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[tokio::test]
async fn an_admin_route_applies_a_held_notice_too() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut bought = purchase("7001", ORDER_NUMBER, "1");
    bought.push(("expiredOn", expired_on.as_str()));
    assert_eq!(call(&app, &bought).await.0, 200);
    let (status, _) = call(
        &app,
        &[("action", "expiredInstance"), ("instanceId", "7001")],
    )
    .await;
    assert_eq!(status, 200);
    let response = app
        .post_as(
            "/v1/orders/7001/expire",
            ADMIN_TOKEN,
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"instanceId": "7001", "status": "expired", "reason": "refund", "expiredNow": true})
    );
    assert_eq!(app.order("7001").await["status"], "expired");
}

/// The unresolved refusals through the admin route.
async fn refused(app: &TestApp) -> Value {
    let response = app.get_as("/v1/marketplace/refused", ADMIN_TOKEN).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_refused_paid_order_is_kept_for_operators_until_a_retry_succeeds() {
    let mut config = test_config();
    // The catalog lacks the SKU the customer bought.
    let skus = Catalog::built_in()
        .iter()
        .filter(|sku| sku.id.as_str() != SKU_1TB)
        .cloned()
        .collect();
    config.catalog = Catalog::new(skus).unwrap();
    let app = spawn_app_with(config).await;
    for _ in 0..3 {
        let (status, reply) = call(&app, &purchase("7001", ORDER_NUMBER, "1")).await;
        assert_eq!((status, reply["instanceId"].clone()), (422, json!("0")));
    }
    // A bad parameter after a good token is kept too; a bad token never is.
    let (status, _) = call(
        &app,
        &[
            ("action", "dilateInstance"),
            ("instanceId", "7009"),
            ("orderId", "9"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    let forged = app
        .callback_raw(&format!(
            "action=createInstance&orderBizId=forged&token={}",
            "0".repeat(32)
        ))
        .await;
    assert_eq!(forged.status(), 403);

    let page = refused(&app).await;
    assert_eq!(page["total"], 2, "{page}");
    let create = &page["refused"][0];
    assert_eq!(create["action"], "createInstance");
    assert_eq!(create["subject"], "7001");
    assert_eq!(create["reason"], "unknown_sku");
    assert_eq!(create["status"], 422);
    assert_eq!(create["calls"], 3);
    assert!(create["message"].as_str().unwrap().contains(SKU_1TB));
    let dilate = &page["refused"][1];
    assert_eq!(
        (dilate["action"].clone(), dilate["reason"].clone()),
        (json!("dilateInstance"), json!("invalid_parameter"))
    );

    let (code, table, stderr) = app.db.run_cli(&["marketplace", "refused"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.contains("createInstance") && table.contains("unknown_sku"),
        "{table}"
    );
    let (code, json_out, stderr) = app
        .db
        .run_cli(&["marketplace", "refused", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(listed["total"], 2);

    // The catalog is fixed (another process with the full catalog): the marketplace's next
    // retry succeeds and resolves the refusal by itself.
    let fixed = app.sibling(test_config());
    let response = fixed.callback(&purchase("7001", ORDER_NUMBER, "1")).await;
    assert_eq!(response.status(), 200);
    let page = refused(&app).await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["refused"][0]["action"], "dilateInstance");
    let (code, _, stderr) = app.db.run_cli_as(Role::Reader, &["marketplace", "refused"]);
    assert_eq!(code, 0, "the reader may list them: {stderr}");
}

#[tokio::test]
async fn refusals_are_kept_with_the_parameters_as_received() {
    let app = spawn_app().await;
    // A subject with a line break and invalid UTF-8 is kept printable.
    let query = signed_query(
        &[("action", "expiredInstance"), ("instanceId", "no\nsuch")],
        MARKETPLACE_KEY,
    );
    let response = app.callback_raw(&query).await;
    assert_eq!(response.status(), 400, "a control character in an id");
    let page = refused(&app).await;
    assert_eq!(page["refused"][0]["subject"], "no\u{FFFD}such");
    assert_eq!(page["refused"][0]["reason"], "invalid_parameter");
}

#[tokio::test]
async fn a_signed_string_that_reads_as_another_callback_is_refused_both_ways() {
    let app = spawn_app().await;
    // Mallory types the second order into a field the marketplace signs.
    let crafted = "{}&jdPin=victim&orderBizId=7002&orderId=72&serviceCode=dts\
                   &skuId=FW_GOODS-500232-2&skuIz=";
    let genuine = [
        ("action", "createInstance"),
        ("jdPin", "mallory"),
        ("orderBizId", "7001"),
        ("orderId", "71"),
        ("serviceCode", "dts"),
        ("skuId", SKU_1TB),
        ("extraInfo", crafted),
    ];
    let genuine_query = signed_query(&genuine, MARKETPLACE_KEY);
    let token = genuine_query.rsplit_once("token=").unwrap().1.to_owned();
    // The same signed string, read as another callback: victim's 2 TiB package 7002, with an
    // unknown `skuIz` absorbing Mallory's real parameters.
    let absorbed = "&jdPin=mallory&orderBizId=7001&orderId=71&serviceCode=dts\
                    &skuId=FW_GOODS-500232-1";
    let forged = [
        ("action", "createInstance"),
        ("extraInfo", "{}"),
        ("jdPin", "victim"),
        ("orderBizId", "7002"),
        ("orderId", "72"),
        ("serviceCode", "dts"),
        ("skuId", "FW_GOODS-500232-2"),
        ("skuIz", absorbed),
    ];
    assert_eq!(token_of(&forged), token, "one token signs both readings");
    let forged_query = signed_query(&forged, MARKETPLACE_KEY);
    assert!(forged_query.ends_with(&format!("token={token}")));

    for (query, what) in [
        (&genuine_query, "the genuine"),
        (&forged_query, "the forged"),
    ] {
        let response = app.callback_raw(query).await;
        assert_eq!(response.status(), 403, "{what} reading");
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["instanceId"], "0", "{what}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().contains("ambiguous"),
            "{reply}"
        );
    }
    assert!(app.events().await.is_empty(), "neither package was created");
    // Kept for operators with its reason: the token held.
    let page = refused(&app).await;
    let reasons: Vec<&str> = page["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["ambiguous", "ambiguous"], "{page}");
}

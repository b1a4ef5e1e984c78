//! The marketplace's order callbacks over HTTP: every action, the token, idempotency under
//! retries, bad input, sign-in and the expiry sweeper.

use crate::helpers::{
    cst, signed_query, spawn_app, spawn_app_with, test_config, TestApp, ADMIN_TOKEN,
    MARKETPLACE_KEY,
};
use chrono::{Duration, Utc};
use dts_ledger::configuration::{Catalog, Config, Sku};
use projections::ids::{Bytes, SkuId};
use serde_json::Value;

const SKU_1TB: &str = "FW_GOODS-500232-1";
const SKU_2TB: &str = "FW_GOODS-500232-2";
const TIB: i64 = 1 << 40;

fn create_params<'a>(biz: &'a str, expired_on: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("action", "createInstance"),
        ("jdPin", "jd_customer"),
        ("orderBizId", biz),
        ("orderId", "order-1"),
        ("serviceCode", "dts"),
        ("skuId", SKU_1TB),
        ("mobile", "13800000000"),
        ("email", "ops@example.cn"),
        ("expiredOn", expired_on),
        ("extraInfo", r#"{"region": "cn-north-1"}"#),
    ]
}

async fn create(app: &TestApp, biz: &str) -> Value {
    let expired_on = cst(Utc::now() + Duration::days(365));
    let response = app.callback(&create_params(biz, &expired_on)).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn call(app: &TestApp, params: &[(&str, &str)]) -> (u16, Value) {
    let response = app.callback(params).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_purchase_creates_a_package_and_answers_with_its_credential() {
    let app = spawn_app().await;
    let reply = create(&app, "biz-1").await;
    assert_eq!(reply["instanceId"], "biz-1");
    assert_eq!(reply["appInfo"]["username"], "jd_customer");
    assert_eq!(
        reply["appInfo"]["frontEndUrl"],
        "https://dts.example.com/console"
    );
    assert_eq!(
        reply["appInfo"]["authUrl"],
        "https://dts.example.com/v1/cloud/order"
    );
    assert_eq!(reply["info"]["packageName"], "DTS 1TB");
    assert_eq!(reply["info"]["bytesGranted"], TIB.to_string());
    let auth_code = reply["appInfo"]["authCode"].as_str().unwrap().to_owned();
    assert_eq!(auth_code.len(), 32);

    let order = app.order("biz-1").await;
    assert_eq!(order["status"], "active");
    assert_eq!(order["jdPin"], "jd_customer");
    assert_eq!(order["skuId"], SKU_1TB);
    assert_eq!(order["bytesGranted"], TIB);
    assert_eq!(order["bytesRemaining"], TIB);
    assert_eq!(order["bytesConsumed"], 0);
    assert_eq!(order["bytesOverage"], 0);
    assert_eq!(order["tasks"], serde_json::json!([]));

    // The customer's own credential opens this order and no other.
    let own = app.get_as("/v1/orders/biz-1", &auth_code).await;
    assert_eq!(own.status(), 200);
    create(&app, "biz-2").await;
    assert_eq!(
        app.get_as("/v1/orders/biz-2", &auth_code).await.status(),
        401
    );
    assert_eq!(app.get("/v1/orders/biz-1").await.status(), 401);

    let created = app.events_of("OrderCreated").await;
    assert_eq!(created.len(), 2);
    let data = &created[0]["data"];
    assert_eq!(data["bytesGranted"], TIB);
    assert_eq!(data["unitPrice"], "1000.00");
    assert_eq!(data["currency"], "CNY");
    assert_eq!(data["skuName"], "DTS 1TB");
    assert_eq!(created[0]["metadata"]["source"], "marketplace");
}

#[tokio::test]
async fn a_retried_purchase_gets_the_identical_reply_and_one_event() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let params = create_params("biz-1", &expired_on);
    let first = app.callback(&params).await.text().await.unwrap();
    for _ in 0..3 {
        assert_eq!(app.callback(&params).await.text().await.unwrap(), first);
    }
    assert_eq!(app.events_of("OrderCreated").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_identical_purchases_record_one_event_and_one_reply() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let query = signed_query(&create_params("biz-storm", &expired_on), MARKETPLACE_KEY);
    let calls = (0..50).map(|_| {
        let http = app.http.clone();
        let url = format!("{}/v1/cloud/order?{query}", app.address);
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    let replies = futures::future::join_all(calls).await;
    let first = &replies[0];
    assert_eq!(first.0, 200, "{}", first.1);
    assert!(
        replies.iter().all(|r| r == first),
        "all replies are identical"
    );
    assert_eq!(app.events_of("OrderCreated").await.len(), 1);
    assert_eq!(app.order("biz-storm").await["bytesGranted"], TIB);
}

#[tokio::test]
async fn reusing_an_order_biz_id_with_other_parameters_is_refused() {
    let app = spawn_app().await;
    create(&app, "biz-1").await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut params = create_params("biz-1", &expired_on);
    params[5] = ("skuId", SKU_2TB);
    let (status, reply) = call(&app, &params).await;
    assert_eq!(status, 409);
    assert_eq!(reply["instanceId"], "0");
    assert!(reply["message"].as_str().unwrap().contains("orderBizId"));
    assert_eq!(app.events().await.len(), 1);
    assert_eq!(app.order("biz-1").await["skuId"], SKU_1TB);
}

#[tokio::test]
async fn an_unknown_sku_answers_zero_until_the_catalog_has_it() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut params = create_params("biz-new", &expired_on);
    params[5] = ("skuId", "FW_GOODS-500232-9");
    let (status, reply) = call(&app, &params).await;
    assert_eq!(status, 422);
    assert_eq!(reply["instanceId"], "0");
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("FW_GOODS-500232-9"));
    assert!(app.events().await.is_empty());

    let mut skus: Vec<Sku> = Catalog::built_in().iter().cloned().collect();
    skus.push(Sku {
        id: SkuId::parse("FW_GOODS-500232-9").unwrap(),
        name: "DTS 4TB".into(),
        bytes: Bytes::new(4 << 40).unwrap(),
        price: "3000.00".parse().unwrap(),
        currency: "CNY".into(),
    });
    let fixed = app.sibling(Config {
        catalog: Catalog::new(skus).unwrap(),
        catalog_is_built_in: false,
        ..test_config()
    });
    let (status, reply) = call(&fixed, &params).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["instanceId"], "biz-new");
    assert_eq!(fixed.order("biz-new").await["bytesGranted"], 4 * TIB);
}

#[tokio::test]
async fn missing_wrong_or_ambiguous_tokens_are_refused_and_record_nothing() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let params = create_params("biz-1", &expired_on);
    let signed = signed_query(&params, MARKETPLACE_KEY);
    let unsigned = signed.split("&token=").next().unwrap().to_owned();
    let wrong = signed_query(&params, "not-the-key");
    let tampered = signed.replace("biz-1", "biz-2");
    let duplicated = format!("{signed}&orderBizId=biz-1");
    for query in [&unsigned, &wrong, &tampered, &duplicated] {
        let response = app.callback_raw(query).await;
        assert_eq!(response.status(), 403, "{query}");
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["instanceId"], "0", "{query}");
    }
    let (status, reply) = call(&app, &[("action", "releaseInstance"), ("instanceId", "x")]).await;
    assert_eq!(status, 404, "a valid token gets past the check: {reply}");
    let response = app
        .callback_raw(&signed_query(
            &[("action", "releaseInstance"), ("instanceId", "x")],
            "bad",
        ))
        .await;
    assert_eq!(response.status(), 403);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["success"], false);
    assert!(app.events().await.is_empty());

    let keyless = app.sibling(Config {
        marketplace_key: None,
        ..test_config()
    });
    assert_eq!(keyless.callback_raw(&signed).await.status(), 403);
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn unknown_actions_and_malformed_values_name_what_is_wrong() {
    let app = spawn_app().await;
    let (status, reply) = call(&app, &[("action", "refundInstance"), ("instanceId", "x")]).await;
    assert_eq!(
        (status, reply["success"].clone()),
        (400, Value::Bool(false))
    );
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("refundInstance"));

    let long = "x".repeat(300);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (create_params("biz-1", "2027/01/01"), "expiredOn"),
        (
            [create_params("biz-1", ""), vec![("accountNum", "0")]].concat(),
            "accountNum",
        ),
        (
            [create_params("biz-1", ""), vec![("accountNum", "1001")]].concat(),
            "accountNum",
        ),
        (create_params(&long, ""), "orderBizId"),
        (
            vec![
                ("action", "renewInstance"),
                ("instanceId", "biz-1"),
                ("orderId", "o"),
            ],
            "expiredOn",
        ),
        (
            vec![
                ("action", "dilateInstance"),
                ("instanceId", "biz-1"),
                ("orderId", "o"),
                ("accountNum", "many"),
            ],
            "accountNum",
        ),
    ];
    for (params, named) in cases {
        let (status, reply) = call(&app, &params).await;
        assert_eq!(status, 400, "{params:?}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(named), "{message} should name {named}");
    }
    // A value that is not UTF-8, correctly signed over its bytes.
    let input = "action=releaseInstance&instanceId=\u{FFFD}";
    let _ = input;
    let query = {
        use md5::{Digest, Md5};
        let mut signing = b"action=releaseInstance&instanceId=".to_vec();
        signing.extend_from_slice(&[0xff, 0xfe]);
        signing.extend_from_slice(format!("&key={MARKETPLACE_KEY}").as_bytes());
        format!(
            "action=releaseInstance&instanceId=%FF%FE&token={}",
            hex::encode(Md5::digest(&signing))
        )
    };
    let response = app.callback_raw(&query).await;
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.unwrap();
    assert!(
        reply["message"].as_str().unwrap().contains("UTF-8"),
        "{reply}"
    );
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn renewal_with_the_same_order_id_grants_bytes_once() {
    let app = spawn_app().await;
    create(&app, "biz-1").await;
    let expiry = cst(Utc::now() + Duration::days(400));
    let renew = [
        ("action", "renewInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-2"),
        ("expiredOn", expiry.as_str()),
    ];
    let (status, first) = call(&app, &renew).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(first["authCode"].as_str().unwrap().len(), 32);
    let (_, second) = call(&app, &renew).await;
    assert_eq!(first, second);
    let order = app.order("biz-1").await;
    assert_eq!(order["bytesGranted"], 2 * TIB);
    assert_eq!(app.events_of("OrderRenewed").await.len(), 1);

    let other_expiry = cst(Utc::now() + Duration::days(500));
    let conflicting = [
        ("action", "renewInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-2"),
        ("expiredOn", other_expiry.as_str()),
    ];
    let (status, reply) = call(&app, &conflicting).await;
    assert_eq!(
        (status, reply["success"].clone()),
        (409, Value::Bool(false))
    );
    assert_eq!(app.order("biz-1").await["bytesGranted"], 2 * TIB);
}

#[tokio::test]
async fn upgrade_and_expansion_grant_what_the_catalog_says() {
    let app = spawn_app().await;
    create(&app, "biz-1").await;
    let upgrade = [
        ("action", "upgradeInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-up"),
        ("skuId", SKU_2TB),
    ];
    let (status, reply) = call(&app, &upgrade).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(call(&app, &upgrade).await.1, reply);
    let order = app.order("biz-1").await;
    assert_eq!(order["skuId"], SKU_2TB);
    assert_eq!(order["bytesGranted"], 2 * TIB);

    let dilate = [
        ("action", "dilateInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-dilate"),
        ("accountNum", "3"),
    ];
    let (status, reply) = call(&app, &dilate).await;
    assert_eq!(status, 200, "{reply}");
    call(&app, &dilate).await;
    assert_eq!(app.order("biz-1").await["bytesGranted"], (2 + 3 * 2) * TIB);
    let dilated = app.events_of("OrderDilated").await;
    assert_eq!(dilated.len(), 1);
    assert_eq!(dilated[0]["data"]["amount"], "5400.00");
    let upgraded = app.events_of("OrderUpgraded").await;
    assert_eq!(upgraded[0]["data"]["amount"], "800.00");
}

#[tokio::test]
async fn expiry_and_release_are_idempotent_and_a_released_package_never_changes() {
    let app = spawn_app().await;
    // Without `expiredOn`: the marketplace alone says when it ends (an expiry ahead would make
    // `expiredInstance` a no-op).
    let (status, reply) = call(&app, &create_params("biz-1", "")).await;
    assert_eq!(status, 200, "{reply}");
    let expire = [("action", "expiredInstance"), ("instanceId", "biz-1")];
    assert_eq!(call(&app, &expire).await.0, 200);
    assert_eq!(call(&app, &expire).await.0, 200);
    assert_eq!(app.order("biz-1").await["status"], "expired");
    assert_eq!(app.events_of("OrderExpired").await.len(), 1);

    let release = [("action", "releaseInstance"), ("instanceId", "biz-1")];
    let (status, reply) = call(&app, &release).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(call(&app, &release).await.1["success"], true);
    let order = app.order("biz-1").await;
    assert_eq!(order["status"], "released");
    assert_eq!(order["bytesRemaining"], 0);
    assert_eq!(order["bytesForfeited"], TIB);
    let released = app.events_of("OrderReleased").await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["data"]["bytesForfeited"], TIB);

    let expiry = cst(Utc::now() + Duration::days(30));
    let renew = [
        ("action", "renewInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-late"),
        ("expiredOn", expiry.as_str()),
    ];
    let (status, reply) = call(&app, &renew).await;
    assert_eq!(
        (status, reply["success"].clone()),
        (409, Value::Bool(false))
    );
    assert!(reply["message"].as_str().unwrap().contains("released"));
    assert!(app.events_of("OrderRenewed").await.is_empty());
}

#[tokio::test]
async fn login_free_sign_in_redirects_to_a_console_session() {
    let app = spawn_app().await;
    create(&app, "biz-1").await;
    let now = cst(Utc::now());
    let response = app
        .callback(&[
            ("action", "verify"),
            ("instanceId", "biz-1"),
            ("timeStamp", &now),
        ])
        .await;
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://dts.example.com/console/enter?ticket="),
        "{location}"
    );
    let path = location.trim_start_matches("https://dts.example.com");
    let entered = app.get(path).await;
    assert_eq!(entered.status(), 303);
    assert_eq!(entered.headers()["location"], "/console");
    assert_eq!(app.get(path).await.status(), 403, "a ticket works once");

    let stale = cst(Utc::now() - Duration::minutes(10));
    let (status, reply) = call(
        &app,
        &[
            ("action", "verify"),
            ("instanceId", "biz-1"),
            ("timeStamp", &stale),
        ],
    )
    .await;
    assert_eq!(
        (status, reply["success"].clone()),
        (403, Value::Bool(false))
    );
    let (status, _) = call(
        &app,
        &[
            ("action", "verify"),
            ("instanceId", "nobody"),
            ("timeStamp", &now),
        ],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_sweeper_expires_a_package_on_time_and_a_renewal_revives_it() {
    let app = spawn_app_with(Config {
        expiry_sweep_s: 1,
        ..test_config()
    })
    .await;
    let soon = cst(Utc::now() + Duration::seconds(3));
    let response = app.callback(&create_params("biz-1", &soon)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.order("biz-1").await["status"], "active");
    let mut expired = false;
    for _ in 0..200 {
        if app.order("biz-1").await["status"] == "expired" {
            expired = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(expired, "the sweeper records the expiry");
    let events = app.events_of("OrderExpired").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["source"], "clock");
    assert_eq!(events[0]["metadata"]["source"], "sweeper");

    let later = cst(Utc::now() + Duration::days(30));
    let (status, _) = call(
        &app,
        &[
            ("action", "renewInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-2"),
            ("expiredOn", &later),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.order("biz-1").await["status"], "active");
}

#[tokio::test]
async fn personal_data_stays_out_of_the_ledger_and_can_be_erased() {
    let app = spawn_app().await;
    create(&app, "biz-1").await;
    let ledger = serde_json::to_string(&app.events().await).unwrap();
    assert!(!ledger.contains("13800000000") && !ledger.contains("ops@example.cn"));
    assert!(!ledger.contains("cn-north-1"));
    let client = app.db.client().await;
    let row = client
        .query_one("SELECT mobile, email, extra_info FROM order_details", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("13800000000")
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("ops@example.cn")
    );

    let erase = app
        .http
        .delete(format!("{}/v1/orders/biz-1/details", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), 200);
    let row = client
        .query_one("SELECT mobile, email, erased_at FROM order_details", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert!(row.get::<_, Option<chrono::DateTime<Utc>>>(2).is_some());
}

#[tokio::test]
async fn the_ledger_api_is_for_admins_and_pages_by_position() {
    let app = spawn_app().await;
    for n in 0..3 {
        create(&app, &format!("biz-{n}")).await;
    }
    assert_eq!(app.get("/v1/ledger").await.status(), 401);
    let page: Value = app
        .get_as("/v1/ledger?after=1&limit=1", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["next"], 2);
    let event = &page["events"][0];
    let last: Value = app
        .get_as("/v1/ledger?after=2&limit=1", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["events"][0]["position"], 3);
    assert_eq!(
        last["next"],
        Value::Null,
        "the page holding the last event says the end"
    );
    let beyond: Value = app
        .get_as("/v1/ledger?after=3", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(beyond["events"], serde_json::json!([]));
    assert_eq!(beyond["next"], Value::Null);
    assert_eq!(event["position"], 2);
    assert_eq!(event["streamId"], "package-biz-1");
    assert_eq!(event["version"], 1);
    assert_eq!(event["type"], "OrderCreated");
    assert_eq!(event["hash"].as_str().unwrap().len(), 64);
    let bad = app.get_as("/v1/ledger?limit=0", ADMIN_TOKEN).await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_limit");
}

#[tokio::test]
async fn a_database_failure_answers_zero_so_the_marketplace_retries() {
    let app = spawn_app().await;
    let broken = app.sibling_without_database();
    let expired_on = cst(Utc::now() + Duration::days(30));
    let response = broken.callback(&create_params("biz-1", &expired_on)).await;
    assert_eq!(response.status(), 503);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["instanceId"], "0");
    let response = broken.get_as("/v1/orders/biz-1", ADMIN_TOKEN).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    assert!(app.events().await.is_empty());
    let reply = create(&app, "biz-1").await;
    assert_eq!(reply["instanceId"], "biz-1");
}

//! The marketplace callbacks as a paying customer, the marketplace's retries and an attacker meet
//! them: a paid order is always provisioned, a renewed one stays renewed, grants follow units and
//! the package's own record, and the clock's expiries never get stuck.

use crate::helpers::{
    cst, signed_query, spawn_app, spawn_app_with, test_config, TestApp, ADMIN_TOKEN,
    MARKETPLACE_KEY, SMALL_SKU, SMALL_SKU_BYTES,
};
use chrono::{Duration, Utc};
use dts_ledger::configuration::{Catalog, Config};
use serde_json::Value;

const SKU_1TB: &str = "FW_GOODS-500232-1";
const SKU_2TB: &str = "FW_GOODS-500232-2";
const TIB: i64 = 1 << 40;

fn purchase<'a>(biz: &'a str, sku: &'a str, expired_on: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("action", "createInstance"),
        ("jdPin", "jd_customer"),
        ("orderBizId", biz),
        ("orderId", "order-1"),
        ("serviceCode", "dts"),
        ("skuId", sku),
        ("expiredOn", expired_on),
    ]
}

async fn call(app: &TestApp, params: &[(&str, &str)]) -> (u16, Value) {
    let response = app.callback(params).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls until `done` holds; the bound is generous so slow machines pass, and a stuck sweeper
/// fails.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..300 {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

async fn details(app: &TestApp, order_id: &str) -> tokio_postgres::Row {
    app.db
        .client()
        .await
        .query_one(
            "SELECT mobile, email, template, extra_info, addition_info, invalid_params
               FROM order_details WHERE order_id = $1",
            &[&order_id],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stale_expiry_after_a_clock_expiry_and_a_renewal_is_held_once_and_expires_nothing() {
    let app = spawn_app_with(Config {
        expiry_sweep_s: 1,
        ..test_config()
    })
    .await;
    let soon = cst(Utc::now() + Duration::seconds(3));
    let (status, reply) = call(&app, &purchase("biz-1", SKU_1TB, &soon)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.create_task("t-1", "biz-1").await.0, 201);
    let expired = eventually(async || app.order("biz-1").await["status"] == "expired").await;
    assert!(expired, "the sweeper records the expiry");
    assert_eq!(app.task("t-1").await["state"], "stopped");

    let (status, reply) = call(
        &app,
        &[
            ("action", "renewInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-2"),
            ("expiredOn", "2031-01-01 00:00:00"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.task("t-1").await["state"], "running");
    let before = app.events().await.len();

    // The marketplace's own expiry arrives late, then the very same signed URL once more.
    let expire = signed_query(
        &[("action", "expiredInstance"), ("instanceId", "biz-1")],
        MARKETPLACE_KEY,
    );
    for _ in 0..2 {
        let response = app.callback_raw(&expire).await;
        assert_eq!(response.status(), 200);
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["success"], true, "{reply}");
    }
    let order = app.order("biz-1").await;
    assert_eq!(order["status"], "active");
    assert_eq!(order["expiresAt"], "2030-12-31T16:00:00Z");
    assert_eq!(app.task("t-1").await["state"], "running");
    let events = app.events().await;
    let added: Vec<&Value> = events[before..].iter().collect();
    assert_eq!(
        added.len(),
        1,
        "one held notice, however often it arrives: {added:?}"
    );
    assert_eq!(added[0]["type"], "OrderExpiryHeld");
    assert_eq!(added[0]["data"]["expiresAt"], "2030-12-31T16:00:00Z");
}

#[tokio::test]
async fn optional_details_that_fail_their_checks_never_refuse_an_order() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mobile = "1".repeat(40);
    let email = format!("{}@example.cn", "e".repeat(300));
    let template = format!("tpl\n{}", "t".repeat(200));
    let addition = format!(r#"{{"note": "{}"}}"#, "a".repeat(5000));
    let mut params = purchase("biz-1", SKU_1TB, &expired_on);
    params.extend([
        ("mobile", mobile.as_str()),
        ("email", email.as_str()),
        ("template", template.as_str()),
        ("extraInfo", r#"{"key1":"1","key1","2"}"#),
        ("additionInfo", addition.as_str()),
    ]);
    let query = signed_query(&params, MARKETPLACE_KEY);
    let response = app.callback_raw(&query).await;
    assert_eq!(response.status(), 200);
    let first = response.text().await.unwrap();
    let reply: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(reply["instanceId"], "biz-1", "{reply}");
    // A retry with the same raw parameters is the same order: the identical reply, one event.
    for _ in 0..2 {
        assert_eq!(app.callback_raw(&query).await.text().await.unwrap(), first);
    }
    assert_eq!(app.events_of("OrderCreated").await.len(), 1);
    assert_eq!(app.order("biz-1").await["bytesGranted"], TIB);

    let row = details(&app, "order-1").await;
    assert_eq!(row.get::<_, Option<String>>(0), Some("1".repeat(32)));
    assert_eq!(
        row.get::<_, Option<String>>(1).unwrap().chars().count(),
        254
    );
    assert_eq!(
        row.get::<_, Option<String>>(2).unwrap().chars().count(),
        128
    );
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some(r#"{"key1":"1","key1","2"}"#)
    );
    assert_eq!(row.get::<_, Option<String>>(4).unwrap().len(), 4096);
    let mut flagged: Vec<String> = row.get(5);
    flagged.sort();
    assert_eq!(
        flagged,
        ["additionInfo", "email", "extraInfo", "mobile", "template"]
    );
    // Personal data and free-form text stay out of the ledger, also when invalid.
    let ledger = serde_json::to_string(&app.events().await).unwrap();
    assert!(!ledger.contains(&mobile[..32]) && !ledger.contains("key1"));

    // The other actions' optional details do not refuse them either.
    let bad_json = "{not json";
    let (status, reply) = call(
        &app,
        &[
            ("action", "upgradeInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-up"),
            ("skuId", SKU_2TB),
            ("extraInfo", bad_json),
        ],
    )
    .await;
    assert_eq!(
        (status, &reply["success"]),
        (200, &Value::Bool(true)),
        "{reply}"
    );
    let (status, reply) = call(
        &app,
        &[
            ("action", "dilateInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-dilate"),
            ("accountNum", "1"),
            ("extraInfo", &"x".repeat(5000)),
        ],
    )
    .await;
    assert_eq!(
        (status, &reply["success"]),
        (200, &Value::Bool(true)),
        "{reply}"
    );
    let row = details(&app, "order-up").await;
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some(bad_json));
    assert_eq!(row.get::<_, Vec<String>>(5), ["extraInfo"]);
    let row = details(&app, "order-dilate").await;
    assert_eq!(row.get::<_, Option<String>>(3).unwrap().len(), 4096);
    assert_eq!(row.get::<_, Vec<String>>(5), ["extraInfo"]);

    // Erasure blanks the kept values, the invalid template among them.
    let erase = app
        .http
        .delete(format!("{}/v1/orders/biz-1/details", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), 200);
    let row = details(&app, "order-1").await;
    for column in 0..5 {
        assert_eq!(
            row.get::<_, Option<String>>(column),
            None,
            "column {column}"
        );
    }

    // A parameter the action cannot work without still refuses it.
    let mut missing = purchase("biz-2", SKU_1TB, &expired_on);
    missing.retain(|(name, _)| *name != "jdPin");
    let (status, reply) = call(&app, &missing).await;
    assert_eq!((status, &reply["instanceId"]), (400, &Value::from("0")));
}

#[tokio::test]
async fn an_upgrade_grants_the_difference_for_every_unit() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut params = purchase("biz-1", SKU_1TB, &expired_on);
    params.push(("accountNum", "3"));
    assert_eq!(call(&app, &params).await.0, 200);
    let upgrade = [
        ("action", "upgradeInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-up"),
        ("skuId", SKU_2TB),
    ];
    let (status, reply) = call(&app, &upgrade).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        call(&app, &upgrade).await.1,
        reply,
        "a retry answers the same"
    );
    assert_eq!(app.order("biz-1").await["bytesGranted"], 6 * TIB);
    let upgraded = app.events_of("OrderUpgraded").await;
    assert_eq!(upgraded.len(), 1);
    assert_eq!(upgraded[0]["eventVersion"], 2);
    assert_eq!(upgraded[0]["data"]["units"], 3);
    assert_eq!(upgraded[0]["data"]["bytesGranted"], 3 * TIB);
    assert_eq!(upgraded[0]["data"]["amount"], "2400.00");
    // The ledger stays replayable with the new event version.
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_sku_removed_from_the_catalog_does_not_block_its_packages() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    assert_eq!(
        call(&app, &purchase("biz-1", SMALL_SKU, &expired_on))
            .await
            .0,
        200
    );
    // The same database served with a catalog that no longer has the package's SKU.
    let removed = app.sibling(Config {
        catalog: Catalog::built_in(),
        catalog_is_built_in: false,
        ..test_config()
    });
    let later = cst(Utc::now() + Duration::days(60));
    let (status, reply) = call(
        &removed,
        &[
            ("action", "renewInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-renew"),
            ("expiredOn", &later),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = call(
        &removed,
        &[
            ("action", "dilateInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-dilate"),
            ("accountNum", "2"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let renewed = &removed.events_of("OrderRenewed").await[0]["data"];
    assert_eq!(renewed["skuId"], SMALL_SKU);
    assert_eq!(renewed["skuName"], "DTS 10KB");
    assert_eq!(renewed["bytesGranted"], SMALL_SKU_BYTES);
    assert_eq!(renewed["amount"], "10.00");
    assert_eq!(renewed["currency"], "CNY");
    let dilated = &removed.events_of("OrderDilated").await[0]["data"];
    assert_eq!(dilated["bytesGranted"], 2 * SMALL_SKU_BYTES);
    assert_eq!(dilated["amount"], "20.00");
    assert_eq!(
        removed.order("biz-1").await["bytesGranted"],
        4 * SMALL_SKU_BYTES
    );

    // Upgrading to an unknown SKU still needs the catalog; upgrading from a removed one works.
    let (status, _) = call(
        &removed,
        &[
            ("action", "upgradeInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-nowhere"),
            ("skuId", "FW_GOODS-500232-9"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    let (status, reply) = call(
        &removed,
        &[
            ("action", "upgradeInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-up"),
            ("skuId", SKU_1TB),
        ],
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let upgraded = &removed.events_of("OrderUpgraded").await[0]["data"];
    assert_eq!(upgraded["fromSkuId"], SMALL_SKU);
    assert_eq!(upgraded["units"], 3);
    assert_eq!(upgraded["bytesGranted"], 3 * (TIB - SMALL_SKU_BYTES));
    assert_eq!(upgraded["amount"], "2970.00");
    let order = removed.order("biz-1").await;
    assert_eq!(order["skuId"], SKU_1TB);
    assert_eq!(order["bytesGranted"], SMALL_SKU_BYTES + 3 * TIB);
}

#[tokio::test]
async fn a_percent_escape_with_a_sign_is_refused() {
    let app = spawn_app().await;
    let expired_on = cst(Utc::now() + Duration::days(30));
    let mut params = purchase("biz-1", SKU_1TB, &expired_on);
    // An unknown parameter is signed and otherwise ignored: only the escape can refuse it.
    params.push(("appCode", "\u{1}"));
    let signed = signed_query(&params, MARKETPLACE_KEY);
    assert!(signed.contains("appCode=%01"));
    let response = app
        .callback_raw(&signed.replace("appCode=%01", "appCode=%+1"))
        .await;
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["instanceId"], "0");
    assert!(
        reply["message"].as_str().unwrap().contains("appCode"),
        "{reply}"
    );
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn a_package_that_cannot_expire_does_not_stop_the_others() {
    let app = spawn_app_with(Config {
        expiry_sweep_s: 1,
        ..test_config()
    })
    .await;
    // Bought for a month, then made due and unfoldable behind the service's back (a projection row
    // no fold could have written): every attempt to expire it fails for good. Made due only once
    // poisoned, so the sweeper never meets it healthy, however slow the machine.
    let month = cst(Utc::now() + Duration::days(30));
    let (status, reply) = call(&app, &purchase("biz-poisoned", SKU_1TB, &month)).await;
    assert_eq!(status, 200, "{reply}");
    let poisoned = app
        .db
        .client()
        .await
        .execute(
            "UPDATE packages SET warned_percents = '{300}', expires_at = now() + interval '1 second'
              WHERE instance_id = 'biz-poisoned'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(poisoned, 1);
    let then = cst(Utc::now() + Duration::seconds(4));
    for biz in ["biz-a", "biz-b"] {
        let (status, reply) = call(&app, &purchase(biz, SKU_1TB, &then)).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(app.create_task(&format!("task-{biz}"), biz).await.0, 201);
    }
    let expired = eventually(async || {
        app.order("biz-a").await["status"] == "expired"
            && app.order("biz-b").await["status"] == "expired"
    })
    .await;
    assert!(expired, "the others expire although one package cannot");
    assert_eq!(app.task("task-biz-a").await["stopReason"], "order_expired");
    let status: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT status FROM packages WHERE instance_id = 'biz-poisoned'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "active", "the poisoned package is left as it was");
}

#[tokio::test]
async fn more_packages_that_cannot_expire_than_a_sweep_reads_at_once_do_not_starve_the_others() {
    let app = spawn_app_with(Config {
        expiry_sweep_s: 1,
        ..test_config()
    })
    .await;
    // More damaged rows than one read of the sweeper returns, all due before the good package.
    let damaged = dts_ledger::ledger::orders::SWEEP_BATCH_MAX + 20;
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO packages
                 (instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status,
                  bytes_granted, bytes_consumed, bytes_forfeited, bytes_remaining, bytes_overage,
                  expires_at, warned_percents, created_at, updated_at)
             SELECT 'damaged-' || n, 'jd_other', 'sku', 0, 0, 1, 'active', 0, 0, 0, 0, 0,
                    now() - interval '1 hour', '{300}', now(), now()
               FROM generate_series(1, $1::bigint) AS n",
            &[&damaged],
        )
        .await
        .unwrap();
    let soon = cst(Utc::now() + Duration::seconds(2));
    let (status, reply) = call(&app, &purchase("biz-good", SKU_1TB, &soon)).await;
    assert_eq!(status, 200, "{reply}");
    let expired = eventually(async || app.order("biz-good").await["status"] == "expired").await;
    assert!(
        expired,
        "the good package expires behind {damaged} damaged ones"
    );
}

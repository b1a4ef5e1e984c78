//! The marketplace callbacks as a paying customer, the marketplace's retries and an attacker meet
//! them: a paid order is always provisioned, a renewed one stays renewed, grants follow units and
//! the package's own record, and the clock's expiries never get stuck.

use crate::helpers::{
    cst, signed_query, spawn_app, spawn_app_with, test_config, TestApp, MARKETPLACE_KEY,
};
use chrono::{Duration, Utc};
use dts_ledger::configuration::Config;
use serde_json::Value;

const SKU_1TB: &str = "FW_GOODS-500232-1";

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

/// Polls until `done` holds; the bound is generous so slow machines pass, and a stuck sweeper fails.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..300 {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_stale_expiry_after_a_clock_expiry_and_a_renewal_changes_nothing() {
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
    assert_eq!(app.events().await.len(), before, "nothing is appended");
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
    let first = cst(Utc::now() + Duration::seconds(2));
    let (status, reply) = call(&app, &purchase("biz-poisoned", SKU_1TB, &first)).await;
    assert_eq!(status, 200, "{reply}");
    // A projection row no fold could have written: every attempt to expire it fails for good.
    let poisoned = app
        .db
        .client()
        .await
        .execute(
            "UPDATE packages SET warned_percents = '{300}' WHERE instance_id = 'biz-poisoned'",
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

//! Order credentials that can be replaced: a logged callback URL hands out a code that a
//! rotation retires at once, in every process, with the sessions it opened; the ledger records
//! the rotation and holds no code.

use crate::helpers::*;
use dts_ledger::database::Role;
use serde_json::Value;

/// Signs in with an order credential; the session's `Cookie` header.
async fn signed_in(app: &TestApp, instance_id: &str, code: &str) -> String {
    let response = app.login(instance_id, code).await;
    assert_eq!(response.status(), 303, "signs in with {code}");
    cookie_pair(&set_cookie(&response, "dts_console").expect("a session cookie"))
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Whether `cookie`'s session is still open (the console answers it instead of sending it to
/// the sign-in form).
async fn open(app: &TestApp, cookie: &str) -> bool {
    page(app, "/console", cookie).await.status() == 200
}

fn purchase(instance_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("action", "createInstance".to_owned()),
        ("jdPin", "alice".to_owned()),
        ("orderBizId", instance_id.to_owned()),
        ("orderId", format!("order-{instance_id}")),
        ("serviceCode", "dts".to_owned()),
        ("skuId", SMALL_SKU.to_owned()),
    ]
}

#[tokio::test]
async fn a_rotated_credential_retires_the_old_code_and_its_sessions_at_once() {
    let app = spawn_app().await;
    let params = purchase("7001");
    let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let callback_url = signed_query(&params, MARKETPLACE_KEY);
    let reply: Value = app.callback_raw(&callback_url).await.json().await.unwrap();
    let old = reply["appInfo"]["authCode"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/v1/orders/7001", &old).await.status(), 200);
    // A session opened with the old code, and one in another process.
    let session = signed_in(&app, "7001", &old).await;
    let other_process = app.sibling(test_config());

    let response = app
        .post_as(
            "/v1/orders/7001/credential",
            ADMIN_TOKEN,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["authCode"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["generation"], 1);
    assert_eq!(rotated["sessionsEnded"], 1);

    // The old code opens nothing, anywhere, at once; its session has ended.
    for server in [&app, &other_process] {
        assert_eq!(server.get_as("/v1/orders/7001", &old).await.status(), 401);
        assert_eq!(server.get_as("/v1/orders/7001", &new).await.status(), 200);
    }
    assert!(!open(&app, &session).await, "the old code's session ended");
    assert_eq!(app.login("7001", &old).await.status(), 401);
    let fresh = signed_in(&other_process, "7001", &new).await;
    assert!(open(&app, &fresh).await);

    // The logged callback URL still answers as it did, and hands out only the dead code.
    let replayed: Value = app.callback_raw(&callback_url).await.json().await.unwrap();
    assert_eq!(
        replayed, reply,
        "the marketplace's retry gets the identical reply"
    );
    assert_ne!(replayed["appInfo"]["authCode"], Value::String(new.clone()));

    // Recorded in the ledger, which holds no code.
    let rotations = app.events_of("OrderCredentialRotated").await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(
        rotations[0]["data"],
        serde_json::json!({"instanceId": "7001", "generation": 1})
    );
    assert_eq!(rotations[0]["metadata"]["source"], "operator");
    let ledger = serde_json::to_string(&app.events().await).unwrap();
    assert!(!ledger.contains(&old) && !ledger.contains(&new));

    // The operator's command rotates it again, and needs the service's secret to say the code.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
        .args(["orders", "rotate-credential", "7001"])
        .env("DATABASE_URL", app.db.url_as(Role::Service))
        .env("LEDGER_MARKETPLACE_KEY", MARKETPLACE_KEY)
        .env_remove("LEDGER_CONFIG")
        .env_remove("LEDGER_CONSOLE_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let third = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(third.len(), 32);
    assert_eq!(app.get_as("/v1/orders/7001", &new).await.status(), 401);
    assert_eq!(app.get_as("/v1/orders/7001", &third).await.status(), 200);
    assert!(
        !open(&app, &fresh).await,
        "sessions of the second code ended too"
    );
    let (code, stdout, stderr) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[tokio::test]
async fn a_customer_replaces_a_credential_in_the_console_and_keeps_their_own_session() {
    let app = spawn_app().await;
    let old = app.buy_with_code("7001", "alice").await;
    let mine = signed_in(&app, "7001", &old).await;
    let elsewhere = signed_in(&app, "7001", &old).await;

    let form = page(&app, "/console/packages/7001/credential", &mine).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(
        html.contains("更换订单凭证") || html.contains("credential-submit"),
        "{html}"
    );
    let csrf = field(&html, "csrf");
    let done = app
        .http
        .post(format!("{}/console/packages/7001/credential", app.address))
        .header("cookie", &mine)
        .header("origin", "https://dts.example.com")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    let marker = "id=\"credential-code\">";
    let start = html.find(marker).expect("the new code is shown") + marker.len();
    let new = html[start..start + 32].to_owned();
    assert_ne!(new, old);

    assert!(
        open(&app, &mine).await,
        "the customer who replaced it stays signed in"
    );
    assert!(
        !open(&app, &elsewhere).await,
        "another session of the old code ended"
    );
    assert_eq!(app.login("7001", &old).await.status(), 401);
    assert_eq!(app.login("7001", &new).await.status(), 303);
    let rotation = &app.events_of("OrderCredentialRotated").await[0];
    assert_eq!(rotation["metadata"]["actor"], "customer:alice");
    assert_eq!(rotation["metadata"]["source"], "console");

    // Without the form's token nothing is replaced.
    let forged = app
        .http
        .post(format!("{}/console/packages/7001/credential", app.address))
        .header("cookie", &mine)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(app.events_of("OrderCredentialRotated").await.len(), 1);
}

#[tokio::test]
async fn a_released_package_and_an_unknown_one_rotate_nothing() {
    let app = spawn_app().await;
    app.buy("7001", "alice", SMALL_SKU).await;
    let released = app
        .callback(&[("action", "releaseInstance"), ("instanceId", "7001")])
        .await;
    assert_eq!(released.status(), 200);
    let empty = serde_json::json!({});
    let response = app
        .post_as("/v1/orders/7001/credential", ADMIN_TOKEN, &empty)
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "order_released");
    let response = app
        .post_as("/v1/orders/7999/credential", ADMIN_TOKEN, &empty)
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .post_as("/v1/orders/7001/credential", REPORTER_TOKEN, &empty)
        .await;
    assert_eq!(response.status(), 403);
    assert!(app.events_of("OrderCredentialRotated").await.is_empty());
}

//! The newcomer's and operator's tools: `dts-ledger init` and `dts-ledger marketplace`, run as the
//! real binary against the real server.

use crate::helpers::{spawn_app, MARKETPLACE_KEY};
use std::path::Path;

/// Runs `dts-ledger <args>` off the test's runtime: exit code, stdout, stderr.
async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
            .args(&args)
            .env_remove("LEDGER_CONFIG")
            .env_remove("LEDGER_MARKETPLACE_KEY")
            .env_remove("LEDGER_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn config_with_key(dir: &Path) -> String {
    let path = dir.join("marketplace.toml");
    std::fs::write(
        &path,
        format!("[marketplace]\nkey = \"{MARKETPLACE_KEY}\"\n"),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_marketplace_command_buys_renews_and_signs_in_like_the_marketplace() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let url = app.address.clone();

    let (code, stdout, stderr) = run(args(&[
        "--config",
        &config,
        "marketplace",
        "createInstance",
        "--url",
        &url,
        "--param",
        "jdPin=alice",
        "--param",
        "orderBizId=7001",
        "--param",
        "orderId=1",
        "--param",
        "serviceCode=dts",
        "--param",
        "skuId=FW_GOODS-500232-1",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let reply: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reply["instanceId"], "7001");
    assert_eq!(app.order("7001").await["bytesGranted"], 1u64 << 40);

    let (code, stdout, _) = run(args(&[
        "--config",
        &config,
        "marketplace",
        "renewInstance",
        "--url",
        &url,
        "--instance",
        "7001",
        "--param",
        "orderId=2",
        "--param",
        "expiredOn=2031-01-01 00:00:00",
    ]))
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("\"success\":true"), "{stdout}");
    assert_eq!(app.order("7001").await["bytesGranted"], 2 * (1u64 << 40));

    // A refused callback exits 1 and shows the service's answer.
    let (code, stdout, _) = run(args(&[
        "--config",
        &config,
        "marketplace",
        "renewInstance",
        "--url",
        &url,
        "--instance",
        "no-such-order",
        "--param",
        "orderId=3",
        "--param",
        "expiredOn=2031-01-01 00:00:00",
    ]))
    .await;
    assert_eq!(code, 1);
    assert!(stdout.contains("\"success\":false"), "{stdout}");

    // `verify` prints the sign-in link the marketplace would open; the service accepts it.
    let (code, link, _) = run(args(&[
        "--config",
        &config,
        "marketplace",
        "verify",
        "--url",
        &url,
        "--instance",
        "7001",
    ]))
    .await;
    assert_eq!(code, 0);
    let link = link.trim();
    assert!(link.starts_with(&format!("{url}/v1/cloud/order?action=verify&")));
    let response = app.http.get(link).send().await.unwrap();
    assert_eq!(response.status(), 302);
}

#[tokio::test]
async fn the_marketplace_command_without_a_key_says_how_to_get_one() {
    let (code, _, stderr) = run(args(&[
        "marketplace",
        "expiredInstance",
        "--instance",
        "1",
        "--url",
        "http://127.0.0.1:9",
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("dts-ledger init"), "{stderr}");
}

/// The signed URL is a credential (a `createInstance` retried from it answers the `authCode`):
/// when the service cannot be reached, the error names where it was sent, never the token.
#[tokio::test]
async fn the_marketplace_command_that_cannot_reach_the_service_prints_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, stdout, stderr) = run(args(&[
        "--config",
        &config,
        "marketplace",
        "createInstance",
        "--url",
        &url,
        "--param",
        "jdPin=alice",
        "--param",
        "orderBizId=7001",
        "--param",
        "orderId=1",
        "--param",
        "serviceCode=dts",
        "--param",
        "skuId=FW_GOODS-500232-1",
    ]))
    .await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains(&url), "says where it tried: {stderr}");
    assert!(!stderr.contains("token"), "{stderr}");
    assert!(!stdout.contains("token"), "{stdout}");
    assert!(
        !stderr.contains("orderBizId"),
        "nor the signed query: {stderr}"
    );
}

#[tokio::test]
async fn init_writes_a_configuration_the_service_accepts_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("try");
    let target_arg = target.display().to_string();
    let (code, stdout, stderr) = run(args(&["init", &target_arg])).await;
    assert_eq!(code, 0, "{stderr}");
    let file = target.join("dts-ledger.toml");
    assert!(stdout.contains(&file.display().to_string()));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("[marketplace]\n"));

    // The configuration is complete enough to sign a callback with.
    let file_arg = file.display().to_string();
    let (code, link, stderr) = run(args(&[
        "--config",
        &file_arg,
        "marketplace",
        "verify",
        "--instance",
        "1",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(link.contains("token="));

    let (code, _, stderr) = run(args(&["init", &target_arg])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("exists already"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

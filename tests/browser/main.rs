//! The console in a real browser: headless Chromium driven through WebDriver (`chromedriver`),
//! against the real service and a real PostgreSQL. Screenshots are saved under the cargo target
//! directory (`tmp/console-screenshots/`).
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Without `chromedriver` these
//! tests fail, saying so: a console nobody looked at is not tested.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use chrono::Utc;
use dts_ledger::configuration::Config;
use fantoccini::{Client, ClientBuilder, Locator};
use helpers::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long chromedriver may take to listen, or a page to show what a click led to: well under a
/// second on a quiet machine; a busy CI runner gets 30 s (attempts × poll).
const WAIT_ATTEMPTS_MAX: u32 = 300;
const POLL_MS: u64 = 100;

/// `chromedriver` on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver_path() -> PathBuf {
    let candidates = [
        std::env::var_os("CHROMEDRIVER").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromedriver")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("chromedriver"))
                    .find(|path| path.exists())
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the browser tests need it \
                 (apt-get install chromium chromium-driver, as .ci/run does)"
            )
        })
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver_path())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
        downloads: tempfile::tempdir().unwrap(),
    };
    for _ in 0..WAIT_ATTEMPTS_MAX {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

async fn browser(driver: &Driver, accept_language: &str) -> Client {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1280,1100".to_owned(),
        format!("--lang={accept_language}"),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    args.push("--hide-scrollbars".to_owned());
    let mut options = json!({
        "args": args,
        "prefs": {
            "intl.accept_languages": accept_language,
            "download.default_directory": driver.downloads.path(),
            "download.prompt_for_download": false,
        },
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artifacts().join(name), png).unwrap();
}

/// Waits until the browser shows `path` (after a click that navigates).
async fn arrive(client: &Client, path: &str) {
    for _ in 0..WAIT_ATTEMPTS_MAX {
        if client.current_url().await.unwrap().path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    panic!("the browser never reached {path}");
}

/// Waits until the page shows `text` (after a click that navigates); returns the page.
async fn showing(client: &Client, text: &str) -> String {
    let mut html = String::new();
    for _ in 0..WAIT_ATTEMPTS_MAX {
        html = page(client).await;
        if html.contains(text) {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    panic!("the page never showed {text:?}: {html}");
}

async fn page(client: &Client) -> String {
    client.source().await.expect("the page source")
}

/// The marketplace's login-free link for a package, signed as the marketplace signs it.
fn verify_url(app: &TestApp, instance_id: &str) -> String {
    verify_url_at(app, instance_id, Utc::now())
}

/// The link stamped `at`: a link works once, so two sign-ins in one second need two stamps.
fn verify_url_at(app: &TestApp, instance_id: &str, at: chrono::DateTime<Utc>) -> String {
    let query = signed_query(
        &[
            ("action", "verify"),
            ("instanceId", instance_id),
            ("timeStamp", &cst(at)),
        ],
        MARKETPLACE_KEY,
    );
    format!("{}/v1/cloud/order?{query}", app.address)
}

/// Alice holds two packages (one nearly used up, with two tasks); Bob holds one with a task.
async fn seeded_app() -> TestApp {
    let app = spawn_app_with(Config {
        // Links point at the test server itself (plain http, so cookies are not `Secure`).
        public_url: None,
        renew_url: Some("https://market.example.com/renew".into()),
        ..test_config()
    })
    .await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let expiry = cst(Utc::now() + chrono::Duration::days(365));
    let bought = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "alice"),
            ("orderBizId", "biz-2"),
            ("orderId", "order-biz-2"),
            ("serviceCode", "dts"),
            ("skuId", "FW_GOODS-500232-1"),
            ("expiredOn", &expiry),
        ])
        .await;
    assert_eq!(bought.status(), 200);
    app.buy("biz-3", "bob", SMALL_SKU).await;
    for (task, package) in [
        ("task-a", "biz-1"),
        ("task-b", "biz-1"),
        ("task-c", "biz-3"),
    ] {
        assert_eq!(app.create_task(task, package).await.0, 201);
    }
    let results = app
        .traffic(json!([
            report("task-a", "r-1", 8_500),
            report("task-b", "r-2", 700)
        ]))
        .await;
    assert_eq!(results.len(), 2);
    app
}

#[tokio::test]
async fn a_customer_signs_in_renews_destroys_switches_language_and_signs_out() {
    let driver = start_driver().await;
    let app = seeded_app().await;
    let client = browser(&driver, "zh-CN").await;

    // Sign in through the marketplace's link: the browser lands on a clean URL.
    let first_link = verify_url(&app, "biz-1");
    client.goto(&first_link).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.as_str(), format!("{}/console", app.address));
    let html = page(&client).await;
    assert!(html.contains("我的流量包") && html.contains("biz-1") && html.contains("biz-2"));
    assert!(
        !html.contains("biz-3") && !html.contains("task-c"),
        "Bob's things stay hidden"
    );
    assert!(
        html.contains("流量已用超过 80%"),
        "the low-balance banner: {html}"
    );
    let renew_link = client
        .find(Locator::Css("#package-biz-1 a.renew-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(
        renew_link.as_deref(),
        Some("https://market.example.com/renew?instanceId=biz%2D1")
    );
    screenshot(&client, "console-zh.png").await;

    // The usage chart and the statement of a package.
    client
        .find(Locator::Css("#package-biz-1 a.details"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let details = showing(&client, "usage-table").await;
    assert!(
        details.contains("<svg") && details.contains("order-biz-1"),
        "{details}"
    );
    screenshot(&client, "console-package-zh.png").await;
    client
        .find(Locator::Id("statement-csv"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let statement = driver.downloads.path().join("statement-biz-1.csv");
    let mut csv = String::new();
    for _ in 0..WAIT_ATTEMPTS_MAX {
        if let Ok(text) = std::fs::read_to_string(&statement) {
            csv = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    assert!(
        csv.starts_with("\u{feff}日期,项目,") && csv.contains("order-biz-1"),
        "{csv:?}"
    );

    // The link works once: opened again, it earns nothing.
    client.goto(&first_link).await.unwrap();
    // A page in the browser's language, not the marketplace's JSON.
    assert!(page(&client).await.contains("此登录链接已使用过"));
    // A ticket is spent once exchanged: going back to it shows how to come back instead.
    let ticket_url = app
        .http
        .get(verify_url_at(
            &app,
            "biz-1",
            Utc::now() - chrono::Duration::seconds(10),
        ))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    client.goto(&ticket_url).await.unwrap();
    client.goto(&ticket_url).await.unwrap();
    assert!(page(&client).await.contains("登录链接已失效"));
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();

    // Renew (续费) task-a onto the other package, chosen from the list.
    client
        .find(Locator::Css("#task-task-a a.renew"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = showing(&client, "renew-submit").await;
    assert!(form.contains("biz-2") && !form.contains("biz-3"), "{form}");
    screenshot(&client, "console-renew-zh.png").await;
    client
        .find(Locator::Id("to-biz-2"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Id("renew-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console").await;
    let row = client
        .find(Locator::Css("#task-task-a"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(row.contains("biz-2") && row.contains("运行中"), "{row}");

    // Another customer's package, by form: the option's value swapped for Bob's package.
    client
        .goto(&format!("{}/console/tasks/task-a/renew", app.address))
        .await
        .unwrap();
    client
        .execute(
            // Nothing is preselected: the tampered choice is checked too, as a customer would.
            "const to = document.querySelector('input[name=to]'); \
             to.value = 'biz-3'; to.checked = true;",
            vec![],
        )
        .await
        .unwrap();
    client
        .find(Locator::Id("renew-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The refusal is the page the form's answer navigates to: wait for it.
    showing(&client, "不属于您的账号").await;
    // …and by URL.
    client
        .goto(&format!("{}/console/tasks/task-c/destroy", app.address))
        .await
        .unwrap();
    let refused = page(&client).await;
    assert!(
        refused.contains("不属于您的账号") && !refused.contains("销毁后"),
        "{refused}"
    );
    let task_c: serde_json::Value = app
        .get_as("/v1/tasks/task-c", REPORTER_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (task_c["instanceId"].as_str(), task_c["state"].as_str()),
        (Some("biz-3"), Some("running"))
    );

    // Destroy task-b, through its confirmation page.
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Css("#task-task-b a.destroy"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    showing(&client, "销毁后数据不可找回").await;
    screenshot(&client, "console-destroy-zh.png").await;
    client
        .find(Locator::Id("destroy-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console").await;
    // Its row is gone and the page says what was done.
    let after = page(&client).await;
    assert!(!after.contains("id=\"task-task-b\""), "{after}");
    assert!(after.contains("任务 task-b 已销毁"), "{after}");

    // English, remembered across pages.
    client
        .find(Locator::Id("lang-switch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let english = showing(&client, "My traffic packages").await;
    assert!(
        english.contains("My traffic packages")
            && english.contains("Renew it to keep its tasks running"),
        "{english}"
    );
    client.refresh().await.unwrap();
    assert!(page(&client).await.contains("My traffic packages"));
    screenshot(&client, "console-en.png").await;

    // A phone's width: one column, nothing cut off.
    client.set_window_size(390, 1100).await.unwrap();
    screenshot(&client, "console-phone-en.png").await;
    client.set_window_size(1280, 1100).await.unwrap();

    // Sign out: back at the sign-in form, and the console is closed.
    client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/login").await;
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("{}/console/login", app.address)
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_sign_in_form_takes_the_order_credential_and_refuses_wrong_ones() {
    let driver = start_driver().await;
    let app = seeded_app().await;
    let client = browser(&driver, "en-US").await;
    let reply: serde_json::Value = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "alice"),
            ("orderBizId", "biz-4"),
            ("orderId", "order-biz-4"),
            ("serviceCode", "dts"),
            ("skuId", SMALL_SKU),
        ])
        .await
        .json()
        .await
        .unwrap();
    let code = reply["appInfo"]["authCode"].as_str().unwrap().to_owned();

    client
        .goto(&format!("{}/console/login", app.address))
        .await
        .unwrap();
    assert!(page(&client)
        .await
        .contains("Sign in with your order credential"));
    let fill = |id: &'static str, code: String| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Id("instanceId"))
                .await
                .unwrap()
                .clear()
                .await
                .unwrap();
            client
                .find(Locator::Id("instanceId"))
                .await
                .unwrap()
                .send_keys(id)
                .await
                .unwrap();
            client
                .find(Locator::Id("authCode"))
                .await
                .unwrap()
                .send_keys(&code)
                .await
                .unwrap();
            client
                .find(Locator::Id("login"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    fill("biz-4", "0".repeat(32)).await;
    // The refusal is a new page: wait for it rather than look at the form the click left.
    let wrong = client
        .wait()
        .for_element(Locator::Id("login-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        wrong,
        "The instance id or the order credential is not right."
    );
    screenshot(&client, "console-login-en.png").await;
    fill("biz-4", code).await;
    arrive(&client, "/console").await;
    let html = page(&client).await;
    assert!(html.contains("biz-4") && html.contains("biz-1") && !html.contains("biz-3"));
    client.close().await.unwrap();
}

/// The API reference page renders the document in a browser under the page's own content security
/// policy: Swagger UI is scripts and styles from this server only, so a policy that blocked any of
/// it would leave the page blank.
#[tokio::test]
async fn the_api_reference_page_renders_the_document_under_its_policy() {
    let app = spawn_app().await;
    let driver = start_driver().await;
    let client = browser(&driver, "en").await;
    client
        .goto(&format!("{}/docs", app.address))
        .await
        .expect("the page loads");
    arrive(&client, "/docs/").await;
    let html = showing(&client, "/v1/cloud/order").await;
    for rendered in [
        "dts-ledger",
        "/v1/traffic",
        "/v1/tasks/{taskId}",
        "/console/login",
    ] {
        assert!(html.contains(rendered), "{rendered} is not on the page");
    }
    // Drawn by the page's scripts, and styled by its stylesheet (unstyled, an operation has no
    // rounded border).
    let drawn = client
        .execute(
            "const blocks = document.querySelectorAll('.opblock'); \
             return [blocks.length, getComputedStyle(blocks[0]).borderTopLeftRadius];",
            vec![],
        )
        .await
        .expect("a script runs");
    assert!(drawn[0].as_u64().unwrap() > 20, "operations drawn: {drawn}");
    assert_ne!(drawn[1], "0px", "the stylesheet applies: {drawn}");
    screenshot(&client, "api-reference.png").await;
    client.close().await.unwrap();
}

/// Ids are the marketplace's and the reporters' choice, and a browser resolves whatever a link
/// says: each id in a link or a form's action is one path segment, so clicking it acts on that
/// task or package and on nothing else.
#[tokio::test]
async fn ids_that_look_like_paths_open_and_act_on_their_own_task() {
    let driver = start_driver().await;
    let app = spawn_app_with(Config {
        public_url: None,
        ..test_config()
    })
    .await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    app.buy("../../v1/ledger?x=", "alice", SMALL_SKU).await;
    for task in ["T2", "../T2/destroy?", "a/b?c#d"] {
        assert_eq!(app.create_task(task, "biz-1").await.0, 201, "{task}");
    }
    let client = browser(&driver, "en-US").await;
    client.goto(&verify_url(&app, "biz-1")).await.unwrap();
    arrive(&client, "/console").await;

    // The package whose id looks like a way out of the console: its page, in the console.
    client
        .find(Locator::Css(
            r#"section[id="package-../../v1/ledger?x="] a.details"#,
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/packages/..%2F..%2Fv1%2Fledger%3Fx%3D").await;
    assert!(showing(&client, "usage-table")
        .await
        .contains("../../v1/ledger?x="));

    // The task a/b?c#d: its renew form.
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Css(r#"tr[id="task-a/b?c#d"] a.renew"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/tasks/a%2Fb%3Fc%23d/renew").await;
    assert!(page(&client).await.contains("a/b?c#d"));

    // The task ../T2/destroy?: its own destroy form destroys it, and T2 runs on.
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Css(r#"tr[id="task-../T2/destroy?"] a.destroy"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/tasks/..%2FT2%2Fdestroy%3F/destroy").await;
    client
        .find(Locator::Id("destroy-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console").await;
    let state = |id: &'static str| {
        let app = &app;
        async move {
            let task: serde_json::Value = app
                .get_as(&format!("/v1/tasks/{id}"), REPORTER_TOKEN)
                .await
                .json()
                .await
                .unwrap();
            task["state"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(state("..%2FT2%2Fdestroy%3F").await, "destroyed");
    assert_eq!(state("T2").await, "running");
    assert_eq!(state("a%2Fb%3Fc%23d").await, "running");
    client.close().await.unwrap();
}

/// Login CSRF: a page of another site posts the sign-in form with the attacker's own credential,
/// to sign its visitor in to the attacker's account. The browser shows the refusal, and the
/// visitor is signed in to nothing.
#[tokio::test]
async fn a_sign_in_form_posted_from_another_site_signs_no_one_in() {
    let driver = start_driver().await;
    let app = spawn_app_with(Config {
        public_url: None,
        ..test_config()
    })
    .await;
    let code = app.buy_with_code("biz-9", "mallory").await;
    let client = browser(&driver, "en-US").await;
    // The visitor has used the console before, so the sign-in form's cookie is there too.
    client
        .goto(&format!("{}/console/login", app.address))
        .await
        .unwrap();
    let evil = format!(
        "<!DOCTYPE html><form method=post action=\"{}/console/login\">\
         <input type=hidden name=instanceId value=biz-9>\
         <input type=hidden name=authCode value={code}>\
         <input type=hidden name=csrf value=guessed>\
         <button id=win type=submit>Win a prize</button></form>",
        app.address
    );
    client
        .goto(&format!(
            "data:text/html,{}",
            helpers::form_encode(&evil).replace('+', "%20")
        ))
        .await
        .unwrap();
    client
        .find(Locator::Id("win"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = client
        .wait()
        .for_element(Locator::Id("login-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("sign in again on this page"), "{refused}");
    screenshot(&client, "console-login-forged-en.png").await;
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/console/login",
        "signed in to nothing"
    );
    client.close().await.unwrap();
}

/// Saves the page at the desktop width and at a phone's (390 px), and checks that nothing runs
/// past the phone's width.
async fn both_widths(client: &Client, name: &str) {
    screenshot(client, &format!("{name}.png")).await;
    client.set_window_size(390, 1100).await.unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "{name} overflows a phone by {overflow} px"
    );
    screenshot(client, &format!("{name}-phone.png")).await;
    client.set_window_size(1280, 1100).await.unwrap();
}

/// An account as a customer holds one: a 2 TB package most of it used by three tasks for a few
/// days, a 10 KB one used up with overage, a 1 TB one expiring in four days, and a fresh one.
async fn busy_account() -> TestApp {
    let app = spawn_app_with(Config {
        public_url: None,
        renew_url: Some("https://market.example.com/renew".into()),
        buy_url: Some("https://market.example.com/dts".into()),
        ..test_config()
    })
    .await;
    let buy = |id: &'static str, sku: &'static str, days: i64| {
        let app = &app;
        async move {
            let expiry =
                cst(Utc::now() + chrono::Duration::days(days) + chrono::Duration::hours(1));
            let bought = app
                .callback(&[
                    ("action", "createInstance"),
                    ("jdPin", "alice"),
                    ("orderBizId", id),
                    ("orderId", &format!("order-{id}")),
                    ("serviceCode", "dts"),
                    ("skuId", sku),
                    ("expiredOn", &expiry),
                ])
                .await;
            assert_eq!(bought.status(), 200);
        }
    };
    buy("biz-big", "FW_GOODS-500232-2", 300).await;
    buy("biz-used", SMALL_SKU, 300).await;
    buy("biz-soon", "FW_GOODS-500232-1", 4).await;
    buy("biz-fresh", "FW_GOODS-500232-1", 365).await;
    for (task, package) in [
        ("etl-orders", "biz-big"),
        ("sync-users", "biz-big"),
        ("backup-logs", "biz-big"),
        ("mirror-cn", "biz-used"),
        ("migrate-eu", "biz-soon"),
    ] {
        assert_eq!(app.create_task(task, package).await.0, 201);
    }
    const GIB: i64 = 1 << 30;
    // Those days were weeks ago and last week: the server's clock cannot be set back, so the
    // ledger's is.
    let age = |days: i64| {
        let app = &app;
        async move {
            app.db
                .move_events_back(
                    &format!("{days} days"),
                    "true",
                    &format!(
                        "UPDATE packages SET created_at = created_at - interval '{days} days';"
                    ),
                )
                .await;
        }
    };
    app.traffic(json!([
        report("etl-orders", "r-1", 900 * GIB),
        report("sync-users", "r-2", 500 * GIB),
        report("backup-logs", "r-3", 200 * GIB),
        report("mirror-cn", "r-4", 12_000),
        report("migrate-eu", "r-5", 40 * GIB),
    ]))
    .await;
    age(7).await;
    app.traffic(json!([
        report("etl-orders", "r-6", 36 * GIB),
        report("sync-users", "r-7", 24 * GIB),
        report("migrate-eu", "r-8", 10 * GIB),
    ]))
    .await;
    age(3).await;
    app.traffic(json!([
        report("etl-orders", "r-9", 6 * GIB),
        report("sync-users", "r-10", 4 * GIB),
    ]))
    .await;
    app
}

#[tokio::test]
async fn a_busy_account_reads_plainly_in_both_languages_and_on_a_phone() {
    let driver = start_driver().await;
    let app = busy_account().await;
    let client = browser(&driver, "zh-CN").await;

    // The landing page wears the console's style.
    client.goto(&format!("{}/", app.address)).await.unwrap();
    let background = client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        background, "rgb(243, 245, 248)",
        "the landing page is styled"
    );
    screenshot(&client, "landing.png").await;

    client.goto(&verify_url(&app, "biz-big")).await.unwrap();
    arrive(&client, "/console").await;
    for lang in ["zh", "en"] {
        if lang == "en" {
            client
                .goto(&format!("{}/console", app.address))
                .await
                .unwrap();
            client
                .find(Locator::Id("lang-switch"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            showing(&client, "My traffic packages").await;
        }
        // The overview: state, percentage, days left and runway, seen without hovering.
        let big = client
            .find(Locator::Css("#package-biz-big"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (runs_out, used) = match lang {
            "zh" => ("天后用完", "已使用 81.5%"),
            _ => ("runs out in about", "81.5% used"),
        };
        assert!(big.contains(runs_out) && big.contains(used), "{big}");
        let soon = client
            .find(Locator::Css("#package-biz-soon .status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            soon,
            if lang == "zh" {
                "即将到期"
            } else {
                "Expiring soon"
            }
        );
        let used_up = client
            .find(Locator::Css("#package-biz-used .status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(used_up, if lang == "zh" { "已用尽" } else { "Used up" });
        both_widths(&client, &format!("console-{lang}")).await;

        // The package page: its tasks, largest first, and the chart split by them.
        client
            .goto(&format!("{}/console/packages/biz-big?days=90", app.address))
            .await
            .unwrap();
        let first = client
            .find(Locator::Css("#package-task-usage tbody tr th"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(first, "etl-orders");
        client.find(Locator::Id("chart-legend")).await.unwrap();
        // The screen-reader table of 90 days takes no room on the page.
        let room = client
            .execute(
                "const main = document.querySelector('main'); \
                 return document.documentElement.scrollHeight - \
                        (main.getBoundingClientRect().bottom + window.scrollY);",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            room.as_f64().unwrap() < 40.0,
            "the page scrolls {room} px past its content"
        );
        both_widths(&client, &format!("console-package-{lang}")).await;
        client
            .execute(
                "document.getElementById('statement').scrollIntoView();",
                vec![],
            )
            .await
            .unwrap();
        both_widths(&client, &format!("console-statement-{lang}")).await;

        // A package without traffic: no scale, a sentence.
        client
            .goto(&format!("{}/console/packages/biz-fresh", app.address))
            .await
            .unwrap();
        let chart = client
            .find(Locator::Css("svg.chart"))
            .await
            .unwrap()
            .html(false)
            .await
            .unwrap();
        assert!(
            chart.contains("chart-empty") && !chart.contains("KiB"),
            "{chart}"
        );

        // 续费: says what it does, chooses nothing, shows what decides the choice.
        client
            .goto(&format!("{}/console/tasks/mirror-cn/renew", app.address))
            .await
            .unwrap();
        let checked = client
            .execute(
                "return document.querySelectorAll('input[name=to]:checked').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(checked, 0, "nothing is chosen for the customer");
        let choice = client
            .find(Locator::Css("#choice-biz-big"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            choice.contains("etl-orders") && choice.contains(runs_out),
            "{choice}"
        );
        client.find(Locator::Id("buy-link")).await.unwrap();
        both_widths(&client, &format!("console-renew-{lang}")).await;
    }

    // Renewing says it did, on the page it lands on.
    client
        .find(Locator::Id("to-biz-fresh"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Id("renew-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = client
        .wait()
        .for_element(Locator::Id("flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(flash, "Task mirror-cn now draws from package biz-fresh.");
    client.close().await.unwrap();
}

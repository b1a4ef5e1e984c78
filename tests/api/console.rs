// Over 600 lines: the console's end-to-end tests over HTTP, one subject in one file.
//! The customer console over HTTP: sign-in by ticket and by credential, the session cookie, what a
//! customer sees, and the renew and destroy actions with their guards.

use crate::helpers::*;
use chrono::Utc;
use serde_json::Value;

pub(crate) const CONSOLE: &str = "https://dts.example.com";

pub(crate) async fn get_with(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The login-free link of a package, as the `verify` callback hands it out (path only).
async fn verify_link(app: &TestApp, instance_id: &str) -> String {
    let now = cst(Utc::now());
    let response = app
        .callback(&[
            ("action", "verify"),
            ("instanceId", instance_id),
            ("timeStamp", &now),
        ])
        .await;
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{CONSOLE}/console/enter?ticket=")),
        "{location}"
    );
    location.trim_start_matches(CONSOLE).to_owned()
}

/// Signs in through a `verify` link; returns the `Cookie` header of the session.
pub(crate) async fn sign_in(app: &TestApp, instance_id: &str) -> String {
    let link = verify_link(app, instance_id).await;
    let response = app.get(&link).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console");
    cookie_pair(&set_cookie(&response, "dts_console").expect("a session cookie"))
}

#[tokio::test]
async fn a_verify_link_opens_one_session_and_lands_on_a_clean_url() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let link = verify_link(&app, "biz-1").await;
    assert!(!link.contains("session"), "{link}");

    let response = app.get(&link).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console");
    let cookie = set_cookie(&response, "dts_console").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/console",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");

    let page = get_with(&app, "/console", &cookie_pair(&cookie)).await;
    assert_eq!(page.status(), 200);
    assert!(
        set_cookie(&page, "dts_console").is_some(),
        "the session is renewed while used"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("biz-1") && html.contains("DTS 10KB"),
        "{html}"
    );

    // The same ticket again, a forged one, and no session: refused, with the way back.
    let replay = app.get(&link).await;
    assert_eq!(replay.status(), 403);
    assert!(set_cookie(&replay, "dts_console").is_none());
    let html = replay.text().await.unwrap();
    assert!(
        html.contains("href=\"/console/login\"") && html.contains("登录链接已失效"),
        "{html}"
    );
    let forged = format!("{}0", &link[..link.len() - 1]);
    assert_eq!(app.get(&forged).await.status(), 403);
    assert_eq!(app.get("/console/enter").await.status(), 403);
    let anonymous = app.get("/console").await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/console/login");
    let tampered = format!("{}0", cookie_pair(&cookie));
    assert_eq!(get_with(&app, "/console", &tampered).await.status(), 303);
}

#[tokio::test]
async fn a_ticket_is_single_use_across_serve_processes() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let other = app.sibling(test_config());
    let link = verify_link(&app, "biz-1").await;
    assert_eq!(other.get(&link).await.status(), 303);
    assert_eq!(app.get(&link).await.status(), 403);
}

#[tokio::test]
async fn a_customer_sees_every_package_of_the_account_and_nothing_of_others() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    app.buy("biz-2", "alice", "FW_GOODS-500232-1").await;
    app.buy("biz-3", "bob", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    assert_eq!(app.create_task("task-b", "biz-3").await.0, 201);
    let cookie = sign_in(&app, "biz-1").await;
    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("biz-1") && html.contains("biz-2") && html.contains("task-a"),
        "{html}"
    );
    assert!(
        !html.contains("biz-3") && !html.contains("task-b") && !html.contains("bob"),
        "{html}"
    );
    // 1 TiB granted, exact on hover; Chinese by default.
    assert!(
        html.contains("title=\"1,099,511,627,776 字节\">1.00 TiB<"),
        "{html}"
    );
    assert!(html.contains("lang=\"zh-CN\""), "{html}");

    // Bob's task by URL: refused like an unknown one.
    let foreign = get_with(&app, "/console/tasks/task-b/renew", &cookie).await;
    assert_eq!(foreign.status(), 404);
    assert!(!foreign.text().await.unwrap().contains("biz-3"));
    assert_eq!(
        get_with(&app, "/console/tasks/task-b/destroy", &cookie)
            .await
            .status(),
        404
    );
    assert_eq!(
        get_with(&app, "/console/tasks/nope/destroy", &cookie)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn the_order_credential_signs_in_and_wrong_pairs_are_counted_alike() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "alice").await;
    let form = app.get("/console/login").await.text().await.unwrap();
    assert!(
        form.contains("for=\"instanceId\"") && form.contains("for=\"authCode\""),
        "{form}"
    );

    let answer = |id: &str, code: &str| {
        let (id, code) = (id.to_owned(), code.to_owned());
        let app = &app;
        async move {
            let response = app.login(&id, &code).await;
            let status = response.status().as_u16();
            let cookie = set_cookie(&response, "dts_console");
            (status, cookie, response.text().await.unwrap())
        }
    };
    let (status, cookie, _) = answer("biz-1", &code).await;
    assert_eq!(status, 303);
    let html = get_with(&app, "/console", &cookie_pair(&cookie.unwrap()))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("biz-1"));

    let wrong_code = answer("biz-1", "0123456789abcdef0123456789abcdef").await;
    let unknown_id = answer("biz-404", &code).await;
    assert_eq!((wrong_code.0, unknown_id.0), (401, 401));
    assert!(wrong_code.1.is_none() && unknown_id.1.is_none());
    let message = |html: &str| {
        html.split("id=\"login-error\"")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        message(&wrong_code.2),
        message(&unknown_id.2),
        "never says which half was wrong"
    );

    // The first wrong pair above was one; nine more reach the per-instance limit, after which
    // even the right pair waits for the window to end.
    for _ in 0..9 {
        assert_eq!(answer("biz-1", "wrong").await.0, 401);
    }
    let (status, cookie, html) = answer("biz-1", &code).await;
    assert_eq!((status, cookie), (429, None));
    assert!(html.contains("15"), "{html}");
    // A second process agrees (the counts are in the database).
    let other = app.sibling(test_config());
    let response = other.login("biz-1", &code).await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn renew_moves_a_task_as_the_customer_from_the_console() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    app.buy("biz-2", "alice", SMALL_SKU).await;
    app.buy("biz-3", "bob", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    let cookie = sign_in(&app, "biz-1").await;
    let form = get_with(&app, "/console/tasks/task-a/renew", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("value=\"biz-2\"") && !form.contains("value=\"biz-3\""),
        "{form}"
    );
    let (csrf, version) = (field(&form, "csrf"), field(&form, "version"));

    // Without the CSRF token, and onto Bob's package: refused, nothing recorded.
    let forged = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", "0"), ("version", &version), ("to", "biz-2")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let foreign = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", &csrf), ("version", &version), ("to", "biz-3")],
    )
    .await;
    assert_eq!(foreign.status(), 404);
    assert!(app.events_of("TaskRebound").await.is_empty());

    // Traffic meanwhile does not make the form stale: only the task's binding and state do.
    app.traffic(serde_json::json!([report("task-a", "r-1", 100)]))
        .await;
    let done = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", &csrf), ("version", &version), ("to", "biz-2")],
    )
    .await;
    assert_eq!(done.status(), 303);
    let task: Value = app
        .get_as("/v1/tasks/task-a", REPORTER_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["instanceId"], "biz-2");
    let events = app.events_of("TaskRebound").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["metadata"]["source"], "console");
    assert_eq!(events[0]["metadata"]["actor"], "customer:alice");

    // The same form again is stale: the task changed since; its current state is shown.
    let stale = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", &csrf), ("version", &version), ("to", "biz-1")],
    )
    .await;
    assert_eq!(stale.status(), 409);
    let html = stale.text().await.unwrap();
    assert!(
        html.contains("id=\"stale\"") && html.contains("biz-2"),
        "{html}"
    );
    assert_eq!(app.events_of("TaskRebound").await.len(), 1);
}

#[tokio::test]
async fn destroy_asks_first_and_then_is_final() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    let cookie = sign_in(&app, "biz-1").await;
    let confirm = get_with(&app, "/console/tasks/task-a/destroy", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("销毁后数据不可找回"), "{confirm}");
    assert!(
        app.events_of("TaskDestroyed").await.is_empty(),
        "asking changes nothing"
    );
    let (csrf, version) = (field(&confirm, "csrf"), field(&confirm, "version"));
    let done = post_form(
        &app,
        "/console/tasks/task-a/destroy",
        &cookie,
        &[("csrf", &csrf), ("version", &version)],
    )
    .await;
    assert_eq!(done.status(), 303);
    let task: Value = app
        .get_as("/v1/tasks/task-a", REPORTER_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "destroyed");
    let events = app.events_of("TaskDestroyed").await;
    assert_eq!(events[0]["metadata"]["actor"], "customer:alice");
    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("task-a"),
        "destroyed tasks leave the list: {html}"
    );
}

#[tokio::test]
async fn logout_ends_the_session_for_good() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let cookie = sign_in(&app, "biz-1").await;
    let page = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let csrf = field(&page, "csrf");
    assert_eq!(
        post_form(&app, "/console/logout", &cookie, &[("csrf", "bad")])
            .await
            .status(),
        403
    );
    let out = post_form(&app, "/console/logout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/console/login?why=signed_out");
    assert!(set_cookie(&out, "dts_console")
        .unwrap()
        .contains("Max-Age=0"));
    let after = get_with(&app, "/console", &cookie).await;
    assert_eq!(after.status(), 303, "the old cookie opens nothing");
}

#[tokio::test]
async fn english_by_switch_or_by_the_browser_chinese_otherwise() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let cookie = sign_in(&app, "biz-1").await;
    let zh = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(zh.contains("我的流量包"), "{zh}");
    let en = app
        .http
        .get(format!("{}/console", app.address))
        .header("cookie", &cookie)
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        en.contains("My traffic packages") && en.contains("lang=\"en\""),
        "{en}"
    );
    let switch = get_with(&app, "/console/lang/en?next=overview", &cookie).await;
    assert_eq!(switch.status(), 303);
    let lang = cookie_pair(&set_cookie(&switch, "dts_lang").unwrap());
    let remembered = get_with(&app, "/console", &format!("{cookie}; {lang}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(remembered.contains("My traffic packages"), "{remembered}");
    let back = get_with(&app, "/console/lang/xx?next=https://evil.example", &cookie).await;
    assert_eq!(back.headers()["location"], "/console");
}

#[tokio::test]
async fn a_package_page_charts_daily_use_and_its_statement_downloads_as_csv() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    app.buy("biz-3", "bob", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    app.traffic(serde_json::json!([report("task-a", "r-1", 8_500)]))
        .await;
    let results = app
        .traffic(serde_json::json!([report("task-a", "r-2", 2_000)]))
        .await;
    assert_eq!(results[0]["action"], "stop", "{results:?}");
    let today = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive()
        .to_string();
    let cookie = sign_in(&app, "biz-1").await;

    let page = get_with(&app, "/console/packages/biz-1", &cookie).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<svg") && html.contains("class=\"stop\""),
        "{html}"
    );
    let table = html
        .split("id=\"usage-table\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        table.matches("<tr>").count(),
        1 + 30,
        "a header and 30 days"
    );
    let row = table
        .split(&format!("<th scope=\"row\">{today}</th>"))
        .nth(1)
        .unwrap();
    assert!(
        row.starts_with("<td>10.25 KiB (10,500 字节)</td><td>是</td>"),
        "{row}"
    );
    assert!(
        html.contains("order-biz-1") && html.contains("购买"),
        "the grant: {html}"
    );
    let ninety = get_with(&app, "/console/packages/biz-1?days=90", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let table = ninety
        .split("id=\"usage-table\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(table.matches("<tr>").count(), 1 + 90);

    let csv = get_with(&app, "/console/packages/biz-1/statement.csv", &cookie).await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("statement-biz-1.csv"));
    let text = csv.text().await.unwrap();
    // The statement of a package bought today: its opening, its purchase and today.
    assert!(text.starts_with("\u{feff}日期,项目,实例 ID,"), "{text}");
    assert!(
        text.contains(",购买,biz-1,,order-biz-1,10000,,10000,10.00,CNY,"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{today},每日用量,biz-1,,,,10500,-500,,,是")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 4, "and the task's row: {text}");

    // Bob's package: neither its page nor its statement.
    assert_eq!(
        get_with(&app, "/console/packages/biz-3", &cookie)
            .await
            .status(),
        404
    );
    let foreign = get_with(&app, "/console/packages/biz-3/statement.csv", &cookie).await;
    assert_eq!(foreign.status(), 404);
    assert!(!foreign.text().await.unwrap().contains("日期,"));
}

/// The overview of a large customer: 50 packages and 500 tasks, all shown. Prints how long the
/// overview takes over loopback (median and slowest of 20), the figure docs/performance.md quotes;
/// speed is measured here, not asserted.
#[tokio::test]
async fn an_overview_of_50_packages_and_500_tasks_shows_them_all() {
    const PACKAGES: usize = 50;
    const TASKS_PER_PACKAGE: usize = 10;
    const RUNS: usize = 20;
    let app = spawn_app().await;
    for p in 0..PACKAGES {
        app.buy(&format!("big-{p:02}"), "alice", "FW_GOODS-500232-1")
            .await;
    }
    // One task for every package at a time: tasks of one package would queue on its lock.
    for t in 0..TASKS_PER_PACKAGE {
        let creates = (0..PACKAGES).map(|p| {
            let (task, package) = (format!("task-{p:02}-{t}"), format!("big-{p:02}"));
            let app = &app;
            async move { app.create_task(&task, &package).await.0 }
        });
        for status in futures::future::join_all(creates).await {
            assert_eq!(status, 201);
        }
    }
    let cookie = sign_in(&app, "big-00").await;
    let mut times_ms = Vec::new();
    let mut html = String::new();
    for _ in 0..RUNS {
        let started = std::time::Instant::now();
        let response = get_with(&app, "/console", &cookie).await;
        html = response.text().await.unwrap();
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    assert_eq!(html.matches("<section class=\"package\"").count(), PACKAGES);
    assert_eq!(
        html.matches("<tr id=\"task-").count(),
        PACKAGES * TASKS_PER_PACKAGE
    );
    let gzipped = app
        .http
        .get(format!("{}/console", app.address))
        .header("cookie", &cookie)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped_bytes = gzipped.bytes().await.unwrap().len();
    println!("console overview gzipped: {gzipped_bytes} bytes");
    times_ms.sort_by(f64::total_cmp);
    println!(
        "console overview, {PACKAGES} packages and {} tasks ({} bytes of HTML): median {:.1} ms, slowest {:.1} ms of {RUNS}",
        PACKAGES * TASKS_PER_PACKAGE,
        html.len(),
        times_ms[RUNS / 2],
        times_ms[RUNS - 1]
    );
}

#[tokio::test]
async fn a_session_ends_when_left_unused_for_its_lifetime() {
    let app = spawn_app_with(dts_ledger::configuration::Config {
        session_ttl_s: 1,
        ..test_config()
    })
    .await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let cookie = sign_in(&app, "biz-1").await;
    assert_eq!(get_with(&app, "/console", &cookie).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let after = get_with(&app, "/console", &cookie).await;
    assert_eq!(after.status(), 303);
    assert_eq!(after.headers()["location"], "/console/login?why=ended");
}

#[tokio::test]
async fn wrong_pairs_from_one_address_are_limited_whatever_the_instance() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "alice").await;
    // 30 wrong pairs, each for another instance so that no per-instance limit is reached.
    let form = app.login_form_with(&app.http).await;
    let wrong = (0..30).map(|n| {
        let (app, form) = (&app, &form);
        async move {
            // Sign-ins beyond their share of the pool are refused untried (503): try again.
            for _ in 0..100 {
                let response = app
                    .login_with(&app.http, form, &format!("guess-{n}"), &"0".repeat(32))
                    .await;
                if response.status() != 503 {
                    return response.status().as_u16();
                }
            }
            panic!("the sign-in never had its turn")
        }
    });
    for status in futures::future::join_all(wrong).await {
        assert_eq!(status, 401);
    }
    let right = app.login("biz-1", &code).await;
    assert_eq!(right.status(), 429, "this address used up its attempts");
}

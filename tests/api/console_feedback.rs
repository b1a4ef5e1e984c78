//! What the console tells a customer over HTTP: where each package stands, what a form did, where
//! a lapsed session goes, pages for addresses and links that lead nowhere, and the statement.

use crate::console::{get_with, post_form, sign_in};
use crate::helpers::*;
use chrono::Utc;
use serde_json::json;

/// Buys a package of `sku` that expires `days` days (and an hour) from now.
async fn buy_expiring(app: &TestApp, instance_id: &str, jd_pin: &str, sku: &str, days: i64) {
    let expiry = cst(Utc::now() + chrono::Duration::days(days) + chrono::Duration::hours(1));
    let bought = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", jd_pin),
            ("orderBizId", instance_id),
            ("orderId", &format!("order-{instance_id}")),
            ("serviceCode", "dts"),
            ("skuId", sku),
            ("expiredOn", &expiry),
        ])
        .await;
    assert_eq!(bought.status(), 200);
}

/// The HTML of one package's card on the overview.
fn card<'a>(html: &'a str, instance_id: &str) -> &'a str {
    let start = html
        .find(&format!(
            "<section class=\"package\" id=\"package-{instance_id}\""
        ))
        .unwrap_or_else(|| panic!("no card for {instance_id}: {html}"));
    let rest = &html[start..];
    &rest[..rest.find("</section>").unwrap()]
}

async fn get_in(app: &TestApp, path: &str, cookie: &str, lang: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_overview_says_where_each_package_stands_in_words_and_figures() {
    let app = spawn_app_with(dts_ledger::configuration::Config {
        renew_url: Some("https://market.example.com/renew".into()),
        ..test_config()
    })
    .await;
    app.buy("biz-used", "alice", SMALL_SKU).await;
    buy_expiring(&app, "biz-soon", "alice", "FW_GOODS-500232-1", 4).await;
    buy_expiring(&app, "biz-fresh", "alice", "FW_GOODS-500232-1", 200).await;
    app.buy("biz-gone", "alice", SMALL_SKU).await;
    for (task, package) in [("t-used", "biz-used"), ("t-gone", "biz-gone")] {
        assert_eq!(app.create_task(task, package).await.0, 201);
    }
    // 2,000 bytes past the 10,000 of the package: overage.
    app.traffic(json!([
        report("t-used", "r-1", 12_000),
        report("t-gone", "r-2", 1_000)
    ]))
    .await;
    let released = app
        .callback(&[("action", "releaseInstance"), ("instanceId", "biz-gone")])
        .await;
    assert_eq!(released.status(), 200);
    let cookie = sign_in(&app, "biz-soon").await;
    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();

    let used = card(&html, "biz-used");
    assert!(used.contains("status-used_up\">已用尽<"), "{used}");
    assert!(!used.contains(">正常<"), "{used}");
    assert!(
        used.contains("<span class=\"used-percent\">已使用 120.0%</span>"),
        "{used}"
    );
    assert!(
        used.contains("超额 1.95 KiB：流量用尽后、任务停止前仍在传输的字节"),
        "{used}"
    );
    assert!(
        used.contains("DTS 10KB 规格含 9.77 KiB（10,000 字节）"),
        "{used}"
    );

    let soon = card(&html, "biz-soon");
    assert!(soon.contains("status-expiring\">即将到期<"), "{soon}");
    assert!(
        soon.contains("<span class=\"days-left\">剩余 4 天</span>"),
        "{soon}"
    );
    assert!(soon.contains("到期后其任务将停止"), "{soon}");
    assert!(
        soon.contains("href=\"https://market.example.com/renew?instanceId=biz%2Dsoon\""),
        "the expiry banner links to renewing: {soon}"
    );
    assert!(soon.contains("已使用 0.0%"), "{soon}");
    assert!(
        soon.contains("DTS 1TB 规格含 1.00 TiB（1,099,511,627,776 字节）"),
        "{soon}"
    );

    let fresh = card(&html, "biz-fresh");
    assert!(fresh.contains("status-active\">正常<"), "{fresh}");
    assert!(
        fresh.contains("剩余 200 天") && !fresh.contains("banner"),
        "{fresh}"
    );

    let gone = card(&html, "biz-gone");
    assert!(gone.contains("status-released\">已释放<"), "{gone}");
    assert!(
        gone.contains("流量包已释放，剩余的 8.79 KiB 流量已作废。"),
        "what it forfeited: {gone}"
    );
    assert!(gone.contains("已作废"), "{gone}");
    assert!(
        html.contains("id=\"units-note\""),
        "how TB and TiB relate: {html}"
    );

    // The window is configurable: a 3-day window leaves a 4-day expiry alone.
    let narrow = app.sibling(dts_ledger::configuration::Config {
        expiry_warning_days: 3,
        ..test_config()
    });
    let html = get_with(&narrow, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let soon = card(&html, "biz-soon");
    assert!(
        soon.contains("status-active\">正常<") && !soon.contains("banner"),
        "{soon}"
    );

    let english = get_in(&app, "/console", &cookie, "en")
        .await
        .text()
        .await
        .unwrap();
    assert!(!english.contains("Renew in time"), "{english}");
    assert!(
        english.contains("Renew it to run them again."),
        "the used-up banner: {english}"
    );
}

#[tokio::test]
async fn forms_say_what_they_did_and_a_lapsed_session_returns_to_its_page() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "alice").await;
    app.buy("biz-2", "alice", "FW_GOODS-500232-1").await;
    for task in ["task-a", "task-b"] {
        assert_eq!(app.create_task(task, "biz-1").await.0, 201);
    }
    let cookie = sign_in(&app, "biz-1").await;

    // Renew: the overview says what happened, once.
    let form = get_with(&app, "/console/tasks/task-a/renew", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !form.contains("checked"),
        "nothing is chosen for the customer: {form}"
    );
    let (csrf, version) = (field(&form, "csrf"), field(&form, "version"));
    let renewed = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", &csrf), ("version", &version), ("to", "biz-2")],
    )
    .await;
    assert_eq!(renewed.status(), 303);
    let flash = cookie_pair(&set_cookie(&renewed, "dts_flash").expect("a message"));
    let with_flash = format!("{cookie}; {flash}");
    let after = get_with(&app, "/console", &with_flash).await;
    assert!(set_cookie(&after, "dts_flash")
        .unwrap()
        .contains("Max-Age=0"));
    let html = after.text().await.unwrap();
    assert!(
        html.contains("id=\"flash\"") && html.contains("任务 task-a 已改用流量包 biz-2。"),
        "{html}"
    );
    let again = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(!again.contains("id=\"flash\""), "shown once");
    // A message nobody signed, or signed for another session, says nothing.
    let forged = flash.replace("renewed.", "destroyed.");
    let html = get_with(&app, "/console", &format!("{cookie}; {forged}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("id=\"flash\""), "{html}");
    let other = sign_in(&app, "biz-2").await;
    let html = get_with(&app, "/console", &format!("{other}; {flash}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("id=\"flash\""), "{html}");

    // Destroy says so too.
    let form = get_with(&app, "/console/tasks/task-b/destroy", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let destroyed = post_form(
        &app,
        "/console/tasks/task-b/destroy",
        &cookie,
        &[
            ("csrf", &field(&form, "csrf")),
            ("version", &field(&form, "version")),
        ],
    )
    .await;
    let flash = cookie_pair(&set_cookie(&destroyed, "dts_flash").unwrap());
    let html = get_in(&app, "/console", &format!("{cookie}; {flash}"), "en")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Task task-b is destroyed."), "{html}");

    // Sign out: the sign-in form says it happened.
    let page = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let out = post_form(
        &app,
        "/console/logout",
        &cookie,
        &[("csrf", &field(&page, "csrf"))],
    )
    .await;
    assert_eq!(out.headers()["location"], "/console/login?why=signed_out");
    let login = app
        .get("/console/login?why=signed_out")
        .await
        .text()
        .await
        .unwrap();
    assert!(login.contains("您已退出登录。"), "{login}");

    // The form of the ended session, submitted: nothing is done, the customer is told so and
    // comes back to the form after signing in again.
    let late = post_form(
        &app,
        "/console/tasks/task-a/renew",
        &cookie,
        &[("csrf", &csrf), ("version", &version), ("to", "biz-1")],
    )
    .await;
    assert_eq!(late.status(), 303);
    let location = late.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        "/console/login?next=%2Fconsole%2Ftasks%2Ftask%2Da%2Frenew&why=expired"
    );
    assert_eq!(
        app.task("task-a").await["instanceId"],
        "biz-2",
        "nothing was done"
    );
    let html = app.get(&location).await.text().await.unwrap();
    assert!(html.contains("您的登录已过期，操作未执行。"), "{html}");
    assert_eq!(field(&html, "next"), "/console/tasks/task-a/renew");
    let form = app.login_form_with(&app.http).await;
    let signed_in = app
        .http
        .post(format!("{}/console/login", app.address))
        .header("cookie", &form.cookie)
        .form(&[
            ("csrf", form.csrf.as_str()),
            ("instanceId", "biz-1"),
            ("authCode", code.as_str()),
            ("next", "/console/tasks/task-a/renew"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers()["location"],
        "/console/tasks/task-a/renew"
    );
    // A page asked for with the ended session's cookie says it ended (nothing was posted).
    let asked = get_with(&app, "/console/packages/biz-1", &cookie).await;
    assert_eq!(
        asked.headers()["location"],
        "/console/login?next=%2Fconsole%2Fpackages%2Fbiz%2D1&why=ended"
    );

    // Only the console's own pages are gone back to.
    for next in [
        "//evil.example/x",
        "https://evil.example/",
        "/console/../v1/ledger",
        "/console/%2e%2E/v1/ledger",
        "/console/login",
        "/console/logout",
        "/console/x\\y",
    ] {
        let form = app.login_form_with(&app.http).await;
        let response = app
            .http
            .post(format!("{}/console/login", app.address))
            .header("cookie", &form.cookie)
            .form(&[
                ("csrf", form.csrf.as_str()),
                ("instanceId", "biz-1"),
                ("authCode", code.as_str()),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["location"], "/console", "{next}");
    }
}

#[tokio::test]
async fn unknown_pages_refused_links_and_outages_answer_pages_in_the_request_language() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let cookie = sign_in(&app, "biz-1").await;

    for (lang, text) in [("en-US", "No such page"), ("zh-CN", "页面不存在")] {
        let response = get_in(&app, "/console/no-such-page", "", lang).await;
        assert_eq!(response.status(), 404);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(response.text().await.unwrap().contains(text), "{lang}");
    }

    // The marketplace's sign-in link for a package nobody knows, opened in a browser.
    let query = signed_query(
        &[
            ("action", "verify"),
            ("instanceId", "biz-nobody"),
            ("timeStamp", &cst(Utc::now())),
        ],
        MARKETPLACE_KEY,
    );
    let browser = app
        .http
        .get(format!("{}/v1/cloud/order?{query}", app.address))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 404);
    assert!(browser.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = browser.text().await.unwrap();
    assert!(
        html.contains("names a package we do not know") && html.contains("href=\"/console/login\""),
        "{html}"
    );
    // The marketplace's own call still gets its JSON.
    let machine = app.callback_raw(&query).await;
    assert_eq!(machine.status(), 404);
    assert_eq!(machine.headers()["content-type"], "application/json");

    // The database is away: the page says so in the customer's language.
    let broken = app.sibling_without_database();
    for (lang, text) in [
        ("en", "The service is unavailable for a moment."),
        ("zh-CN", "服务暂时不可用"),
    ] {
        let response = get_in(&broken, "/console", &cookie, lang).await;
        assert_eq!(response.status(), 503);
        assert!(response.text().await.unwrap().contains(text), "{lang}");
    }
}

#[tokio::test]
async fn the_statement_speaks_the_page_language_and_keeps_a_running_balance() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    app.report("task-a", "r-1", 3_000).await;
    let cookie = sign_in(&app, "biz-1").await;

    let page = get_with(&app, "/console/packages/biz-1", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<td class=\"amount\">¥10.00</td>"), "{page}");

    let csv = get_in(&app, "/console/packages/biz-1/statement.csv", &cookie, "en")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("\u{feff}Date,Item,Instance id,Task id,Order,"),
        "{csv}"
    );
    let today = (Utc::now() + chrono::Duration::hours(8)).date_naive();
    assert_eq!(lines[1], format!("{today},Opening balance,biz-1,,,,,0,,,"));
    assert!(
        lines[2].contains(",Purchase,biz-1,,order-biz-1,10000,,10000,10.00,CNY,"),
        "plain decimals: {csv}"
    );
    assert!(
        lines[3].starts_with(&format!("{today},Daily use,biz-1,,,,3000,7000,,,no")),
        "{csv}"
    );
    assert!(
        !csv.contains("TrafficConsumed") && !csv.contains("OrderCreated"),
        "no internal names: {csv}"
    );
    let days = lines.iter().filter(|l| l.contains(",Daily use,")).count();
    assert_eq!(days, 1, "only the days the package existed: {csv}");

    let chinese = get_with(&app, "/console/packages/biz-1/statement.csv", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        chinese.starts_with("\u{feff}日期,项目,实例 ID,任务 ID,订单号,增加流量（字节）"),
        "{chinese}"
    );
    assert!(
        chinese.contains(",期初余额,") && chinese.contains(",每日用量,"),
        "{chinese}"
    );
}

/// Moves the ledger's history back by `days` (the superuser, with the append-only trigger off
/// for the statement): the server's clock cannot be set back, and a runway needs a day of use.
async fn age_ledger(app: &TestApp, days: i64) {
    app.db
        .move_events_back(
            &format!("{days} days"),
            "true",
            &format!("UPDATE packages SET created_at = created_at - interval '{days} days';"),
        )
        .await;
}

#[tokio::test]
async fn runway_and_what_each_task_drew_from_the_package_are_on_its_pages() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", "FW_GOODS-500232-1").await;
    app.buy("biz-2", "alice", "FW_GOODS-500232-1").await;
    for task in ["big", "small", "mover"] {
        assert_eq!(app.create_task(task, "biz-1").await.0, 201);
    }
    let cookie = sign_in(&app, "biz-1").await;
    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("用量历史不足 1 天"), "no runway yet: {html}");

    const GIB: i64 = 1 << 30;
    app.traffic(json!([
        report("big", "r-1", 60 * GIB),
        report("small", "r-2", 10 * GIB),
        report("mover", "r-3", 2 * GIB),
    ]))
    .await;
    // Moved onto biz-2: what it drew from biz-1 stays biz-1's.
    let moved = app
        .post_as(
            "/v1/tasks/mover/renew",
            REPORTER_TOKEN,
            &json!({ "instanceId": "biz-2" }),
        )
        .await;
    assert_eq!(moved.status(), 200);
    age_ledger(&app, 2).await;
    app.report("mover", "r-4", GIB).await;

    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let card_1 = card(&html, "biz-1");
    assert!(
        card_1.contains("按近 7 天的用量，约 ") && card_1.contains(" 天后用完（"),
        "{card_1}"
    );
    // Grouped by package: each package's tasks under its own heading.
    let group = html.split("id=\"tasks-of-biz-1\"").nth(1).unwrap();
    let group = &group[..group.find("</tbody>").unwrap()];
    assert!(
        group.contains("task-big") && !group.contains("task-mover"),
        "{group}"
    );
    assert!(html.contains("id=\"tasks-of-biz-2\""), "{html}");

    let page = get_in(&app, "/console/packages/biz-1", &cookie, "en")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("At the last 7 days' rate, runs out in about "),
        "{page}"
    );
    let table = page.split("id=\"package-task-usage\"").nth(1).unwrap();
    let table = &table[..table.find("</table>").unwrap()];
    let order: Vec<usize> = ["drawn-big", "drawn-small", "drawn-mover"]
        .iter()
        .map(|id| table.find(id).unwrap_or_else(|| panic!("{id}: {table}")))
        .collect();
    assert!(
        order[0] < order[1] && order[1] < order[2],
        "largest first: {table}"
    );
    assert!(
        table.contains("60.00 GiB") && table.contains("2.00 GiB"),
        "{table}"
    );
    assert!(
        page.contains("id=\"chart-legend\""),
        "the chart by task: {page}"
    );
    let fresh = get_with(&app, "/console/packages/biz-2", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let table = fresh.split("id=\"package-task-usage\"").nth(1).unwrap();
    assert!(
        table.contains("drawn-mover")
            && table[..table.find("</table>").unwrap()].contains("1.00 GiB"),
        "only what it drew from this package: {table}"
    );

    let csv = get_in(&app, "/console/packages/biz-1/statement.csv", &cookie, "en")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&format!(",Task use,biz-1,big,,,{},", 60 * GIB)),
        "per-task rows: {csv}"
    );

    let form = get_with(&app, "/console/tasks/small/renew", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let choice = form.split("id=\"choice-biz-2\"").nth(1).unwrap();
    assert!(choice.contains("剩余 1023.00 GiB"), "{choice}");
    assert!(choice.contains("已在使用的任务：mover"), "{choice}");
    assert!(form.contains("不会付款"), "says what it does: {form}");
}

//! The console and its sign-ins under attack: a flood of wrong sign-ins, one address locking
//! others out, replayed sign-in links, a released package's credential, cross-site sign-in forms,
//! ids that look like paths, and sessions that never end.

use crate::helpers::*;
use chrono::Utc;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONSOLE: &str = "https://dts.example.com";

async fn get_with(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A signed `verify` callback's query for `instance_id`, stamped `at`.
fn verify_query(instance_id: &str, at: chrono::DateTime<Utc>) -> String {
    signed_query(
        &[
            ("action", "verify"),
            ("instanceId", instance_id),
            ("timeStamp", &cst(at)),
        ],
        MARKETPLACE_KEY,
    )
}

/// Exchanges a `verify` redirect's ticket; returns the session's `Cookie` header, if one opened.
async fn enter(app: &TestApp, verified: reqwest::Response) -> Option<String> {
    assert_eq!(verified.status(), 302);
    let location = verified.headers()["location"].to_str().unwrap().to_owned();
    let entered = app.get(location.trim_start_matches(CONSOLE)).await;
    set_cookie(&entered, "dts_console").map(|c| cookie_pair(&c))
}

fn median_and_max(mut times_ms: Vec<f64>) -> (f64, f64) {
    times_ms.sort_by(f64::total_cmp);
    (times_ms[times_ms.len() / 2], times_ms[times_ms.len() - 1])
}

/// About 200 keep-alive loops of wrong sign-ins from one address, as in the report that found
/// it: while they run, readiness, traffic, task reads and marketplace callbacks all still answer
/// (their latencies are printed, not asserted).
#[tokio::test]
async fn a_flood_of_wrong_sign_ins_leaves_the_pool_to_everyone_else() {
    const LOOPS: usize = 200;
    const PROBES: usize = 20;
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    // An attacker fetches the form like anyone (its CSRF pair is no secret to its own reader).
    let form = app.login_form_with(&app.http).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..LOOPS)
        .map(|n| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let (http, address, form) = (app.http.clone(), app.address.clone(), form.clone());
            tokio::spawn(async move {
                // Bounded: the loop ends when the probes are done, or after 2,000 tries.
                for attempt in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = http
                        .post(format!("{address}/console/login"))
                        .header("cookie", &form.cookie)
                        .form(&[
                            ("csrf", form.csrf.as_str()),
                            ("instanceId", &format!("guess-{n}-{attempt}")),
                            ("authCode", &"0".repeat(32)),
                        ])
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        let _ = response.bytes().await;
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Let the flood take hold: every loop has had an answer, so all are at it.
    let started = Instant::now();
    while answered.load(Ordering::Relaxed) < LOOPS && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flood_before = answered.load(Ordering::Relaxed);

    let buy = signed_query(
        &[
            ("action", "createInstance"),
            ("jdPin", "alice"),
            ("orderBizId", "biz-1"),
            ("orderId", "order-biz-1"),
            ("serviceCode", "dts"),
            ("skuId", SMALL_SKU),
        ],
        MARKETPLACE_KEY,
    );
    let mut times: [Vec<f64>; 4] = Default::default();
    for round in 0..PROBES {
        let timed = Instant::now();
        let ready = app.get("/readyz").await;
        times[0].push(timed.elapsed().as_secs_f64() * 1e3);
        assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

        let timed = Instant::now();
        let traffic = app
            .post_as(
                "/v1/traffic",
                REPORTER_TOKEN,
                &serde_json::json!({ "reports": [report("task-a", &format!("r-{round}"), 1)] }),
            )
            .await;
        times[1].push(timed.elapsed().as_secs_f64() * 1e3);
        assert_eq!(traffic.status(), 200, "{}", traffic.text().await.unwrap());

        let timed = Instant::now();
        let task = app.get_as("/v1/tasks/task-a", REPORTER_TOKEN).await;
        times[2].push(timed.elapsed().as_secs_f64() * 1e3);
        assert_eq!(task.status(), 200);

        let timed = Instant::now();
        let callback = app.callback_raw(&buy).await;
        times[3].push(timed.elapsed().as_secs_f64() * 1e3);
        assert_eq!(callback.status(), 200, "{}", callback.text().await.unwrap());
        // Spread over a few of the flood's 500 ms waves, not inside the gap between two.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The flood was still at it when the probes were done: more sign-ins are answered after.
    let flood_during = answered.load(Ordering::Relaxed) - flood_before;
    let waited = Instant::now();
    while answered.load(Ordering::Relaxed) == flood_before + flood_during
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_after = answered.load(Ordering::Relaxed) - flood_before - flood_during;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    assert!(flood_after > 0, "the flood ran until the others were done");
    for (name, times) in [
        "GET /readyz",
        "POST /v1/traffic",
        "GET /v1/tasks/…",
        "callback",
    ]
    .iter()
    .zip(times)
    {
        let (median, max) = median_and_max(times);
        println!(
            "under {LOOPS} sign-in loops ({flood_during} sign-ins answered meanwhile): {name} \
             median {median:.1} ms, slowest {max:.1} ms of {PROBES}"
        );
    }
}

/// One address hammering someone else's package can neither lock its owner out nor, once over
/// its own limit, count against the package at all.
#[tokio::test]
async fn one_address_cannot_lock_a_customer_out() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "alice").await;
    let code_2 = app.buy_with_code("biz-2", "bob").await;
    let (owner, mallory, office) = (
        app.client_from("127.0.0.2"),
        app.client_from("127.0.0.3"),
        app.client_from("127.0.0.4"),
    );
    // Someone at the office mistypes the code once.
    let office_form = app.login_form_with(&office).await;
    let once = app
        .login_with(&office, &office_form, "biz-1", "mistyped")
        .await;
    assert_eq!(once.status(), 401);

    // Mallory uses up her own address's attempts elsewhere, then goes on at biz-1: those tries
    // are refused untried, and biz-1's count does not move.
    let form = app.login_form_with(&mallory).await;
    for n in 0..login_limits::PER_ADDRESS {
        let response = app
            .login_with(&mallory, &form, &format!("guess-{n}"), "0")
            .await;
        assert_eq!(response.status(), 401);
    }
    for _ in 0..20 {
        let response = app.login_with(&mallory, &form, "biz-1", "0").await;
        assert_eq!(response.status(), 429);
    }
    // So the office, which tried biz-1 before, still may.
    let right = app.login_with(&office, &office_form, "biz-1", &code).await;
    assert_eq!(right.status(), 303, "{}", right.text().await.unwrap());

    // Another address within its own limit locks biz-2 (ten wrong tries): from then on, addresses
    // that tried biz-2 are refused untried, and a clean one still gets a try.
    let eve = app.client_from("127.0.0.5");
    let form = app.login_form_with(&eve).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            app.login_with(&eve, &form, "biz-2", "0")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..login_limits::PER_INSTANCE], [401; 10]);
    assert_eq!(statuses[login_limits::PER_INSTANCE..], [429, 429]);
    assert_eq!(
        app.login_with(&eve, &form, "biz-2", &code_2).await.status(),
        429,
        "eve tried biz-2: the lock holds for her, even with the right code"
    );
    let owner_form = app.login_form_with(&owner).await;
    let right = app.login_with(&owner, &owner_form, "biz-2", &code_2).await;
    assert_eq!(right.status(), 303, "the owner, from a clean address");
    assert!(set_cookie(&right, "dts_console").is_some());
}

/// The limits docs/console.md states, as the tests use them.
mod login_limits {
    pub const PER_ADDRESS: usize = 30;
    pub const PER_INSTANCE: usize = 10;
}

#[tokio::test]
async fn a_verify_link_signs_in_once_across_processes() {
    let app = spawn_app().await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let other = app.sibling(test_config());
    let query = verify_query("biz-1", Utc::now());
    assert!(enter(&app, app.callback_raw(&query).await).await.is_some());
    // The same link again, in this process or another, re-encoded or reordered: refused, and no
    // ticket handed out.
    for replay in [
        app.callback_raw(&query).await,
        other.callback_raw(&query).await,
        other
            .callback_raw(&query.replacen("action=verify", "action=%76erify", 1))
            .await,
    ] {
        assert_eq!(replay.status(), 403);
        assert!(replay.headers().get("location").is_none());
        let body: Value = replay.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert!(body["message"].as_str().unwrap().contains("used"), "{body}");
    }
    // A new link (another timeStamp) is another sign-in.
    let later = verify_query("biz-1", Utc::now() - chrono::Duration::seconds(60));
    assert!(enter(&app, app.callback_raw(&later).await).await.is_some());
}

#[tokio::test]
async fn a_released_package_signs_no_one_in() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "alice").await;
    app.buy("biz-2", "alice", SMALL_SKU).await;
    // A ticket from before the release, to exchange after it.
    let early = app
        .callback_raw(&verify_query(
            "biz-1",
            Utc::now() - chrono::Duration::seconds(2),
        ))
        .await;
    assert_eq!(early.status(), 302);
    let released = app
        .callback(&[("action", "releaseInstance"), ("instanceId", "biz-1")])
        .await;
    assert_eq!(released.status(), 200);

    let login = app.login("biz-1", &code).await;
    assert_eq!(login.status(), 403);
    assert!(set_cookie(&login, "dts_console").is_none());
    assert!(login.text().await.unwrap().contains("已释放"));

    let verified = app.callback_raw(&verify_query("biz-1", Utc::now())).await;
    assert_eq!(verified.status(), 409);
    assert!(verified.headers().get("location").is_none());
    assert_eq!(enter(&app, early).await, None, "nor a ticket issued before");

    // The account's other package still opens it.
    let other = app.callback_raw(&verify_query("biz-2", Utc::now())).await;
    assert!(enter(&app, other).await.is_some());
}

/// Another site cannot sign a visitor in to its own account (login CSRF): the form's token and
/// its cookie go together, and a post another site sent is refused, with a page saying so.
#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let app = spawn_app().await;
    let code = app.buy_with_code("biz-1", "mallory").await;
    let post = |cookie: Option<String>,
                csrf: Option<String>,
                headers: Vec<(&'static str, &'static str)>| {
        let (app, code) = (&app, code.clone());
        async move {
            let mut fields = vec![("instanceId", "biz-1".to_owned()), ("authCode", code)];
            if let Some(csrf) = csrf {
                fields.push(("csrf", csrf));
            }
            let mut request = app
                .http
                .post(format!("{}/console/login", app.address))
                .form(&fields);
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    let form = app.login_form_with(&app.http).await;
    let other = app.login_form_with(&app.http).await;
    let refusals = [
        post(None, None, vec![]).await,
        post(Some(form.cookie.clone()), None, vec![]).await,
        post(None, Some(form.csrf.clone()), vec![]).await,
        post(Some(other.cookie.clone()), Some(form.csrf.clone()), vec![]).await,
        post(
            Some(form.cookie.clone()),
            Some(form.csrf.clone()),
            vec![("sec-fetch-site", "cross-site")],
        )
        .await,
        post(
            Some(form.cookie.clone()),
            Some(form.csrf.clone()),
            vec![("sec-fetch-site", "same-site")],
        )
        .await,
        post(
            Some(form.cookie.clone()),
            Some(form.csrf.clone()),
            vec![("origin", "https://evil.example")],
        )
        .await,
        post(
            Some(form.cookie.clone()),
            Some(form.csrf.clone()),
            vec![("origin", "null")],
        )
        .await,
    ];
    for refused in refusals {
        assert_eq!(refused.status(), 403);
        assert!(set_cookie(&refused, "dts_console").is_none());
        let html = refused.text().await.unwrap();
        assert!(html.contains("id=\"login-error\""), "{html}");
        assert!(html.contains("请在本页重新登录"), "says what to do: {html}");
    }
    // From the form itself, as a browser sends it: signed in.
    let ours = [
        post(
            Some(form.cookie.clone()),
            Some(form.csrf.clone()),
            vec![("sec-fetch-site", "same-origin"), ("origin", CONSOLE)],
        )
        .await,
        post(Some(form.cookie.clone()), Some(form.csrf.clone()), vec![]).await,
    ];
    for signed_in in ours {
        assert_eq!(signed_in.status(), 303);
        assert!(set_cookie(&signed_in, "dts_console").is_some());
    }
}

/// Ids are the reporter's or the marketplace's choice: in a link or a form's action each is one
/// percent-encoded path segment, so it names its own task or package and nothing else.
#[tokio::test]
async fn ids_that_look_like_paths_stay_one_path_segment() {
    let app = spawn_app().await;
    app.buy("../../v1/ledger?x=", "alice", SMALL_SKU).await;
    app.buy("biz-2", "alice", SMALL_SKU).await;
    for task in ["a/b?c#d", "../T2/destroy?", "T2"] {
        assert_eq!(app.create_task(task, "biz-2").await.0, 201, "{task}");
    }
    let query = verify_query("biz-2", Utc::now());
    let cookie = enter(&app, app.callback_raw(&query).await).await.unwrap();
    let html = get_with(&app, "/console", &cookie)
        .await
        .text()
        .await
        .unwrap();
    for link in [
        "href=\"/console/packages/..%2F..%2Fv1%2Fledger%3Fx%3D\"",
        "href=\"/console/tasks/a%2Fb%3Fc%23d/renew\"",
        "href=\"/console/tasks/..%2FT2%2Fdestroy%3F/destroy\"",
    ] {
        assert!(html.contains(link), "{link}: {html}");
    }
    assert!(!html.contains("href=\"/console/tasks/a/b"), "{html}");

    // The encoded links reach their own task and package.
    let page = get_with(
        &app,
        "/console/packages/..%2F..%2Fv1%2Fledger%3Fx%3D",
        &cookie,
    )
    .await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("href=\"/console/packages/..%2F..%2Fv1%2Fledger%3Fx%3D/statement.csv\""),
        "{page}"
    );
    let form = get_with(&app, "/console/tasks/..%2FT2%2Fdestroy%3F/destroy", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("action=\"/console/tasks/..%2FT2%2Fdestroy%3F/destroy\""),
        "{form}"
    );
    let destroyed = app
        .http
        .post(format!(
            "{}/console/tasks/..%2FT2%2Fdestroy%3F/destroy",
            app.address
        ))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", field(&form, "csrf")),
            ("version", field(&form, "version")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(destroyed.status(), 303);
    assert_eq!(app.task("..%2FT2%2Fdestroy%3F").await["state"], "destroyed");
    assert_eq!(app.task("T2").await["state"], "running");

    // The two ids no URL can carry as a segment are refused when they would be created.
    for dots in [".", ".."] {
        let (status, body) = app.create_task(dots, "biz-2").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_task_id"))
        );
        let bought = app
            .callback(&[
                ("action", "createInstance"),
                ("jdPin", "alice"),
                ("orderBizId", dots),
                ("orderId", "order-dots"),
                ("serviceCode", "dts"),
                ("skuId", SMALL_SKU),
            ])
            .await;
        assert_eq!(bought.status(), 400);
    }
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_busy() {
    let app = spawn_app_with(dts_ledger::configuration::Config {
        session_max_s: 2,
        ..test_config()
    })
    .await;
    app.buy("biz-1", "alice", SMALL_SKU).await;
    let query = verify_query("biz-1", Utc::now());
    let cookie = enter(&app, app.callback_raw(&query).await).await.unwrap();
    let mut ended = false;
    // Used every 300 ms, far within the sliding 600 s; bounded at 20 uses (6 s).
    for _ in 0..20 {
        let page = get_with(&app, "/console", &cookie).await;
        if page.status() == 303 {
            assert_eq!(page.headers()["location"], "/console/login?why=ended");
            ended = true;
            break;
        }
        assert_eq!(page.status(), 200);
        let renewed = set_cookie(&page, "dts_console").unwrap();
        let max_age: i64 = renewed
            .split("Max-Age=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            max_age <= 2,
            "the cookie lives no longer than the session: {renewed}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(ended, "the session ended at its absolute lifetime");
}

#[tokio::test]
async fn answers_over_https_carry_hsts_and_over_http_do_not() {
    let https = spawn_app().await;
    for path in ["/healthz", "/console/login", "/v1/tasks/x"] {
        let response = https.get(path).await;
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
    let http = spawn_app_with(dts_ledger::configuration::Config {
        public_url: Some("http://127.0.0.1:8080".into()),
        ..test_config()
    })
    .await;
    let response = http.get("/console/login").await;
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
}

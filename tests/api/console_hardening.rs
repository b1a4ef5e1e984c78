//! The console and its sign-ins under attack: a flood of wrong sign-ins, one address locking
//! others out, cross-site sign-in forms.

use crate::helpers::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONSOLE: &str = "https://dts.example.com";

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

/// The limits the README states, as the tests use them.
mod login_limits {
    pub const PER_ADDRESS: usize = 30;
    pub const PER_INSTANCE: usize = 10;
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

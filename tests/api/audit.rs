// Over 600 lines: the audit commands' end-to-end tests, one subject in one file.
//! The audit commands against a ledger built through the real API: verify names tampering,
//! replay equals the live projections, export and report read what finance books.

use crate::helpers::{cst, report, spawn_app, TestApp, ADMIN_TOKEN, REPORTER_TOKEN, SMALL_SKU};
use chrono::{Duration, Utc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SKU_1TB: &str = "FW_GOODS-500232-1";

/// Purchases, tasks, traffic (some packages running dry), renewals, an expiry, a rebind, a
/// destruction and a release, all over HTTP.
async fn busy_ledger(app: &TestApp, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for p in 0..4 {
        let sku = if p % 2 == 0 { SMALL_SKU } else { SKU_1TB };
        app.buy(&format!("biz-{p}"), "pin-a", sku).await;
        for t in 0..3 {
            app.create_task(&format!("task-{p}-{t}"), &format!("biz-{p}"))
                .await;
        }
    }
    for round in 0..6 {
        let reports: Vec<Value> = (0..20)
            .map(|n| {
                let (p, t) = (rng.gen_range(0..4), rng.gen_range(0..3));
                report(
                    &format!("task-{p}-{t}"),
                    &format!("r-{round}-{n}"),
                    rng.gen_range(1..900),
                )
            })
            .collect();
        app.traffic(json!(reports)).await;
        match round {
            1 => {
                let later = cst(Utc::now() + Duration::days(40));
                app.callback(&[
                    ("action", "renewInstance"),
                    ("instanceId", "biz-0"),
                    ("orderId", "renew-0"),
                    ("expiredOn", &later),
                ])
                .await;
            }
            2 => {
                app.callback(&[("action", "expiredInstance"), ("instanceId", "biz-1")])
                    .await;
            }
            3 => {
                app.post_as(
                    "/v1/tasks/task-1-0/renew",
                    REPORTER_TOKEN,
                    &json!({"instanceId": "biz-3"}),
                )
                .await;
                app.http
                    .delete(format!("{}/v1/tasks/task-3-2", app.address))
                    .bearer_auth(REPORTER_TOKEN)
                    .send()
                    .await
                    .unwrap();
            }
            4 => {
                app.callback(&[
                    ("action", "dilateInstance"),
                    ("instanceId", "biz-2"),
                    ("orderId", "dilate-2"),
                    ("accountNum", "2"),
                ])
                .await;
                app.callback(&[("action", "releaseInstance"), ("instanceId", "biz-0")])
                    .await;
            }
            _ => {}
        }
    }
}

/// Runs `statement` as an insider: the superuser, with the ledger's triggers off for the session.
async fn sql(app: &TestApp, statement: &str) {
    app.db
        .client()
        .await
        .batch_execute(&format!(
            "SET session_replication_role = replica; {statement}"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_passes_then_names_an_altered_a_deleted_and_a_forged_event() {
    let app = spawn_app().await;
    busy_ledger(&app, 1).await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("verify: intact events="), "{out}");
    let last: Vec<u8> = app
        .db
        .client()
        .await
        .query_one("SELECT ledger_hash FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    let last = hex::encode(last);
    assert!(out.contains(&format!("last_hash={last}")), "{out}");

    // Altered: one payload changed behind the triggers.
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT position, stream_id, version, payload::text FROM events
              WHERE event_type = 'TrafficConsumed' ORDER BY position LIMIT 1 OFFSET 5",
            &[],
        )
        .await
        .unwrap();
    let (position, stream, version, payload): (i64, String, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET payload = jsonb_set(payload::jsonb, '{{bytes}}', '1')::json WHERE position = {position};"
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "altered at position {position} (stream {stream}, version {version})"
        )),
        "{out}"
    );
    sql(
        &app,
        &format!(
            "UPDATE events SET payload = '{}'::json WHERE position = {position};",
            payload.replace('\'', "''")
        ),
    )
    .await;
    assert_eq!(app.db.run_cli(&["verify"]).0, 0, "restored");

    // Missing: one row deleted.
    sql(
        &app,
        "CREATE TABLE saved AS SELECT * FROM events WHERE position = 10;
         DELETE FROM events WHERE position = 10;",
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing at position 11"), "{out}");
    assert!(out.contains("position 10 is gone"), "{out}");
    sql(&app, "INSERT INTO events SELECT * FROM saved;").await;
    assert_eq!(app.db.run_cli(&["verify"]).0, 0, "restored");

    // Forged: a row inserted out of band after the last one.
    sql(
        &app,
        "SET session_replication_role = origin;
         INSERT INTO events (position, stream_id, version, event_type, event_version, payload,
                             metadata, recorded_at, prev_hash, hash)
         SELECT (SELECT max(position) + 1 FROM events), 'package-biz-1',
                (SELECT max(version) + 1 FROM events WHERE stream_id = 'package-biz-1'),
                'OrderDilated', 1, '{}', '{}', now(), sha256('forged'), sha256('forged too');",
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("inserted out of band at position"), "{out}");
    assert!(out.contains("stream package-biz-1"), "{out}");
}

#[tokio::test]
async fn replay_equals_the_live_projections_and_reports_a_corrupted_row() {
    let app = spawn_app().await;
    busy_ledger(&app, 2).await;
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("replay: identical events="), "{out}");
    assert!(out.contains("packages=4 tasks=12"), "{out}");

    // Conservation holds in the corrupted row too: only replay can tell it is wrong.
    sql(
        &app,
        "UPDATE packages SET bytes_granted = bytes_granted + 7, bytes_remaining = bytes_remaining + 7
          WHERE instance_id = 'biz-3';
         UPDATE tasks SET bytes_consumed = bytes_consumed + 1 WHERE task_id = 'task-3-0';",
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("replay: DIFFERENT package biz-3 bytes_granted: live"),
        "{out}"
    );
    assert!(out.contains("package biz-3 bytes_remaining"), "{out}");
    assert!(out.contains("task task-3-0 bytes_consumed"), "{out}");
    assert!(out.contains("3 differences"), "{out}");

    let (code, _, err) = app.db.run_cli(&["replay", "--scratch-schema", "replayed"]);
    assert_eq!(code, 1, "{err}");
    let replayed: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT bytes_granted - (SELECT bytes_granted FROM packages WHERE instance_id = 'biz-3')
               FROM replayed.packages WHERE instance_id = 'biz-3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, -7);
}

#[tokio::test]
async fn balances_as_of_a_point_come_from_the_ledger() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", 1_000).await;
    let before: i64 = app.events().await.last().unwrap()["position"]
        .as_i64()
        .unwrap();
    let between = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.report("task-1", "r-2", 500).await;

    let at = |query: String| {
        let app = &app;
        async move {
            let response = app
                .get_as(&format!("/v1/orders/biz-1?asOf={query}"), ADMIN_TOKEN)
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let then = at(before.to_string()).await;
    assert_eq!(then["bytesConsumed"], 1_000);
    assert_eq!(then["asOfPosition"], before);
    let by_time = at(between.to_rfc3339().replace('+', "%2B")).await;
    assert_eq!(by_time["bytesConsumed"], 1_000);
    assert_eq!(at("1".into()).await["bytesConsumed"], 0);
    let bad = app
        .get_as("/v1/orders/biz-1?asOf=yesterday", ADMIN_TOKEN)
        .await;
    assert_eq!(bad.status(), 400);

    let (code, out, _) =
        app.db
            .run_cli(&["replay", "--as-of", &before.to_string(), "--format", "json"]);
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(body["packages"][0]["bytesConsumed"], 1_000);
    let (code, out, _) = app.db.run_cli(&["replay", "--as-of", "now-ish"]);
    assert_eq!(code, 2, "{out}");
}

#[tokio::test]
async fn export_streams_the_ledger_as_csv_and_json_lines() {
    let app = spawn_app().await;
    busy_ledger(&app, 3).await;
    let total = app.events().await.len();
    let (code, csv, err) = app.db.run_cli(&["export", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(csv.starts_with("\u{feff}position,recordedAt,streamId,version,type,instanceId"));
    assert_eq!(csv.lines().count(), total + 1);
    let created = csv.lines().find(|l| l.contains(",OrderCreated,")).unwrap();
    assert!(created.contains(",DTS 10KB,10.00,10.00,CNY,"), "{created}");

    let (code, jsonl, _) = app.db.run_cli(&[
        "export", "--format", "jsonl", "--after", "5", "--until", "9",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let positions: Vec<i64> = lines
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [6, 7, 8, 9]);
    assert!(lines
        .iter()
        .all(|l| l["hash"].as_str().unwrap().len() == 64 && l["data"].is_object()));

    let (code, _, err) = app
        .db
        .run_cli(&["export", "--format", "csv", "--after", "9", "--until", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("before --after"), "{err}");
}

#[tokio::test]
async fn the_monthly_report_balances_and_names_bad_input() {
    let app = spawn_app().await;
    busy_ledger(&app, 4).await;
    let month = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m")
        .to_string();
    let (code, out, err) = app
        .db
        .run_cli(&["report", "--month", &month, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["month"], month);
    assert_eq!(report["currency"], "CNY");
    let totals = &report["totals"];
    let n = |v: &Value| v.as_i64().unwrap();
    assert_eq!(n(&totals["openingBytes"]), 0);
    assert_eq!(
        n(&totals["openingBytes"]) + n(&totals["grantedBytes"])
            - n(&totals["consumedBytes"])
            - n(&totals["forfeitedBytes"]),
        n(&totals["closingBytes"])
    );
    let consumed: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT sum(bytes_consumed)::bigint FROM packages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n(&totals["consumedBytes"]), consumed);
    assert_eq!(report["packages"].as_array().unwrap().len(), 4);
    // Everything granted is either recognized or deferred at the close.
    let money = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let granted: rust_decimal::Decimal = app
        .events()
        .await
        .iter()
        .filter_map(|e| e["data"]["amount"].as_str())
        .map(|a| a.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(
        money(&totals["revenueRecognized"]) + money(&totals["deferredRevenue"]),
        granted
    );

    for bad in ["2026-13", "11-2026", "last month"] {
        let (code, _, err) = app.db.run_cli(&["report", "--month", bad]);
        assert_eq!(code, 2);
        assert!(err.contains("YYYY-MM"), "{err}");
    }
    let (code, _, err) = app
        .db
        .run_cli(&["report", "--month", &month, "--utc-offset", "CST"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn the_monthly_report_on_a_broken_ledger_exits_1() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", 1_000).await;
    let month = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m")
        .to_string();
    assert_eq!(app.db.run_cli(&["report", "--month", &month]).0, 0);

    // The purchase is gone: the task and its traffic follow from nothing.
    sql(
        &app,
        "SET session_replication_role = replica;
         DELETE FROM events WHERE position = 1;",
    )
    .await;
    let (code, out, err) = app.db.run_cli(&["report", "--month", &month]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("BROKEN") && err.contains("biz-1"), "{err}");
}

#[tokio::test]
async fn replay_stops_at_an_event_type_it_does_not_know() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    sql(
        &app,
        "INSERT INTO events (position, stream_id, version, event_type, event_version, payload,
                             metadata, recorded_at, prev_hash, hash)
         VALUES (2, 'package-biz-1', 2, 'OrderRefunded', 1, '{}', '{}', now(),
                 sha256('x'), sha256('y'));",
    )
    .await;
    let (code, _, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("OrderRefunded") && err.contains("position 2"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
        .arg("verify")
        .env(
            "DATABASE_URL",
            "host=/nonexistent-dir port=5432 user=postgres dbname=ledger",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(
        err.contains("/nonexistent-dir") && err.contains("port 5432"),
        "{err}"
    );
    assert!(
        err.contains("no such socket or host"),
        "what to check: {err}"
    );
}

/// The cells of one CSV line, unquoted (RFC 4180: quoted cells double their quotes).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

/// What a spreadsheet would run as a formula.
fn runs_as_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'])
}

#[tokio::test]
async fn ids_and_names_that_look_like_formulas_are_neutralised_in_export_and_report() {
    use dts_ledger::configuration::{Catalog, Sku};
    let mut config = crate::helpers::test_config();
    let mut skus: Vec<Sku> = config.catalog.iter().cloned().collect();
    skus.push(Sku {
        id: projections::ids::SkuId::parse("+SKU-1").unwrap(),
        name: "=IMPORTXML(\"http://x\",\"//a\")".into(),
        bytes: projections::ids::Bytes::new(1 << 30).unwrap(),
        price: "5.00".parse().unwrap(),
        currency: "CNY".into(),
    });
    config.catalog = Catalog::new(skus).unwrap();
    let app = crate::helpers::spawn_app_with(config).await;

    let instance_id = "@SUM(A1)";
    let task_id = "+cmd|' /C calc'!A0";
    let report_id = "=HYPERLINK(\"http://x\",\"click\")";
    let order_id = "-1+1";
    let response = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "pin-a"),
            ("orderBizId", instance_id),
            ("orderId", order_id),
            ("serviceCode", "dts"),
            ("skuId", "+SKU-1"),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let (status, body) = app.create_task(task_id, instance_id).await;
    assert_eq!(status, 201, "{body}");
    let answers = app
        .traffic(json!([
            report(task_id, report_id, 1_000),
            report(task_id, "-2", 500),
            report(task_id, "＝1+2", 250),
        ]))
        .await;
    assert!(
        answers.iter().all(|a| a["status"] == "accepted"),
        "{answers:?}"
    );

    let (code, csv, err) = app.db.run_cli(&["export", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    let header = csv_cells(lines.next().unwrap());
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<Vec<String>> = lines.map(csv_cells).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    for row in &rows {
        for (name, cell) in header.iter().zip(row) {
            assert!(!runs_as_formula(cell), "{name} cell {cell:?} would run");
        }
    }
    let created = rows
        .iter()
        .find(|r| r[column("type")] == "OrderCreated")
        .unwrap();
    assert_eq!(created[column("instanceId")], format!("'{instance_id}"));
    assert_eq!(created[column("orderId")], format!("'{order_id}"));
    assert_eq!(created[column("skuId")], "'+SKU-1");
    assert_eq!(
        created[column("skuName")],
        "'=IMPORTXML(\"http://x\",\"//a\")"
    );
    let mut report_ids: Vec<&str> = rows
        .iter()
        .filter(|r| r[column("type")] == "TrafficConsumed")
        .map(|r| r[column("reportId")].as_str())
        .collect();
    report_ids.sort();
    assert_eq!(report_ids, vec!["'-2", &format!("'{report_id}"), "'＝1+2"]);
    let task_rows = rows
        .iter()
        .filter(|r| r[column("type")] == "TaskCreated")
        .collect::<Vec<_>>();
    assert_eq!(task_rows[0][column("taskId")], format!("'{task_id}"));

    let month = cst(Utc::now())[..7].to_owned();
    let (code, csv, err) = app
        .db
        .run_cli(&["report", "--month", &month, "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<String>> = csv
        .trim_start_matches('\u{feff}')
        .lines()
        .map(csv_cells)
        .collect();
    for cell in rows.iter().flatten() {
        assert!(!runs_as_formula(cell), "report cell {cell:?} would run");
    }
    assert!(
        rows.iter().any(|r| r[0] == format!("'{instance_id}")),
        "{csv}"
    );
}

#[tokio::test]
async fn balances_as_of_any_point_of_a_long_stream_equal_replay() {
    use dts_ledger::store::STREAM_PAGE_EVENTS;
    let app = spawn_app().await;
    app.buy("biz-long", "pin-a", SKU_1TB).await;
    app.create_task("task-long", "biz-long").await;
    // Enough reports that the package's stream spans more than two pages.
    let reports_count = 2 * STREAM_PAGE_EVENTS as usize + 100;
    let reports: Vec<Value> = (0..reports_count)
        .map(|n| report("task-long", &format!("r-{n}"), 1 + n as i64 % 7))
        .collect();
    for chunk in reports.chunks(1_000) {
        let answers = app.traffic(json!(chunk)).await;
        assert!(answers.iter().all(|a| a["status"] == "accepted"));
    }
    let positions: Vec<i64> = app
        .events()
        .await
        .iter()
        .filter(|e| e["streamId"] == "package-biz-long")
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    let page = STREAM_PAGE_EVENTS as usize;
    assert!(positions.len() > 2 * page, "{} events", positions.len());
    let points = [
        positions[0],
        positions[page - 1],
        positions[page],
        positions[page + 1],
        positions[2 * page],
        positions[positions.len() / 2 + 3],
        *positions.last().unwrap(),
    ];
    for point in points {
        let response = app
            .get_as(&format!("/v1/orders/biz-long?asOf={point}"), ADMIN_TOKEN)
            .await;
        assert_eq!(response.status(), 200);
        let served: Value = response.json().await.unwrap();
        let (code, out, err) =
            app.db
                .run_cli(&["replay", "--as-of", &point.to_string(), "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        let replayed: Value = serde_json::from_str(out.trim()).unwrap();
        let package = replayed["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["instanceId"] == "biz-long")
            .unwrap();
        assert_eq!(served["asOfPosition"], point);
        let fields = package.as_object().unwrap();
        assert!(fields.contains_key("bytesConsumed"), "{package}");
        for (name, value) in fields {
            assert_eq!(&served[name], value, "{name} at position {point}");
        }
    }
    let now = Utc::now().to_rfc3339().replace('+', "%2B");
    let latest: Value = app
        .get_as(&format!("/v1/orders/biz-long?asOf={now}"), ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let live = app.order("biz-long").await;
    assert_eq!(latest["bytesConsumed"], live["bytesConsumed"]);
    assert_eq!(latest["bytesRemaining"], live["bytesRemaining"]);
}

/// Rows appended since migration 25 store no `prev_hash`; whoever shows one derives it: the
/// ledger API (on pages of every size, whether or not the stream's event before is on the page)
/// and `export` (from a range starting anywhere) show the stream's event before's hash, and
/// `verify` holds.
#[tokio::test]
async fn the_previous_hash_stored_by_no_new_row_is_shown_derived_everywhere() {
    let app = spawn_app().await;
    busy_ledger(&app, 25).await;
    let stored: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(prev_hash) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    let all = app.events().await;
    assert!(all.len() > 50, "{}", all.len());
    // What each event's previous hash is: its stream's event before's hash.
    let mut last: std::collections::HashMap<String, String> = Default::default();
    let mut expected = Vec::new();
    for event in &all {
        let stream = event["streamId"].as_str().unwrap().to_owned();
        expected.push(last.get(&stream).cloned().unwrap_or_else(|| "0".repeat(64)));
        last.insert(stream, event["hash"].as_str().unwrap().to_owned());
    }
    let shown: Vec<String> = all
        .iter()
        .map(|e| e["prevHash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, expected);
    for limit in [1, 7] {
        let mut after = 0;
        let mut paged = Vec::new();
        loop {
            let page: Value = app
                .get_as(
                    &format!("/v1/ledger?after={after}&limit={limit}"),
                    ADMIN_TOKEN,
                )
                .await
                .json()
                .await
                .unwrap();
            for event in page["events"].as_array().unwrap() {
                paged.push(event["prevHash"].as_str().unwrap().to_owned());
            }
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(paged, expected, "pages of {limit}");
    }
    let (code, lines, err) = app
        .db
        .run_cli(&["export", "--format", "jsonl", "--after", "30"]);
    assert_eq!(code, 0, "{err}");
    let exported: Vec<String> = lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line.get("position").is_some())
        .map(|line| line["prevHash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported, expected[30..]);
    assert_eq!(app.db.run_cli(&["verify"]).0, 0);
}

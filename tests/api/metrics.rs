// Over 600 lines: the exported series and the documents that use them, tested together.
//! `GET /metrics` after a real workload; the checkpointer's verification; the dashboard and alert
//! rules in `docs/` against what the service exports.
//!
//! The recorder is process-global (one per test process, shared by every test app), so counters
//! are compared before and after a workload: they only go up, whatever other tests add.

use crate::helpers::{
    spawn_app, spawn_app_with, test_config, TestApp, ADMIN_TOKEN, SMALL_SKU, SMALL_SKU_BYTES,
};
use actix_web::{web, App, HttpResponse, HttpServer};
use dts_ledger::configuration::{AuditConfig, Config, Secret, WebhookConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One sample line: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: the `# TYPE` of each family, and the samples.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("a label is key=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a sample's value is a number"),
            });
        }
        Scrape { types, samples }
    }

    /// The sum of the samples of `name` carrying every label of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

impl Scrape {
    /// Every sample name: a histogram's `_bucket`, `_sum` and `_count` included.
    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get_as("/metrics", ADMIN_TOKEN).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text().await.unwrap())
}

/// Scrapes until `done` holds; at most ten seconds (the workers run on their own clocks).
async fn scrape_until(app: &TestApp, done: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let scraped = scrape(app).await;
        if done(&scraped) {
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scrape(app).await
}

/// A webhook receiver that accepts everything; its URL.
fn webhook_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new().route(
            "/hook",
            web::post().to(|| async { HttpResponse::NoContent().finish() }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/hook")
}

/// A configuration with webhooks to `url` and a checkpointer signing every second.
fn operated_config(url: String, key_file: std::path::PathBuf) -> Config {
    Config {
        webhook: Some(WebhookConfig {
            retry_ms_base: 50,
            retry_ms_max: 200,
            timeout_ms: 2_000,
            ..WebhookConfig::new(url, Secret::new("webhook-secret-0123456789"))
        }),
        audit: AuditConfig {
            signing_key_file: Some(key_file),
            public_keys: Vec::new(),
            checkpoint_every_s: 1,
            ..AuditConfig::default()
        },
        ..test_config()
    }
}

/// A purchase, a task, traffic that stops it at zero, a refused callback.
async fn workload(app: &TestApp) {
    app.buy("metrics-pkg", "metrics-pin", SMALL_SKU).await;
    let (status, _) = app.create_task("metrics-task", "metrics-pkg").await;
    assert_eq!(status, 201);
    app.report("metrics-task", "r-1", SMALL_SKU_BYTES / 2).await;
    app.report("metrics-task", "r-1", SMALL_SKU_BYTES / 2).await;
    let stopped = app.report("metrics-task", "r-2", SMALL_SKU_BYTES).await;
    assert_eq!(stopped["action"], "stop", "{stopped}");
    // In-flight bytes after the stop: observed in dts_ledger_bytes_after_stop_bytes.
    app.report("metrics-task", "r-3", 100).await;
    let refused = app
        .callback_raw("action=renewInstance&orderBizId=metrics-pkg&token=wrong")
        .await;
    assert_eq!(refused.status(), 403);
}

/// Runs the workload, and scrapes once the webhook of its stop is delivered and its head signed.
async fn operate(app: &TestApp, before: &Scrape) -> Scrape {
    workload(app).await;
    let moved = |s: &Scrape, name: &str, labels: &[(&str, &str)]| {
        s.value(name, labels) > before.value(name, labels)
    };
    scrape_until(app, |s| {
        moved(
            s,
            "dts_ledger_webhook_deliveries_total",
            &[("result", "delivered")],
        ) && moved(s, "dts_ledger_checkpoints_total", &[("result", "signed")])
    })
    .await
}

#[tokio::test]
async fn metrics_need_the_admin_token_and_show_a_workload() {
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("signing.key");
    dts_ledger::audit::checkpoint::keygen(&key_file).unwrap();
    let app = spawn_app_with(operated_config(webhook_receiver(), key_file)).await;

    assert_eq!(app.get("/metrics").await.status(), 401);
    let before = scrape(&app).await;
    workload(&app).await;
    let moved = |s: &Scrape, name: &str, labels: &[(&str, &str)]| {
        s.value(name, labels) > before.value(name, labels)
    };
    let after = scrape_until(&app, |s| {
        moved(
            s,
            "dts_ledger_webhook_deliveries_total",
            &[("result", "delivered")],
        ) && moved(s, "dts_ledger_checkpoints_total", &[("result", "signed")])
    })
    .await;

    for (name, kind) in [
        ("dts_ledger_http_requests_total", "counter"),
        ("dts_ledger_http_request_duration_seconds", "histogram"),
        ("dts_ledger_ingest_queued_reports", "gauge"),
        ("dts_ledger_ingest_batch_reports", "histogram"),
        ("dts_ledger_ingest_batch_commit_seconds", "histogram"),
        ("dts_ledger_ingest_reports_total", "counter"),
        ("dts_ledger_ingest_batches_total", "counter"),
        ("dts_ledger_events_appended_total", "counter"),
        ("dts_ledger_head_position", "gauge"),
        ("dts_ledger_packages", "gauge"),
        ("dts_ledger_tasks", "gauge"),
        ("dts_ledger_webhook_backlog_entries", "gauge"),
        ("dts_ledger_webhook_oldest_undelivered_age_seconds", "gauge"),
        ("dts_ledger_webhook_dead_letters", "gauge"),
        ("dts_ledger_webhook_deliveries_total", "counter"),
        ("dts_ledger_marketplace_callbacks_total", "counter"),
        ("dts_ledger_expiry_sweeps_total", "counter"),
        ("dts_ledger_checkpoints_total", "counter"),
        ("dts_ledger_verifications_total", "counter"),
        ("dts_ledger_pool_connections", "gauge"),
        ("dts_ledger_pool_available_connections", "gauge"),
        ("dts_ledger_pool_waiting_requests", "gauge"),
        ("dts_ledger_worker_up", "gauge"),
        ("dts_ledger_tasks_reporting_after_stop", "gauge"),
        ("dts_ledger_runway_checks_total", "counter"),
        ("dts_ledger_runways_announced_total", "counter"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "TYPE of {name}"
        );
    }

    // Requests by route pattern, never by raw path.
    let traffic = [
        ("route", "/v1/traffic"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert!(
        after.value("dts_ledger_http_requests_total", &traffic)
            >= before.value("dts_ledger_http_requests_total", &traffic) + 3.0
    );
    assert!(moved(
        &after,
        "dts_ledger_http_request_duration_seconds_count",
        &[("route", "/v1/traffic")]
    ));
    assert!(
        after.has(
            "dts_ledger_http_requests_total",
            &[("route", "/v1/cloud/order"), ("status", "403")]
        ),
        "the refused callback is counted"
    );
    assert!(
        !after.samples.iter().any(|s| s
            .labels
            .get("route")
            .is_some_and(|r| r.contains("metrics-"))),
        "no id in a route label"
    );
    for (name, labels) in [
        (
            "dts_ledger_marketplace_callbacks_total",
            &[("action", "createInstance"), ("outcome", "ok")][..],
        ),
        (
            "dts_ledger_marketplace_callbacks_total",
            &[("action", "renewInstance"), ("outcome", "refused")],
        ),
        (
            "dts_ledger_ingest_reports_total",
            &[("outcome", "accepted")],
        ),
        (
            "dts_ledger_ingest_reports_total",
            &[("outcome", "duplicate")],
        ),
        (
            "dts_ledger_ingest_batches_total",
            &[("result", "committed")],
        ),
        ("dts_ledger_ingest_batch_reports_count", &[]),
        (
            "dts_ledger_events_appended_total",
            &[("type", "OrderCreated")],
        ),
        (
            "dts_ledger_events_appended_total",
            &[("type", "TrafficConsumed")],
        ),
        (
            "dts_ledger_events_appended_total",
            &[("type", "TaskStopped")],
        ),
        (
            "dts_ledger_webhook_deliveries_total",
            &[("result", "delivered")],
        ),
        ("dts_ledger_checkpoints_total", &[("result", "signed")]),
        ("dts_ledger_verifications_total", &[("result", "intact")]),
    ] {
        assert!(moved(&after, name, labels), "{name} {labels:?} moved");
    }
    let head: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT position FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    assert!(after.value("dts_ledger_head_position", &[]) >= head as f64);
    assert!(after.value("dts_ledger_pool_max_connections", &[]) >= 1.0);
    // Present, not 1: supervision tests in this process take that lane down on purpose.
    assert!(after.has("dts_ledger_worker_up", &[("worker", "ingest-lane-0")]));
    assert!(after.has("dts_ledger_packages", &[("status", "active")]));
    assert!(after.has("dts_ledger_tasks", &[("state", "stopped")]));
}

/// The superuser edits a recorded event, as an insider with the database's keys could.
async fn tamper(app: &TestApp, position: i64) {
    app.db
        .client()
        .await
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE events SET payload = (payload::jsonb || '{{\"bytes\": 1}}')::json WHERE position = {position};
             SET session_replication_role = origin;"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_checkpointer_refuses_to_sign_a_ledger_that_fails_verification() {
    let app = spawn_app_with(test_config()).await;
    app.buy("tampered-pkg", "tampered-pin", SMALL_SKU).await;
    app.create_task("tampered-task", "tampered-pkg").await;
    app.report("tampered-task", "r-1", 100).await;
    let charged: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT max(position) FROM events WHERE event_type = 'TrafficConsumed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tamper(&app, charged).await;

    let before = scrape(&app).await;
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("signing.key");
    dts_ledger::audit::checkpoint::keygen(&key_file).unwrap();
    // A second process on the same database, with a checkpointer.
    let signer = app.sibling(operated_config(webhook_receiver(), key_file));
    let broken = [("result", "broken")];
    let after = scrape_until(&signer, |s| {
        s.value("dts_ledger_verifications_total", &broken)
            > before.value("dts_ledger_verifications_total", &broken)
    })
    .await;
    assert!(
        after.value("dts_ledger_verifications_total", &broken)
            > before.value("dts_ledger_verifications_total", &broken),
        "the verification before signing found the tampering"
    );
    let refused = [("result", "refused")];
    assert!(
        after.value("dts_ledger_checkpoints_total", &refused)
            > before.value("dts_ledger_checkpoints_total", &refused)
    );
    let signed: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(signed, 0, "nothing vouches for the tampered ledger");
}

/// The `dts_ledger_…` series names an expression mentions.
fn series_in(expr: &str) -> Vec<String> {
    expr.match_indices("dts_ledger_")
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Every `expr` string in a Grafana dashboard, wherever it is nested.
fn exprs_in(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(expr)) => {
                        found.push(expr.clone())
                    }
                    _ => exprs_in(value, found),
                }
            }
        }
        serde_json::Value::Array(values) => values.iter().for_each(|v| exprs_in(v, found)),
        _ => {}
    }
}

fn repository_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_name_only_series_the_service_exports() {
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("signing.key");
    dts_ledger::audit::checkpoint::keygen(&key_file).unwrap();
    let app = spawn_app_with(operated_config(webhook_receiver(), key_file)).await;
    let before = scrape(&app).await;
    let exported = operate(&app, &before).await.names();

    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&repository_file("docs/prometheus/alerts.yml")).unwrap();
    let mut alert_exprs = Vec::new();
    for group in rules["groups"].as_sequence().expect("rule groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let action = rule["annotations"]["action"].as_str().unwrap_or_default();
            assert!(action.len() > 20, "{name} says what to do");
            alert_exprs.push((
                name.to_owned(),
                rule["expr"].as_str().expect("an expr").to_owned(),
            ));
        }
    }
    for needed in [
        "Webhook",
        "Ingest",
        "WorkerDown",
        "Verify",
        "CreateInstance",
        "MarketplaceRefused",
        "ExpiryNoticeHeld",
        "Pool",
        "Checkpoint",
    ] {
        assert!(
            alert_exprs.iter().any(|(name, _)| name.contains(needed)),
            "an alert on {needed}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&repository_file("docs/grafana/dts-ledger.json")).unwrap();
    let mut panel_exprs = Vec::new();
    exprs_in(&dashboard, &mut panel_exprs);

    let mut named = BTreeSet::new();
    for (source, expr) in alert_exprs
        .iter()
        .map(|(name, expr)| (name.as_str(), expr))
        .chain(panel_exprs.iter().map(|expr| ("dashboard", expr)))
    {
        let series = series_in(expr);
        assert!(
            !series.is_empty(),
            "{source}: {expr} names a series of the service"
        );
        for name in series {
            assert!(exported.contains(&name), "{source}: {name} is not exported");
            named.insert(name);
        }
    }
    // The dashboard covers every family the service exports.
    let families: BTreeSet<String> = exported
        .iter()
        .filter(|name| name.starts_with("dts_ledger_"))
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| exported.contains(&format!("{base}_bucket")))
                })
                .unwrap_or(name)
                .to_owned()
        })
        .collect();
    let shown: BTreeSet<String> = panel_exprs.iter().flat_map(|e| series_in(e)).collect();
    for family in families {
        assert!(
            ["", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| shown.contains(&format!("{family}{suffix}"))),
            "the dashboard shows {family}"
        );
    }
}

#[tokio::test]
async fn the_metrics_address_serves_metrics_without_a_token_and_nothing_else() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = free.local_addr().unwrap();
    drop(free);
    let app = spawn_app_with(Config {
        metrics_listen: Some(address),
        ..test_config()
    })
    .await;
    let open = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let scraped = Scrape::parse(&open.text().await.unwrap());
    assert_eq!(
        scraped
            .types
            .get("dts_ledger_worker_up")
            .map(String::as_str),
        Some("gauge")
    );
    let other = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // The main listener still wants the admin token.
    assert_eq!(app.get("/metrics").await.status(), 401);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// The checkpointer signs nothing while the ledger is empty, and checks the ledger in a session
/// with the audits' bounds (no statement timeout, a name the stall reaper leaves alone): the
/// first round of a long ledger without checkpoints streams all of it.
#[tokio::test]
async fn the_checkpointer_skips_an_empty_ledger_and_checks_with_the_audits_bounds() {
    use dts_ledger::audit::checkpoint::{self, Keyring, Round};
    let app = spawn_app().await;
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("signing.key");
    checkpoint::keygen(&key_file).unwrap();
    let key = checkpoint::load_signing_key(&key_file).unwrap();
    let keyring = Keyring::new(&[], Some(&key)).unwrap();

    let mut client = app.db.pool.get().await.unwrap();
    let round = checkpoint::verify_and_take(&mut client, &key, &keyring)
        .await
        .unwrap()
        .round;
    assert!(matches!(round, Round::Unmoved), "{round:?}");

    app.buy("bounded-pkg", "bounded-pin", SMALL_SKU).await;
    let round = checkpoint::verify_and_take(&mut client, &key, &keyring)
        .await
        .unwrap()
        .round;
    let Round::Signed(signed) = round else {
        panic!("the moved ledger is signed: {round:?}")
    };
    assert!(signed.position > 0);
    let session = client
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(session.get::<_, String>(0), "0");
    assert_eq!(session.get::<_, String>(1), "dts-ledger-audit");
}

/// The rule file is valid Prometheus, by Prometheus's own checker (`promtool`, Debian's
/// `prometheus` package).
#[test]
fn the_alert_rules_pass_promtool() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus/alerts.yml");
    let output = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot run ({e}): install Debian's `prometheus` package (.ci/run does)"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool refuses the rules: {said}"
    );
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The alert rules behave as their test cases say (`promtool test rules`): a stopped task that
/// keeps reporting fires after 5 minutes and resolves once it stops.
#[test]
fn the_alert_rules_pass_their_promtool_test_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus");
    let output = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot run ({e}): install Debian's `prometheus` package (.ci/run does)"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool test fails: {said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

/// Issue 18, item 12, in `serve`: rows the service role appends to `checkpoints` (one claiming the
/// checkpointer's own key at the head under a signature that does not hold, one of a key nobody
/// trusts beyond the head) neither stop it from signing the head nor make it refuse: they are
/// counted and ignored.
#[tokio::test]
async fn the_checkpointer_signs_past_checkpoints_no_trusted_key_signed_and_counts_them() {
    use dts_ledger::audit::checkpoint::{self, Checkpoint, Keyring};
    use dts_ledger::database::Role;
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("signing.key");
    checkpoint::keygen(&key_file).unwrap();
    let key = checkpoint::load_signing_key(&key_file).unwrap();
    let app = spawn_app().await;
    app.buy("untrusted-pkg", "untrusted-pin", SMALL_SKU).await;
    let service = app.db.client_as(Role::Service).await;
    let head = service
        .query_one("SELECT position, ledger_hash FROM ledger_head", &[])
        .await
        .unwrap();
    let (position, ledger_hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    let ledger_hash: [u8; 32] = ledger_hash.try_into().unwrap();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let mut claims_ours = Checkpoint::sign(&stranger, position, ledger_hash, chrono::Utc::now());
    claims_ours.key_id = checkpoint::key_id(&key.verifying_key());
    let beyond = Checkpoint::sign(&stranger, position + 100, [7; 32], chrono::Utc::now());
    for forged in [&claims_ours, &beyond] {
        service
            .execute(
                "INSERT INTO checkpoints (position, ledger_hash, signed_at, key_id, signature)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &forged.position,
                    &forged.ledger_hash.as_slice(),
                    &forged.signed_at,
                    &hex::encode(forged.key_id),
                    &forged.signature.as_slice(),
                ],
            )
            .await
            .unwrap();
    }

    let before = scrape(&app).await;
    let signer = app.sibling(operated_config(webhook_receiver(), key_file));
    let keyring = Keyring::new(&[], Some(&key)).unwrap();
    let mut signed = false;
    for _ in 0..100 {
        let client = app.db.pool.get().await.unwrap();
        signed = checkpoint::stored(&client)
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .any(|found| found.position == position && keyring.check(&found).is_ok());
        if signed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        signed,
        "the checkpointer signed the head past the row claiming its key"
    );
    let untrusted = "dts_ledger_checkpoints_untrusted_total";
    let after = scrape_until(&signer, |s| {
        s.value(untrusted, &[]) >= before.value(untrusted, &[]) + 2.0
    })
    .await;
    assert!(
        after.value(untrusted, &[]) >= before.value(untrusted, &[]) + 2.0,
        "both are counted"
    );
}

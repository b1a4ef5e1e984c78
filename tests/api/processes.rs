//! Several real `serve` processes on one database: one of them frozen (SIGSTOP, as a stalled VM
//! or a long pause would) must not stall the others, and the agents' retries stay exactly-once.

use crate::helpers::{signed_query, TestDb, ADMIN_TOKEN, MARKETPLACE_KEY, REPORTER_TOKEN};
use dts_ledger::database::Role;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
const SKU_1TB: &str = "FW_GOODS-500232-1";
/// The target: a healthy process answers every request within this while a peer is frozen.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long each freeze lasts: longer than the session bounds, so that the healthy process must
/// get past the frozen one's locks while it is still frozen.
const FREEZE: Duration = Duration::from_millis(4_500);
const FREEZES: usize = 6;
const PACKAGES: usize = 4;
const AGENTS_PER_PROCESS: usize = 3;
const REPORTS_PER_REQUEST: usize = 20;

/// A `serve` process, resumed and killed when dropped (also when an assertion fails).
struct Serve {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Serve {
    async fn start(db: &TestDb, dir: &std::path::Path, name: &str) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            "[database]\npool_size = 4\n[traffic]\npipelines = 2\n",
        )
        .unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .env("DATABASE_URL", db.url())
            .env("LEDGER_CONFIG", &config)
            .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("LEDGER_WORKERS", "2")
            .env("LEDGER_MARKETPLACE_KEY", MARKETPLACE_KEY)
            .env("LEDGER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("LEDGER_REPORTER_TOKENS", REPORTER_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let mut serve = Serve {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log: log_path,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{}/readyz", serve.address))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return serve;
            }
            assert!(serve.child.try_wait().unwrap().is_none(), "serve exited");
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling a child process this test spawned and has not reaped.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "signal {signal} delivered");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

/// One report of a known size; every report an agent makes is kept, to be checked at the end.
fn report(task: &str, id: &str, bytes: i64) -> Value {
    json!({
        "taskId": task,
        "reportId": id,
        "bytes": bytes,
        "periodEnd": chrono::Utc::now().to_rfc3339(),
    })
}

async fn post(http: &reqwest::Client, address: &str, reports: &[Value]) -> Result<u16, String> {
    let response = http
        .post(format!("{address}/v1/traffic"))
        .bearer_auth(REPORTER_TOKEN)
        .json(&json!({ "reports": reports }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status == 200 {
        for result in body["results"].as_array().unwrap() {
            assert!(
                result["status"] == "accepted" || result["status"] == "duplicate",
                "{result}"
            );
        }
    }
    Ok(status)
}

/// What the agents of the healthy process saw: for each request, when it ended and its answer.
#[derive(Default)]
struct Seen {
    answers: Vec<(Instant, Duration, Result<u16, String>)>,
    /// The frozen process's answers.
    frozen: Vec<Result<u16, String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_process_does_not_stall_its_peer_and_retries_stay_exactly_once() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let frozen = Serve::start(&db, dir.path(), "frozen").await;
    let healthy = Serve::start(&db, dir.path(), "healthy").await;
    let http = reqwest::Client::new();

    let mut tasks = Vec::new();
    for p in 0..PACKAGES {
        let query = signed_query(
            &[
                ("action", "createInstance"),
                ("jdPin", "pin-a"),
                ("orderBizId", &format!("biz-{p}")),
                ("orderId", &format!("order-{p}")),
                ("serviceCode", "dts"),
                ("skuId", SKU_1TB),
            ],
            MARKETPLACE_KEY,
        );
        let bought = http
            .get(format!("{}/v1/cloud/order?{query}", healthy.address))
            .send()
            .await
            .unwrap();
        assert_eq!(bought.status(), 200);
        for t in 0..AGENTS_PER_PROCESS * 2 {
            let task = format!("task-{p}-{t}");
            let created = http
                .post(format!("{}/v1/tasks", healthy.address))
                .bearer_auth(REPORTER_TOKEN)
                .json(&json!({"taskId": task, "instanceId": format!("biz-{p}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            tasks.push(task);
        }
    }

    // Agents report to both processes without pause; each keeps every report it made.
    let stop = Arc::new(AtomicBool::new(false));
    let made: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut agents = Vec::new();
    for (process, address) in [("f", &frozen.address), ("h", &healthy.address)] {
        for agent in 0..AGENTS_PER_PROCESS {
            let address = address.clone();
            let healthy = process == "h";
            let client = reqwest::Client::builder()
                // The target, enforced on every request to the healthy process. Requests to the
                // frozen one wait for it to thaw.
                .timeout(if healthy {
                    ANSWER_WITHIN
                } else {
                    Duration::from_secs(60)
                })
                .build()
                .unwrap();
            let tasks = tasks.clone();
            let (stop, made, seen) = (stop.clone(), made.clone(), seen.clone());
            agents.push(tokio::spawn(async move {
                let mut sequence = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let reports: Vec<Value> = (0..REPORTS_PER_REQUEST)
                        .map(|n| {
                            sequence += 1;
                            let task = &tasks[(agent * 7 + sequence) % tasks.len()];
                            let id = format!("{process}-{agent}-{sequence}");
                            report(task, &id, 1_000 + (n as i64 % 7))
                        })
                        .collect();
                    made.lock().unwrap().extend(reports.iter().cloned());
                    let started = Instant::now();
                    let answer = post(&client, &address, &reports).await;
                    if healthy {
                        seen.lock().unwrap().answers.push((
                            Instant::now(),
                            started.elapsed(),
                            answer,
                        ));
                    } else {
                        let failed = answer != Ok(200);
                        seen.lock().unwrap().frozen.push(answer);
                        if failed {
                            // As an agent would, wait a moment before the next try.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
    }

    for attempt in 0..FREEZES {
        // A different moment of the frozen process's work each time.
        let pause_ms = 150 + (uuid::Uuid::new_v4().as_u128() % 600) as u64;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        frozen.signal(libc::SIGSTOP);
        let frozen_at = Instant::now();
        tokio::time::sleep(FREEZE).await;
        let thawed_at = Instant::now();
        frozen.signal(libc::SIGCONT);
        let seen = seen.lock().unwrap();
        let answered_while_frozen = seen
            .answers
            .iter()
            .filter(|(at, _, answer)| {
                *at > frozen_at && *at < thawed_at && answer.as_ref().is_ok_and(|s| *s == 200)
            })
            .count();
        assert!(
            answered_while_frozen > 0,
            "freeze {attempt}: the healthy process answered nothing while its peer was frozen"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.await.unwrap();
    }
    {
        let seen = seen.lock().unwrap();
        assert!(!seen.answers.is_empty());
        for (_, took, answer) in &seen.answers {
            assert_eq!(
                answer.as_ref().map_err(String::as_str),
                Ok(&200),
                "the healthy process answered a request in {took:?}"
            );
            assert!(*took < ANSWER_WITHIN, "{took:?}");
        }
        // The process whose transactions were cut answers 503 for them, nothing else (a pooled
        // HTTP connection it closed while frozen may also fail on the agent's side).
        for answer in &seen.frozen {
            assert!(
                matches!(answer, Ok(200 | 503) | Err(_)),
                "the frozen process answered {answer:?}"
            );
        }
        let slowest = seen.answers.iter().map(|(_, took, _)| *took).max().unwrap();
        let cut = seen.frozen.iter().filter(|a| **a == Ok(503)).count();
        eprintln!(
            "slowest answer of the healthy process: {slowest:?}; 503s of the frozen one: {cut}"
        );
    }

    // Every agent retries what it made until it is answered; whatever was charged before comes
    // back as a duplicate, through either process.
    let made = std::mem::take(&mut *made.lock().unwrap());
    let retry = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for (n, chunk) in made.chunks(1_000).enumerate() {
        let address = if n % 2 == 0 {
            &frozen.address
        } else {
            &healthy.address
        };
        let mut tries = 0;
        while post(&retry, address, chunk).await != Ok(200) {
            tries += 1;
            assert!(tries < 20, "a retry was never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Exactly once: one event per report, and the packages' figures are the reports' sums.
    let client = db.client().await;
    let charged: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'TrafficConsumed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(charged as usize, made.len());
    let mut expected = std::collections::HashMap::<String, i64>::new();
    for report in &made {
        let task = report["taskId"].as_str().unwrap();
        let package = task.split('-').nth(1).unwrap();
        *expected.entry(format!("biz-{package}")).or_default() += report["bytes"].as_i64().unwrap();
    }
    for (instance, bytes) in expected {
        let order: Value = http
            .get(format!("{}/v1/orders/{instance}", healthy.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(order["bytesConsumed"], bytes, "{order}");
        let tasks: i64 = order["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["bytesConsumed"].as_i64().unwrap())
            .sum();
        assert_eq!(tasks, bytes);
    }
    let (code, out, err) = db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    for serve in [&frozen, &healthy] {
        let log = std::fs::read_to_string(&serve.log).unwrap();
        eprintln!(
            "{}: {} lock waits timed out, {} reaps of stalled sessions",
            serve.log.display(),
            log.matches("waited too long for a lock").count(),
            log.matches("ended database sessions").count()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_frozen_in_the_middle_of_a_copy_is_ended_and_traffic_goes_on() {
    let app = crate::helpers::spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;

    // A peer process holds the ledger head and stops in the middle of a COPY, as a process
    // frozen while it streams a batch's events does: no server timeout ends that session.
    let mut config = app.db.config_as(Role::Service);
    config.application_name("dts-ledger");
    let (mut peer, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let tx = peer.transaction().await.unwrap();
    tx.batch_execute(
        "CREATE TEMP TABLE stall (x int); SELECT position FROM ledger_head FOR UPDATE",
    )
    .await
    .unwrap();
    let sink = tx
        .copy_in::<_, &'static [u8]>("COPY stall FROM STDIN")
        .await
        .unwrap();

    let answer = tokio::time::timeout(ANSWER_WITHIN, app.report("task-1", "r-1", 1_000))
        .await
        .expect("the service answers within the target while a peer is frozen");
    assert_eq!(answer["status"], "accepted", "{answer}");
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 1_000);
    // The stalled session was ended by the service, which freed the head.
    connection
        .await
        .unwrap()
        .expect_err("the frozen peer's session was ended");
    drop(sink);
}

#[tokio::test]
async fn every_session_carries_the_bounds_of_its_purpose() {
    use dts_ledger::database::{build_pool, build_pool_with, SessionBounds};
    let db = TestDb::create().await;
    let settings = "SELECT current_setting('synchronous_commit'), \
                    current_setting('idle_in_transaction_session_timeout'), \
                    current_setting('lock_timeout'), current_setting('statement_timeout'), \
                    current_setting('application_name')";
    let read = |pool: deadpool_postgres::Pool| async move {
        let row = pool
            .get()
            .await
            .unwrap()
            .query_one(settings, &[])
            .await
            .unwrap();
        (0..5).map(|n| row.get::<_, String>(n)).collect::<Vec<_>>()
    };
    assert_eq!(
        read(build_pool(db.config.clone(), 1)).await,
        ["on", "2s", "3s", "4s", "dts-ledger"]
    );
    assert_eq!(
        read(build_pool_with(db.config.clone(), 1, &SessionBounds::AUDIT)).await,
        ["on", "1min", "1min", "0", "dts-ledger-audit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_frozen_mid_copy_does_not_block_the_control_plane_for_good() {
    let app = crate::helpers::spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    let mut config = app.db.config_as(Role::Service);
    config.application_name("dts-ledger");
    let (mut peer, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let tx = peer.transaction().await.unwrap();
    tx.batch_execute(
        "CREATE TEMP TABLE stall (x int); SELECT position FROM ledger_head FOR UPDATE",
    )
    .await
    .unwrap();
    let sink = tx
        .copy_in::<_, &'static [u8]>("COPY stall FROM STDIN")
        .await
        .unwrap();

    // No traffic comes: the service's own look for stalled sessions frees the head. Until then a
    // request that waited too long for it is answered 503, and the caller retries.
    let mut created = None;
    for _ in 0..5 {
        let (status, body) = app.create_task("task-1", "biz-1").await;
        if status == 201 {
            created = Some(body);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    }
    let created = created.expect("the task is created once the stalled session is ended");
    assert_eq!(created["state"], "running");
    connection
        .await
        .unwrap()
        .expect_err("the frozen peer's session was ended");
    drop(sink);
}

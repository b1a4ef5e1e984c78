//! One log line per request, from the real binary in JSON mode: route pattern, method, status,
//! latency and the request id that the `x-request-id` header and the ledger's metadata carry.

use crate::helpers::{signed_query, TestDb, ADMIN_TOKEN, MARKETPLACE_KEY, REPORTER_TOKEN};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `serve` process logging JSON to a file; killed when dropped.
struct Serve {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Serve {
    async fn start(db: &TestDb, dir: &std::path::Path) -> Serve {
        Serve::start_logging(db, dir, "json").await
    }

    /// `serve` logging in `format` (`json` or `human`).
    async fn start_logging(db: &TestDb, dir: &std::path::Path, format: &str) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
            .arg("serve")
            .env("DATABASE_URL", db.url())
            .env_remove("LEDGER_CONFIG")
            .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("LEDGER_WORKERS", "1")
            .env("LEDGER_MARKETPLACE_KEY", MARKETPLACE_KEY)
            .env("LEDGER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("LEDGER_REPORTER_TOKENS", REPORTER_TOKEN)
            .env("LEDGER_LOG_FORMAT", format)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts");
        let serve = Serve {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{}/healthz", serve.address))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    /// The JSON lines logged so far.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn each_request_logs_one_json_line_with_its_route_status_latency_and_id() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&db, dir.path()).await;
    let http = reqwest::Client::new();

    let query = signed_query(
        &[
            ("action", "createInstance"),
            ("jdPin", "log-pin"),
            ("orderBizId", "log-pkg"),
            ("orderId", "log-order"),
            ("serviceCode", "dts"),
            ("skuId", "FW_GOODS-500232-1"),
        ],
        MARKETPLACE_KEY,
    );
    let bought = http
        .get(format!("{}/v1/cloud/order?{query}", serve.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bought.status(), 200);
    let bought_id = request_id(&bought);
    let missing = http
        .get(format!("{}/v1/tasks/no-such-task", serve.address))
        .bearer_auth(REPORTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing_id = request_id(&missing);
    assert_ne!(bought_id, missing_id);

    // The ledger's metadata names the request by the same id.
    let recorded: String = db
        .client()
        .await
        .query_one(
            "SELECT metadata->>'requestId' FROM events WHERE event_type = 'OrderCreated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, bought_id);

    // Lines are written as requests end; the last answer was read, so its line may trail by a
    // moment.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = serve.lines();
        if lines.iter().any(|l| l["request_id"] == missing_id.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line_of = |id: &str| {
        let of: Vec<&Value> = lines
            .iter()
            .filter(|l| l["request_id"] == id && l["target"] == "dts_ledger::request")
            .collect();
        assert_eq!(of.len(), 1, "one line for {id}: {lines:#?}");
        of[0].clone()
    };
    let line = line_of(&missing_id);
    assert_eq!(line["route"], "/v1/tasks/{task_id}");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 404);
    assert_eq!(line["level"], "INFO");
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let line = line_of(&bought_id);
    assert_eq!(line["route"], "/v1/cloud/order");
    assert_eq!(line["status"], 200);
    // The query string, with the callback's signature, is never logged.
    let text = std::fs::read_to_string(&serve.log).unwrap();
    assert!(!text.contains("token="), "{text}");
    assert!(!text.contains("no-such-task"), "raw paths stay out: {text}");
}

/// A line an attacker would like to see in the log: it reads like the audit's alarm.
const FORGED_LINE: &str = "2026-11-26T08:00:00.000000Z ERROR dts_ledger::audit: verify: BROKEN";

#[tokio::test]
async fn a_parameter_name_cannot_forge_a_line_in_the_human_log() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start_logging(&db, dir.path(), "human").await;
    // Unauthenticated: a repeated name is refused before the token is looked at, and the refusal
    // names the parameter.
    let name = format!("x%0A{}", FORGED_LINE.replace(' ', "%20"));
    let response = reqwest::get(format!(
        "{}/v1/cloud/order?action=verify&{name}=1&{name}=2",
        serve.address
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    let marker = "verify: BROKEN";
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&serve.log).unwrap();
        if text.contains(marker) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(marker), "the refusal is logged: {text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-11-26T08:00:00"),
            "a forged line: {line}\n{text}"
        );
    }
    assert!(
        text.contains(&format!("x\\n{FORGED_LINE}")),
        "the name is shown escaped, inside the refusal's own line: {text}"
    );
}

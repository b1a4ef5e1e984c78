//! The `dts-ledger` binary itself: embedded database start, restart with the same data, clean
//! shutdown on SIGTERM, and clear failures.

use chrono::Utc;
use dts_ledger::database::build_pool;
use dts_ledger::store::{self, NewEvent};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
const SECRET_KEY: &str = "isv-key-that-must-never-be-logged";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_serve(data_dir: &Path, port: u16, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(BINARY)
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env("LEDGER_DATA_DIR", data_dir)
        .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("LEDGER_MARKETPLACE_KEY", SECRET_KEY)
        .env("LEDGER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary starts")
}

async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let http = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if response.status() == 200 {
                return;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("serve did not become healthy");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: signalling a child process we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("serve did not stop on SIGTERM");
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

#[tokio::test]
async fn serve_runs_an_embedded_database_that_survives_restarts() {
    let dir = private_dir();
    let data_dir = dir.path().join("data");
    let port = free_port();

    let first_log = dir.path().join("first.log");
    let mut child = start_serve(&data_dir, port, &first_log);
    wait_healthy(port, &mut child).await;

    // Write through the embedded cluster's own socket while the service runs.
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(data_dir.join("run"))
        .port(5432)
        .user("postgres")
        .dbname("ledger");
    let pool = build_pool(config, 1);
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let event = NewEvent {
            stream_id: "survivor".into(),
            event_type: "Probe".into(),
            event_version: 1,
            payload: serde_json::json!({"kept": true}),
            metadata: std::sync::Arc::new(serde_json::json!({})),
            idempotency_key: None,
        };
        crate::helpers::append_events(&tx, vec![event], Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    pool.close();

    let status = terminate(&mut child);
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
    assert!(
        !data_dir.join("pgdata/postmaster.pid").exists(),
        "the embedded cluster is stopped with the service"
    );

    let second_log = dir.path().join("second.log");
    let mut child = start_serve(&data_dir, port, &second_log);
    wait_healthy(port, &mut child).await;
    let pool = build_pool(
        {
            let mut config = tokio_postgres::Config::new();
            config
                .host_path(data_dir.join("run"))
                .port(5432)
                .user("postgres")
                .dbname("ledger");
            config
        },
        1,
    );
    let client = pool.get().await.unwrap();
    let events = store::read_stream(&client, "survivor").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["kept"], true);
    drop(client);
    pool.close();
    assert!(terminate(&mut child).success());

    let first = std::fs::read_to_string(&first_log).unwrap();
    let second = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        first.contains("creating the embedded PostgreSQL cluster"),
        "{first}"
    );
    assert!(
        !second.contains("creating the embedded PostgreSQL cluster"),
        "{second}"
    );
    for log in [&first, &second] {
        assert!(
            !log.contains(SECRET_KEY),
            "the marketplace key leaked into the log"
        );
        for line in log.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        }
    }
}

fn run_serve_expecting_failure(envs: &[(&str, &str)]) -> String {
    let dir = private_dir();
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env("LEDGER_DATA_DIR", dir.path().join("data"))
        .env("LEDGER_LISTEN", format!("127.0.0.1:{}", free_port()));
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(!output.status.success(), "serve should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_config_with_an_unknown_key_stops_serve_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.toml");
    std::fs::write(&path, "[marketplace]\nkey = \"k\"\nsecret_sauce = 1\n").unwrap();
    let stderr = run_serve_expecting_failure(&[("LEDGER_CONFIG", path.to_str().unwrap())]);
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("secret_sauce"), "{stderr}");
}

#[test]
fn missing_postgres_binaries_are_explained() {
    let stderr = run_serve_expecting_failure(&[("LEDGER_PG_BIN_DIR", "/nonexistent")]);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
}

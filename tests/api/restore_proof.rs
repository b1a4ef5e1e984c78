//! A restore is proven against a signed checkpoint kept outside the database (I11): `serve`
//! refuses a ledger behind `[audit] trusted_checkpoint_file`, naming the positions lost, until an
//! operator accepts the loss with a flag that is itself recorded in the ledger, once.
//!
//! A restore from an older backup is played with PostgreSQL's own copy of a database
//! (`CREATE DATABASE … TEMPLATE`), taken while nothing is connected, as a base backup would be.

use crate::helpers::{run_binary, spawn_app_on, test_config, TestApp, TestDb, SMALL_SKU};
use dts_ledger::database::{build_pool, roles, Role};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration file with a fresh signing key and, when given, the trusted checkpoint file.
fn write_config(dir: &Path, trusted: Option<&Path>) -> std::path::PathBuf {
    let key = dir.join("signing.key");
    if !key.exists() {
        let (code, _, stderr) = run_binary(&["keygen", key.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{stderr}");
    }
    let mut text = format!(
        "[marketplace]\nkey = \"{}\"\n\n[audit]\nsigning_key_file = {}\n",
        crate::helpers::MARKETPLACE_KEY,
        toml::Value::String(key.display().to_string())
    );
    if let Some(trusted) = trusted {
        text.push_str(&format!(
            "trusted_checkpoint_file = {}\n",
            toml::Value::String(trusted.display().to_string())
        ));
    }
    let path = dir.join(if trusted.is_some() {
        "trusted.toml"
    } else {
        "plain.toml"
    });
    std::fs::write(&path, text).unwrap();
    path
}

/// A first app's work on `db`: a package and `reports` traffic reports.
async fn traffic_on(db: &Arc<TestDb>, instance: &str, task: &str, reports: usize) {
    let pool = build_pool(db.config_as(Role::Service), 4);
    let app = spawn_app_on(db.clone(), pool.clone(), test_config());
    app.buy(instance, "pin-1", SMALL_SKU).await;
    let (status, _) = app.create_task(task, instance).await;
    assert_eq!(status, 201);
    for n in 0..reports {
        let result = app.report(task, &format!("r-{n}"), 10).await;
        assert_eq!(result["status"], "accepted", "{result}");
    }
    finish(app, pool).await;
}

async fn finish(app: TestApp, pool: deadpool_postgres::Pool) {
    app.stop().await;
    pool.close();
}

/// A copy of `db` as it is now: what a restore of a backup taken now brings back.
async fn backup_of(db: &TestDb) -> Arc<TestDb> {
    let name = format!("restored_{}", uuid::Uuid::new_v4().simple());
    let admin = {
        let mut config = db.config.clone();
        config.dbname("postgres");
        config
    };
    let (client, connection) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The harness's own idle connections to the original go first.
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db.name],
            )
            .await
            .unwrap();
        let copied = client
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {} OWNER {}",
                db.name,
                roles::OWNER
            ))
            .await;
        match copied {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                eprintln!("copy not yet possible: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot copy the database: {error}"),
        }
    }
    let mut config = db.config.clone();
    config.dbname(&name);
    let mut service = config.clone();
    service
        .user(Role::Service.name())
        .password(crate::helpers::TEST_ROLE_PASSWORD);
    Arc::new(TestDb {
        pool: build_pool(service, 2),
        name,
        config,
    })
}

fn start_serve(db: &TestDb, config: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env_remove("LEDGER_MIGRATE_DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env_remove("LEDGER_TRUSTED_CHECKPOINT_FILE")
        .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// What became of a `serve`: ready (then stopped with SIGTERM), or exited with its code.
enum Started {
    Ready(String),
    Exited(i32, String),
}

async fn serve_outcome(db: &TestDb, config: &Path, extra: &[&str]) -> Started {
    let port = free_port();
    let mut child = start_serve(db, config, port, extra);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return Started::Exited(
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        let ready = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .map(|response| response.status() == 200)
            .unwrap_or(false);
        if ready {
            // SAFETY: signalling a child process we spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let output = child.wait_with_output().unwrap();
            return Started::Ready(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        assert!(
            Instant::now() < deadline,
            "serve neither started nor exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events_of(db: &TestDb, event_type: &str) -> Vec<serde_json::Value> {
    let client = db.client_as(Role::Reader).await;
    client
        .query(
            "SELECT payload::text, metadata::text, stream_id FROM events
              WHERE event_type = $1 ORDER BY position",
            &[&event_type],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            serde_json::json!({
                "payload": serde_json::from_str::<serde_json::Value>(row.get(0)).unwrap(),
                "metadata": serde_json::from_str::<serde_json::Value>(row.get(1)).unwrap(),
                "streamId": row.get::<_, String>(2),
            })
        })
        .collect()
}

async fn head(db: &TestDb) -> i64 {
    db.client_as(Role::Reader)
        .await
        .query_one("SELECT position FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0)
}

/// The ledger as it was when backed up, then a checkpoint signed later and kept outside.
async fn restored_behind_a_checkpoint(
    dir: &Path,
) -> (Arc<TestDb>, Arc<TestDb>, std::path::PathBuf) {
    let original = Arc::new(TestDb::create().await);
    traffic_on(&original, "biz-1", "task-1", 3).await;
    let restored = backup_of(&original).await;
    traffic_on(&original, "biz-2", "task-2", 4).await;
    let plain = write_config(dir, None);
    let (code, stdout, stderr) =
        original.run_cli(&["--config", plain.to_str().unwrap(), "checkpoint"]);
    assert_eq!(code, 0, "{stderr}");
    let checkpoint = dir.join("checkpoint.json");
    std::fs::write(&checkpoint, stdout).unwrap();
    (original, restored, checkpoint)
}

#[tokio::test]
async fn a_ledger_behind_the_trusted_checkpoint_is_refused_until_an_operator_accepts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (original, restored, checkpoint) = restored_behind_a_checkpoint(dir.path()).await;
    let (kept, lost_from) = (head(&restored).await, head(&original).await);
    assert!(
        kept < lost_from,
        "the restore is older: {kept} < {lost_from}"
    );
    let trusted = write_config(dir.path(), Some(&checkpoint));

    // Refused, naming the positions lost, and nothing was served or written.
    let Started::Exited(code, stderr) = serve_outcome(&restored, &trusted, &[]).await else {
        panic!("serve took traffic on a ledger that lost acknowledged events");
    };
    assert_ne!(code, 0);
    let lost = lost_from - kept;
    for expected in [
        format!("the ledger ends at position {kept}"),
        format!("covers up to {lost_from}"),
        format!("{lost} acknowledged events are missing"),
        "--accept-restore-loss".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} in {stderr}");
    }
    assert_eq!(head(&restored).await, kept);

    // An operator goes on: recorded once, with what was lost and why.
    let reason = "incident 42: primary's disk lost, newest backup restored";
    let Started::Ready(stderr) =
        serve_outcome(&restored, &trusted, &["--accept-restore-loss", reason]).await
    else {
        panic!("serve refused although the operator accepted the loss");
    };
    assert!(stderr.contains("LedgerRestoreAccepted"), "{stderr}");
    let accepted = events_of(&restored, "LedgerRestoreAccepted").await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let payload = &accepted[0]["payload"];
    assert_eq!(payload["checkpointPosition"], lost_from);
    assert_eq!(payload["ledgerHead"], kept);
    assert_eq!(payload["lostEvents"], lost);
    assert_eq!(payload["reason"], reason);
    let line: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(payload["checkpointLedgerHash"], line["ledgerHash"]);
    assert_eq!(payload["checkpointKeyId"], line["keyId"]);
    assert_eq!(accepted[0]["streamId"], "ledger");
    assert_eq!(accepted[0]["metadata"]["source"], "operator");

    // Later starts, with or without the flag, find the decision and record nothing more.
    assert!(matches!(
        serve_outcome(&restored, &trusted, &[]).await,
        Started::Ready(_)
    ));
    assert!(matches!(
        serve_outcome(&restored, &trusted, &["--accept-restore-loss", reason]).await,
        Started::Ready(_)
    ));
    assert_eq!(events_of(&restored, "LedgerRestoreAccepted").await.len(), 1);

    // The acceptance is part of the chain like any event; replay folds past it.
    let (code, stdout, stderr) = restored.run_cli(&["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = restored.run_cli(&["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The evidence still says what happened: the trusted checkpoint does not hold there.
    let (code, stdout, _) = restored.run_cli(&[
        "--config",
        trusted.to_str().unwrap(),
        "verify",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
}

#[tokio::test]
async fn a_ledger_that_took_other_events_after_the_restore_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let (original, restored, checkpoint) = restored_behind_a_checkpoint(dir.path()).await;
    // Served without the check after the restore: other events fill the positions lost.
    traffic_on(&restored, "biz-3", "task-3", 8).await;
    let at = head(&original).await;
    assert!(head(&restored).await > at);
    let trusted = write_config(dir.path(), Some(&checkpoint));
    let Started::Exited(code, stderr) = serve_outcome(&restored, &trusted, &[]).await else {
        panic!("serve took traffic on a ledger that replaced acknowledged events");
    };
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!(
            "the ledger's hash at position {at} is not the one the trusted checkpoint"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_ledger_that_holds_the_trusted_checkpoint_starts_and_a_forged_one_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let (original, _restored, checkpoint) = restored_behind_a_checkpoint(dir.path()).await;
    let trusted = write_config(dir.path(), Some(&checkpoint));
    // The ledger the checkpoint was taken on, and one that moved on since: both hold it.
    assert!(matches!(
        serve_outcome(&original, &trusted, &[]).await,
        Started::Ready(_)
    ));
    traffic_on(&original, "biz-9", "task-9", 0).await;
    assert!(matches!(
        serve_outcome(&original, &trusted, &[]).await,
        Started::Ready(_)
    ));

    // The same line with its position moved: its signature no longer holds.
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    let mut line: serde_json::Value = serde_json::from_str(&text).unwrap();
    line["position"] = serde_json::json!(line["position"].as_i64().unwrap() - 1);
    std::fs::write(&checkpoint, line.to_string()).unwrap();
    let Started::Exited(code, stderr) = serve_outcome(&original, &trusted, &[]).await else {
        panic!("serve started on a trusted checkpoint whose signature fails");
    };
    assert_ne!(code, 0);
    assert!(stderr.contains("trusted_checkpoint_file"), "{stderr}");
    assert!(stderr.contains("signature does not hold"), "{stderr}");
    // Nor does the flag get past a forged checkpoint.
    let outcome = serve_outcome(&original, &trusted, &["--accept-restore-loss", "go"]).await;
    assert!(matches!(outcome, Started::Exited(code, _) if code != 0));
    assert!(events_of(&original, "LedgerRestoreAccepted")
        .await
        .is_empty());
}

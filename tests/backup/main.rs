// Over 600 lines: a test binary of its own, with the servers and tools it drives.
//! Backups and restores against real servers and the real binary (I11).
//!
//! - pgBackRest, with the configuration in `docs/pgbackrest/` (only paths and port changed): a
//!   full and an incremental backup while agents report traffic, checkpoints before and after a
//!   noted time, a point-in-time restore to that time on a fresh cluster, and there
//!   `verify --checkpoint` holds with exactly the events the ledger had at that time.
//! - The embedded cluster: `dts-ledger backup` while `serve` takes traffic, `dts-ledger restore`,
//!   and the restored ledger verifies and holds every report acknowledged before the backup.
//!
//! Each test makes its own clusters in throwaway directories, on free ports, as `postgres`
//! (through `runuser`) when run as root, and prints its figures.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
const REPORTER_TOKEN: &str = "backup-test-reporter-token-0123456789";
const ADMIN_TOKEN: &str = "backup-test-admin-token-0123456789";
const MARKETPLACE_KEY: &str = "backup-test-isv-key";
/// Agents reporting at once while backups run.
const AGENTS: usize = 4;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway directory the `postgres` user may enter.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("dts-ledger-backup-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server is installed").1
}

/// `program` as the cluster owner: `postgres` when we are root.
fn as_owner(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_owner(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn run_ok(mut command: Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A PostgreSQL cluster of the test's own, on a TCP port of localhost.
struct Cluster {
    pgdata: PathBuf,
    port: u16,
}

/// The directory of the test clusters' sockets, beside their data (pgBackRest talks to the
/// cluster through it).
fn socket_dir(pgdata: &Path) -> PathBuf {
    pgdata.parent().unwrap().join("sock")
}

impl Cluster {
    fn init(pgdata: &Path, port: u16, settings: &str) -> Cluster {
        std::fs::create_dir_all(pgdata).unwrap();
        give_to_owner(pgdata);
        let mut initdb = as_owner(pg_bin().join("initdb"));
        initdb.arg("-D").arg(pgdata).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run_ok(initdb, "initdb");
        let sockets = socket_dir(pgdata);
        std::fs::create_dir_all(&sockets).unwrap();
        give_to_owner(&sockets);
        let conf = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\n{settings}\n",
            sockets.display()
        ));
        std::fs::write(&conf, text).unwrap();
        Cluster {
            pgdata: pgdata.to_owned(),
            port,
        }
    }

    fn start(&self) {
        let mut start = as_owner(pg_bin().join("pg_ctl"));
        start
            .arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(self.pgdata.join("server.log"))
            .args(["-w", "-t", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        run_ok(start, "pg_ctl start");
    }

    fn stop(&self) {
        let mut stop = as_owner(pg_bin().join("pg_ctl"));
        stop.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w"]);
        let _ = stop.output();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ledger", self.port)
    }

    async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={database}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connects to the test cluster");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The product's configuration: keys, tokens and a signing key under `dir`.
fn write_config(dir: &Path) -> PathBuf {
    let key = dir.join("signing.key");
    let output = Command::new(BINARY)
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap();
    assert!(output.status.success());
    let path = dir.join("dts-ledger.toml");
    std::fs::write(
        &path,
        format!(
            "[marketplace]\nkey = \"{MARKETPLACE_KEY}\"\n\n[api]\nadmin_token = \
             \"{ADMIN_TOKEN}\"\nreporter_tokens = [\"{REPORTER_TOKEN}\"]\n\n[audit]\n\
             signing_key_file = {}\n",
            toml::Value::String(key.display().to_string())
        ),
    )
    .unwrap();
    path
}

/// `dts-ledger` with the configuration and `env`; exit code, stdout, stderr.
fn cli(config: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_MIGRATE_DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env_remove("LEDGER_WAL_ARCHIVE_DIR")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `serve` and its address.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    async fn start(config: &Path, env: &[(&str, &str)], log: &Path) -> Serve {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(BINARY)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("LEDGER_CONFIG")
            .env_remove("LEDGER_WAL_ARCHIVE_DIR")
            .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve { child, url };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = http
                .get(format!("{}/readyz", serve.url))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                return serve;
            }
            assert!(
                serve.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        // SAFETY: signalling a child process we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// Agents reporting traffic until told to stop; each acknowledged report id is kept with the
/// time it was acknowledged.
struct Load {
    running: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    acknowledged: Arc<Mutex<Vec<(String, Instant)>>>,
    sent: Arc<Mutex<BTreeSet<String>>>,
    agents: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(serve: &Serve, config: &Path) -> Load {
        let (code, _, stderr) = cli(
            config,
            &[("LEDGER_URL", &serve.url)],
            &[
                "marketplace",
                "createInstance",
                "--param",
                "jdPin=alice",
                "--param",
                "orderBizId=biz-1",
                "--param",
                "orderId=1",
                "--param",
                "serviceCode=dts",
                "--param",
                "skuId=FW_GOODS-500232-1",
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let http = reqwest::Client::new();
        let load = Load {
            running: Arc::new(AtomicBool::new(true)),
            paused: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicU64::new(0)),
            acknowledged: Arc::default(),
            sent: Arc::default(),
            agents: Vec::new(),
        };
        let mut load = load;
        for agent in 0..AGENTS {
            let task = format!("task-{agent}");
            let created = http
                .post(format!("{}/v1/tasks", serve.url))
                .bearer_auth(REPORTER_TOKEN)
                .json(&serde_json::json!({"taskId": task, "instanceId": "biz-1"}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let (http, url) = (http.clone(), serve.url.clone());
            let (running, paused, in_flight) = (
                load.running.clone(),
                load.paused.clone(),
                load.in_flight.clone(),
            );
            let (acknowledged, sent) = (load.acknowledged.clone(), load.sent.clone());
            load.agents.push(tokio::spawn(async move {
                let mut n = 0u64;
                while running.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    let report = format!("{task}-r{n}");
                    sent.lock().unwrap().insert(report.clone());
                    let answer = http
                        .post(format!("{url}/v1/traffic"))
                        .bearer_auth(REPORTER_TOKEN)
                        .json(&serde_json::json!({"reports": [{
                            "taskId": task, "reportId": report, "bytes": 1000,
                            "periodEnd": chrono::Utc::now().to_rfc3339(),
                        }]}))
                        .send()
                        .await;
                    if let Ok(answer) = answer {
                        let body: serde_json::Value = answer.json().await.unwrap_or_default();
                        if body["results"][0]["status"] == "accepted" {
                            acknowledged.lock().unwrap().push((report, Instant::now()));
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        load
    }

    /// Waits until at least `count` reports more were acknowledged.
    async fn wait_for(&self, count: usize) {
        let target = self.acknowledged.lock().unwrap().len() + count;
        while self.acknowledged.lock().unwrap().len() < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Holds the agents and waits until no report is in flight.
    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    async fn stop(self) -> (Vec<(String, Instant)>, BTreeSet<String>) {
        self.running.store(false, Ordering::SeqCst);
        for agent in self.agents {
            agent.await.unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        let sent = self.sent.lock().unwrap().clone();
        (acknowledged, sent)
    }
}

/// `verify: intact events=N … last_position=P …` → (N, P).
fn intact(stdout: &str) -> (i64, i64) {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("verify: intact"))
        .unwrap_or_else(|| panic!("verify did not hold: {stdout}"));
    let field = |name: &str| -> i64 {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("events"), field("last_position"))
}

/// The docs' pgBackRest configuration with this test's paths and port.
fn pgbackrest_conf(dir: &Path, pgdata: &Path, port: u16) -> PathBuf {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pgbackrest/pgbackrest.conf");
    let text = std::fs::read_to_string(docs).unwrap();
    let replaced: Vec<String> = text
        .lines()
        .map(|line| {
            let value = match line.split('=').next().unwrap_or("") {
                "repo1-path" => dir.join("repo").display().to_string(),
                "log-path" => dir.join("log").display().to_string(),
                "lock-path" => dir.join("lock").display().to_string(),
                "pg1-path" => pgdata.display().to_string(),
                "pg1-port" => port.to_string(),
                "pg1-socket-path" => socket_dir(pgdata).display().to_string(),
                _ => return line.to_owned(),
            };
            format!("{}={value}", line.split('=').next().unwrap())
        })
        .collect();
    let text = replaced.join("\n");
    for sub in ["repo", "log", "lock"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        give_to_owner(&dir.join(sub));
    }
    let path = dir.join("pgbackrest.conf");
    std::fs::write(&path, text).unwrap();
    give_to_owner(&path);
    path
}

fn pgbackrest(conf: &Path, args: &[&str]) -> String {
    let mut command = as_owner("pgbackrest");
    command
        .arg(format!("--config={}", conf.display()))
        .arg("--stanza=ledger")
        .args(args);
    run_ok(command, &format!("pgbackrest {}", args.join(" ")))
}

/// The docs' server settings, archiving with the test's pgBackRest configuration.
fn server_settings(conf: &Path) -> String {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pgbackrest/postgresql.conf");
    std::fs::read_to_string(docs).unwrap().replace(
        "'pgbackrest --stanza",
        &format!("'pgbackrest --config={} --stanza", conf.display()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_restores_to_a_time_between_two_checkpoints_with_exactly_its_events() {
    let dir = scratch();
    let root = dir.path();
    let pgdata = root.join("pg");
    let port = free_port();
    let conf = pgbackrest_conf(root, &pgdata, port);
    let primary = Cluster::init(&pgdata, port, &server_settings(&conf));
    primary.start();
    primary
        .client("postgres")
        .await
        .batch_execute("CREATE DATABASE ledger")
        .await
        .unwrap();
    pgbackrest(&conf, &["stanza-create"]);
    pgbackrest(&conf, &["check"]);
    let config = write_config(root);
    let url = primary.url();
    let env = [("DATABASE_URL", url.as_str())];
    let mut serve = Serve::start(&config, &env, &root.join("serve.log")).await;
    let load = Load::start(&serve, &config).await;
    load.wait_for(50).await;

    let started = Instant::now();
    pgbackrest(&conf, &["--type=full", "backup"]);
    let full_s = started.elapsed().as_secs_f64();
    let full_ended = Instant::now();
    load.wait_for(50).await;
    let (code, before, stderr) = cli(&config, &env, &["checkpoint"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(root.join("before.json"), &before).unwrap();
    load.wait_for(50).await;

    // The time to restore to, while nothing is in flight, so that "the ledger at that time" is
    // one position: every event up to it committed before, none after.
    load.pause().await;
    let ledger = primary.client("ledger").await;
    let at: i64 = ledger
        .query_one("SELECT position FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // pgBackRest keeps a backup's stop time in whole seconds and restores to a time only from a
    // set that stopped before it: the target lies over two seconds after the full backup ended.
    let since_full = full_ended.elapsed();
    if since_full < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(2500) - since_full).await;
    }
    let target = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.resume();

    load.wait_for(50).await;
    let (code, after, stderr) = cli(&config, &env, &["checkpoint"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(root.join("after.json"), &after).unwrap();
    let started = Instant::now();
    pgbackrest(&conf, &["--type=incr", "backup"]);
    let incremental_s = started.elapsed().as_secs_f64();
    load.wait_for(50).await;
    let (acknowledged, _) = load.stop().await;
    serve.stop();
    let total: i64 = ledger
        .query_one("SELECT position FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    drop(ledger);
    // Every segment up to now in the repository, then the primary is gone for good.
    pgbackrest(&conf, &["check"]);
    let info = pgbackrest(&conf, &["info"]);
    assert!(
        info.contains("full backup") && info.contains("incr backup"),
        "{info}"
    );
    primary.stop();

    let fresh = root.join("pg-restored");
    std::fs::create_dir_all(&fresh).unwrap();
    give_to_owner(&fresh);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o700)).unwrap();
    let started = Instant::now();
    pgbackrest(
        &conf,
        &[
            &format!("--pg1-path={}", fresh.display()),
            "--type=time",
            &format!("--target={}", target.format("%Y-%m-%d %H:%M:%S%.6f+00")),
            "--target-action=promote",
            "--target-timeline=current",
            "restore",
        ],
    );
    let restored = Cluster {
        pgdata: fresh,
        port,
    };
    restored.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let recovering: bool = restored
            .client("postgres")
            .await
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        if !recovering {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restored cluster stays in recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore_s = started.elapsed().as_secs_f64();

    let before_file = root.join("before.json");
    let (code, stdout, stderr) = cli(
        &config,
        &env,
        &["verify", "--checkpoint", before_file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (events, last_position) = intact(&stdout);
    assert_eq!(
        (events, last_position),
        (at, at),
        "exactly the events up to the target"
    );
    // The later checkpoint lies beyond the restored ledger: it was not there at that time.
    let after_file = root.join("after.json");
    let (code, stdout, _) = cli(
        &config,
        &env,
        &["verify", "--checkpoint", after_file.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{stdout}");
    let (code, stdout, stderr) = cli(&config, &env, &["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    println!(
        "pgbackrest: full_backup_s={full_s:.2} incremental_backup_s={incremental_s:.2} \
         restore_s={restore_s:.2} events_at_target={at} events_in_all={total} \
         reports_acknowledged={}",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_backup_taken_while_serving_restores_every_report_acknowledged_before_it() {
    let dir = scratch();
    let root = dir.path();
    let config = write_config(root);
    let data = root.join("data");
    let data_env = data.display().to_string();
    let env = [("LEDGER_DATA_DIR", data_env.as_str())];
    let mut serve = Serve::start(&config, &env, &root.join("serve.log")).await;
    let load = Load::start(&serve, &config).await;
    load.wait_for(100).await;

    let backup = root.join("backup");
    let backup_begun = Instant::now();
    let (code, stdout, stderr) = cli(&config, &env, &["backup", backup.to_str().unwrap()]);
    let backup_s = backup_begun.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("backup: verified"), "{stdout}");
    load.wait_for(50).await;
    let (acknowledged, sent) = load.stop().await;
    serve.stop();

    // Never over an existing data directory.
    let (code, _, stderr) = cli(&config, &env, &["restore", backup.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("exists and is not empty"), "{stderr}");

    let restored = root.join("restored");
    let restored_env = restored.display().to_string();
    let env = [("LEDGER_DATA_DIR", restored_env.as_str())];
    let started = Instant::now();
    let (code, stdout, stderr) = cli(&config, &env, &["restore", backup.to_str().unwrap()]);
    let restore_s = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = cli(&config, &env, &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (events, _) = intact(&stdout);
    let (code, stdout, stderr) = cli(&config, &env, &["replay"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, exported, stderr) = cli(&config, &env, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    let in_restored: BTreeSet<String> = exported
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["reportId"].as_str().map(str::to_owned))
        .collect();
    let before: Vec<&String> = acknowledged
        .iter()
        .filter(|(_, at)| *at < backup_begun)
        .map(|(report, _)| report)
        .collect();
    let missing: Vec<&&String> = before
        .iter()
        .filter(|report| !in_restored.contains(**report))
        .collect();
    assert!(missing.is_empty(), "acknowledged yet lost: {missing:?}");
    // Nothing appears that no agent sent.
    assert!(in_restored.is_subset(&sent));
    let during = acknowledged
        .iter()
        .filter(|(report, at)| {
            *at >= backup_begun
                && at.duration_since(backup_begun).as_secs_f64() <= backup_s
                && in_restored.contains(report)
        })
        .count();
    println!(
        "embedded: backup_s={backup_s:.2} restore_s={restore_s:.2} events_restored={events} \
         reports_acknowledged_before_backup={} acknowledged_during_backup_and_restored={during} \
         reports_acknowledged_in_all={}",
        before.len(),
        acknowledged.len()
    );
}

//! Load benchmark of the traffic ingest path: `cargo bench --bench ingest`.
//!
//! Starts a durable throwaway PostgreSQL cluster (fsync and synchronous_commit on) and the real
//! `dts-ledger serve` binary against it, sets up hundreds of packages (some small enough to run
//! out) and thousands of tasks over HTTP, then drives `POST /v1/traffic`:
//! - *batch*: reports sent 1,000 per request by a few concurrent clients;
//! - *single*: one report per request from 64 concurrent clients (rate and p99 latency);
//! - *ceiling*: the same TrafficConsumed rows COPYed by PostgreSQL itself into a scratch copy of
//!   the ledger table (same columns, indexes and constraints), in the same run.
//!
//! Prints, last: `ingest: batch_reports_per_s=… single_reports_per_s=… single_p99_ms=…
//! ceiling_rows_per_s=… ratio=…` (ratio = batch / ceiling). Sizes can be changed with
//! `INGEST_BENCH_PACKAGES`, `INGEST_BENCH_TASKS`, `INGEST_BENCH_BATCH_REQUESTS`,
//! `INGEST_BENCH_SINGLE_REPORTS`.

use dts_ledger::configuration::Secret;
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres};
use dts_ledger::marketplace::{query, token};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
const KEY: &str = "bench-isv-key";
const ADMIN: &str = "bench-admin-token-0123456789";
const REPORTER: &str = "bench-reporter-token-0123456789";
/// Clients sending 1,000-report requests at once.
const BATCH_CLIENTS: usize = 4;
const BATCH_SIZE: usize = 1_000;
/// Clients sending single reports at once.
const SINGLE_CLIENTS: usize = 64;
/// Small packages run out during the run; large ones never do.
const SMALL_BYTES: u64 = 256 << 20;
const LARGE_BYTES: u64 = 1 << 50;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bench.toml");
    let pipelines = setting("INGEST_BENCH_PIPELINES", 2);
    std::fs::write(
        &path,
        format!(
            "[marketplace]\nkey = \"{KEY}\"\n\
             [api]\nadmin_token = \"{ADMIN}\"\nreporter_tokens = [\"{REPORTER}\"]\n\
             [traffic]\npipelines = {pipelines}\n\
             [[sku]]\nid = \"BENCH-SMALL\"\nname = \"DTS 256MB\"\nbytes = {SMALL_BYTES}\nprice = \"10.00\"\ncurrency = \"CNY\"\n\
             [[sku]]\nid = \"BENCH-LARGE\"\nname = \"DTS 1PB\"\nbytes = {LARGE_BYTES}\nprice = \"90000.00\"\ncurrency = \"CNY\"\n"
        ),
    )
    .unwrap();
    path
}

fn start_service(database_url: &str, config: &std::path::Path, port: u16) -> Child {
    let mut command = Command::new(BINARY);
    if let Ok(workers) = std::env::var("INGEST_BENCH_WORKERS") {
        command.env("LEDGER_WORKERS", workers);
    }
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("LEDGER_CONFIG", config)
        .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("LEDGER_LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dts-ledger serve starts")
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn signed(params: &[(&str, &str)]) -> String {
    let raw: Vec<String> = params
        .iter()
        .map(|(n, v)| {
            format!(
                "{n}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    let raw = raw.join("&");
    let pairs = query::parse(&raw).unwrap();
    format!("{raw}&token={}", token::expected(&pairs, &Secret::new(KEY)))
}

fn report(rng: &mut impl Rng, tasks: usize, serial: usize, now: &str) -> Value {
    json!({
        "taskId": format!("task-{}", rng.gen_range(0..tasks)),
        "reportId": format!("r-{serial}"),
        "bytes": rng.gen_range(1_000..2_000_000),
        "periodEnd": now,
    })
}

/// One `POST /v1/traffic`, answered 200 and read to the end.
async fn post_traffic(http: &reqwest::Client, base: &str, body: Vec<u8>) {
    let response = http
        .post(format!("{base}/v1/traffic"))
        .bearer_auth(REPORTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let packages = setting("INGEST_BENCH_PACKAGES", 300);
    let tasks = setting("INGEST_BENCH_TASKS", 3_000);
    let batch_requests = setting("INGEST_BENCH_BATCH_REQUESTS", 300);
    let single_reports = setting("INGEST_BENCH_SINGLE_REPORTS", 100_000);

    let dir = tempfile::Builder::new()
        .prefix("dts-ledger-bench-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let cluster_dir = dir.path().join("cluster");
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&cluster_dir, Durability::Durable).expect("cluster starts")
    })
    .await
    .unwrap();
    let admin_config = cluster.config("postgres");
    let (admin, connection) = admin_config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute("CREATE DATABASE bench").await.unwrap();
    let mut db_config = admin_config.clone();
    db_config.dbname("bench");
    let socket = match admin_config.get_hosts()[0].clone() {
        tokio_postgres::config::Host::Unix(path) => path,
        _ => unreachable!("the embedded cluster listens on a socket"),
    };
    let database_url = format!(
        "host={} port={} user=postgres dbname=bench",
        socket.display(),
        dts_ledger::database::embedded::SOCKET_PORT
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_file(dir.path());
    let mut service = start_service(&database_url, &config, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Setup: packages through the marketplace, tasks through the task API.
    let setup = Instant::now();
    futures::stream::iter(0..packages)
        .for_each_concurrent(16, |p| {
            let (http, base) = (&http, &base);
            async move {
                let id = format!("biz-{p}");
                let sku = if p % 5 == 0 {
                    "BENCH-SMALL"
                } else {
                    "BENCH-LARGE"
                };
                let query = signed(&[
                    ("action", "createInstance"),
                    ("jdPin", &format!("pin-{}", p % 50)),
                    ("orderBizId", &id),
                    ("orderId", &format!("order-{p}")),
                    ("serviceCode", "dts"),
                    ("skuId", sku),
                ]);
                let r = http
                    .get(format!("{base}/v1/cloud/order?{query}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
        .await;
    futures::stream::iter(0..tasks)
        .for_each_concurrent(16, |t| {
            let (http, base) = (&http, &base);
            async move {
                let r = http
                    .post(format!("{base}/v1/tasks"))
                    .bearer_auth(REPORTER)
                    .json(&json!({"taskId": format!("task-{t}"), "instanceId": format!("biz-{}", t % packages)}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        })
        .await;
    eprintln!(
        "setup: {packages} packages, {tasks} tasks in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // Batch path: 1,000 reports per request. Bodies are built before the clock starts.
    let now = chrono::Utc::now().to_rfc3339();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let bodies: Vec<Vec<u8>> = (0..batch_requests)
        .map(|n| {
            let reports: Vec<Value> = (0..BATCH_SIZE)
                .map(|i| report(&mut rng, tasks, n * BATCH_SIZE + i, &now))
                .collect();
            serde_json::to_vec(&json!({ "reports": reports })).unwrap()
        })
        .collect();
    let batch_started = Instant::now();
    futures::stream::iter(bodies)
        .for_each_concurrent(BATCH_CLIENTS, |body| {
            let (http, base) = (&http, &base);
            post_traffic(http, base, body)
        })
        .await;
    let batch_elapsed = batch_started.elapsed().as_secs_f64();
    let batch_reports = batch_requests * BATCH_SIZE;
    let batch_rate = batch_reports as f64 / batch_elapsed;
    eprintln!("batch: {batch_reports} reports in {batch_elapsed:.2}s");

    // Single-report path: 64 clients, one report per request, latency of each.
    let offset = batch_reports;
    let single_bodies: Vec<Vec<u8>> = (0..single_reports)
        .map(|n| {
            serde_json::to_vec(&json!({"reports": [report(&mut rng, tasks, offset + n, &now)]}))
                .unwrap()
        })
        .collect();
    let single_started = Instant::now();
    let mut latencies: Vec<f64> = futures::stream::iter(single_bodies)
        .map(|body| {
            let (http, base) = (&http, &base);
            async move {
                let sent = Instant::now();
                post_traffic(http, base, body).await;
                sent.elapsed().as_secs_f64() * 1e3
            }
        })
        .buffer_unordered(SINGLE_CLIENTS)
        .collect()
        .await;
    let single_elapsed = single_started.elapsed().as_secs_f64();
    let single_rate = single_reports as f64 / single_elapsed;
    latencies.sort_by(f64::total_cmp);
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let rss = peak_rss_mib(service.id());
    eprintln!("single: {single_reports} reports in {single_elapsed:.2}s, p50 {p50:.2} ms, p99 {p99:.2} ms");
    eprintln!("service peak memory (VmHWM): {rss:.1} MiB");

    let (client, connection) = db_config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let stats = client
        .query_one(
            "SELECT count(*) FILTER (WHERE event_type = 'TrafficConsumed'),
                    count(*) FILTER (WHERE event_type = 'TaskStopped'),
                    (SELECT count(*) FROM packages WHERE bytes_remaining = 0)
               FROM events",
            &[],
        )
        .await
        .unwrap();
    eprintln!(
        "ledger: {} TrafficConsumed, {} TaskStopped, {} packages ran out",
        stats.get::<_, i64>(0),
        stats.get::<_, i64>(1),
        stats.get::<_, i64>(2)
    );
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    let _ = service.wait();

    // Ceiling: the same rows, COPYed by PostgreSQL itself into a scratch copy of the ledger table.
    let columns = "position, stream_id, version, event_type, event_version, payload, metadata, \
                   recorded_at, idempotency_key, prev_hash, hash";
    let out = client
        .copy_out(&format!(
            "COPY (SELECT {columns} FROM events WHERE event_type = 'TrafficConsumed' \
             ORDER BY position LIMIT {batch_reports}) TO STDOUT (FORMAT binary)"
        ))
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = out.map(|c| c.unwrap()).collect().await;
    client
        .batch_execute("CREATE TABLE scratch (LIKE events INCLUDING ALL)")
        .await
        .unwrap();
    let ceiling_started = Instant::now();
    let sink = client
        .copy_in(&format!(
            "COPY scratch ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .unwrap();
    futures::pin_mut!(sink);
    use futures::SinkExt;
    for chunk in chunks {
        sink.send(chunk).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    let ceiling_elapsed = ceiling_started.elapsed().as_secs_f64();
    let ceiling_rate = copied as f64 / ceiling_elapsed;
    eprintln!("ceiling: {copied} rows COPYed in {ceiling_elapsed:.2}s");
    drop(client);
    drop(admin);
    drop(cluster);

    println!(
        "ingest: batch_reports_per_s={:.0} single_reports_per_s={:.0} single_p99_ms={:.2} ceiling_rows_per_s={:.0} ratio={:.2}",
        batch_rate,
        single_rate,
        p99,
        ceiling_rate,
        batch_rate / ceiling_rate
    );
}

//! The service as an operator runs it: `serve` processes of the real binary on a multi-host
//! `DATABASE_URL`, the audit commands, and agents that report traffic and play the marketplace
//! while the database fails over underneath.

use crate::cluster::{Node, DATABASE, ROLE_PASSWORD};
use dts_ledger::database::roles;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
pub const MARKETPLACE_KEY: &str = "durability-isv-key";
pub const ADMIN_TOKEN: &str = "durability-admin-token-0123456789";
pub const REPORTER_TOKEN: &str = "durability-reporter-token-0123456789";
/// A package small enough that the agents empty it during a test.
pub const SMALL_SKU: &str = "DTS-DURABILITY-1MB";
pub const SMALL_SKU_BYTES: i64 = 1_000_000;
/// The built-in 1 TB SKU: packages that never run out here.
pub const LARGE_SKU: &str = "FW_GOODS-500232-1";

/// The product settings every `serve` here reads.
pub fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.toml");
    std::fs::write(
        &path,
        format!(
            "[marketplace]\nkey = \"{MARKETPLACE_KEY}\"\n\
             [api]\nadmin_token = \"{ADMIN_TOKEN}\"\nreporter_tokens = [\"{REPORTER_TOKEN}\"]\n\
             [database]\npool_size = 6\n\
             [[sku]]\nid = \"{SMALL_SKU}\"\nname = \"DTS 1MB\"\nbytes = {SMALL_SKU_BYTES}\n\
             price = \"1.00\"\ncurrency = \"CNY\"\n\
             [[sku]]\nid = \"{LARGE_SKU}\"\nname = \"DTS 1TB\"\nbytes = 1099511627776\n\
             price = \"1000.00\"\ncurrency = \"CNY\"\n"
        ),
    )
    .unwrap();
    path
}

/// `postgres://user:…@127.0.0.1:P1,127.0.0.1:P2/ledger?target_session_attrs=read-write`: every
/// server listed, the one that takes writes chosen by the driver at each new connection.
pub fn multi_host_url(user: &str, nodes: &[&Node]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect();
    format!(
        "postgres://{user}:{ROLE_PASSWORD}@{}/{DATABASE}?target_session_attrs=read-write",
        hosts.join(",")
    )
}

/// One `serve` process, killed when dropped.
pub struct Serve {
    pub address: String,
    child: Child,
    pub log: PathBuf,
}

impl Serve {
    pub async fn start(dir: &Path, name: &str, config: &Path, database_url: &str) -> Serve {
        let port = crate::cluster::free_port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BINARY)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env_remove("LEDGER_MIGRATE_DATABASE_URL")
            .env("LEDGER_CONFIG", config)
            .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("LEDGER_WORKERS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("serve starts");
        let mut serve = Serve {
            address: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        serve.wait_ready().await;
        serve
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(response) = http.get(format!("{}/readyz", self.address)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve never became ready");
    }

    /// `GET /readyz`'s body.
    pub async fn readiness(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("{}/readyz", self.address))
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(format!("{}/metrics", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dts-ledger <args>` against `database_url`, with `env` added: exit code, stdout, stderr.
pub fn cli(database_url: &str, args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut command = Command::new(BINARY);
    if database_url.is_empty() {
        command.env_remove("DATABASE_URL");
    } else {
        command.env("DATABASE_URL", database_url);
    }
    let output = command
        .args(args)
        .env_remove("LEDGER_MIGRATE_DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The marketplace's signed query (DESIGN §3), written out independently of the service.
pub fn signed_query(params: &[(&str, &str)]) -> String {
    use md5::{Digest, Md5};
    let mut sorted = params.to_vec();
    sorted.sort();
    let input: Vec<String> = sorted.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let token = hex::encode(Md5::digest(format!(
        "{}&key={MARKETPLACE_KEY}",
        input.join("&")
    )));
    let mut encoded: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{n}={}", percent(v)))
        .collect();
    encoded.push(format!("token={token}"));
    encoded.join("&")
}

fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A `createInstance` callback's query for package `instance_id` of `sku`.
pub fn create_instance(instance_id: &str, sku: &str) -> String {
    signed_query(&[
        ("action", "createInstance"),
        ("jdPin", "durability-customer"),
        ("orderBizId", instance_id),
        ("orderId", &format!("order-{instance_id}")),
        ("serviceCode", "dts"),
        ("skuId", sku),
    ])
}

/// What the agents were told: the 2xx answers, each with when it came.
#[derive(Default)]
pub struct Acknowledged {
    /// reportId → when the request that was answered 2xx was sent, and when the answer came.
    pub reports: HashMap<String, (Instant, Instant)>,
    /// instanceId → the same for its `createInstance` answered 200.
    pub orders: HashMap<String, (Instant, Instant)>,
    /// Answers other than 2xx, and requests that got no answer (retried every time).
    pub faults: u64,
    /// Codes of the non-2xx answers seen (a 500 among them is a failure of the test).
    pub statuses: HashMap<u16, u64>,
}

/// Agents reporting traffic (to every `serve` in turn) and a marketplace creating packages,
/// until [`Agents::stop`]. Every request that is not answered 2xx is sent again, unchanged, as
/// a real agent does (the service makes it idempotent): a report is acknowledged once, and the
/// test checks that what was acknowledged is in the ledger exactly once.
pub struct Agents {
    stop: Arc<AtomicBool>,
    pub acknowledged: Arc<Mutex<Acknowledged>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Agents {
    /// `tasks` are running tasks; each of `reporters` agents owns a share of them.
    pub fn start(addresses: Vec<String>, tasks: Vec<String>, reporters: usize) -> Agents {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut handles = Vec::new();
        for agent in 0..reporters {
            let owned: Vec<String> = tasks
                .iter()
                .skip(agent)
                .step_by(reporters)
                .cloned()
                .collect();
            let (stop, acknowledged, http, addresses) = (
                stop.clone(),
                acknowledged.clone(),
                http.clone(),
                addresses.clone(),
            );
            handles.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let task = &owned[n % owned.len()];
                    let report_id = format!("agent{agent}-{n}");
                    let body = serde_json::json!({"reports": [{
                        "taskId": task,
                        "reportId": report_id,
                        "bytes": 20_000 + (n % 7) * 1_000,
                        "periodEnd": chrono::Utc::now().to_rfc3339(),
                    }]});
                    let mut attempt = 0usize;
                    loop {
                        let address = &addresses[(n + attempt) % addresses.len()];
                        let sent = Instant::now();
                        let answer = http
                            .post(format!("{address}/v1/traffic"))
                            .bearer_auth(REPORTER_TOKEN)
                            .json(&body)
                            .send()
                            .await;
                        let status = answer.as_ref().map(|r| r.status().as_u16()).ok();
                        let verdict = match answer {
                            Ok(response) if response.status().is_success() => {
                                let body: serde_json::Value = response.json().await.unwrap();
                                body["results"][0]["status"].as_str().map(str::to_owned)
                            }
                            _ => None,
                        };
                        let done = {
                            let mut seen = acknowledged.lock().unwrap();
                            match verdict.as_deref() {
                                Some("accepted" | "duplicate") => {
                                    seen.reports
                                        .insert(report_id.clone(), (sent, Instant::now()));
                                    true
                                }
                                Some(other) => panic!("report {report_id} answered {other}"),
                                None => {
                                    seen.faults += 1;
                                    *seen.statuses.entry(status.unwrap_or(0)).or_default() += 1;
                                    false
                                }
                            }
                        };
                        if done {
                            break;
                        }
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    n += 1;
                }
            }));
        }
        let (stop_m, acknowledged_m) = (stop.clone(), acknowledged.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop_m.load(Ordering::Relaxed) {
                let instance_id = format!("bought-{n}");
                let query = create_instance(&instance_id, SMALL_SKU);
                let mut attempt = 0usize;
                loop {
                    let address = &addresses[(n + attempt) % addresses.len()];
                    let sent = Instant::now();
                    let answer = http
                        .get(format!("{address}/v1/cloud/order?{query}"))
                        .send()
                        .await;
                    let status = answer.as_ref().map(|r| r.status().as_u16()).ok();
                    {
                        let mut seen = acknowledged_m.lock().unwrap();
                        if status == Some(200) {
                            seen.orders
                                .insert(instance_id.clone(), (sent, Instant::now()));
                            break;
                        }
                        seen.faults += 1;
                        *seen.statuses.entry(status.unwrap_or(0)).or_default() += 1;
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        Agents {
            stop,
            acknowledged,
            handles,
        }
    }

    /// How many reports were acknowledged so far.
    pub fn reports(&self) -> usize {
        self.acknowledged.lock().unwrap().reports.len()
    }

    /// Waits until `more` reports beyond `from` are acknowledged.
    pub async fn wait_for_reports(&self, from: usize, more: usize, within: Duration) {
        let until = Instant::now() + within;
        while self.reports() < from + more {
            assert!(
                Instant::now() < until,
                "the agents got {} acknowledgements, not {}",
                self.reports() - from,
                more
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the agents once each has its request in flight answered.
    pub async fn stop(self) -> Acknowledged {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await.expect("an agent panicked");
        }
        Arc::try_unwrap(self.acknowledged)
            .ok()
            .expect("the agents are done")
            .into_inner()
            .unwrap()
    }
}

/// Buys `small` small packages and `large` large ones through `serve`, and creates two tasks on
/// each; returns the tasks.
pub async fn set_up_packages(serve: &Serve, small: usize, large: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for (i, sku) in std::iter::repeat_n(SMALL_SKU, small)
        .chain(std::iter::repeat_n(LARGE_SKU, large))
        .enumerate()
    {
        let instance_id = format!("pkg-{i}");
        let response = http
            .get(format!(
                "{}/v1/cloud/order?{}",
                serve.address,
                create_instance(&instance_id, sku)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "buy {instance_id}");
        for t in 0..2 {
            let task_id = format!("task-{i}-{t}");
            let response = http
                .post(format!("{}/v1/tasks", serve.address))
                .bearer_auth(REPORTER_TOKEN)
                .json(&serde_json::json!({"taskId": task_id, "instanceId": instance_id}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "create {task_id}");
            tasks.push(task_id);
        }
    }
    tasks
}

/// What the failover tests hold after the primary was lost, on the server that took over:
/// every acknowledged report and order in its ledger exactly once, projections equal to a
/// replay, the checkpoint taken before the loss holding, no task running on an empty package,
/// no 500 among the faults. Returns the number of events checked.
pub async fn check_after_failover(
    new_primary: &Node,
    acknowledged: &Acknowledged,
    checkpoint: &Path,
    signing_key: &Path,
) -> i64 {
    assert!(
        !acknowledged.statuses.contains_key(&500),
        "a fault was answered 500: {:?}",
        acknowledged.statuses
    );
    let client = crate::cluster::connect(&new_primary.config("postgres", DATABASE))
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT traffic_report_id(payload), count(*) FROM events \
             WHERE event_type = 'TrafficConsumed' GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    let in_ledger: HashMap<String, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    for report_id in acknowledged.reports.keys() {
        assert_eq!(
            in_ledger.get(report_id).copied(),
            Some(1),
            "acknowledged report {report_id} is in the new primary's ledger exactly once"
        );
    }
    assert!(
        in_ledger.values().all(|count| *count == 1),
        "no report is charged twice"
    );
    let rows = client
        .query(
            "SELECT stream_id, count(*) FROM events WHERE event_type = 'OrderCreated' GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    let orders: HashMap<String, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    for instance_id in acknowledged.orders.keys() {
        assert_eq!(
            orders.get(&format!("package-{instance_id}")).copied(),
            Some(1),
            "acknowledged order {instance_id} is created exactly once"
        );
    }
    let running_on_empty: i64 = client
        .query_one(
            "SELECT count(*) FROM tasks t JOIN packages p USING (instance_id) \
             WHERE t.state = 'running' AND p.bytes_remaining <= 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running_on_empty, 0, "no task runs on an empty package");
    let emptied: i64 = client
        .query_one(
            "SELECT count(*) FROM packages WHERE bytes_remaining = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        emptied > 0,
        "the agents emptied packages, so the check above means something"
    );

    let reader = new_primary.url(roles::READER);
    let (code, out, err) = cli(&reader, &["replay"], &[]);
    assert_eq!(code, 0, "projections equal a replay: {out}{err}");
    let (code, out, err) = cli(
        &reader,
        &["verify", "--checkpoint", checkpoint.to_str().unwrap()],
        &[("LEDGER_SIGNING_KEY_FILE", signing_key)],
    );
    assert_eq!(
        code, 0,
        "the checkpoint taken before the loss holds: {out}{err}"
    );
    assert!(out.contains("verify: intact"), "{out}");
    client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

/// `dts-ledger keygen` into `dir`; returns the key file.
pub fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("signing.key");
    let (code, out, err) = cli("", &["keygen", key.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "keygen: {out}{err}");
    key
}

/// `dts-ledger checkpoint` as the service, through `database_url`; the line is written to
/// `file`, kept outside the database.
pub fn checkpoint(database_url: &str, key: &Path, file: &Path) {
    let (code, out, err) = cli(
        database_url,
        &["checkpoint"],
        &[("LEDGER_SIGNING_KEY_FILE", key)],
    );
    assert_eq!(code, 0, "checkpoint: {out}{err}");
    std::fs::write(file, out).unwrap();
}

/// How long the service took to answer again after `since` (the kill): the end of the longest
/// silence between two successful answers after it. Backends of a killed postmaster live on for
/// a moment and may still commit (their commits reach the synchronous standby, so they count);
/// those early answers come before the silence, and what ends it is the new primary.
pub fn answering_again_after(acknowledged: &Acknowledged, since: Instant) -> Duration {
    let mut answered: Vec<Instant> = acknowledged
        .reports
        .values()
        .chain(acknowledged.orders.values())
        .map(|(_, answered)| *answered)
        .filter(|at| *at > since)
        .collect();
    answered.sort();
    let mut previous = since;
    let mut longest = (Duration::ZERO, None);
    for at in answered {
        let silence = at.duration_since(previous);
        if silence >= longest.0 {
            longest = (silence, Some(at));
        }
        previous = at;
    }
    longest
        .1
        .map(|at| at.duration_since(since))
        .expect("the service answered again after the failover")
}

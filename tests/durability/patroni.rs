//! Failover by Patroni over etcd (the path operators take): two members with `synchronous_mode`,
//! the leader's PostgreSQL and its Patroni killed with `kill -9`, the other member promoted by
//! Patroni itself. The members run `docs/patroni/patroni.yml`, filled in.

use crate::cluster::{
    as_postgres, bin_dir, children_of, create_ledger, free_port, kill_9_tree, postgres_dir,
    scratch_dir, Node,
};
use crate::service::{
    answering_again_after, check_after_failover, checkpoint, keygen, multi_host_url,
    set_up_packages, write_config, Agents, Serve,
};
use dts_ledger::database::roles;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEMPLATE: &str = include_str!("../../docs/patroni/patroni.yml");
const WAIT: Duration = Duration::from_secs(90);
/// The leader lock's lifetime: the shortest that keeps `loop_wait + 2 × retry_timeout <= ttl`
/// with a one-second loop, so that the test waits little for Patroni to notice the loss.
const TTL_S: u64 = 10;
const LOOP_WAIT_S: u64 = 1;
const RETRY_TIMEOUT_S: u64 = 4;

/// A process this test started, killed (with what it started) when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        for pid in children_of(self.child.id() as i32) {
            kill_9_tree(pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut command: Command, log: &Path) -> Process {
    let child = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starts");
    Process {
        child,
        log: log.to_owned(),
    }
}

/// A single-node etcd on free ports.
fn start_etcd(dir: &Path) -> (Process, String) {
    let (client, peer) = (free_port(), free_port());
    let mut command = Command::new("etcd");
    command
        .args(["--name", "etcd1", "--data-dir"])
        .arg(dir.join("etcd"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=etcd1=http://127.0.0.1:{peer}"));
    (
        spawn(command, &dir.join("etcd.log")),
        format!("127.0.0.1:{client}"),
    )
}

struct Member {
    name: String,
    node: Node,
    restapi: String,
    patroni: Option<Process>,
}

impl Member {
    fn start(dir: &Path, name: &str, etcd: &str) -> Member {
        let (port, restapi_port) = (free_port(), free_port());
        let data = dir.join(name);
        let socket = postgres_dir(&dir.join(format!("{name}-socket")));
        let restapi = format!("127.0.0.1:{restapi_port}");
        let filled = TEMPLATE
            .replace("{{name}}", name)
            .replace("{{restapi_address}}", &restapi)
            .replace("{{etcd_hosts}}", etcd)
            .replace("{{ttl_s}}", &TTL_S.to_string())
            .replace("{{loop_wait_s}}", &LOOP_WAIT_S.to_string())
            .replace("{{retry_timeout_s}}", &RETRY_TIMEOUT_S.to_string())
            .replace(
                "{{pg_hba}}",
                "    - local all all trust\n    - host all all 127.0.0.1/32 trust\n    \
                 - host replication all 127.0.0.1/32 trust",
            )
            .replace("{{postgres_address}}", &format!("127.0.0.1:{port}"))
            .replace("{{data_dir}}", data.to_str().unwrap())
            .replace("{{bin_dir}}", bin_dir().to_str().unwrap())
            .replace("{{pgpass}}", socket.join("pgpass").to_str().unwrap())
            .replace("{{superuser_password}}", "durability-superuser")
            .replace("{{replication_password}}", "durability-replicator")
            // fsync off spares this machine's disk; see `cluster::common_settings`.
            .replace(
                "{{parameters}}",
                &format!(
                    "    unix_socket_directories: '{}'\n    fsync: 'off'\n    \
                     shared_buffers: 32MB\n    max_connections: 100",
                    socket.display()
                ),
            );
        assert!(
            !filled.contains("{{"),
            "every placeholder is filled: {filled}"
        );
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(&config, filled).unwrap();
        let mut command = as_postgres(Path::new("patroni"));
        command.arg(&config);
        let patroni = spawn(command, &dir.join(format!("{name}-patroni.log")));
        Member {
            name: name.to_owned(),
            node: Node::unmanaged(name, data, port),
            restapi,
            patroni: Some(patroni),
        }
    }

    /// Patroni's REST API answers `GET /{path}` with 200 (`leader`, `sync`, …).
    async fn answers(&self, path: &str) -> bool {
        matches!(
            reqwest::get(format!("http://{}/{path}", self.restapi)).await,
            Ok(response) if response.status() == 200
        )
    }

    /// `kill -9` Patroni and then its PostgreSQL with every process it started.
    fn kill_9(&mut self) {
        let patroni = self.patroni.take().expect("runs");
        for pid in children_of(patroni.child.id() as i32) {
            // SAFETY: a process this test started (Patroni, under runuser).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.node.kill_9();
        drop(patroni);
    }

    fn log(&self) -> String {
        self.patroni
            .as_ref()
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Waits until `done`; past `within`, fails with `what` (read then, so that it can carry a log).
async fn wait_until<F, Fut>(what: impl Fn() -> String, within: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < until, "{}", what());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_promotes_the_synchronous_standby_by_itself_and_nothing_acknowledged_is_lost() {
    let dir = scratch_dir("dts-ledger-patroni-");
    let (_etcd, etcd) = start_etcd(dir.path());
    let first = Member::start(dir.path(), "pg1", &etcd);
    wait_until(
        || format!("pg1 leads: {}", first.log()),
        WAIT,
        || first.answers("leader"),
    )
    .await;
    let second = Member::start(dir.path(), "pg2", &etcd);
    let mut members = [first, second];
    wait_until(
        || format!("pg2 becomes the synchronous standby: {}", members[1].log()),
        WAIT,
        || members[1].answers("sync"),
    )
    .await;
    members[0].node.wait_sync_standby(WAIT).await;
    create_ledger(&members[0].node).await;

    let config = write_config(dir.path());
    let url = multi_host_url(roles::SERVICE, &[&members[0].node, &members[1].node]);
    let a = Serve::start(dir.path(), "serve-a", &config, &url).await;
    let b = Serve::start(dir.path(), "serve-b", &config, &url).await;
    let (_, ready) = a.readiness().await;
    assert_eq!(ready["database"]["port"], members[0].node.port);
    assert_eq!(ready["database"]["commitsWaitForStandby"], true, "{ready}");
    // Patroni names the standby it keeps synchronous.
    assert!(
        ready["database"]["synchronousStandbyNames"]
            .as_str()
            .unwrap()
            .contains("pg2"),
        "{ready}"
    );

    let tasks = set_up_packages(&a, 4, 2).await;
    let agents = Agents::start(vec![a.address.clone(), b.address.clone()], tasks, 4);
    agents.wait_for_reports(0, 100, WAIT).await;
    let key = keygen(dir.path());
    let checkpoint_file = dir.path().join("checkpoint.json");
    checkpoint(&url, &key, &checkpoint_file);
    agents.wait_for_reports(agents.reports(), 50, WAIT).await;

    let before_loss = agents.reports();
    let killed_at = Instant::now();
    members[0].kill_9();
    let [lost, survivor] = &members;
    wait_until(
        || format!("Patroni promotes pg2: {}", survivor.log()),
        WAIT,
        || survivor.answers("leader"),
    )
    .await;
    let promoted_in = killed_at.elapsed();
    agents.wait_for_reports(agents.reports(), 100, WAIT).await;
    let acknowledged = agents.stop().await;
    let answered_in = answering_again_after(&acknowledged, killed_at);
    for serve in [&a, &b] {
        let (status, ready) = serve.readiness().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["database"]["port"], survivor.node.port);
    }
    assert_ne!(lost.name, survivor.name);

    let events = check_after_failover(&survivor.node, &acknowledged, &checkpoint_file, &key).await;
    println!(
        "patroni failover: kill -9 to promoted {:.2} s (ttl {TTL_S} s), kill -9 to answering \
         again {:.2} s; {} reports acknowledged ({before_loss} before the loss), {} orders, {} \
         retried requests, {events} events checked",
        promoted_in.as_secs_f64(),
        answered_in.as_secs_f64(),
        acknowledged.reports.len(),
        acknowledged.orders.len(),
        acknowledged.faults,
    );
}

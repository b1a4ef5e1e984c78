//! PostgreSQL servers for the durability tests: real `postgres` processes on TCP ports of this
//! machine, made and driven with PostgreSQL's own tools (`initdb`, `pg_basebackup -R`,
//! `pg_ctl`), run as `postgres` through `runuser` when the tests run as root (PostgreSQL refuses
//! to run as root). Every directory is a throwaway one, removed at the end; every server is
//! stopped (or killed) when its [`Node`] is dropped.

use dts_ledger::database::embedded::find_binaries;
use dts_ledger::database::{migrate, roles};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// The ledger's roles log in with this (the servers trust 127.0.0.1, so it is only carried).
pub const ROLE_PASSWORD: &str = "dts-ledger-durability";
/// The database the ledger lives in on every server.
pub const DATABASE: &str = "ledger";
/// The `application_name` (and `cluster_name`) the standby connects to its primary with, which
/// the primary's `synchronous_standby_names` names.
pub const STANDBY_NAME: &str = "standby1";

/// A port nobody listens on now (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway directory the `postgres` account may enter and own things in.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args…` as the `postgres` account when we are root, as ourselves otherwise.
pub fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command`, panicking with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A directory made by us and handed to the `postgres` account.
pub fn postgres_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    if is_root() {
        run(Command::new("chown").args(["postgres:postgres"]).arg(path));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_owned()
}

/// The directory of the PostgreSQL server binaries, the symbolic links of `initdb` followed
/// there: `pg_basebackup` and Patroni's tools live beside the real one.
pub fn bin_dir() -> PathBuf {
    let initdb = find_binaries()
        .expect("the PostgreSQL server binaries are installed")
        .join("initdb");
    initdb
        .canonicalize()
        .unwrap_or(initdb)
        .parent()
        .unwrap()
        .to_owned()
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// One PostgreSQL server: its data directory and port.
pub struct Node {
    pub name: String,
    pub data: PathBuf,
    pub port: u16,
    /// Set once the server was killed on purpose: it is never started or stopped again.
    lost: bool,
    /// Whether this harness runs the server with `pg_ctl` (Patroni runs its own).
    managed: bool,
}

/// The settings every server here shares. `fsync = off` only spares this machine's disk: the
/// tests kill processes, never the operating system, so nothing written is lost by it, and what
/// they prove (a commit is acknowledged only once the standby has its WAL) does not depend on it.
pub fn common_settings(port: u16, socket_dir: &Path) -> String {
    format!(
        "listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{}'\n\
         wal_level = replica\n\
         max_wal_senders = 8\n\
         max_replication_slots = 8\n\
         hot_standby = on\n\
         wal_keep_size = '128MB'\n\
         shared_buffers = '32MB'\n\
         max_connections = 100\n\
         fsync = off\n\
         logging_collector = off\n",
        socket_dir.display()
    )
}

/// Trust on 127.0.0.1 for every role and for replication: the servers listen nowhere else.
pub const HBA: &str = "local all all trust\n\
                       host all all 127.0.0.1/32 trust\n\
                       host replication all 127.0.0.1/32 trust\n";

impl Node {
    /// A new primary under `root`/`name`, started, with a synchronous standby named
    /// [`STANDBY_NAME`] required for every commit.
    pub fn primary(root: &Path, name: &str) -> Node {
        let data = postgres_dir(&root.join(name));
        run(as_postgres(&bin("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data));
        let port = free_port();
        let settings = format!(
            "{}synchronous_standby_names = '{STANDBY_NAME}'\nsynchronous_commit = on\n",
            common_settings(port, &data)
        );
        append(&data.join("postgresql.conf"), &settings);
        write_as_postgres(&data.join("pg_hba.conf"), HBA);
        let node = Node {
            name: name.to_owned(),
            data,
            port,
            lost: false,
            managed: true,
        };
        node.start();
        node
    }

    /// A hot standby of `primary` made by `pg_basebackup -R` (which writes `primary_conninfo`
    /// and `standby.signal`), streaming as [`STANDBY_NAME`], started. It names no synchronous
    /// standby of its own: once promoted with no other server left, it commits alone (what an
    /// operator accepts by promoting; see docs/operating.md, "Operating PostgreSQL").
    pub fn standby_of(primary: &Node, root: &Path, name: &str) -> Node {
        let data = postgres_dir(&root.join(name));
        run(as_postgres(&bin("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "--checkpoint=fast", "-D"])
            .arg(&data));
        let port = free_port();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "{}cluster_name = '{STANDBY_NAME}'\nsynchronous_standby_names = ''\n",
                common_settings(port, &data)
            ),
        );
        let node = Node {
            name: name.to_owned(),
            data,
            port,
            lost: false,
            managed: true,
        };
        node.start();
        node
    }

    /// A server Patroni runs: the harness only knows where it is, and kills it.
    pub fn unmanaged(name: &str, data: PathBuf, port: u16) -> Node {
        Node {
            name: name.to_owned(),
            data,
            port,
            lost: false,
            managed: false,
        }
    }

    fn start(&self) {
        let log = self.data.with_extension("log");
        std::fs::write(&log, "").unwrap();
        if is_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&log));
        }
        run(as_postgres(&bin("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&log));
    }

    /// `pg_ctl promote`: the standby ends recovery and takes writes.
    pub fn promote(&self) {
        run(as_postgres(&bin("pg_ctl"))
            .args(["promote", "-w", "-t", "60", "-D"])
            .arg(&self.data));
    }

    /// The postmaster's process id, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = read_as_postgres(&self.data.join("postmaster.pid"))?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `kill -9` the postmaster and every process it started, as a machine that lost power:
    /// no shutdown, no last WAL flush. Its data directory is never used again.
    pub fn kill_9(&mut self) {
        let pid = self.postmaster_pid().expect("the server runs");
        kill_9_tree(pid);
        self.lost = true;
    }

    /// Connection settings as `user` to `database`.
    pub fn config(&self, user: &str, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(ROLE_PASSWORD)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// A `DATABASE_URL` naming this server alone, as `user`.
    pub fn url(&self, user: &str) -> String {
        format!(
            "postgres://{user}:{ROLE_PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// Waits until the server answers as a primary (`pg_is_in_recovery()` false).
    pub async fn wait_primary(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            if let Ok(client) = connect(&self.config("postgres", "postgres")).await {
                let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await;
                if matches!(row, Ok(row) if !row.get::<_, bool>(0)) {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "{} never became a primary",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `standby` streams to this server as a synchronous standby.
    pub async fn wait_sync_standby(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            if let Ok(client) = connect(&self.config("postgres", "postgres")).await {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication \
                         WHERE sync_state IN ('sync', 'quorum') AND state = 'streaming'",
                        &[],
                    )
                    .await;
                if matches!(row, Ok(row) if row.get::<_, i64>(0) > 0) {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "no synchronous standby attached to {}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.lost {
            return;
        }
        if self.managed {
            let _ = as_postgres(&bin("pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&self.data)
                .output();
        } else if let Some(pid) = self.postmaster_pid() {
            kill_9_tree(pid);
        }
    }
}

/// SIGKILL to `pid` and to every process it started (listed first, so that none is restarted
/// in between).
pub fn kill_9_tree(pid: i32) {
    let children = children_of(pid);
    // SAFETY: plain kill(2) calls on process ids this harness started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for child in children {
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
}

/// The processes whose parent is `pid`, from `/proc`.
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent is the second field after the parenthesised command name.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent: i32 = after.split(' ').nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    let before = read_as_postgres(path).unwrap_or_default();
    write_as_postgres(path, &format!("{before}\n{text}"));
}

/// Files under a data directory belong to `postgres` (mode 0700 directories): we are root, or
/// `postgres` ourselves, so plain file calls reach them.
fn read_as_postgres(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn write_as_postgres(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    if is_root() {
        run(Command::new("chown").args(["postgres:postgres"]).arg(path));
    }
}

pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The ledger's roles and database on `primary`, migrated by the owner, as docs/operating.md's
/// "Database roles" asks of a deployment.
pub async fn create_ledger(primary: &Node) {
    let admin = connect(&primary.config("postgres", "postgres"))
        .await
        .expect("connects as the superuser");
    roles::create_login_roles(&admin, Some(ROLE_PASSWORD))
        .await
        .expect("creates the ledger's roles");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {DATABASE} OWNER {}",
            roles::OWNER
        ))
        .await
        .expect("creates the ledger's database");
    let (mut owner, connection) = primary
        .config(roles::OWNER, DATABASE)
        .connect(NoTls)
        .await
        .expect("connects as the owner");
    tokio::spawn(connection);
    migrate::migrate(&mut owner)
        .await
        .expect("migrates as the owner");
}

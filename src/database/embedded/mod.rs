//! An embedded PostgreSQL cluster, owned by this process.
//!
//! `serve` without `DATABASE_URL` creates a cluster under its data directory on first start and
//! starts it on every start, using the PostgreSQL binaries installed on the machine. The cluster
//! listens only on a Unix socket in a directory only its owner can enter, so `trust` auth reaches
//! no other local user. PostgreSQL refuses to run as root: as root, every PostgreSQL command runs
//! as the `postgres` user through `runuser` (`sudo` is not installed everywhere).
//!
//! The superuser only prepares the cluster (the ledger's roles, its database); migrations run as
//! the owner role and the service as the service role (see [`super::roles`]). With `trust` auth,
//! whoever reaches the socket may name any role: the roles bound what the service's own statements
//! can do (a bug, an injected statement), not what someone already running code as the service's
//! OS user can, who could read the data files anyway.

use std::fs::{self, File};

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod owner;
mod socket;

pub use owner::{find_binaries, give_to_owner, make_owner_dir, owner_command, owner_command_path};
use owner::{owner_account, postgres_account, RunAs};
use socket::{check_socket_dir, choose_socket_dir, secure_socket_dir};

/// Names the socket file (`.s.PGSQL.5432`); nothing listens on a TCP port.
pub const SOCKET_PORT: u16 = 5432;

/// How long `pg_ctl` may take to start or stop the cluster: crash recovery after an unclean stop
/// can take a while on a large ledger.
const PG_CTL_TIMEOUT_S: u32 = 300;

/// `sun_path` holds 108 bytes; leave room for `/.s.PGSQL.5432` and the terminating NUL.
const SOCKET_DIR_BYTES_MAX: usize = 90;

/// The database the service uses inside the cluster.
pub const DATABASE_NAME: &str = "ledger";

/// The cluster's superuser, the same whoever runs the service.
pub const SUPERUSER: &str = "postgres";

/// The cluster's own data directory, inside the data directory `serve` is given.
pub const PGDATA_DIR: &str = "pgdata";

/// How long an archived WAL segment may stay open when the ledger moves: with `wal_archive_dir`
/// set, a segment is switched and archived at least this often, so the archive never lags the
/// ledger by more (a quiet ledger switches nothing).
pub const ARCHIVE_TIMEOUT_S: u32 = 60;

const NO_BINARIES: &str =
    "no PostgreSQL server binaries were found (looked for `initdb`, `pg_ctl` \
and `postgres` in LEDGER_PG_BIN_DIR, on PATH and under /usr/lib/postgresql/*/bin). Install them \
(Debian/Ubuntu: `apt-get install postgresql`), point LEDGER_PG_BIN_DIR at their directory, or set \
DATABASE_URL to use an existing PostgreSQL server instead of the embedded one.";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{NO_BINARIES}")]
    NoBinaries,
    #[error(
        "running as root, the embedded PostgreSQL must run as the `postgres` user, which does not \
         exist here; create it (`useradd --system --home /var/lib/postgresql postgres`) or set \
         DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "running as root, the embedded PostgreSQL runs as `postgres` through `runuser`, which was \
         not found; install util-linux or set DATABASE_URL"
    )]
    NoRunuser,
    #[error(
        "the `postgres` user cannot reach {0}: choose a LEDGER_DATA_DIR below directories it may \
         enter (for example /var/lib/dts-ledger), or set DATABASE_URL"
    )]
    Unreachable(PathBuf),
    #[error("data directory {0} is in use by another dts-ledger process")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {detail}")]
    Command {
        command: String,
        status: String,
        detail: String,
    },
    #[error(
        "the socket directory {path} is not safe to use: {reason}. Someone else may have made it; \
         check it, remove it and start again (or choose a LEDGER_DATA_DIR short enough to hold \
         the socket inside it)"
    )]
    UnsafeSocketDir { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How the cluster is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit reaches the disk before it is acknowledged: the service's setting.
    Durable,
    /// fsync off: only for throwaway test clusters, where a crash loses nothing of value.
    Throwaway,
}

/// A running cluster; stopped by [`EmbeddedPostgres::stop`] or, as a last resort, on drop.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    runuser: Option<(PathBuf, RunAs)>,
    running: bool,
    /// Where finished WAL segments are archived (`[database] wal_archive_dir`), if anywhere.
    wal_archive_dir: Option<PathBuf>,
    /// Held for the process lifetime: one service per data directory.
    _lock: File,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `root` if it does not exist yet, then starts it.
    pub fn start(root: &Path, durability: Durability) -> Result<EmbeddedPostgres, EmbeddedError> {
        EmbeddedPostgres::start_with(root, durability, None)
    }

    /// [`EmbeddedPostgres::start`], archiving every finished WAL segment into `wal_archive_dir`
    /// (created if missing) when one is given.
    pub fn start_with(
        root: &Path,
        durability: Durability,
        wal_archive_dir: Option<&Path>,
    ) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bin_dir = find_binaries()?;
        let runuser = owner_account()?;
        if let Some(archive) = wal_archive_dir {
            make_owner_dir(archive)?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_error(root))?;
        let root = root.canonicalize().map_err(io_error(root))?;
        let lock = lock_exclusively(&root)?;
        let mut cluster = EmbeddedPostgres {
            pgdata: root.join(PGDATA_DIR),
            socket_dir: choose_socket_dir(&root),
            log_file: root.join("postgresql.log"),
            bin_dir,
            runuser,
            running: false,
            wal_archive_dir: wal_archive_dir.map(Path::to_owned),
            _lock: lock,
        };
        cluster.prepare_directories(&root)?;
        if !cluster.pgdata.join("PG_VERSION").is_file() {
            cluster.init(durability)?;
        }
        cluster.write_settings(durability)?;
        cluster.stop_leftover()?;
        cluster.pg_ctl_start()?;
        cluster.running = true;
        Ok(cluster)
    }

    /// The directory of the cluster's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's own data directory (`<root>/pgdata`).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Connection settings for `database` in this cluster, as its superuser.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        self.config_as(database, SUPERUSER)
    }

    /// Connection settings for `database` in this cluster, as `user` (one of the ledger's roles;
    /// no password: the socket directory is private, see the module's comment).
    pub fn config_as(&self, database: &str, user: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(SOCKET_PORT)
            .user(user)
            .dbname(database)
            .application_name("dts-ledger");
        config
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, commits are kept).
    pub fn stop(&mut self) -> Result<(), EmbeddedError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        let mut command = self.command("pg_ctl");
        command
            .arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-s", "-t", &timeout]);
        self.run(command, "pg_ctl stop").map(drop)
    }

    fn command(&self, program: &str) -> Command {
        self.command_as_owner(&self.bin_dir.join(program))
    }

    /// `executable` run as the cluster owner, in a process group of its own.
    fn command_as_owner(&self, executable: &Path) -> Command {
        owner::command_as(
            self.runuser.as_ref().map(|(runuser, _)| runuser.as_path()),
            executable,
        )
    }

    fn run(&self, mut command: Command, what: &str) -> Result<Output, EmbeddedError> {
        let output = command.output().map_err(io_error(&self.bin_dir))?;
        if output.status.success() {
            return Ok(output);
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        if let Ok(log) = fs::read_to_string(&self.log_file) {
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            detail = format!(
                "{detail}; last lines of {}: {}",
                self.log_file.display(),
                tail.join(" | ")
            );
        }
        Err(EmbeddedError::Command {
            command: what.to_owned(),
            status: output.status.to_string(),
            detail,
        })
    }

    /// The data and socket directories exist, belong to the cluster owner and are private to it.
    fn prepare_directories(&self, root: &Path) -> Result<(), EmbeddedError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_error(root))?;
        if let Some((_, account)) = self.runuser {
            std::os::unix::fs::chown(root, Some(account.uid), Some(account.gid))
                .map_err(io_error(root))?;
        }
        secure_socket_dir(
            &self.socket_dir,
            self.runuser.as_ref().map(|(_, account)| *account),
        )?;
        if self.runuser.is_some() {
            // The owner must also be able to walk down to the data directory (a checkout under
            // /root is not reachable by `postgres`): ask the kernel on its behalf.
            let mut probe = self.command_as_owner(Path::new("test"));
            probe.arg("-w").arg(root);
            let reachable = probe.output().map(|o| o.status.success()).unwrap_or(false);
            if !reachable {
                return Err(EmbeddedError::Unreachable(root.to_owned()));
            }
        }
        Ok(())
    }

    fn init(&self, durability: Durability) -> Result<(), EmbeddedError> {
        if self.pgdata.exists() {
            // A half-made cluster from an interrupted first start: initdb refuses a non-empty
            // directory, and nothing in it can be data yet (PG_VERSION is written early).
            fs::remove_dir_all(&self.pgdata).map_err(io_error(&self.pgdata))?;
        }
        tracing::info!(pgdata = %self.pgdata.display(), "creating the embedded PostgreSQL cluster");
        let mut command = self.command("initdb");
        command.arg("-D").arg(&self.pgdata).args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth=trust",
        ]);
        if durability == Durability::Throwaway {
            command.arg("--no-sync");
        }
        self.run(command, "initdb")?;
        let conf = self.pgdata.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_error(&conf))?;
        file.write_all(b"\ninclude_if_exists = 'dts-ledger.conf'\n")
            .map_err(io_error(&conf))
    }

    /// Rewritten at every start, so the socket directory and tuning follow the current settings.
    fn write_settings(&self, durability: Durability) -> Result<(), EmbeddedError> {
        let quoted = self.socket_dir.display().to_string().replace('\'', "''");
        let mut settings = format!(
            "# Written by dts-ledger at every start; edits are overwritten.\n\
             listen_addresses = ''\n\
             port = {SOCKET_PORT}\n\
             unix_socket_directories = '{quoted}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 200\n\
             # The ledger appends all day long: room in memory for the hot part of the ledger and\n\
             # the projections, fewer checkpoints (each one makes the next writes of every page\n\
             # log a full page image), and those images compressed.\n\
             shared_buffers = '512MB'\n\
             wal_buffers = '16MB'\n\
             max_wal_size = '4GB'\n\
             checkpoint_timeout = '15min'\n\
             wal_compression = on\n"
        );
        if durability == Durability::Throwaway {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        if let Some(archive) = &self.wal_archive_dir {
            settings.push_str(&archive_settings(archive));
        }
        let path = self.pgdata.join("dts-ledger.conf");
        fs::write(&path, settings).map_err(io_error(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(io_error(&path))
    }

    /// A server left running by a process that died without stopping it. We hold the data
    /// directory's lock, so it cannot belong to a live service.
    fn stop_leftover(&mut self) -> Result<(), EmbeddedError> {
        if !self.pgdata.join("postmaster.pid").exists() {
            return Ok(());
        }
        let mut status = self.command("pg_ctl");
        status.arg("status").arg("-D").arg(&self.pgdata);
        let alive = status.output().map(|o| o.status.success()).unwrap_or(false);
        if alive {
            tracing::warn!("stopping a PostgreSQL server left running by an earlier process");
            self.running = true;
            self.stop()?;
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        if let Some((_, account)) = &self.runuser {
            // The server writes its log as the cluster owner.
            File::options()
                .create(true)
                .append(true)
                .open(&self.log_file)
                .and_then(|_| {
                    std::os::unix::fs::chown(&self.log_file, Some(account.uid), Some(account.gid))
                })
                .map_err(io_error(&self.log_file))?;
        }
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        let mut command = self.command("pg_ctl");
        command
            .arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-s", "-t", &timeout]);
        // pg_ctl leaves the server attached to our stdout otherwise; its output goes to the log.
        command.stdin(std::process::Stdio::null());
        self.run(command, "pg_ctl start").map(drop)
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "stopping the embedded PostgreSQL failed");
        }
    }
}

/// Continuous archiving into `archive` (see docs/operating.md, "Backups and restore"). A segment is
/// copied under a temporary name, flushed to disk, then renamed, so that the archive never holds a
/// partial segment under a real name; an existing segment is never overwritten (PostgreSQL's
/// advice: a second cluster archiving into the same directory by mistake fails loudly instead of
/// destroying the first one's history). `archive` was checked when the configuration was read: an
/// absolute UTF-8 path without quotes, newlines or `%`.
fn archive_settings(archive: &Path) -> String {
    let dir = archive.display();
    format!(
        "# Continuous archiving ([database] wal_archive_dir), for restore --to TIME.\n\
         archive_mode = on\n\
         archive_timeout = '{ARCHIVE_TIMEOUT_S}s'\n\
         archive_command = 'test ! -f \"{dir}/%f\" && cp \"%p\" \"{dir}/%f.part\" \
         && sync \"{dir}/%f.part\" && mv \"{dir}/%f.part\" \"{dir}/%f\"'\n"
    )
}

fn lock_exclusively(root: &Path) -> Result<File, EmbeddedError> {
    let path = root.join("dts-ledger.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the lifetime of `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(EmbeddedError::InUse(root.to_owned()));
    }
    Ok(file)
}

/// Connection settings for the cluster of a `serve` process that runs on `root` right now (its
/// data directory is locked), to read alongside it as `user`.
pub fn running_cluster_config(
    root: &Path,
    database: &str,
    user: &str,
) -> Result<tokio_postgres::Config, EmbeddedError> {
    let root = root.canonicalize().map_err(io_error(root))?;
    let socket_dir = choose_socket_dir(&root);
    // Trust no socket another user could have put there: the server behind it would be theirs.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner_uid = if me == 0 {
        postgres_account().ok_or(EmbeddedError::NoPostgresUser)?.uid
    } else {
        me
    };
    check_socket_dir(&socket_dir, owner_uid)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(SOCKET_PORT)
        .user(user)
        .dbname(database)
        .application_name("dts-ledger");
    Ok(config)
}

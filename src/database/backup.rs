//! Backups of the embedded cluster with PostgreSQL's own tools, and restores from them.
//!
//! `dts-ledger backup DIR` takes an online base backup with `pg_basebackup` (plain format, the
//! WAL it needs streamed alongside, `-X stream`) through the cluster's private socket as its
//! superuser, while `serve` runs or not, then checks it with `pg_verifybackup` (every file
//! against the backup's manifest, and the WAL from start to end). `dts-ledger restore DIR` makes
//! a new data directory from such a backup, never over an existing one, and brings it up once:
//! to the end of the backup, or with `--to TIME` to that time by replaying the WAL archive
//! (`[database] wal_archive_dir`, written by the cluster's `archive_command`, see
//! [`super::embedded`]). Nothing here copies database files by hand: PostgreSQL writes and checks
//! the backup, and PostgreSQL's recovery makes it a database again.

use super::embedded::{self, EmbeddedError, EmbeddedPostgres, PGDATA_DIR, SOCKET_PORT};
use chrono::{DateTime, Utc};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// How long a restore may take to replay WAL up to its target: an archive of a busy day is tens
/// of gigabytes, which PostgreSQL replays at hundreds of megabytes a second.
const RECOVERY_WAIT_S_MAX: u64 = 3_600;
/// How often a restore asks whether recovery is over.
const RECOVERY_POLL_MS: u64 = 200;
/// The file `pg_basebackup` writes into every backup; a directory without one is no backup.
const MANIFEST: &str = "backup_manifest";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(
        "{0} exists and is not empty: a backup goes into a new or empty directory, never over \
         files that may be another backup"
    )]
    TargetNotEmpty(PathBuf),
    #[error("there is no embedded cluster under {0} to back up (no {PGDATA_DIR}/PG_VERSION)")]
    NoCluster(PathBuf),
    #[error(
        "the data directory {0} exists and is not empty: a restore makes a new data directory and \
         never writes over one (move it away, or name another with --data-dir)"
    )]
    DataDirNotEmpty(PathBuf),
    #[error("{0} is not a backup made by `dts-ledger backup` (no {MANIFEST})")]
    NotABackup(PathBuf),
    #[error(
        "--to needs the WAL archive: set [database] wal_archive_dir (or LEDGER_WAL_ARCHIVE_DIR) to \
         the directory the cluster archived into"
    )]
    NoArchive,
    #[error("the WAL archive {0} does not exist")]
    ArchiveMissing(PathBuf),
    #[error("`{command}` failed ({status}): {detail}")]
    Tool {
        command: String,
        status: String,
        detail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the restored cluster did not come out of recovery: {0}. Its log ({1}) says why (a \
         target before the end of the backup, or beyond the last archived WAL, is refused by \
         PostgreSQL); the data directory is left as it is for inspection: remove it before \
         trying again"
    )]
    Recovery(String, PathBuf),
    #[error("the restored cluster cannot be read: {0}")]
    Database(#[from] tokio_postgres::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs a PostgreSQL tool; its own message when it fails.
fn run(mut command: Command, what: &str) -> Result<(), BackupError> {
    let output = command.output().map_err(|source| BackupError::Io {
        path: PathBuf::from(what),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(BackupError::Tool {
        command: what.to_owned(),
        status: output.status.to_string(),
        detail,
    })
}

/// Whether `dir` is missing or an empty directory.
fn is_missing_or_empty(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(io_error(dir)(error)),
    }
}

/// What a backup took.
#[derive(Debug, Clone)]
pub struct BackupDone {
    pub dir: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
}

/// Backs the embedded cluster under `root` up into `target` (new or empty) and verifies the
/// backup. Beside a running `serve` it goes through that cluster's socket; otherwise it starts the
/// cluster for the time of the backup (with the same archive settings `serve` uses).
pub fn backup(
    root: &Path,
    wal_archive_dir: Option<&Path>,
    target: &Path,
) -> Result<BackupDone, BackupError> {
    let started = Instant::now();
    if !root.join(PGDATA_DIR).join("PG_VERSION").is_file() {
        return Err(BackupError::NoCluster(root.to_owned()));
    }
    if !is_missing_or_empty(target)? {
        return Err(BackupError::TargetNotEmpty(target.to_owned()));
    }
    // Ours for the backup's time, or the running service's: the lock on the data directory says.
    let (cluster, socket_dir) =
        match EmbeddedPostgres::start_with(root, embedded::Durability::Durable, wal_archive_dir) {
            Ok(cluster) => {
                let socket = cluster.socket_dir().to_owned();
                (Some(cluster), socket)
            }
            Err(EmbeddedError::InUse(_)) => {
                let config =
                    embedded::running_cluster_config(root, "postgres", embedded::SUPERUSER)?;
                let socket = match config.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Unix(path)) => path.clone(),
                    _ => unreachable!("the embedded cluster listens on a socket only"),
                };
                (None, socket)
            }
            Err(error) => return Err(error.into()),
        };
    embedded::make_owner_dir(target)?;
    let target = target.canonicalize().map_err(io_error(target))?;
    let mut command = embedded::owner_command("pg_basebackup")?;
    command
        .arg("--pgdata")
        .arg(&target)
        .arg("--host")
        .arg(&socket_dir)
        .args(["--port", &SOCKET_PORT.to_string()])
        .args(["--username", embedded::SUPERUSER, "--no-password"])
        // The WAL from the backup's start to its end, streamed while the files are copied, so
        // the backup is consistent on its own, without any archive.
        .args([
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--format",
            "plain",
        ])
        .arg(format!(
            "--label=dts-ledger backup {}",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    let taken = run(command, "pg_basebackup");
    // A cluster started for the backup only is stopped whatever happened.
    drop(cluster);
    taken?;
    verify_backup(&target)?;
    Ok(BackupDone {
        bytes: tree_bytes(&target),
        dir: target,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `pg_verifybackup`: every file against the manifest, and the WAL from start to end parsed.
fn verify_backup(dir: &Path) -> Result<(), BackupError> {
    if !dir.join(MANIFEST).is_file() {
        return Err(BackupError::NotABackup(dir.to_owned()));
    }
    let mut command = embedded::owner_command("pg_verifybackup")?;
    command.arg("--quiet").arg(dir);
    run(command, "pg_verifybackup")
}

/// The bytes of every file under `dir` (for the summary line).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(entry.path()),
                Ok(metadata) => total = total.saturating_add(metadata.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// What a restore made.
#[derive(Debug, Clone)]
pub struct RestoreDone {
    pub data_dir: PathBuf,
    /// The ledger's last position and the time it was recorded (`None`: no event yet).
    pub head_position: i64,
    pub head_recorded_at: Option<DateTime<Utc>>,
    pub seconds: f64,
}

/// Makes the data directory `root` (missing or empty) from the backup in `from`, brings it up
/// once (replaying the archive up to `to`, when given) and stops it again. While it is up,
/// `read_head` reads the ledger's last position and the time of the event there: the store's to
/// read, which builds on this module.
pub async fn restore(
    from: &Path,
    root: &Path,
    to: Option<DateTime<Utc>>,
    wal_archive_dir: Option<&Path>,
    read_head: impl AsyncFnOnce(
        &tokio_postgres::Client,
    ) -> Result<(i64, Option<DateTime<Utc>>), tokio_postgres::Error>,
) -> Result<RestoreDone, BackupError> {
    let started = Instant::now();
    if !is_missing_or_empty(root)? {
        return Err(BackupError::DataDirNotEmpty(root.to_owned()));
    }
    let archive = match (to, wal_archive_dir) {
        (Some(_), None) => return Err(BackupError::NoArchive),
        (Some(_), Some(archive)) if !archive.is_dir() => {
            return Err(BackupError::ArchiveMissing(archive.to_owned()))
        }
        (_, archive) => archive,
    };
    let from = from.canonicalize().map_err(io_error(from))?;
    verify_backup(&from)?;
    embedded::make_owner_dir(root)?;
    let root = root.canonicalize().map_err(io_error(root))?;
    let pgdata = root.join(PGDATA_DIR);
    // As the cluster's owner, so that every file keeps the owner and mode PostgreSQL wants.
    let mut copy = embedded::owner_command_path(Path::new("cp"))?;
    copy.arg("-a").arg(&from).arg(&pgdata);
    run(copy, "cp -a")?;
    // The backup's manifest describes the backup, not the new data directory.
    fs::remove_file(pgdata.join(MANIFEST)).map_err(io_error(&pgdata))?;
    if let (Some(to), Some(archive)) = (to, archive) {
        prepare_recovery(&pgdata, to, archive)?;
    }
    let root_for_start = root.clone();
    let archive_for_start = wal_archive_dir.map(Path::to_owned);
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start_with(
            &root_for_start,
            embedded::Durability::Durable,
            archive_for_start.as_deref(),
        )
    })
    .await
    .expect("the start task does not panic")
    .map_err(|error| BackupError::Recovery(error.to_string(), root.join("postgresql.log")))?;
    let outcome = finish_recovery(&cluster, to.is_some(), &root, read_head).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.stop()
    })
    .await
    .expect("the stop task does not panic");
    let (head_position, head_recorded_at) = outcome?;
    stopped?;
    Ok(RestoreDone {
        data_dir: root,
        head_position,
        head_recorded_at,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Point-in-time recovery settings: replay archived WAL up to `to`, then become a primary. On
/// the backup's own timeline (`current`): a cluster restored earlier from the same archive and
/// promoted there wrote a newer timeline into it, which PostgreSQL would follow by default
/// (`latest`) into a history that is not the one backed up.
/// `ALTER SYSTEM`'s file, so that they can be taken out again with `ALTER SYSTEM RESET` once the
/// target is reached (the embedded cluster's own settings file is rewritten at every start).
fn prepare_recovery(pgdata: &Path, to: DateTime<Utc>, archive: &Path) -> Result<(), BackupError> {
    let auto = pgdata.join("postgresql.auto.conf");
    let mut text = fs::read_to_string(&auto).unwrap_or_default();
    // Checked when the configuration was read: absolute, UTF-8, no quotes, newlines or `%`.
    let dir = archive.display();
    text.push_str(&format!(
        "# dts-ledger restore --to: removed again once the target is reached.\n\
         restore_command = 'cp \"{dir}/%f\" \"%p\"'\n\
         recovery_target_time = '{}'\n\
         recovery_target_action = 'promote'\n\
         recovery_target_timeline = 'current'\n",
        to.format("%Y-%m-%d %H:%M:%S%.6f+00")
    ));
    fs::write(&auto, text).map_err(io_error(&auto))?;
    embedded::give_to_owner(&auto)?;
    let signal = pgdata.join("recovery.signal");
    fs::write(&signal, b"").map_err(io_error(&signal))?;
    embedded::give_to_owner(&signal)?;
    Ok(())
}

/// Waits until the restored cluster is a primary again, takes the recovery settings out, and
/// reads the ledger's head with `read_head`.
async fn finish_recovery(
    cluster: &EmbeddedPostgres,
    targeted: bool,
    root: &Path,
    read_head: impl AsyncFnOnce(
        &tokio_postgres::Client,
    ) -> Result<(i64, Option<DateTime<Utc>>), tokio_postgres::Error>,
) -> Result<(i64, Option<DateTime<Utc>>), BackupError> {
    let log = root.join("postgresql.log");
    let deadline = Instant::now() + Duration::from_secs(RECOVERY_WAIT_S_MAX);
    let client = loop {
        let attempt = async {
            let (client, connection) = cluster
                .config(embedded::DATABASE_NAME)
                .connect(NoTls)
                .await?;
            tokio::spawn(connection);
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
            Ok::<_, tokio_postgres::Error>((client, row.get::<_, bool>(0)))
        };
        match attempt.await {
            Ok((client, false)) => break client,
            Ok((_, true)) => {}
            Err(error) if Instant::now() >= deadline => {
                return Err(BackupError::Recovery(error.to_string(), log))
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(BackupError::Recovery(
                format!("still in recovery after {RECOVERY_WAIT_S_MAX} s"),
                log,
            ));
        }
        if !cluster.pgdata().join("postmaster.pid").exists() {
            return Err(BackupError::Recovery("the server stopped".into(), log));
        }
        tokio::time::sleep(Duration::from_millis(RECOVERY_POLL_MS)).await;
    };
    if targeted {
        // One statement at a time: ALTER SYSTEM refuses to run in a transaction block, which
        // several statements sent together are.
        for setting in [
            "restore_command",
            "recovery_target_time",
            "recovery_target_action",
            "recovery_target_timeline",
        ] {
            client
                .batch_execute(&format!("ALTER SYSTEM RESET {setting}"))
                .await?;
        }
    }
    Ok(read_head(&client).await?)
}

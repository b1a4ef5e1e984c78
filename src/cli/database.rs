//! The database's own commands: `migrate` and `migrate-partitions` (as the schema's owner),
//! `stats` (where the ledger's bytes are), and the embedded cluster's `backup` and `restore`.

use super::output::{client, CannotRun};
use super::{Invocation, Run};
use crate::configuration::{Config, DatabaseSettings};
use crate::database::{Database, Role};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Apply the database schema as its owner (LEDGER_MIGRATE_DATABASE_URL, else DATABASE_URL) and
/// exit.
#[derive(Debug, Args)]
pub struct Migrate {}

impl Run for Migrate {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let applied = Database::migrate(&cli.database_to_migrate(&config)?).await?;
        tracing::info!(?applied, "the database schema is up to date");
        Ok(ExitCode::SUCCESS)
    }
}

/// Move a ledger written before the monthly partitions to them, as the schema's owner (the
/// credentials of `migrate`), while the service goes on; print what it cost.
#[derive(Debug, Args)]
pub struct MigratePartitions {}

impl Run for MigratePartitions {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let settings = cli.database_to_migrate(&config)?;
        let moved = Database::as_owner(&settings, |mut client, _| async move {
            let progress = |line| eprintln!("{line}");
            Ok(crate::store::partition_move::move_to_partitions(&mut client, progress).await?)
        })
        .await?;
        match moved {
            None => println!("the ledger is partitioned already: nothing to move"),
            Some(moved) => println!(
                "moved {} events to monthly partitions in {:.1} s ({:.0} events/s); appends \
                 waited on the lock for {:.0} ms ({} events copied under it)",
                moved.events,
                moved.elapsed.as_secs_f64(),
                moved.events_per_s(),
                moved.lock_held.as_secs_f64() * 1000.0,
                moved.events_under_lock
            ),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Where the ledger's bytes are: heap, TOAST and every index of `events` (all partitions),
/// `stream_heads` and `idempotency_keys`, in bytes and per event.
#[derive(Debug, Args)]
pub struct Stats {}

impl Run for Stats {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        cli.on_database(&cli.database(&config)?, Role::Reader, stats)
            .await
    }
}

/// `dts-ledger stats`: one line per relation, its bytes and bytes per event, then the total.
async fn stats(pool: &deadpool_postgres::Pool) -> Result<ExitCode, CannotRun> {
    let unable = |error: tokio_postgres::Error| {
        CannotRun(format!("stats: {}", crate::store::describe(&error)))
    };
    let client = client(pool).await?;
    let client: &tokio_postgres::Client = &client;
    let events = crate::store::partitions::events(client)
        .await
        .map_err(unable)?;
    let relations = crate::store::partitions::storage(client)
        .await
        .map_err(unable)?;
    let per_event = |bytes: i64| bytes as f64 / events.max(1) as f64;
    println!("events {events}");
    let mut total = 0;
    for relation in &relations {
        total += relation.bytes;
        println!(
            "{:<5} {:<40} {:>14} bytes {:>8.1} per event",
            relation.kind,
            relation.name,
            relation.bytes,
            per_event(relation.bytes)
        );
    }
    println!(
        "total {:<40} {:>14} bytes {:>8.1} per event",
        "",
        total,
        per_event(total)
    );
    Ok(ExitCode::SUCCESS)
}

/// Take an online base backup of the embedded cluster into DIR (new or empty), with the WAL it
/// needs, while `serve` runs or not; then verify it.
#[derive(Debug, Args)]
pub struct Backup {
    /// Where the backup goes: a new or empty directory.
    dir: PathBuf,
}

impl Run for Backup {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        backup(&cli.database(&config)?, &self.dir)
    }
}

/// Make the data directory (--data-dir, missing or empty) from a backup DIR, never over an
/// existing one; with --to, replay the WAL archive up to that time.
#[derive(Debug, Args)]
pub struct Restore {
    /// A directory `dts-ledger backup` wrote.
    backup: PathBuf,
    /// An RFC 3339 time: recover up to it from [database] wal_archive_dir.
    #[arg(long, value_parser = parse_time)]
    to: Option<chrono::DateTime<chrono::Utc>>,
}

impl Run for Restore {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        restore(&cli.database(&config)?, &self.backup, self.to).await
    }
}

fn parse_time(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{value:?} is not an RFC 3339 time (2026-12-01T08:00:00Z)"))
}

/// `dts-ledger backup DIR`: the embedded cluster only; a server of one's own is backed up with
/// pgBackRest (docs/pgbackrest).
fn backup(settings: &DatabaseSettings, dir: &Path) -> anyhow::Result<ExitCode> {
    let (root, wal_archive_dir) = embedded(
        settings,
        "backup works on the embedded cluster; with DATABASE_URL, back the server up with its \
         own tools (pgBackRest: see docs/pgbackrest/ and docs/operating.md, \"Backups and restore\")",
    )?;
    let done = crate::database::backup::backup(root, wal_archive_dir, dir)?;
    println!(
        "backup: verified dir={} bytes={} seconds={:.2}",
        done.dir.display(),
        done.bytes,
        done.seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// `dts-ledger restore DIR [--to TIME]` into `--data-dir`.
async fn restore(
    settings: &DatabaseSettings,
    from: &Path,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<ExitCode> {
    let (root, wal_archive_dir) = embedded(
        settings,
        "restore makes an embedded cluster's data directory; with DATABASE_URL, restore the \
         server with its own tools (pgBackRest: see docs/pgbackrest/)",
    )?;
    let read_head = async |client: &tokio_postgres::Client| {
        let head = crate::store::head(client).await?;
        Ok((head.position, head.recorded_at))
    };
    let done = crate::database::backup::restore(from, root, to, wal_archive_dir, read_head).await?;
    println!(
        "restore: done data_dir={} last_position={} last_recorded_at={} seconds={:.2}",
        done.data_dir.display(),
        done.head_position,
        done.head_recorded_at.map_or_else(
            || "none".to_owned(),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        done.seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// The embedded cluster's data and WAL archive directories; `refusal` when the settings name a
/// server of the operator's own instead.
fn embedded<'a>(
    settings: &'a DatabaseSettings,
    refusal: &str,
) -> anyhow::Result<(&'a Path, Option<&'a Path>)> {
    match settings {
        DatabaseSettings::Embedded {
            dir,
            wal_archive_dir,
        } => Ok((dir, wal_archive_dir.as_deref())),
        DatabaseSettings::External { .. } => anyhow::bail!("{refusal}"),
    }
}

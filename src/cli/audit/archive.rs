//! `dts-ledger archive`: a closed month written to its archive, or its partition dropped once
//! the archive holds against the live chain.

use crate::audit::checkpoint::{self, Keyring};
use crate::audit::months;
use crate::audit::report::Month;
use crate::audit::trust::keyring;
use crate::cli::output::{client, CannotRun};
use crate::cli::{as_owner, Invocation, Run};
use crate::configuration::{AuditConfig, Config, DatabaseSettings};
use crate::database::Role;
use chrono::Utc;
use clap::Args;
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `archive --month M DIR`: the closed month written to its archive in DIR, signed with `key`,
/// read back and checked; prints what it wrote and how fast.
async fn archive(
    client: &mut deadpool_postgres::Object,
    month: Month,
    key: &ed25519_dalek::SigningKey,
    keyring: &Keyring,
    dir: &Path,
) -> Result<ExitCode, CannotRun> {
    let written = months::write(client, month, dir, key, keyring, Utc::now())
        .await
        .map_err(CannotRun)?;
    let events = written.header.events as f64;
    println!(
        "archive: wrote {} month={} events={} first_position={} last_position={} bytes={} \
         sha256={} ledger_hash={} write_seconds={:.2} write_events_per_s={:.0} \
         check_seconds={:.2} check_events_per_s={:.0}",
        written.path.display(),
        written.header.month,
        written.header.events,
        written.header.first_position,
        written.header.last_position,
        written.bytes,
        hex::encode(written.checked.file_sha256),
        hex::encode(written.checked.checkpoint.ledger_hash),
        written.write_elapsed.as_secs_f64(),
        events / written.write_elapsed.as_secs_f64().max(1e-9),
        written.check_elapsed.as_secs_f64(),
        events / written.check_elapsed.as_secs_f64().max(1e-9),
    );
    Ok(ExitCode::SUCCESS)
}

/// `archive --drop --month M DIR`: the month's partition dropped, once its archive in DIR holds
/// against the live chain; the drop recorded in `archived_months`.
async fn drop_month(
    client: &mut deadpool_postgres::Object,
    month: Month,
    keyring: &Keyring,
    dir: &Path,
) -> Result<ExitCode, CannotRun> {
    let newest = keyring
        .sort(checkpoint::stored(client).await?)
        .newest()
        .map(|found| found.position);
    let dropped = months::drop_month(client, month, dir, keyring, newest, Utc::now())
        .await
        .map_err(CannotRun)?;
    println!(
        "archive: dropped {} partition={} events={} stream_heads={} archive={}",
        dropped.month.month,
        dropped.partition,
        dropped.month.last_position - dropped.month.first_position + 1,
        dropped.streams,
        dropped.month.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// Write a closed month (China Standard Time) to DIR/ledger-YYYY-MM.jsonl.zst, signed and
/// checked; with --drop, drop the month's partition once that archive holds against the live
/// chain (as the owner).
#[derive(Debug, Args)]
pub struct Archive {
    /// The month, YYYY-MM.
    #[arg(long)]
    month: String,
    /// Drop the month's partition (its archive must be in DIR).
    #[arg(long)]
    drop: bool,
    /// The directory of the archives.
    dir: PathBuf,
}

impl Run for Archive {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let (settings, role) = match (self.drop, cli.database(&config)?) {
            // Dropping a month is the owner's: the owner's URL when one is set apart for
            // migrations.
            (
                true,
                DatabaseSettings::External {
                    migrate_url: Some(owner),
                    ..
                },
            ) => (as_owner(owner), Role::Owner),
            (true, settings) => (settings, Role::Owner),
            (false, settings) => (settings, Role::Reader),
        };
        let audit = &config.audit;
        cli.on_database(&settings, role, async |pool| {
            let month: Month = self.month.parse().map_err(CannotRun)?;
            // Archiving signs a checkpoint; dropping needs no key of its own.
            let key = (!self.drop).then(|| signing_key(audit)).transpose()?;
            let keyring = keyring(audit)?;
            let mut client = client(pool).await?;
            match key {
                Some(key) => archive(&mut client, month, &key, &keyring, &self.dir).await,
                None => drop_month(&mut client, month, &keyring, &self.dir).await,
            }
        })
        .await
    }
}

/// The key an archive's checkpoint is signed with: an archive carries a checkpoint signed at its
/// last event, so no key, no archive.
fn signing_key(audit: &AuditConfig) -> Result<SigningKey, CannotRun> {
    let path = audit.signing_key_file.as_deref().ok_or_else(|| {
        CannotRun(
            "an archive carries a checkpoint signed at its last event: set \
             [audit] signing_key_file (LEDGER_SIGNING_KEY_FILE)"
                .into(),
        )
    })?;
    Ok(checkpoint::load_signing_key(path)?)
}

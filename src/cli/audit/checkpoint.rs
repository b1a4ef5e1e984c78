//! `dts-ledger keygen` and `dts-ledger checkpoint`: the signing key, and a checkpoint of the
//! ledger head signed with it (with the projections' snapshot, for `replay --since-snapshot`).

use super::{bound, sorted_for_snapshots};
use crate::audit::checkpoint::{self};
use crate::audit::snapshot;
use crate::cli::output::{client, CannotRun};
use crate::cli::{Invocation, Run};
use crate::configuration::{AuditConfig, Config};
use crate::database::Role;
use clap::Args;
use deadpool_postgres::Pool;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `keygen FILE`: a new signing key in FILE; its public key (hex) on stdout.
pub fn keygen(path: &Path) -> Result<ExitCode, CannotRun> {
    let public = checkpoint::keygen(path)?;
    println!("{}", hex::encode(public.as_bytes()));
    eprintln!(
        "keygen: signing key written to {} (key id {}); give the public key above to verifiers \
         as [audit] public_keys",
        path.display(),
        hex::encode(checkpoint::key_id(&public))
    );
    Ok(ExitCode::SUCCESS)
}

/// `checkpoint`: signs the head, stores the checkpoint, prints it as one JSON line. With
/// `snapshot`, also stores the projections folded up to it (from the newest earlier snapshot that
/// holds), and the checkpoint signs their digest.
pub async fn checkpoint(
    pool: &Pool,
    audit: &AuditConfig,
    snapshot: bool,
) -> Result<ExitCode, CannotRun> {
    let path = audit.signing_key_file.as_deref().ok_or_else(|| {
        CannotRun("no signing key: set [audit] signing_key_file (LEDGER_SIGNING_KEY_FILE)".into())
    })?;
    let key = checkpoint::load_signing_key(path)?;
    let mut client = client(pool).await?;
    if !snapshot {
        let taken = checkpoint::take(&client, &key).await?;
        println!("{}", taken.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    let sorted = sorted_for_snapshots(&client, audit).await?;
    // One repeatable-read snapshot: the head signed and the events folded are the same.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let taken = snapshot::take(&tx, &key, &bound(&sorted)).await?;
    tx.commit().await?;
    for finding in &taken.findings {
        eprintln!("checkpoint: not used, {finding}");
    }
    match taken.folded {
        Some((after, events)) => eprintln!(
            "checkpoint: snapshot at position {} ({events} events folded after position {after})",
            taken.checkpoint.position
        ),
        None => eprintln!(
            "checkpoint: a snapshot that holds is stored at position {} already: the checkpoint \
             signs no new one",
            taken.checkpoint.position
        ),
    }
    println!("{}", taken.checkpoint.to_json());
    Ok(ExitCode::SUCCESS)
}

/// Write a new Ed25519 signing key to FILE (mode 0600, never overwritten); print its public key.
#[derive(Debug, Args)]
pub struct Keygen {
    file: PathBuf,
}

impl Run for Keygen {
    /// The configuration is read although unused, as every command but `init` reads it: a
    /// broken file is said at once.
    async fn run(self, _: &Invocation, _: Config) -> anyhow::Result<ExitCode> {
        keygen(&self.file).map_err(|CannotRun(message)| anyhow::anyhow!(message))
    }
}

/// Sign the ledger head with [audit] signing_key_file, store the checkpoint, print it as one JSON
/// line.
#[derive(Debug, Args)]
pub struct SignCheckpoint {
    /// Also store the projections at the checkpoint, for `replay --since-snapshot`.
    #[arg(long)]
    snapshot: bool,
}

impl Run for SignCheckpoint {
    /// Appends to `checkpoints` only: the service's rights.
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        cli.on_database(&cli.database(&config)?, Role::Service, async |pool| {
            checkpoint(pool, &config.audit, self.snapshot).await
        })
        .await
    }
}

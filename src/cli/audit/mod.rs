//! The audit subcommands of `dts-ledger`: `verify`, `archive`, `keygen`, `checkpoint`, `replay`,
//! `export` and `report`: what they print and how they exit (0 when the check passes or the output
//! was written, 1 when it finds the ledger broken or the projections different, 2 when it cannot
//! run).
//!
//! One file per command: [`verify`], [`checkpoint`] (with `keygen`), [`replay`], [`export`],
//! [`report`], [`archive`]; this file holds what several of them read.

mod archive;
mod checkpoint;
mod export;
mod replay;
mod report;
mod verify;

pub use archive::Archive;
pub use checkpoint::{Keygen, SignCheckpoint};
pub use export::Export;
pub use replay::Replay;
pub use report::Report;
pub use verify::Verify;

use crate::audit::checkpoint::{self as checkpoints, Checkpoint, Sorted};
use crate::audit::source::Until;
use crate::audit::trust::keyring;
use crate::cli::output::CannotRun;
use crate::configuration::AuditConfig;
use clap::Args;
use std::path::PathBuf;

/// `--until` / `--as-of`: a position, or an RFC 3339 time.
pub fn parse_point(text: &str) -> Result<Until, CannotRun> {
    crate::store::Point::parse(text)
        .map(Until::from)
        .map_err(|error| CannotRun(error.to_string()))
}

/// The trusted checkpoints that sign a snapshot, oldest first.
fn bound(sorted: &Sorted) -> Vec<&Checkpoint> {
    sorted
        .trusted
        .iter()
        .filter(|found| found.snapshot_digest.is_some())
        .collect()
}

/// The stored checkpoints sorted by trust, for a command that uses snapshots: a snapshot is
/// trusted only through its checkpoint's signature, so a key is needed.
async fn sorted_for_snapshots(
    client: &deadpool_postgres::Object,
    audit: &AuditConfig,
) -> Result<Sorted, CannotRun> {
    let keyring = keyring(audit)?;
    if keyring.is_empty() {
        return Err(CannotRun(
            "a snapshot is trusted through its checkpoint's signature: no public key \
             ([audit] public_keys)"
                .into(),
        ));
    }
    Ok(keyring.sort(checkpoints::stored(client).await?))
}

/// `--archives DIR`, for the audits that read the months dropped from the database.
#[derive(Debug, Args)]
struct DroppedMonths {
    /// The archives of the months dropped from the database.
    #[arg(long, value_name = "DIR")]
    archives: Option<PathBuf>,
}

//! A restore is proven, not assumed (I11): before `serve` takes traffic, the ledger is held
//! against a signed checkpoint kept outside the database (`[audit] trusted_checkpoint_file`,
//! e.g. the last one the checkpoint webhook's receiver holds).
//!
//! The checkpoint vouches for every event up to its position. A ledger restored from a backup
//! older than that checkpoint ends before its position, or (when it took other events since)
//! carries another ledger hash there: acknowledged events are missing, and serving it as if
//! nothing happened would charge and answer from a history that lost them. `serve` then refuses
//! to start, naming the positions lost, until an operator accepts the loss with
//! `serve --accept-restore-loss REASON`, which is recorded as `LedgerRestoreAccepted` (once per
//! checkpoint: later starts find it and go on).
//!
//! The check costs two indexed lookups: the head, and the stored `ledger_hash` of the event at
//! the checkpoint's position. It trusts the stored hash column, which is what a restore brings
//! back; that nobody rewrote the rows and recomputed their hashes is `verify --checkpoint`'s
//! job, which recomputes every hash. Rows written before the ledger-wide chain existed store
//! no ledger hash (nor do rows of hash version 4 before the last of their append): for a
//! checkpoint on one of those the chain is recomputed from the start.

use super::checkpoint::Checkpoint;
use super::trust::{self, AuditError};
use super::verify::{self, Mark, VerifyError};
use crate::configuration::{AuditConfig, Config};
use crate::domain::restore::Reason;
use crate::store::Metadata;
use deadpool_postgres::Pool;
use projections::events::LedgerRestoreAccepted;
use projections::keys::acceptance_key;
use std::path::PathBuf;

/// Where the ledger stands against the trusted checkpoint.
#[derive(Debug)]
pub enum Standing {
    /// No `[audit] trusted_checkpoint_file`: nothing to hold the ledger against.
    Unchecked,
    /// The ledger reproduces the checkpoint's ledger hash at its position.
    Holds { position: i64 },
    /// Behind it, and an operator accepted that before (the event at `position`).
    Accepted { loss: Loss, position: i64 },
    /// Behind it, and nobody accepted that yet.
    Behind(Loss),
}

/// How the ledger falls short of the trusted checkpoint.
#[derive(Debug, Clone)]
pub struct Loss {
    pub file: PathBuf,
    pub checkpoint: Checkpoint,
    /// The ledger's last position.
    pub ledger_head: i64,
    /// Events the checkpoint covers that the ledger does not hold, when it ends before the
    /// checkpoint's position; `None` when it holds other events there.
    pub lost_events: Option<i64>,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let position = self.checkpoint.position;
        let file = self.file.display();
        match self.lost_events {
            Some(lost) => write!(
                f,
                "the ledger ends at position {head}; the trusted checkpoint in {file} ({what}) \
                 covers up to {position}: {lost} acknowledged events are missing (positions \
                 {first} to {position})",
                head = self.ledger_head,
                what = self.checkpoint.describe(),
                first = self.ledger_head + 1,
            ),
            None => write!(
                f,
                "the ledger's hash at position {position} is not the one the trusted checkpoint \
                 in {file} ({what}) signed: the ledger (ending at position {head}) holds other \
                 events up to there than those the checkpoint vouches for, so acknowledged \
                 events at or before position {position} are missing (a restore that then took \
                 new events, or a rewrite; `verify --checkpoint {file}` says more)",
                head = self.ledger_head,
                what = self.checkpoint.describe(),
            ),
        }
    }
}

/// Holds the ledger behind `pool` against `[audit] trusted_checkpoint_file`. A file that is not
/// a checkpoint line a trusted key signed is an error: it proves nothing, so `serve` does not
/// start on it either.
pub async fn check(pool: &Pool, audit: &AuditConfig) -> Result<Standing, AuditError> {
    let Some(file) = audit.trusted_checkpoint_file.clone() else {
        return Ok(Standing::Unchecked);
    };
    let keyring = trust::keyring(audit)?;
    let checkpoint = trust::external_checkpoint(&file, &keyring)
        .map_err(|AuditError(why)| AuditError(format!("[audit] trusted_checkpoint_file: {why}")))?;
    let mut client = trust::client(pool).await?;
    let ledger_head = crate::store::head(&client).await?.position;
    let position = checkpoint.position;
    let lost_events = if ledger_head < position {
        Some(position - ledger_head)
    } else {
        let at = crate::store::chain_at(&client, position)
            .await?
            .ok_or_else(|| AuditError(format!("the event at position {position} is gone")))?;
        let holds = if let Some(stored) = at.ledger_hash {
            stored == checkpoint.ledger_hash
        } else {
            // A row that stores no ledger-wide hash: recompute the chain up to it.
            let mark = Mark {
                position,
                ledger_hash: checkpoint.ledger_hash,
                label: format!("the checkpoint in {}", file.display()),
            };
            match verify::verify_against(&mut client, vec![mark], None, 0, |_| {}).await {
                Ok(_) => true,
                Err(VerifyError::Broken(_)) => false,
                Err(error) => return Err(error.into()),
            }
        };
        if holds {
            return Ok(Standing::Holds { position });
        }
        None
    };
    let loss = Loss {
        file,
        checkpoint,
        ledger_head,
        lost_events,
    };
    let key = acceptance_key(position, &hex::encode(loss.checkpoint.ledger_hash));
    let accepted = position_of_key(&client, &key).await?;
    Ok(match accepted {
        Some(position) => Standing::Accepted { loss, position },
        None => Standing::Behind(loss),
    })
}

/// Records that an operator accepted `loss` for `reason`; returns the ledger position of the
/// acceptance (the earlier one, when a peer recorded it first).
pub async fn accept(
    pool: &Pool,
    config: &Config,
    loss: &Loss,
    reason: &Reason,
) -> Result<i64, AuditError> {
    let ledger_hash = hex::encode(loss.checkpoint.ledger_hash);
    let accepted = LedgerRestoreAccepted {
        checkpoint_position: loss.checkpoint.position,
        checkpoint_ledger_hash: ledger_hash.clone(),
        checkpoint_key_id: hex::encode(loss.checkpoint.key_id),
        checkpoint_signed_at: loss.checkpoint.signed_at,
        ledger_head: loss.ledger_head,
        lost_events: loss.lost_events,
        reason: reason.as_str().to_owned(),
    };
    let ledger = crate::ledger::Ledger::new(pool.clone(), config);
    let metadata = Metadata::operator("operator:serve");
    crate::ledger::restore::accept(&ledger, accepted, &metadata)
        .await
        .map_err(|error| AuditError(format!("cannot record the acceptance: {error}")))?;
    let client = trust::client(pool).await?;
    let key = acceptance_key(loss.checkpoint.position, &ledger_hash);
    position_of_key(&client, &key)
        .await?
        .ok_or_else(|| AuditError("the acceptance was recorded but is not found by its key".into()))
}

/// The position of the event that answers `key`, found by its digest in `idempotency_keys` and
/// confirmed by the key the event derives (or stores, before hash version 4).
async fn position_of_key(
    client: &impl deadpool_postgres::GenericClient,
    key: &str,
) -> Result<Option<i64>, AuditError> {
    let found = crate::store::by_idempotency_keys(client, &[key])
        .await
        .map_err(|error| AuditError(format!("cannot read the ledger: {error}")))?;
    Ok(found
        .into_iter()
        .find(|recorded| recorded.answered_key(None).as_deref() == Some(key))
        .map(|recorded| recorded.position))
}

//! Records an operator's acceptance of a restore that lost acknowledged events, once.

use super::{Command, Ledger, LedgerError, UnitOfWork};
use crate::domain::restore::accept_restore_loss;
use crate::store::Metadata;
use projections::events::LedgerRestoreAccepted;
use projections::keys::acceptance_key;

/// Appends `accepted` unless the acceptance of the same checkpoint is in the ledger already;
/// returns whether it appended.
pub async fn accept(
    ledger: &Ledger,
    accepted: LedgerRestoreAccepted,
    metadata: &Metadata,
) -> Result<bool, LedgerError> {
    super::run(ledger, metadata, Accept { accepted }).await
}

struct Accept {
    accepted: LedgerRestoreAccepted,
}

impl Command for Accept {
    type Output = bool;
    type Error = LedgerError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<bool, LedgerError> {
        let key = acceptance_key(
            self.accepted.checkpoint_position,
            &self.accepted.checkpoint_ledger_hash,
        );
        // A peer that started with the flag at the same moment loses the race on the key's
        // unique index, and its retry finds this one.
        if unit.earlier_event(&key).await?.is_some() {
            return Ok(false);
        }
        accept_restore_loss(&mut unit.draft, self.accepted.clone())?;
        Ok(true)
    }
}

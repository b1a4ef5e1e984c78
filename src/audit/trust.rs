//! What an audit trusts, and nothing else: the keyring (`[audit] public_keys` and the signing
//! key's own) and a checkpoint line kept outside the database, refused unless a key of the
//! keyring signed it.

use super::checkpoint::{self, Checkpoint, CheckpointError, Keyring};
use super::verify::VerifyError;
use crate::configuration::AuditConfig;
use deadpool_postgres::Pool;
use std::path::Path;

/// Why an audit could not run, in words for the operator (the command line exits 2 with it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(pub String);

macro_rules! audit_error_from {
    ($($source:ty),*) => {$(
        impl From<$source> for AuditError {
            fn from(error: $source) -> AuditError {
                AuditError(error.to_string())
            }
        }
    )*};
}
audit_error_from!(CheckpointError, VerifyError, tokio_postgres::Error);

/// A connection for an audit; a pool that cannot give one says why in the operator's words.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, AuditError> {
    pool.get()
        .await
        .map_err(|e| AuditError(crate::database::pool_failure(&e)))
}

/// The trusted public keys: `[audit] public_keys` and the signing key's own.
pub fn keyring(audit: &AuditConfig) -> Result<Keyring, AuditError> {
    let signing = audit
        .signing_key_file
        .as_deref()
        .map(checkpoint::load_signing_key)
        .transpose()?;
    Ok(Keyring::new(&audit.public_keys, signing.as_ref())?)
}

/// Reads a checkpoint line kept elsewhere; anything but a checkpoint signed by a known key is
/// refused.
pub fn external_checkpoint(path: &Path, keyring: &Keyring) -> Result<Checkpoint, AuditError> {
    let refuse = |why: String| {
        AuditError(format!(
            "the checkpoint in {} is refused: {why}",
            path.display()
        ))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            std::io::Read::read_to_string(
                &mut std::io::Read::take(file, checkpoint::LINE_LEN_MAX as u64 + 1),
                &mut text,
            )
        })
        .map_err(|error| refuse(error.to_string()))?;
    let found = Checkpoint::parse_line(&text).map_err(|error| refuse(error.to_string()))?;
    if keyring.is_empty() {
        return Err(refuse(
            "no public key to check its signature with ([audit] public_keys)".into(),
        ));
    }
    keyring
        .check(&found)
        .map_err(|problem| refuse(problem.to_string()))?;
    Ok(found)
}

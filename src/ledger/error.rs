//! How a command fails: refused by a business rule, or failed for a technical reason, and
//! whether trying again may help.

use super::rows;
use crate::domain::orders::Refusal;
use crate::domain::tasks::TaskRefusal;
use crate::store::StoreError;
use projections::FoldError;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] rows::CorruptRow),
    #[error("a stored event cannot be read: {0}")]
    Decode(#[from] projections::events::DecodeError),
    #[error("the fold refused a decided event: {0}")]
    Fold(#[from] FoldError),
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(error: tokio_postgres::Error) -> LedgerError {
        LedgerError::Store(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for LedgerError {
    fn from(error: deadpool_postgres::PoolError) -> LedgerError {
        LedgerError::Store(error.into())
    }
}

impl LedgerError {
    /// See [`StoreError::is_read_only`].
    pub fn is_read_only(&self) -> bool {
        matches!(self, LedgerError::Store(e) if e.is_read_only())
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, LedgerError::Store(e) if e.is_unavailable())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Store(e) if e.is_retryable())
    }
}

/// A command either was refused by a business rule (`R`) or failed for a technical reason.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<R = Refusal> {
    #[error(transparent)]
    Refused(R),
    #[error(transparent)]
    Failed(LedgerError),
}

impl From<Refusal> for CommandError<Refusal> {
    fn from(refusal: Refusal) -> CommandError<Refusal> {
        match refusal {
            // A decided event the fold refuses is a bug, not a business answer.
            Refusal::Fold(error) => CommandError::Failed(error.into()),
            other => CommandError::Refused(other),
        }
    }
}

impl From<TaskRefusal> for CommandError<TaskRefusal> {
    fn from(refusal: TaskRefusal) -> CommandError<TaskRefusal> {
        match refusal {
            TaskRefusal::Fold(error) => CommandError::Failed(error.into()),
            other => CommandError::Refused(other),
        }
    }
}

macro_rules! failed_from {
    ($($source:ty),*) => {$(
        impl<R> From<$source> for CommandError<R> {
            fn from(error: $source) -> CommandError<R> {
                CommandError::Failed(error.into())
            }
        }
    )*};
}
failed_from!(
    LedgerError,
    StoreError,
    tokio_postgres::Error,
    deadpool_postgres::PoolError,
    rows::CorruptRow,
    FoldError
);

/// What a failed attempt says about trying again.
pub trait Retryable: From<LedgerError> {
    /// Whether the attempt lost a race a new attempt may win (see [`StoreError::is_retryable`]).
    fn is_retryable(&self) -> bool;
}

impl Retryable for LedgerError {
    fn is_retryable(&self) -> bool {
        LedgerError::is_retryable(self)
    }
}

impl<R> Retryable for CommandError<R> {
    fn is_retryable(&self) -> bool {
        matches!(self, CommandError::Failed(error) if error.is_retryable())
    }
}

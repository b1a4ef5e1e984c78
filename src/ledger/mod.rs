//! Commands applied to the ledger: load the state they touch (locked), decide with
//! [`crate::domain`], then append the events and write the projections in one transaction.

pub mod orders;
pub mod rows;

use crate::domain::orders::{idempotency_key, Refusal};
use crate::domain::Draft;
use crate::store::{self, truncate_to_micros, Appended, Metadata, NewEvent, StoreError};
use chrono::Utc;
use deadpool_postgres::{Object, Transaction};
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use projections::{FoldError, Projection};

/// How many times a command is retried after losing a race to a concurrent writer. Races are
/// rare (writers lock the rows they change), so a few attempts always suffice in practice.
const ATTEMPTS_MAX: u32 = 5;

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
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LedgerError::Store(e) if e.is_unavailable())
    }

    fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Store(e) if e.is_retryable())
    }
}

/// A command either was refused by a business rule or failed for a technical reason.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Failed(#[from] LedgerError),
}

impl From<Refusal> for CommandError {
    fn from(refusal: Refusal) -> CommandError {
        match refusal {
            // A decided event the fold refuses is a bug, not a business answer.
            Refusal::Fold(error) => CommandError::Failed(error.into()),
            other => CommandError::Refused(other),
        }
    }
}

macro_rules! failed_from {
    ($($source:ty),*) => {$(
        impl From<$source> for CommandError {
            fn from(error: $source) -> CommandError {
                CommandError::Failed(error.into())
            }
        }
    )*};
}
failed_from!(
    StoreError,
    tokio_postgres::Error,
    deadpool_postgres::PoolError,
    rows::CorruptRow
);

/// One transaction: the rows it loaded, the draft the decision works on, and its metadata.
pub struct UnitOfWork<'a> {
    tx: Transaction<'a>,
    pub draft: Draft,
    /// The rows as loaded, so that only changed ones are written back.
    loaded: Projection,
    metadata: serde_json::Value,
}

impl<'a> UnitOfWork<'a> {
    pub async fn begin(
        client: &'a mut Object,
        metadata: &Metadata,
    ) -> Result<UnitOfWork<'a>, LedgerError> {
        let tx = client.transaction().await?;
        Ok(UnitOfWork {
            tx,
            draft: Draft::new(Projection::default(), truncate_to_micros(Utc::now())),
            loaded: Projection::default(),
            metadata: metadata.to_value(),
        })
    }

    pub fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// Loads and locks packages; absent ones are simply not loaded.
    pub async fn lock_packages(&mut self, ids: &[&InstanceId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        for row in rows::lock_packages(&self.tx, &ids).await? {
            let package = rows::package_from_row(&row)?;
            self.loaded
                .packages
                .insert(package.instance_id.clone(), package.clone());
            self.draft
                .projection
                .packages
                .insert(package.instance_id.clone(), package);
        }
        Ok(())
    }

    /// Serialises the creation of a package that may not exist yet: there is no row to lock.
    pub async fn lock_for_creation(&mut self, id: &InstanceId) -> Result<(), LedgerError> {
        let statement = self
            .tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('package/' || $1, 0))")
            .await?;
        self.tx.execute(&statement, &[&id.as_str()]).await?;
        Ok(())
    }

    /// Loads the tasks bound to these packages that are not destroyed (lock the packages first:
    /// a task's row only changes under its package's lock).
    pub async fn load_live_tasks_of(&mut self, ids: &[&InstanceId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = rows::live_tasks_of(&self.tx, &ids).await?;
        self.add_tasks(&rows)
    }

    pub async fn load_tasks(&mut self, ids: &[&TaskId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = rows::read_tasks(&self.tx, &ids).await?;
        self.add_tasks(&rows)
    }

    fn add_tasks(&mut self, rows: &[tokio_postgres::Row]) -> Result<(), LedgerError> {
        for row in rows {
            let task = rows::task_from_row(row)?;
            self.loaded.tasks.insert(task.task_id.clone(), task.clone());
            self.draft
                .projection
                .tasks
                .insert(task.task_id.clone(), task);
        }
        Ok(())
    }

    /// The event recorded earlier under `key`, if any.
    pub async fn earlier_event(&self, key: &str) -> Result<Option<Event>, LedgerError> {
        let found = store::find_by_idempotency_keys(&self.tx, &[key]).await?;
        match found.into_iter().next() {
            Some(recorded) => Ok(Some(recorded.decode()?)),
            None => Ok(None),
        }
    }

    /// Writes the changed projection rows, appends the decided events and commits.
    pub async fn commit(self) -> Result<Option<Appended>, LedgerError> {
        let UnitOfWork {
            tx,
            draft,
            loaded,
            metadata,
        } = self;
        if draft.events.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let packages: Vec<_> = draft
            .projection
            .packages
            .values()
            .filter(|p| loaded.packages.get(&p.instance_id) != Some(*p))
            .collect();
        let tasks: Vec<_> = draft
            .projection
            .tasks
            .values()
            .filter(|t| loaded.tasks.get(&t.task_id) != Some(*t))
            .collect();
        rows::save_packages(&tx, &packages).await?;
        rows::save_tasks(&tx, &tasks).await?;
        let events: Vec<NewEvent> = draft
            .events
            .iter()
            .map(|event| {
                let new = NewEvent::new(event, &metadata);
                match idempotency_key(event) {
                    Some(key) => new.with_idempotency_key(key),
                    None => new,
                }
            })
            .collect();
        let appended = store::append_new(&tx, events, &[], draft.now).await?;
        tx.commit().await?;
        Ok(Some(appended))
    }
}

/// Counts the attempts of a command that may lose a race to a concurrent writer.
///
/// Each command runs `loop { begin; decide; commit }` and hands a failed commit to
/// [`Attempts::retry`], which says whether to go round again.
pub struct Attempts {
    attempt: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts { attempt: 1 }
    }
}

impl Attempts {
    pub fn retry(&mut self, error: LedgerError) -> Result<(), CommandError> {
        if error.is_retryable() && self.attempt < ATTEMPTS_MAX {
            tracing::debug!(%error, attempt = self.attempt, "lost a race; retrying");
            self.attempt += 1;
            Ok(())
        } else {
            Err(error.into())
        }
    }
}

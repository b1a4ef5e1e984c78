//! Task commands applied to the ledger. A task's row only changes under the lock of the package
//! it is bound to, which is what keeps its charges and its binding consistent.

use super::{Attempts, CommandError, Ledger, UnitOfWork};
use crate::domain::tasks::{self as decide, TaskRefusal};
use crate::store::Metadata;
use projections::ids::{InstanceId, TaskId};
use projections::Task;

type Result<T> = std::result::Result<T, CommandError<TaskRefusal>>;

fn unknown(task_id: &TaskId) -> CommandError<TaskRefusal> {
    CommandError::Refused(TaskRefusal::UnknownTask(task_id.clone()))
}

fn task_of(unit: &UnitOfWork<'_>, task_id: &TaskId) -> Result<Task> {
    unit.draft
        .task(task_id)
        .cloned()
        .ok_or_else(|| unknown(task_id))
}

/// Creates a task on a package; returns it and whether it is new.
pub async fn create(
    ledger: &Ledger,
    task_id: &TaskId,
    instance_id: &InstanceId,
    metadata: &Metadata,
) -> Result<(Task, bool)> {
    let mut attempts = Attempts::default();
    loop {
        let mut client = ledger.pool.get().await?;
        let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
        unit.lock_packages(&[instance_id]).await?;
        unit.load_tasks(&[task_id]).await?;
        let created = decide::create(&mut unit.draft, task_id, instance_id)?;
        let task = task_of(&unit, task_id)?;
        match unit.commit().await {
            Ok(_) => return Ok((task, created)),
            Err(error) => attempts.retry(error)?,
        }
    }
}

/// Re-binds a task to another package of the same customer.
pub async fn rebind(
    ledger: &Ledger,
    task_id: &TaskId,
    to: &InstanceId,
    metadata: &Metadata,
) -> Result<Task> {
    let mut attempts = Attempts::default();
    loop {
        let mut client = ledger.pool.get().await?;
        let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
        if unit.lock_task(task_id, Some(to)).await?.is_none() {
            return Err(unknown(task_id));
        }
        decide::rebind(&mut unit.draft, task_id, to)?;
        let task = task_of(&unit, task_id)?;
        match unit.commit().await {
            Ok(_) => return Ok(task),
            Err(error) => attempts.retry(error)?,
        }
    }
}

/// Destroys a task for good.
pub async fn destroy(ledger: &Ledger, task_id: &TaskId, metadata: &Metadata) -> Result<Task> {
    let mut attempts = Attempts::default();
    loop {
        let mut client = ledger.pool.get().await?;
        let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
        if unit.lock_task(task_id, None).await?.is_none() {
            return Err(unknown(task_id));
        }
        decide::destroy(&mut unit.draft, task_id)?;
        let task = task_of(&unit, task_id)?;
        match unit.commit().await {
            Ok(_) => return Ok(task),
            Err(error) => attempts.retry(error)?,
        }
    }
}

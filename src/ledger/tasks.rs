//! Task commands applied to the ledger. A task's row only changes under the lock of the package
//! it is bound to, which is what keeps its charges and its binding consistent.

use super::{Command, CommandError, Ledger, UnitOfWork};
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
    super::run(ledger, metadata, Create(task_id, instance_id)).await
}

struct Create<'a>(&'a TaskId, &'a InstanceId);

impl Command for Create<'_> {
    type Output = (Task, bool);
    type Error = CommandError<TaskRefusal>;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<(Task, bool)> {
        let Create(task_id, instance_id) = *self;
        unit.lock_packages(&[instance_id]).await?;
        unit.load_tasks(&[task_id]).await?;
        let created = decide::create(&mut unit.draft, task_id, instance_id)?;
        Ok((task_of(unit, task_id)?, created))
    }
}

/// Re-binds a task to another package of the same customer.
pub async fn rebind(
    ledger: &Ledger,
    task_id: &TaskId,
    to: &InstanceId,
    metadata: &Metadata,
) -> Result<Task> {
    super::run(ledger, metadata, Rebind(task_id, to)).await
}

struct Rebind<'a>(&'a TaskId, &'a InstanceId);

impl Command for Rebind<'_> {
    type Output = Task;
    type Error = CommandError<TaskRefusal>;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Task> {
        let Rebind(task_id, to) = *self;
        if unit.lock_task(task_id, Some(to)).await?.is_none() {
            return Err(unknown(task_id));
        }
        decide::rebind(&mut unit.draft, task_id, to)?;
        task_of(unit, task_id)
    }
}

/// Destroys a task for good.
pub async fn destroy(ledger: &Ledger, task_id: &TaskId, metadata: &Metadata) -> Result<Task> {
    super::run(ledger, metadata, Destroy(task_id)).await
}

struct Destroy<'a>(&'a TaskId);

impl Command for Destroy<'_> {
    type Output = Task;
    type Error = CommandError<TaskRefusal>;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Task> {
        let task_id = self.0;
        if unit.lock_task(task_id, None).await?.is_none() {
            return Err(unknown(task_id));
        }
        decide::destroy(&mut unit.draft, task_id)?;
        task_of(unit, task_id)
    }
}

//! DTS tasks: created on a package, re-bound to another package of the same customer (R5),
//! destroyed for good (R6).

use super::Draft;
use projections::events::{
    Event, StopReason, TaskCreated, TaskDestroyed, TaskRebound, TaskResumed, TaskStopped,
};
use projections::ids::{InstanceId, TaskId};
use projections::{FoldError, TaskState};

#[derive(Debug, thiserror::Error)]
pub enum TaskRefusal {
    #[error("instanceId {0} is not known")]
    UnknownOrder(InstanceId),
    #[error("package {0} is {1}; tasks cannot be bound to it")]
    OrderNotUsable(InstanceId, &'static str),
    #[error("task {task_id} exists on package {instance_id}")]
    TaskExists {
        task_id: TaskId,
        instance_id: InstanceId,
    },
    #[error("task {0} was destroyed and cannot be used again")]
    TaskDestroyed(TaskId),
    #[error("task {0} is not known")]
    UnknownTask(TaskId),
    #[error("package {0} belongs to another customer")]
    OtherCustomer(InstanceId),
    #[error("the ledger refused the decision: {0}")]
    Fold(#[from] FoldError),
}

/// A package that tasks may be bound to now: it exists and is active and unexpired (an empty one
/// is fine: its tasks start stopped).
fn bindable(draft: &Draft, instance_id: &InstanceId) -> Result<(), TaskRefusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| TaskRefusal::UnknownOrder(instance_id.clone()))?;
    if !package.is_in_force_at(draft.now) {
        let state = match package.status {
            projections::PackageStatus::Active => "expired",
            other => other.as_str(),
        };
        return Err(TaskRefusal::OrderNotUsable(instance_id.clone(), state));
    }
    Ok(())
}

/// Creates a task; returns false when the same task already exists on the same package.
pub fn create(
    draft: &mut Draft,
    task_id: &TaskId,
    instance_id: &InstanceId,
) -> Result<bool, TaskRefusal> {
    if let Some(task) = draft.task(task_id) {
        if task.state == TaskState::Destroyed {
            return Err(TaskRefusal::TaskDestroyed(task_id.clone()));
        }
        if &task.instance_id == instance_id {
            return Ok(false);
        }
        return Err(TaskRefusal::TaskExists {
            task_id: task_id.clone(),
            instance_id: task.instance_id.clone(),
        });
    }
    bindable(draft, instance_id)?;
    draft.emit(Event::TaskCreated(TaskCreated {
        task_id: task_id.clone(),
        instance_id: instance_id.clone(),
    }))?;
    let empty = draft
        .package(instance_id)
        .is_some_and(|p| p.bytes_remaining.is_zero());
    if empty {
        draft.emit(Event::TaskStopped(TaskStopped {
            task_id: task_id.clone(),
            instance_id: instance_id.clone(),
            reason: StopReason::QuotaExhausted,
        }))?;
    }
    Ok(true)
}

/// Re-binds a task to another package of the same customer (the console's 续费 button). The task
/// runs if the new package has bytes, and stops if it has none.
pub fn rebind(draft: &mut Draft, task_id: &TaskId, to: &InstanceId) -> Result<(), TaskRefusal> {
    let task = draft
        .task(task_id)
        .ok_or_else(|| TaskRefusal::UnknownTask(task_id.clone()))?;
    if task.state == TaskState::Destroyed {
        return Err(TaskRefusal::TaskDestroyed(task_id.clone()));
    }
    let from = task.instance_id.clone();
    let target = draft
        .package(to)
        .ok_or_else(|| TaskRefusal::UnknownOrder(to.clone()))?;
    let owner = &draft.projection.package(&from)?.jd_pin;
    if &target.jd_pin != owner {
        return Err(TaskRefusal::OtherCustomer(to.clone()));
    }
    bindable(draft, to)?;
    if &from != to {
        draft.emit(Event::TaskRebound(TaskRebound {
            task_id: task_id.clone(),
            from_instance_id: from,
            instance_id: to.clone(),
        }))?;
    }
    let usable = draft.projection.package(to)?.is_usable_at(draft.now);
    let state = draft.projection.task(task_id)?.state;
    if usable && state == TaskState::Stopped {
        draft.emit(Event::TaskResumed(TaskResumed {
            task_id: task_id.clone(),
            instance_id: to.clone(),
        }))?;
    } else if !usable && state == TaskState::Running {
        draft.emit(Event::TaskStopped(TaskStopped {
            task_id: task_id.clone(),
            instance_id: to.clone(),
            reason: StopReason::QuotaExhausted,
        }))?;
    }
    Ok(())
}

/// Destroys a task for good; destroying it again changes nothing.
pub fn destroy(draft: &mut Draft, task_id: &TaskId) -> Result<(), TaskRefusal> {
    let task = draft
        .task(task_id)
        .ok_or_else(|| TaskRefusal::UnknownTask(task_id.clone()))?;
    if task.state == TaskState::Destroyed {
        return Ok(());
    }
    let instance_id = task.instance_id.clone();
    draft.emit(Event::TaskDestroyed(TaskDestroyed {
        task_id: task_id.clone(),
        instance_id,
    }))?;
    Ok(())
}

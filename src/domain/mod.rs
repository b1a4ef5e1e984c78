//! Business decisions, pure: a command and the current state in, events out.
//!
//! Decisions work on a [`Draft`]: the read models of the packages and tasks a command touches, and
//! the events decided so far. Every event is folded into the draft as soon as it is decided (with
//! the same fold replay uses), so a later rule sees the state the earlier events left. No I/O
//! happens here; `crate::ledger` loads the draft from PostgreSQL and commits it.

pub mod catalog;
pub mod orders;
pub mod restore;
pub mod runway;
pub mod tasks;
pub mod traffic;

use chrono::{DateTime, Utc};
use projections::events::{
    Event, ExpirySource, OrderExpired, StopReason, TaskResumed, TaskStopped,
};
use projections::ids::{InstanceId, TaskId};
use projections::{FoldError, Package, PackageStatus, Projection, Task, TaskState};

/// The state a command works on, and what it decided.
#[derive(Debug, Clone)]
pub struct Draft {
    pub projection: Projection,
    pub events: Vec<Event>,
    /// The time of the decision; also the events' `recorded_at`.
    pub now: DateTime<Utc>,
}

impl Draft {
    pub fn new(projection: Projection, now: DateTime<Utc>) -> Draft {
        Draft {
            projection,
            events: Vec::new(),
            now,
        }
    }

    /// Records a decided event and folds it into the draft.
    pub fn emit(&mut self, event: Event) -> Result<(), FoldError> {
        self.projection.apply(&event, self.now)?;
        self.events.push(event);
        Ok(())
    }

    pub fn package(&self, id: &InstanceId) -> Option<&Package> {
        self.projection.packages.get(id)
    }

    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.projection.tasks.get(id)
    }

    /// The loaded tasks bound to a package, in id order.
    pub fn tasks_of(&self, instance_id: &InstanceId) -> Vec<&Task> {
        self.projection
            .tasks
            .values()
            .filter(|task| &task.instance_id == instance_id)
            .collect()
    }

    /// Stops every running task of the package (R4). Tasks that are already stopped keep their
    /// reason, except that a release overrides any reason: nothing can resume them there.
    pub fn stop_tasks(
        &mut self,
        instance_id: &InstanceId,
        reason: StopReason,
    ) -> Result<(), FoldError> {
        let to_stop: Vec<TaskId> = self
            .tasks_of(instance_id)
            .into_iter()
            .filter(|task| match task.state {
                TaskState::Running => true,
                TaskState::Stopped => {
                    reason == StopReason::OrderReleased
                        && task.stop_reason != Some(StopReason::OrderReleased)
                }
                TaskState::Destroyed => false,
            })
            .map(|task| task.task_id.clone())
            .collect();
        for task_id in to_stop {
            self.emit(Event::TaskStopped(TaskStopped {
                task_id,
                instance_id: instance_id.clone(),
                reason,
            }))?;
        }
        Ok(())
    }

    /// Resumes the package's tasks that stopped because it ran dry or expired, if it is usable now.
    pub fn resume_tasks(&mut self, instance_id: &InstanceId) -> Result<(), FoldError> {
        let usable = self
            .package(instance_id)
            .is_some_and(|package| package.is_usable_at(self.now));
        if !usable {
            return Ok(());
        }
        let to_resume: Vec<TaskId> = self
            .tasks_of(instance_id)
            .into_iter()
            .filter(|task| {
                task.state == TaskState::Stopped
                    && matches!(
                        task.stop_reason,
                        Some(StopReason::QuotaExhausted | StopReason::OrderExpired)
                    )
            })
            .map(|task| task.task_id.clone())
            .collect();
        for task_id in to_resume {
            self.emit(Event::TaskResumed(TaskResumed {
                task_id,
                instance_id: instance_id.clone(),
            }))?;
        }
        Ok(())
    }

    /// Records the expiry of an active package whose `expiresAt` has passed by our clock, and
    /// stops its tasks. Returns whether it expired now.
    pub fn expire_if_due(&mut self, instance_id: &InstanceId) -> Result<bool, FoldError> {
        let due = self.package(instance_id).is_some_and(|package| {
            package.status == PackageStatus::Active
                && package.expires_at.is_some_and(|at| at <= self.now)
        });
        if due {
            let expires_at = self.package(instance_id).and_then(|p| p.expires_at);
            self.emit(Event::OrderExpired(OrderExpired {
                instance_id: instance_id.clone(),
                source: ExpirySource::Clock,
                expires_at,
                reason: None,
            }))?;
            self.stop_tasks(instance_id, StopReason::OrderExpired)?;
        }
        Ok(due)
    }
}

/// A package bought for the decisions' tests: `biz`, one unit of the built-in 1 TiB SKU without an
/// expiry, and a draft at `now` that starts from it.
#[cfg(test)]
pub(crate) fn bought_package(now: DateTime<Utc>) -> (Draft, InstanceId) {
    use projections::ids::{JdPin, OrderId, OrderRef, SkuId};
    let mut draft = Draft::new(Projection::default(), now);
    let command = orders::CreateOrder {
        instance_id: InstanceId::parse("biz").unwrap(),
        jd_pin: JdPin::parse("pin").unwrap(),
        order: OrderRef::new(None, Some(OrderId::parse("o").unwrap())).unwrap(),
        service_code: "dts".into(),
        sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
        units: 1,
        expires_at: None,
        template: None,
    };
    orders::create(&mut draft, &command, &catalog::Catalog::built_in(), None).unwrap();
    (Draft::new(draft.projection, now), command.instance_id)
}

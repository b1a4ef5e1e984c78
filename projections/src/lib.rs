//! Pure folds of the dts-ledger events into read models: package balances and task states.
//!
//! No I/O lives here. The service applies these folds inline, in the transaction that appends the
//! events, and `replay` applies them to the whole ledger from scratch: the same code on both sides
//! means the two can only disagree if a stored row was changed behind the ledger's back.

pub mod events;
pub mod ids;
pub mod keys;
pub mod package;
pub mod revenue;
pub mod task;

use chrono::{DateTime, Utc};
use events::Event;
use ids::{InstanceId, TaskId};
pub use package::{Package, PackageStatus};
use std::collections::BTreeMap;
pub use task::{Task, TaskState};

/// An event that cannot follow the state it is applied to. Service-written ledgers never contain
/// one; replay reports it as a broken ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("package {0} is not known")]
    UnknownPackage(InstanceId),
    #[error("package {0} exists already")]
    DuplicatePackage(InstanceId),
    #[error("task {0} is not known")]
    UnknownTask(TaskId),
    #[error("task {0} exists already")]
    DuplicateTask(TaskId),
    #[error("{0} would overflow")]
    Overflow(&'static str),
    #[error("{field} recorded as {recorded} but the fold gives {folded}")]
    Mismatch {
        field: &'static str,
        recorded: String,
        folded: String,
    },
    #[error("{0}")]
    Illegal(&'static str),
}

/// The read models for a set of packages and tasks: all of them during replay, the few a command
/// touches inside the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub packages: BTreeMap<InstanceId, Package>,
    pub tasks: BTreeMap<TaskId, Task>,
}

impl Projection {
    pub fn package(&self, id: &InstanceId) -> Result<&Package, FoldError> {
        self.packages
            .get(id)
            .ok_or_else(|| FoldError::UnknownPackage(id.clone()))
    }

    fn package_mut(&mut self, id: &InstanceId) -> Result<&mut Package, FoldError> {
        self.packages
            .get_mut(id)
            .ok_or_else(|| FoldError::UnknownPackage(id.clone()))
    }

    pub fn task(&self, id: &TaskId) -> Result<&Task, FoldError> {
        self.tasks
            .get(id)
            .ok_or_else(|| FoldError::UnknownTask(id.clone()))
    }

    fn task_mut(&mut self, id: &TaskId) -> Result<&mut Task, FoldError> {
        self.tasks
            .get_mut(id)
            .ok_or_else(|| FoldError::UnknownTask(id.clone()))
    }

    /// Fold one event, recorded at `at`, into the read models.
    ///
    /// Callers treat any error as fatal for the whole batch or replay: an event the fold refuses
    /// means a bug or a ledger changed behind the service's back.
    pub fn apply(&mut self, event: &Event, at: DateTime<Utc>) -> Result<(), FoldError> {
        match event {
            Event::TaskCreated(e) => {
                self.package(&e.instance_id)?;
                if self.tasks.contains_key(&e.task_id) {
                    return Err(FoldError::DuplicateTask(e.task_id.clone()));
                }
                self.tasks.insert(
                    e.task_id.clone(),
                    Task::created(e.task_id.clone(), e.instance_id.clone(), at),
                );
            }
            Event::TaskRebound(e) => {
                self.package(&e.instance_id)?;
                let task = self.task_mut(&e.task_id)?;
                if task.instance_id != e.from_instance_id {
                    return Err(FoldError::Mismatch {
                        field: "fromInstanceId",
                        recorded: e.from_instance_id.to_string(),
                        folded: task.instance_id.to_string(),
                    });
                }
                task.instance_id = e.instance_id.clone();
                task.updated_at = at;
            }
            Event::TaskStopped(e) => {
                let task = self.task_mut(&e.task_id)?;
                if task.state == TaskState::Destroyed {
                    return Err(FoldError::Illegal("a destroyed task cannot stop"));
                }
                task.state = TaskState::Stopped;
                task.stop_reason = Some(e.reason);
                task.updated_at = at;
            }
            Event::TaskResumed(e) => {
                let task = self.task_mut(&e.task_id)?;
                if task.state == TaskState::Destroyed {
                    return Err(FoldError::Illegal("a destroyed task cannot resume"));
                }
                task.state = TaskState::Running;
                task.stop_reason = None;
                task.updated_at = at;
            }
            Event::TaskDestroyed(e) => {
                let task = self.task_mut(&e.task_id)?;
                task.state = TaskState::Destroyed;
                task.stop_reason = None;
                task.destroyed_at = Some(at);
                task.updated_at = at;
            }
            Event::TrafficConsumed(e) => {
                let task = self.task_mut(&e.task_id)?;
                task.bytes_consumed = task
                    .bytes_consumed
                    .checked_add(e.bytes)
                    .ok_or(FoldError::Overflow("task bytesConsumed"))?;
                task.updated_at = at;
                self.apply_to_package(event, at)?;
            }
            _ => self.apply_to_package(event, at)?,
        }
        Ok(())
    }

    /// Fold the part of an event that concerns a package's balance and status, and nothing else.
    ///
    /// Everything that changes a package is in the package's own stream, so folding that one
    /// stream with this gives the package as of any point (task events change nothing here).
    pub fn apply_to_package(&mut self, event: &Event, at: DateTime<Utc>) -> Result<(), FoldError> {
        match event {
            Event::OrderCreated(e) => {
                if self.packages.contains_key(&e.instance_id) {
                    return Err(FoldError::DuplicatePackage(e.instance_id.clone()));
                }
                self.packages
                    .insert(e.instance_id.clone(), Package::created(e, at));
            }
            Event::OrderRenewed(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if package.status == PackageStatus::Released {
                    return Err(FoldError::Illegal("a released package cannot be renewed"));
                }
                package.grant(e.bytes_granted, at)?;
                package.expires_at = Some(e.expires_at);
                package.status = PackageStatus::Active;
            }
            Event::OrderUpgraded(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if package.status == PackageStatus::Released {
                    return Err(FoldError::Illegal("a released package cannot be upgraded"));
                }
                package.grant(e.bytes_granted, at)?;
                package.sku_id = e.sku_id.clone();
                package.sku_bytes = e.sku_bytes;
                package.unit_price = e.unit_price;
            }
            Event::OrderDilated(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if package.status == PackageStatus::Released {
                    return Err(FoldError::Illegal("a released package cannot be expanded"));
                }
                package.grant(e.bytes_granted, at)?;
                package.units = package
                    .units
                    .checked_add(e.units)
                    .ok_or(FoldError::Overflow("units"))?;
            }
            Event::OrderExpired(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if package.status != PackageStatus::Active {
                    return Err(FoldError::Illegal("only an active package can expire"));
                }
                package.status = PackageStatus::Expired;
                package.updated_at = at;
            }
            Event::OrderReleased(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if package.status == PackageStatus::Released {
                    return Err(FoldError::Illegal("a package is released only once"));
                }
                package.release(e, at)?;
            }
            Event::OrderExpiryHeld(e) => {
                // A kept notice changes no balance and no status; it must name a package that is
                // still active, whose expiry it was held against.
                let package = self.package(&e.instance_id)?;
                if package.status != PackageStatus::Active {
                    return Err(FoldError::Illegal(
                        "only an active package's expiry notice is held",
                    ));
                }
            }
            Event::OrderCredentialRotated(e) => {
                // Changes no balance; a released package signs no one in, so nothing rotates it.
                if self.package(&e.instance_id)?.status == PackageStatus::Released {
                    return Err(FoldError::Illegal(
                        "a released package's credential is not rotated",
                    ));
                }
            }
            // A fact about the ledger itself: no package or task changes.
            Event::LedgerRestoreAccepted(_) => {}
            Event::OrderRunwayShort(e) => {
                // An announcement: it changes no balance and names an active package.
                if self.package(&e.instance_id)?.status != PackageStatus::Active {
                    return Err(FoldError::Illegal(
                        "only an active package's runway is announced",
                    ));
                }
            }
            Event::OrderBalanceLow(e) => {
                let package = self.package_mut(&e.instance_id)?;
                if let Err(slot) = package.warned_percents.binary_search(&e.threshold_percent) {
                    package.warned_percents.insert(slot, e.threshold_percent);
                }
                package.updated_at = at;
            }
            Event::TrafficConsumed(e) => {
                let package = self.package_mut(&e.instance_id)?;
                package.consume(e.bytes, at)?;
                // The answer given to the agent is part of the event: it must follow from the fold.
                for (field, recorded, folded) in [
                    ("bytesRemaining", e.bytes_remaining, package.bytes_remaining),
                    ("bytesOverage", e.bytes_overage, package.bytes_overage),
                ] {
                    if recorded != folded {
                        return Err(FoldError::Mismatch {
                            field,
                            recorded: recorded.to_string(),
                            folded: folded.to_string(),
                        });
                    }
                }
            }
            Event::TaskCreated(_)
            | Event::TaskRebound(_)
            | Event::TaskStopped(_)
            | Event::TaskResumed(_)
            | Event::TaskDestroyed(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

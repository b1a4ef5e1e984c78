//! Charging traffic reports (DESIGN §5): every byte once, to the package the task is bound to,
//! and every task of a package stopped in the same transaction as the report that empties it.

use super::Draft;
use chrono::{DateTime, Utc};
use projections::events::{Event, OrderBalanceLow, ReportAction, StopReason, TrafficConsumed};
use projections::ids::{Bytes, ReportId, TaskId};
use projections::{FoldError, Package, PackageStatus, Task, TaskState};

/// A checked traffic report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub task_id: TaskId,
    pub report_id: ReportId,
    pub bytes: Bytes,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: DateTime<Utc>,
}

/// Settings of the charging rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Consumption levels (% of everything granted) that are announced once per crossing,
    /// ascending, each 1 to 100.
    pub low_balance_percents: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Accepted,
    /// Seen before: the original answer is repeated and nothing is charged.
    Duplicate,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Duplicate => "duplicate",
            Status::Rejected => "rejected",
        }
    }
}

/// The answer to one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub action: ReportAction,
    pub reason: Option<StopReason>,
    pub bytes_remaining: Bytes,
    /// For rejected reports: a stable code and a message.
    pub error: Option<(&'static str, String)>,
}

impl Verdict {
    pub fn rejected(code: &'static str, message: String) -> Verdict {
        Verdict {
            status: Status::Rejected,
            action: ReportAction::Stop,
            reason: None,
            bytes_remaining: Bytes::ZERO,
            error: Some((code, message)),
        }
    }
}

/// What a task must do given its package's state with `remaining` bytes left.
fn instruction(
    task: &Task,
    package: &Package,
    remaining: Bytes,
) -> (ReportAction, Option<StopReason>) {
    let stop = |reason| (ReportAction::Stop, Some(reason));
    if task.state == TaskState::Destroyed {
        return stop(StopReason::TaskDestroyed);
    }
    match package.status {
        PackageStatus::Released => return stop(StopReason::OrderReleased),
        PackageStatus::Expired => return stop(StopReason::OrderExpired),
        PackageStatus::Active => {}
    }
    if remaining.is_zero() {
        return stop(StopReason::QuotaExhausted);
    }
    match (task.state, task.stop_reason) {
        (TaskState::Stopped, Some(reason)) => stop(reason),
        _ => (ReportAction::Continue, None),
    }
}

/// Charges one report. `earlier` is the event recorded before under the same (task, report), if
/// any. The task and its package must be loaded into the draft (with the package's running tasks)
/// under the package's lock.
///
/// One idea, longer than most: the charging rule step by step, kept together so that it reads
/// as the rule does.
pub fn charge(
    draft: &mut Draft,
    report: &Report,
    rules: &Rules,
    earlier: Option<&Event>,
) -> Result<Verdict, FoldError> {
    if let Some(Event::TrafficConsumed(original)) = earlier {
        return Ok(Verdict {
            status: Status::Duplicate,
            action: original.action,
            reason: original.reason,
            bytes_remaining: original.bytes_remaining,
            error: None,
        });
    }
    let Some(task) = draft.task(&report.task_id) else {
        return Ok(Verdict::rejected(
            "unknown_task",
            format!("task {} is not known", report.task_id),
        ));
    };
    let instance_id = task.instance_id.clone();
    if let Some(destroyed_at) = task.destroyed_at {
        if report.period_end > destroyed_at {
            let remaining = draft.projection.package(&instance_id)?.bytes_remaining;
            return Ok(Verdict {
                bytes_remaining: remaining,
                reason: Some(StopReason::TaskDestroyed),
                ..Verdict::rejected(
                    "task_destroyed",
                    format!(
                        "task {} was destroyed at {}; traffic after that is not accepted",
                        report.task_id,
                        destroyed_at.to_rfc3339()
                    ),
                )
            });
        }
    }
    draft.expire_if_due(&instance_id)?;
    let task = draft.projection.task(&report.task_id)?;
    let package = draft.projection.package(&instance_id)?;
    if report.bytes.is_zero() {
        // Nothing to charge, nothing to record: the agent only learns what to do.
        let (action, reason) = instruction(task, package, package.bytes_remaining);
        return Ok(Verdict {
            status: Status::Accepted,
            action,
            reason,
            bytes_remaining: package.bytes_remaining,
            error: None,
        });
    }
    let (remaining, overage) = package.after_consuming(report.bytes)?;
    let (action, reason) = instruction(task, package, remaining);
    draft.emit(Event::TrafficConsumed(TrafficConsumed {
        task_id: report.task_id.clone(),
        report_id: report.report_id.clone(),
        instance_id: instance_id.clone(),
        bytes: report.bytes,
        period_start: report.period_start,
        period_end: report.period_end,
        action,
        reason,
        bytes_remaining: remaining,
        bytes_overage: overage,
    }))?;
    if remaining.is_zero() {
        // Invariant I5: in this very transaction, nothing of this package keeps running.
        draft.stop_tasks(&instance_id, StopReason::QuotaExhausted)?;
    }
    warn_low_balance(draft, &instance_id, rules)?;
    Ok(Verdict {
        status: Status::Accepted,
        action,
        reason,
        bytes_remaining: remaining,
        error: None,
    })
}

/// Announces each warning level the package's consumption has newly reached.
fn warn_low_balance(
    draft: &mut Draft,
    instance_id: &projections::ids::InstanceId,
    rules: &Rules,
) -> Result<(), FoldError> {
    for &percent in &rules.low_balance_percents {
        let package = draft.projection.package(instance_id)?;
        if package.status == PackageStatus::Active
            && package.consumed_reaches(percent)
            && !package.warned_percents.contains(&percent)
        {
            let event = Event::OrderBalanceLow(OrderBalanceLow {
                instance_id: instance_id.clone(),
                threshold_percent: percent,
                bytes_granted: package.bytes_granted,
                bytes_consumed: package.bytes_consumed,
                bytes_remaining: package.bytes_remaining,
            });
            draft.emit(event)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{bought_package, tasks};
    use projections::ids::InstanceId;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            low_balance_percents: vec![80, 95],
        }
    }

    /// A 1 TiB package with tasks t-0 .. t-(n-1).
    fn package_with_tasks(n: usize) -> Draft {
        let (mut draft, instance_id) = bought_package(now());
        for t in 0..n {
            tasks::create(&mut draft, &task(t), &instance_id).unwrap();
        }
        Draft::new(draft.projection, now())
    }

    fn task(n: usize) -> TaskId {
        TaskId::parse(format!("t-{n}")).unwrap()
    }

    fn report(t: usize, id: &str, bytes: u64) -> Report {
        Report {
            task_id: task(t),
            report_id: ReportId::parse(id).unwrap(),
            bytes: Bytes::new(bytes).unwrap(),
            period_start: None,
            period_end: now(),
        }
    }

    #[test]
    fn the_report_that_empties_the_package_stops_every_task_with_it() {
        let mut draft = package_with_tasks(3);
        let tib = 1u64 << 40;
        let first = charge(&mut draft, &report(0, "a", tib / 2), &rules(), None).unwrap();
        assert_eq!(first.action, ReportAction::Continue);
        let crossing = charge(&mut draft, &report(1, "b", tib / 2 + 7), &rules(), None).unwrap();
        assert_eq!(crossing.action, ReportAction::Stop);
        assert_eq!(crossing.reason, Some(StopReason::QuotaExhausted));
        assert_eq!(crossing.bytes_remaining, Bytes::ZERO);
        for t in 0..3 {
            assert_eq!(draft.task(&task(t)).unwrap().state, TaskState::Stopped);
        }
        let package = draft.package(&InstanceId::parse("biz").unwrap()).unwrap();
        assert_eq!(package.bytes_overage.get(), 7);
        // In-flight bytes of a stopped task are still recorded, as overage.
        let late = charge(&mut draft, &report(2, "c", 5), &rules(), None).unwrap();
        assert_eq!(
            (late.status, late.action),
            (Status::Accepted, ReportAction::Stop)
        );
        let package = draft.package(&InstanceId::parse("biz").unwrap()).unwrap();
        assert_eq!(package.bytes_overage.get(), 12);
        let types: Vec<&str> = draft.events.iter().map(|e| e.event_type()).collect();
        assert_eq!(
            types,
            [
                "TrafficConsumed",
                "TrafficConsumed",
                "TaskStopped",
                "TaskStopped",
                "TaskStopped",
                "OrderBalanceLow",
                "OrderBalanceLow",
                "TrafficConsumed"
            ]
        );
    }

    #[test]
    fn warnings_are_recorded_once_per_crossing() {
        let mut draft = package_with_tasks(1);
        let tib = 1u64 << 40;
        charge(&mut draft, &report(0, "a", tib * 81 / 100), &rules(), None).unwrap();
        charge(&mut draft, &report(0, "b", 1), &rules(), None).unwrap();
        let warnings: Vec<u8> = draft
            .events
            .iter()
            .filter_map(|e| match e {
                Event::OrderBalanceLow(w) => Some(w.threshold_percent),
                _ => None,
            })
            .collect();
        assert_eq!(warnings, [80]);
    }

    #[test]
    fn a_repeated_report_gets_the_original_answer_and_no_charge() {
        let mut draft = package_with_tasks(1);
        charge(&mut draft, &report(0, "a", 100), &rules(), None).unwrap();
        let original = draft.events[0].clone();
        let again = charge(&mut draft, &report(0, "a", 100), &rules(), Some(&original)).unwrap();
        assert_eq!(again.status, Status::Duplicate);
        assert_eq!(draft.events.len(), 1);
        assert_eq!(again.bytes_remaining.get(), (1u64 << 40) - 100);
    }

    #[test]
    fn unknown_and_destroyed_tasks_are_judged_on_the_period_end() {
        let mut draft = package_with_tasks(1);
        let unknown = charge(&mut draft, &report(9, "a", 1), &rules(), None).unwrap();
        assert_eq!(unknown.error.unwrap().0, "unknown_task");
        tasks::destroy(&mut draft, &task(0)).unwrap();
        let mut before = report(0, "b", 10);
        before.period_end = now();
        let accepted = charge(&mut draft, &before, &rules(), None).unwrap();
        assert_eq!(accepted.status, Status::Accepted);
        assert_eq!(accepted.reason, Some(StopReason::TaskDestroyed));
        let mut after = report(0, "c", 10);
        after.period_end = now() + chrono::Duration::seconds(1);
        let rejected = charge(&mut draft, &after, &rules(), None).unwrap();
        assert_eq!(rejected.error.unwrap().0, "task_destroyed");
        assert_eq!(draft.task(&task(0)).unwrap().bytes_consumed.get(), 10);
    }

    #[test]
    fn a_zero_byte_report_records_nothing() {
        let mut draft = package_with_tasks(1);
        let verdict = charge(&mut draft, &report(0, "a", 0), &rules(), None).unwrap();
        assert_eq!(verdict.action, ReportAction::Continue);
        assert!(draft.events.is_empty());
    }
}

//! One batch of traffic reports in one transaction.

use super::Job;
use crate::domain::traffic::{self, Rules, Status, Verdict};
use crate::ledger::{Attempts, Ledger, LedgerError, UnitOfWork};
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use std::collections::HashMap;

/// Per job, the verdicts in order; and the bindings of the reported tasks, for routing.
pub(super) type Applied = (Vec<Vec<Verdict>>, Vec<(TaskId, InstanceId)>);

/// Locks every package the batch's tasks draw from, finds reports seen before, charges each report
/// in order, and commits the events and projections together. Retried whole when it loses a race.
pub(super) async fn apply(
    ledger: &Ledger,
    rules: &Rules,
    jobs: &[Job],
) -> Result<Applied, LedgerError> {
    let mut attempts = Attempts::default();
    loop {
        match attempt(ledger, rules, jobs).await {
            Ok(applied) => return Ok(applied),
            Err(error) => attempts.retry(error)?,
        }
    }
}

async fn attempt(ledger: &Ledger, rules: &Rules, jobs: &[Job]) -> Result<Applied, LedgerError> {
    let mut client = ledger.pool.get().await?;
    let mut unit = UnitOfWork::begin(&mut client, ledger, &jobs[0].metadata).await?;
    let mut task_ids: Vec<&TaskId> = jobs
        .iter()
        .flat_map(|job| job.reports.iter().map(|r| &r.task_id))
        .collect();
    task_ids.sort_unstable();
    task_ids.dedup();
    unit.lock_packages_of_tasks(&task_ids).await?;

    let keys: Vec<String> = jobs
        .iter()
        .flat_map(|job| job.reports.iter())
        .map(|r| traffic_key(&r.task_id, &r.report_id))
        .collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut earlier: HashMap<String, Event> = unit.earlier_events(&key_refs).await?;

    let mut answers = Vec::with_capacity(jobs.len());
    let mut keys = keys.into_iter();
    for (n, job) in jobs.iter().enumerate() {
        if n > 0 {
            unit.set_metadata(&job.metadata);
        }
        let mut verdicts = Vec::with_capacity(job.reports.len());
        for report in &job.reports {
            let key = keys.next().expect("one key per report");
            let before = unit.draft.events.len();
            let verdict = traffic::charge(&mut unit.draft, report, rules, earlier.get(&key))?;
            if verdict.status == Status::Accepted {
                // The same report twice in one batch: the second is a duplicate of the first.
                if let Some(charged) = unit.draft.events[before..]
                    .iter()
                    .find(|e| matches!(e, Event::TrafficConsumed(_)))
                {
                    earlier.insert(key, charged.clone());
                }
            }
            verdicts.push(verdict);
        }
        answers.push(verdicts);
    }
    let bindings = task_ids
        .iter()
        .filter_map(|id| unit.draft.task(id))
        .map(|task| (task.task_id.clone(), task.instance_id.clone()))
        .collect();
    unit.commit().await?;
    Ok((answers, bindings))
}

/// The idempotency key of a report, the same the event carries.
fn traffic_key(task_id: &TaskId, report_id: &projections::ids::ReportId) -> String {
    crate::domain::orders::keyed("traffic", &[task_id.as_str(), report_id.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::orders::idempotency_key;
    use projections::events::{ReportAction, TrafficConsumed};
    use projections::ids::{Bytes, ReportId};

    #[test]
    fn the_lookup_key_is_the_key_the_event_carries() {
        let event = Event::TrafficConsumed(TrafficConsumed {
            task_id: TaskId::parse("t:1").unwrap(),
            report_id: ReportId::parse("r/2").unwrap(),
            instance_id: InstanceId::parse("p").unwrap(),
            bytes: Bytes::new(1).unwrap(),
            period_start: None,
            period_end: chrono::Utc::now(),
            action: ReportAction::Continue,
            reason: None,
            bytes_remaining: Bytes::ZERO,
            bytes_overage: Bytes::ZERO,
        });
        assert_eq!(
            idempotency_key(&event).unwrap(),
            traffic_key(
                &TaskId::parse("t:1").unwrap(),
                &ReportId::parse("r/2").unwrap()
            )
        );
    }
}

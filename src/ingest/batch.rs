//! One batch of traffic reports in one transaction.

use super::Job;
use crate::domain::traffic::{self, Rules, Status, Verdict};
use crate::ledger::{Attempts, Ledger, LedgerError, UnitOfWork};
use crate::store::StoreError;
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use std::collections::HashMap;

/// What a committed batch yields.
pub(super) struct Applied {
    /// Per job, the verdicts in order.
    pub answers: Vec<Vec<Verdict>>,
    /// The bindings of the reported tasks, for routing.
    pub bindings: Vec<(TaskId, InstanceId)>,
    /// Whether the batch held reports recorded before (the agents are retrying).
    pub met_repeats: bool,
}

/// Locks every package the batch's tasks draw from, charges each report in order, and commits the
/// events and projections together. Retried whole when it loses a race.
///
/// Reports seen before are found by their idempotency keys. When `look_up` is false the lookup is
/// skipped: the unique index on the keys still refuses a repeat, which rolls the batch back, and
/// the batch is redone with the lookup. Repeats are rare outside retry bursts, and the index checks
/// every key on insert anyway, so this saves one index probe per report in the common case.
pub(super) async fn apply(
    ledger: &Ledger,
    rules: &Rules,
    jobs: &[Job],
    look_up: bool,
) -> Result<Applied, LedgerError> {
    let mut attempts = Attempts::default();
    let mut look_up = look_up;
    let mut met_repeats = false;
    loop {
        match attempt(ledger, rules, jobs, look_up).await {
            Ok(mut applied) => {
                applied.met_repeats |= met_repeats;
                return Ok(applied);
            }
            Err(LedgerError::Store(StoreError::DuplicateKey)) if !look_up => {
                look_up = true;
                met_repeats = true;
            }
            Err(error) => attempts.retry(error)?,
        }
    }
}

async fn attempt(
    ledger: &Ledger,
    rules: &Rules,
    jobs: &[Job],
    look_up: bool,
) -> Result<Applied, LedgerError> {
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
    let recorded: HashMap<String, Event> = if look_up {
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        unit.earlier_events(&key_refs).await?
    } else {
        HashMap::new()
    };

    // Decide; if a package ran dry whose other running tasks are not loaded yet (they are needed
    // only to stop them), load them and decide again from the start. Bounded: each round loads
    // every running task of the packages that ran dry in it.
    let mut answers = decide(&mut unit, rules, jobs, &keys, recorded.clone())?;
    for _ in 0..2 {
        let dry: Vec<InstanceId> = unit
            .draft
            .projection
            .packages
            .values()
            .filter(|p| p.bytes_remaining.is_zero())
            .map(|p| p.instance_id.clone())
            .collect();
        let dry: Vec<&InstanceId> = dry.iter().collect();
        if dry.is_empty() || !unit.load_running_tasks_of(&dry).await? {
            break;
        }
        unit.restart_draft();
        answers = decide(&mut unit, rules, jobs, &keys, recorded.clone())?;
    }
    let bindings = task_ids
        .iter()
        .filter_map(|id| unit.draft.task(id))
        .map(|task| (task.task_id.clone(), task.instance_id.clone()))
        .collect();
    unit.commit().await?;
    Ok(Applied {
        answers,
        bindings,
        met_repeats: !recorded.is_empty(),
    })
}

/// Charges every report of every job in order; per job, the verdicts.
fn decide(
    unit: &mut UnitOfWork<'_>,
    rules: &Rules,
    jobs: &[Job],
    keys: &[String],
    mut earlier: HashMap<String, Event>,
) -> Result<Vec<Vec<Verdict>>, LedgerError> {
    let mut answers = Vec::with_capacity(jobs.len());
    let mut keys = keys.iter();
    for (n, job) in jobs.iter().enumerate() {
        if n > 0 {
            unit.set_metadata(&job.metadata);
        }
        let mut verdicts = Vec::with_capacity(job.reports.len());
        for report in &job.reports {
            let key = keys.next().expect("one key per report");
            let before = unit.draft.events.len();
            let verdict = traffic::charge(&mut unit.draft, report, rules, earlier.get(key))?;
            if verdict.status == Status::Accepted {
                // The same report twice in one batch: the second is a duplicate of the first.
                if let Some(charged) = unit.draft.events[before..]
                    .iter()
                    .find(|e| matches!(e, Event::TrafficConsumed(_)))
                {
                    earlier.insert(key.clone(), charged.clone());
                }
            }
            verdicts.push(verdict);
        }
        answers.push(verdicts);
    }
    Ok(answers)
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

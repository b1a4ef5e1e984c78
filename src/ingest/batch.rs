//! One batch of traffic reports in one transaction.

use super::Job;
use crate::domain::traffic::{self, Rules, Status, Verdict};
use crate::ledger::{self, Command, Ledger, LedgerError, UnitOfWork};
use crate::store::StoreError;
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use projections::keys::traffic_key;
use projections::{FoldError, PackageStatus};
use std::collections::{HashMap, HashSet};

/// What a committed batch yields.
pub(super) struct Applied {
    /// Per job, the verdicts in order.
    pub answers: Vec<Vec<Verdict>>,
    /// The bindings of the reported tasks, for routing.
    pub bindings: Vec<(TaskId, InstanceId)>,
    /// Whether the batch held reports recorded before (the agents are retrying).
    pub met_repeats: bool,
    /// The bytes of each report charged while its task was stopped (in-flight bytes, or an
    /// agent that ignores `stop`).
    pub bytes_after_stop: Vec<u64>,
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
    let batch = Batch {
        rules,
        jobs,
        look_up,
        met_repeats: false,
        reaps: 0,
    };
    ledger::run(ledger, &jobs[0].metadata, batch).await
}

/// A batch as a command, with what it learnt from its failed attempts.
struct Batch<'a> {
    rules: &'a Rules,
    jobs: &'a [Job],
    look_up: bool,
    /// A repeat refused by the unique index made the batch redo with the lookup.
    met_repeats: bool,
    reaps: u32,
}

/// Lock waits a batch gets past by ending stalled peers, at most. A peer frozen mid-statement
/// just before our wait began is old enough to be ended ([`crate::database::STALLED_AFTER_MS`])
/// at the second timeout ([`crate::database::LOCK_TIMEOUT_MS`] each), which still answers the
/// request within 10 s; more waits than that mean the database is overloaded, and the request is
/// answered 503 to be retried.
const LOCK_TIMEOUT_REAPS_MAX: u32 = 2;

fn is_lock_timeout(error: &LedgerError) -> bool {
    matches!(error, LedgerError::Store(StoreError::Database(e))
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE))
}

impl Command for Batch<'_> {
    type Output = Applied;
    type Error = LedgerError;

    async fn attempt(&mut self, unit: &mut UnitOfWork<'_>) -> Result<Applied, LedgerError> {
        let (rules, jobs) = (self.rules, self.jobs);
        let task_ids = reported_tasks(jobs);
        unit.lock_packages_of_tasks(&task_ids).await?;
        // Each report's key, built once: the lookup's, and then its event's in the ledger.
        let mut keys: Vec<String> = jobs
            .iter()
            .flat_map(|job| job.reports.iter())
            .map(|r| traffic_key(&r.task_id, &r.report_id))
            .collect();
        let mut recorded = match self.look_up {
            true => Some(look_up_keys(unit, &keys).await?),
            false => None,
        };

        // Decide, and decide again from the loaded rows when that is not the end of it: a report
        // the fold refuses is rejected on its own; a rejection that may hide a repeat needs the
        // lookup; a package that ran dry or stopped being active needs its other running tasks
        // loaded, to stop them in this transaction. Each round rejects a report, turns the lookup
        // on, or loads tasks.
        let mut poisoned: HashSet<usize> = HashSet::new();
        let mut rounds = 0;
        let decided = loop {
            rounds += 1;
            if rounds > DECIDE_ROUNDS_MAX {
                return Err(LedgerError::Fold(FoldError::Illegal(
                    "a batch kept needing another round",
                )));
            }
            unit.restart_draft();
            match decide(unit, rules, jobs, &keys, recorded.as_ref(), &poisoned) {
                Round::Poisoned(index, error) => {
                    tracing::error!(report = index, %error, "a report cannot be charged; rejecting it");
                    poisoned.insert(index);
                }
                Round::NeedsLookup => recorded = Some(look_up_keys(unit, &keys).await?),
                Round::Decided(decided) => {
                    let stopping: Vec<InstanceId> = unit
                        .draft
                        .projection
                        .packages
                        .values()
                        .filter(|p| {
                            p.bytes_remaining.is_zero() || p.status != PackageStatus::Active
                        })
                        .map(|p| p.instance_id.clone())
                        .collect();
                    let stopping: Vec<&InstanceId> = stopping.iter().collect();
                    if stopping.is_empty() || !unit.load_running_tasks_of(&stopping).await? {
                        break decided;
                    }
                }
            }
        };
        for &(event, report) in &decided.charged {
            unit.carry_key(event, std::mem::take(&mut keys[report]));
        }
        let bindings = task_ids
            .iter()
            .filter_map(|id| unit.draft.task(id))
            .map(|task| (task.task_id.clone(), task.instance_id.clone()))
            .collect();
        Ok(Applied {
            answers: decided.answers,
            bytes_after_stop: decided.bytes_after_stop,
            bindings,
            met_repeats: self.met_repeats || recorded.is_some_and(|found| !found.is_empty()),
        })
    }

    async fn recover(&mut self, ledger: &Ledger, error: &LedgerError) -> bool {
        if matches!(error, LedgerError::Store(StoreError::DuplicateKey)) && !self.look_up {
            self.look_up = true;
            self.met_repeats = true;
            metrics::counter!(crate::metrics::INGEST_BATCH_RETRIES, "reason" => "repeat")
                .increment(1);
            return true;
        }
        if !is_lock_timeout(error) || self.reaps >= LOCK_TIMEOUT_REAPS_MAX {
            return false;
        }
        // A lock holder that kept us waiting this long is stalled, or a peer is overloaded; a
        // stalled one in the middle of a statement is ended here, one idle in its transaction
        // has been ended by the server already.
        self.reaps += 1;
        metrics::counter!(crate::metrics::INGEST_BATCH_RETRIES, "reason" => "lock_timeout")
            .increment(1);
        match crate::database::reap_stalled_peers(&ledger.pool).await {
            Ok(ended) => {
                tracing::warn!(ended, "a batch waited too long for a lock");
                true
            }
            Err(reap) => {
                tracing::warn!(%reap, "a batch waited too long for a lock");
                false
            }
        }
    }
}

/// The tasks the batch reports on, each once, in id order (the order their packages are locked).
fn reported_tasks(jobs: &[Job]) -> Vec<&TaskId> {
    let mut task_ids: Vec<&TaskId> = jobs
        .iter()
        .flat_map(|job| job.reports.iter().map(|r| &r.task_id))
        .collect();
    task_ids.sort_unstable();
    task_ids.dedup();
    task_ids
}

/// Rounds of deciding one batch, at most; see `attempt`.
const DECIDE_ROUNDS_MAX: usize = 64;

/// How one round of deciding a batch ended.
enum Round {
    /// Every report has its verdict.
    Decided(Decided),
    /// The report at this index (across the batch) cannot be folded: it is rejected on its own
    /// and the batch decided again.
    Poisoned(usize, FoldError),
    /// A report was rejected as coming after its task's destruction, but may be a repeat of one
    /// accepted before: only the lookup can tell.
    NeedsLookup,
}

/// The verdicts of a batch decided to the end.
struct Decided {
    /// Per job, the verdicts in order.
    answers: Vec<Vec<Verdict>>,
    /// The bytes of each report charged to a stopped task.
    bytes_after_stop: Vec<u64>,
    /// `(event index, report index)` of each report charged, in event order: the key the report
    /// was looked up by is its event's.
    charged: Vec<(usize, usize)>,
}

async fn look_up_keys(
    unit: &UnitOfWork<'_>,
    keys: &[String],
) -> Result<HashMap<String, Event>, LedgerError> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    unit.earlier_events(&keys).await
}

/// Charges every report of every job in order.
fn decide(
    unit: &mut UnitOfWork<'_>,
    rules: &Rules,
    jobs: &[Job],
    keys: &[String],
    recorded: Option<&HashMap<String, Event>>,
    poisoned: &HashSet<usize>,
) -> Round {
    // The reports charged so far, by key (to the index of their event): the same report twice in
    // one batch, the second is a duplicate of the first.
    let mut charged_at: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    let mut decided = Decided {
        answers: Vec::with_capacity(jobs.len()),
        bytes_after_stop: Vec::new(),
        charged: Vec::with_capacity(keys.len()),
    };
    let mut index = 0;
    for (n, job) in jobs.iter().enumerate() {
        if n > 0 {
            unit.set_metadata(&job.metadata);
        }
        let mut verdicts = Vec::with_capacity(job.reports.len());
        for report in &job.reports {
            let key = keys[index].as_str();
            if poisoned.contains(&index) {
                verdicts.push(Verdict::rejected(
                    "unchargeable",
                    "this report cannot be charged; nothing was recorded for it".into(),
                ));
                index += 1;
                continue;
            }
            let before = unit.draft.events.len();
            let stopped = unit
                .draft
                .task(&report.task_id)
                .is_some_and(|task| task.state == projections::TaskState::Stopped);
            let repeated = charged_at.get(key).map(|&at| unit.draft.events[at].clone());
            let earlier = recorded
                .and_then(|found| found.get(key))
                .or(repeated.as_ref());
            let verdict = match traffic::charge(&mut unit.draft, report, rules, earlier) {
                Ok(verdict) => verdict,
                Err(error) => return Round::Poisoned(index, error),
            };
            if recorded.is_none()
                && verdict
                    .error
                    .as_ref()
                    .is_some_and(|(code, _)| *code == "task_destroyed")
            {
                return Round::NeedsLookup;
            }
            if verdict.status == Status::Accepted {
                if let Some(offset) = unit.draft.events[before..]
                    .iter()
                    .position(|e| matches!(e, Event::TrafficConsumed(_)))
                {
                    charged_at.insert(key, before + offset);
                    decided.charged.push((before + offset, index));
                    if stopped {
                        decided.bytes_after_stop.push(report.bytes.get());
                    }
                }
            }
            verdicts.push(verdict);
            index += 1;
        }
        decided.answers.push(verdicts);
    }
    Round::Decided(decided)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            event.idempotency_key().unwrap(),
            traffic_key(
                &TaskId::parse("t:1").unwrap(),
                &ReportId::parse("r/2").unwrap()
            )
        );
    }
}

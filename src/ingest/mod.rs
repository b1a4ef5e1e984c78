//! The traffic ingest pipeline: group commit (DESIGN §10).
//!
//! Requests hand their checked reports to a *lane*; each lane gathers whatever is queued into one
//! batch and applies it in one transaction: the touched packages are locked and updated once, every
//! event goes in with one binary COPY, and each request is answered only after its batch commits
//! (`synchronous_commit` stays on). Lanes run side by side: while one holds the ledger head to
//! append, another prepares its batch. Reports are routed to lanes by the package their task draws
//! from (remembered from earlier batches), so concurrent lanes rarely wait for each other's package
//! locks; a stale binding costs only a wait, never correctness, because every batch locks what it
//! touches.

mod batch;
pub mod report;

use crate::domain::traffic::{Report, Rules, Status, Verdict};
use crate::ledger::Ledger;
use crate::store::Metadata;
use crate::supervisor::{Ended, Supervisor};
use projections::ids::{InstanceId, TaskId};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// Most reports in one batch (a single larger request is still taken whole). A batch holds its
/// packages' locks, and then the ledger head, until it commits: 5,000 reports amortise the round
/// trips and the fsync over thousands of rows while keeping a commit to tens of milliseconds.
pub const BATCH_REPORTS_MAX: usize = 5_000;
/// A batch that starts on an idle lane and holds fewer reports than this waits up to
/// [`BATCH_WAIT`] for more. Above it the transaction is worth running at once.
pub const BATCH_REPORTS_EAGER: usize = 256;
/// The longest a small batch waits to grow. At thousands of single-report requests a second it
/// gathers dozens more per transaction, for a few milliseconds of latency against a 20 ms p99
/// budget.
pub const BATCH_WAIT: Duration = Duration::from_millis(2);
/// Reports queued or in flight per process, at most: bounds the memory a flood can take (a few
/// tens of MB) while holding ten requests of the largest size.
pub const REPORTS_QUEUED_MAX: usize = 100_000;
/// How long a request waits for room in the queue before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Task-to-package bindings remembered per process for picking lanes (about 100 bytes each).
pub const BINDINGS_CACHED_MAX: usize = 200_000;
/// After a batch meets a repeated report, this many following batches of the lane look reports
/// up before charging them: agents resend in bursts (after a timeout or a reconnect), and a batch
/// that meets a repeat without looking is rolled back and redone.
pub const REPEAT_WATCH_BATCHES: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the database is unavailable; nothing was recorded, retry later")]
    Unavailable,
    #[error(
        "the database server reached takes no writes (a standby, or a failover under way); \
         nothing was recorded, retry shortly"
    )]
    ReadOnly,
    #[error("too many reports are waiting; nothing was recorded, retry later")]
    Overloaded,
    #[error("internal error; nothing was recorded")]
    Failed,
    #[error("the service is shutting down; nothing was recorded")]
    Closed,
}

struct Job {
    reports: Vec<Report>,
    metadata: Metadata,
    reply: oneshot::Sender<Result<Vec<Verdict>, IngestError>>,
}

/// The task → package bindings this process has seen, cached to pick each report's lane. Only a
/// hint: a stale binding costs a wait, never correctness (every batch locks what it touches).
#[derive(Default)]
struct BindingCache {
    bindings: Mutex<HashMap<TaskId, InstanceId>>,
}

fn lane_of(key: &impl Hash, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

impl BindingCache {
    /// The lane of each of one request's reports, from one look at the cache.
    ///
    /// Reports of one package must meet in one lane to be charged in request order: lanes commit
    /// independently. A report is routed by the package its task draws from, so long as every
    /// task of the request has a cached binding; when one has none (a task this process has not
    /// seen since it started), its package is unknown, so the whole request goes to one lane.
    fn plan(&self, reports: &[Report], lanes: usize) -> Vec<usize> {
        let bindings = self.bindings.lock().expect("binding cache lock");
        let packages: Option<Vec<&InstanceId>> = reports
            .iter()
            .map(|report| bindings.get(&report.task_id))
            .collect();
        match packages {
            Some(packages) => packages.iter().map(|p| lane_of(p, lanes)).collect(),
            None => {
                let lane = reports.first().map_or(0, |r| lane_of(&r.task_id, lanes));
                vec![lane; reports.len()]
            }
        }
    }

    fn learn(&self, bindings: Vec<(TaskId, InstanceId)>) {
        let mut map = self.bindings.lock().expect("binding cache lock");
        if map.len() + bindings.len() > BINDINGS_CACHED_MAX {
            // Forgetting only costs a few misrouted batches.
            map.clear();
        }
        map.extend(bindings);
    }
}

/// The pipeline's entry point, shared by all HTTP workers.
pub struct Ingest {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    bindings: Arc<BindingCache>,
    room: Arc<Semaphore>,
}

impl Ingest {
    /// Starts `lanes` lanes under `supervisor` (named `ingest-lane-<n>`); the handles end when the
    /// `Ingest` is dropped and the queues drain.
    pub fn start(
        ledger: Ledger,
        rules: Rules,
        lanes: usize,
        supervisor: &Arc<Supervisor>,
    ) -> (Arc<Ingest>, Vec<JoinHandle<()>>) {
        let bindings = Arc::new(BindingCache::default());
        let mut senders = Vec::with_capacity(lanes);
        let mut handles = Vec::with_capacity(lanes);
        for lane in 0..lanes.max(1) {
            // Unbounded channel, bounded by `room`: the semaphore counts reports, not jobs.
            let (sender, receiver) = mpsc::unbounded_channel();
            senders.push(sender);
            // The queue outlives a lane that dies: requests queued meanwhile wait for the
            // restarted lane, which takes the queue over.
            let queue = Arc::new(tokio::sync::Mutex::new(receiver));
            let (ledger, rules, bindings) = (ledger.clone(), rules.clone(), bindings.clone());
            handles.push(supervisor.spawn(format!("ingest-lane-{lane}"), move || {
                let (queue, ledger, rules, bindings) = (
                    queue.clone(),
                    ledger.clone(),
                    rules.clone(),
                    bindings.clone(),
                );
                async move {
                    let mut queue = queue.lock_owned().await;
                    run_lane(&mut queue, ledger, rules, bindings).await;
                    Ended::Finished
                }
            }));
        }
        let ingest = Ingest {
            lanes: senders,
            bindings,
            room: Arc::new(Semaphore::new(REPORTS_QUEUED_MAX)),
        };
        (Arc::new(ingest), handles)
    }

    /// Charges `reports` (answers in the same order) once the batches holding them commit.
    pub async fn submit(
        &self,
        reports: Vec<Report>,
        metadata: Metadata,
    ) -> Result<Vec<Verdict>, IngestError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let total = reports.len();
        // A submission larger than the whole queue takes all of it (the HTTP edge never sends one).
        let room = u32::try_from(total.min(REPORTS_QUEUED_MAX)).expect("the queue bound fits u32");
        let _room = match tokio::time::timeout(QUEUE_WAIT, self.room.acquire_many(room)).await {
            Ok(room) => room.map_err(|_| IngestError::Closed)?,
            Err(_) => {
                metrics::counter!(crate::metrics::INGEST_REPORTS, "outcome" => "overloaded")
                    .increment(total as u64);
                return Err(IngestError::Overloaded);
            }
        };
        let lanes = self.lanes.len();
        let plan = self.bindings.plan(&reports, lanes);
        let mut split: Vec<(Vec<usize>, Vec<Report>)> = vec![(Vec::new(), Vec::new()); lanes];
        for (index, (report, lane)) in reports.into_iter().zip(plan).enumerate() {
            split[lane].0.push(index);
            split[lane].1.push(report);
        }
        let mut waiting = Vec::new();
        for (lane, (indexes, reports)) in split.into_iter().enumerate() {
            if reports.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let job = Job {
                reports,
                metadata: metadata.clone(),
                reply,
            };
            self.lanes[lane]
                .send(job)
                .map_err(|_| IngestError::Closed)?;
            waiting.push((indexes, answer));
        }
        let mut verdicts: Vec<Option<Verdict>> = vec![None; total];
        let mut failure = None;
        for (indexes, answer) in waiting {
            match answer.await {
                Ok(Ok(answers)) => {
                    for (index, verdict) in indexes.into_iter().zip(answers) {
                        verdicts[index] = Some(verdict);
                    }
                }
                // A lane that failed recorded nothing of its batch; the client retries the whole
                // request, and the reports other lanes did record come back as duplicates.
                Ok(Err(error)) => failure = Some(failure.unwrap_or(error)),
                // The lane died with the batch (it is restarted by its supervisor); what it had
                // not committed is not recorded, and what it had comes back as duplicates.
                Err(_) => failure = Some(failure.unwrap_or(IngestError::Failed)),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(verdicts
            .into_iter()
            .map(|v| v.expect("every report has a verdict"))
            .collect())
    }

    /// Remembers which package a task draws from (a task created or moved by this process), so
    /// that its reports are routed by package from the first one on.
    pub fn learn_binding(&self, task_id: TaskId, instance_id: InstanceId) {
        self.bindings.learn(vec![(task_id, instance_id)]);
    }

    /// Reports queued or in flight right now.
    pub fn queued_reports(&self) -> usize {
        REPORTS_QUEUED_MAX.saturating_sub(self.room.available_permits())
    }
}

/// Counts one batch of `size` reports that took `took`, and its reports by outcome.
fn count_batch(
    size: usize,
    took: std::time::Duration,
    applied: &Result<batch::Applied, crate::ledger::LedgerError>,
) {
    use crate::metrics::INGEST_REPORTS;
    use crate::metrics::{INGEST_BATCHES, INGEST_BATCH_COMMIT_DURATION, INGEST_BATCH_REPORTS};
    metrics::histogram!(INGEST_BATCH_REPORTS).record(size as f64);
    let result = match applied {
        Ok(applied) => {
            metrics::histogram!(INGEST_BATCH_COMMIT_DURATION).record(took.as_secs_f64());
            for bytes in &applied.bytes_after_stop {
                metrics::histogram!(crate::metrics::BYTES_AFTER_STOP).record(*bytes as f64);
            }
            let (mut accepted, mut duplicate, mut rejected) = (0u64, 0u64, 0u64);
            for verdict in applied.answers.iter().flatten() {
                match verdict.status {
                    Status::Accepted => accepted += 1,
                    Status::Duplicate => duplicate += 1,
                    Status::Rejected => rejected += 1,
                }
            }
            for (outcome, count) in [
                ("accepted", accepted),
                ("duplicate", duplicate),
                ("rejected", rejected),
            ] {
                metrics::counter!(INGEST_REPORTS, "outcome" => outcome).increment(count);
            }
            "committed"
        }
        Err(error) if error.is_unavailable() => "unavailable",
        Err(_) => "failed",
    };
    if result != "committed" {
        metrics::counter!(INGEST_REPORTS, "outcome" => result).increment(size as u64);
    }
    metrics::counter!(INGEST_BATCHES, "result" => result).increment(1);
}

/// One lane: gather queued jobs into a batch, apply it, answer, repeat.
///
/// One idea, a little over the usual length: the lane's loop, with its waits spelled out.
async fn run_lane(
    queue: &mut mpsc::UnboundedReceiver<Job>,
    ledger: Ledger,
    rules: Rules,
    bindings: Arc<BindingCache>,
) {
    let mut watch_repeats = 0u32;
    loop {
        // A lane that was idle waits a moment for company; a busy one takes what queued up
        // while its last batch committed and goes at once.
        let (first, idle) = match queue.try_recv() {
            Ok(job) => (job, false),
            Err(mpsc::error::TryRecvError::Empty) => match queue.recv().await {
                Some(job) => (job, true),
                None => break,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let mut size = first.reports.len();
        let mut jobs = vec![first];
        while size < BATCH_REPORTS_MAX {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if idle && size < BATCH_REPORTS_EAGER => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            size += job.reports.len();
            jobs.push(job);
        }
        let started = std::time::Instant::now();
        let applied = batch::apply(&ledger, &rules, &jobs, watch_repeats > 0).await;
        count_batch(size, started.elapsed(), &applied);
        match applied {
            Ok(applied) => {
                tracing::debug!(
                    reports = size,
                    requests = jobs.len(),
                    repeats = applied.met_repeats,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "batch committed"
                );
                watch_repeats = if applied.met_repeats {
                    REPEAT_WATCH_BATCHES
                } else {
                    watch_repeats.saturating_sub(1)
                };
                bindings.learn(applied.bindings);
                for (job, answer) in jobs.into_iter().zip(applied.answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(error) => {
                let answer = if error.is_read_only() {
                    tracing::warn!(%error, reports = size, "batch failed: database read-only");
                    IngestError::ReadOnly
                } else if error.is_unavailable() {
                    tracing::warn!(%error, reports = size, "batch failed: database unavailable");
                    IngestError::Unavailable
                } else {
                    tracing::error!(%error, reports = size, "batch failed");
                    IngestError::Failed
                };
                for job in jobs {
                    let _ = job.reply.send(Err(answer));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_batch_size_histogram_ends_at_the_largest_batch() {
        assert_eq!(
            crate::metrics::BATCH_REPORTS_BUCKETS.last().copied(),
            Some(super::BATCH_REPORTS_MAX as f64)
        );
    }
}

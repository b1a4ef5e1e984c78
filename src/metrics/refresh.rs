//! The gauges counted in the database, refreshed every [`REFRESH_INTERVAL`] by a supervised
//! worker rather than on every scrape: a scrape (or several Prometheus servers scraping) never
//! costs a scan.

use super::{
    head_at, DATABASE_UP, EXPIRY_NOTICES_UNSETTLED, MARKETPLACE_REFUSED,
    MARKETPLACE_REFUSED_OLDEST_AGE, PACKAGES, TASKS, TASKS_REPORTING_AFTER_STOP, WEBHOOK_BACKLOG,
    WEBHOOK_DEAD_LETTERS, WEBHOOK_OLDEST_AGE,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use metrics::gauge;
use projections::events::task_stream;
use projections::ids::TaskId;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// How often the counts are taken: Prometheus scrapes every 15 to 60 s, and one `GROUP BY` over
/// the packages and tasks every 15 s is negligible next to the traffic's writes.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(15);

/// Every status and state the schema allows: one that has no row is reported as 0, not left at
/// its last value.
const PACKAGE_STATUSES: [&str; 3] = ["active", "expired", "released"];
const TASK_STATES: [&str; 3] = ["running", "stopped", "destroyed"];
/// The `action` label of a refused callback whose action this version does not know.
const OTHER_ACTION: &str = "other";

#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error("cannot reach the database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// Packages by status and tasks by state: `(status or state, rows)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub packages: Vec<(String, i64)>,
    pub tasks: Vec<(String, i64)>,
}

/// The projection rows the gauges count. They live above this module (the ledger, which owns
/// them, records its own metrics here), so the rows answer for every client of the pool
/// (`ledger/rows/queries.rs`).
pub trait Projections: Sync {
    /// Packages by status and tasks by state.
    fn counts(&self) -> impl Future<Output = Result<Counts, tokio_postgres::Error>> + Send;

    /// The stopped tasks whose row changed within the last `within_s` seconds (by the database's
    /// clock), with when it did: their last report or lifecycle change.
    fn stopped_tasks_changed_within(
        &self,
        within_s: f64,
    ) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>)>, tokio_postgres::Error>> + Send;
}

/// Refreshes the gauges forever; also runs the recorder's upkeep. `stopped_reporting_s`: how
/// long after its stop a stopped task may go on reporting before it counts as still reporting.
/// `actions`: the marketplace actions this version knows, which label the refused callbacks
/// (any other counts as `other`).
pub async fn refresh_forever(pool: Pool, stopped_reporting_s: u64, actions: &[&'static str]) {
    let handle = super::install();
    let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
        match refresh(&pool, stopped_reporting_s, actions).await {
            Ok(()) => gauge!(DATABASE_UP).set(1.0),
            Err(error) => {
                gauge!(DATABASE_UP).set(0.0);
                tracing::debug!(%error, "refreshing the metrics failed; the next round retries");
            }
        }
    }
}

async fn refresh(
    pool: &Pool,
    stopped_reporting_s: u64,
    actions: &[&'static str],
) -> Result<(), RefreshError> {
    let client = pool.get().await?;
    // Undelivered entries are found by a partial index.
    let outbox = client.prepare_cached(
        "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                count(*) FILTER (WHERE dead_at IS NOT NULL),
                min(position)
           FROM outbox WHERE delivered_at IS NULL",
    );
    // Unresolved refusals are a handful of rows behind a partial index (migration 13).
    let refused = client.prepare_cached(
        "SELECT action, count(*), extract(epoch FROM now() - min(first_at))::float8
           FROM marketplace_refusals WHERE resolved_at IS NULL GROUP BY action",
    );
    let (outbox, refused) = tokio::join!(outbox, refused);
    let (outbox, refused) = (outbox?, refused?);
    let (counts, row, refused, unsettled, after_stop, head, protection) = tokio::join!(
        client.counts(),
        client.query_one(&outbox, &[]),
        client.query(&refused, &[]),
        crate::store::unsettled_notice_count(&client),
        tasks_reporting_after_stop(&client, stopped_reporting_s),
        crate::store::head(&client),
        crate::database::primary::protection(&**client),
    );
    let (counts, row, refused, unsettled, after_stop, head) =
        (counts?, row?, refused?, unsettled?, after_stop?, head?);
    gauge!(TASKS_REPORTING_AFTER_STOP).set(after_stop as f64);
    super::protection(&protection?);
    let mut oldest = 0.0_f64;
    for action in actions.iter().copied().chain([OTHER_ACTION]) {
        let (count, age) = refused
            .iter()
            .filter(|r| {
                let name: &str = r.get(0);
                name == action || (action == OTHER_ACTION && !actions.contains(&name))
            })
            .fold((0_i64, 0.0_f64), |(count, age), r| {
                (count + r.get::<_, i64>(1), age.max(r.get::<_, f64>(2)))
            });
        oldest = oldest.max(age);
        gauge!(MARKETPLACE_REFUSED, "action" => action).set(count as f64);
    }
    gauge!(MARKETPLACE_REFUSED_OLDEST_AGE).set(oldest);
    gauge!(EXPIRY_NOTICES_UNSETTLED).set(unsettled as f64);
    for (name, label, known, counted) in [
        (PACKAGES, "status", &PACKAGE_STATUSES[..], &counts.packages),
        (TASKS, "state", &TASK_STATES[..], &counts.tasks),
    ] {
        for value in known {
            let count = counted
                .iter()
                .find(|(counted, _)| counted == value)
                .map_or(0, |(_, count)| *count);
            gauge!(name, label => *value).set(count as f64);
        }
    }
    // The oldest undelivered entry's age is its event's.
    let oldest_entry: Option<i64> = row.get(2);
    let oldest_age = match oldest_entry {
        Some(position) => crate::store::age_of(&client, position).await?,
        None => None,
    };
    gauge!(WEBHOOK_BACKLOG).set(row.get::<_, i64>(0) as f64);
    gauge!(WEBHOOK_DEAD_LETTERS).set(row.get::<_, i64>(1) as f64);
    gauge!(WEBHOOK_OLDEST_AGE).set(oldest_age.unwrap_or(0.0));
    head_at(head.position);
    Ok(())
}

/// Stopped tasks still reporting: their last report came more than `bound_s` after their stop,
/// and within the last `bound_s`.
///
/// A stopped task's `updated_at` is its last report or lifecycle change, and the last event of
/// its own stream (lifecycle only: traffic is in the package's) its stop or a later rebind: a gap
/// of more than the bound between the two is reporting after the stop. Only tasks that changed
/// within the bound count, so a task that did stop reporting drops out.
pub async fn tasks_reporting_after_stop(
    client: &(impl Projections + GenericClient),
    bound_s: u64,
) -> Result<i64, tokio_postgres::Error> {
    let stopped = client.stopped_tasks_changed_within(bound_s as f64).await?;
    if stopped.is_empty() {
        return Ok(0);
    }
    // A task's row changes with its stream or its traffic: its id is one its stream is named by.
    let stopped: Vec<(String, DateTime<Utc>)> = stopped
        .into_iter()
        .filter_map(|(task_id, updated_at)| {
            Some((task_stream(&TaskId::parse(task_id).ok()?), updated_at))
        })
        .collect();
    let streams: Vec<String> = stopped.iter().map(|(stream, _)| stream.clone()).collect();
    let last: HashMap<String, DateTime<Utc>> = crate::store::last_recorded(client, &streams)
        .await?
        .into_iter()
        .collect();
    let bound = i64::try_from(bound_s)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .unwrap_or(chrono::Duration::MAX);
    let counted = stopped
        .iter()
        .filter(|(stream, updated_at)| {
            last.get(stream)
                .is_some_and(|recorded_at| *updated_at - *recorded_at > bound)
        })
        .count();
    Ok(counted as i64)
}

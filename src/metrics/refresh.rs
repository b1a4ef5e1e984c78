//! The gauges counted in the database, refreshed every [`REFRESH_INTERVAL`] by a supervised
//! worker rather than on every scrape: a scrape (or several Prometheus servers scraping) never
//! costs a scan.

use super::{
    head_at, DATABASE_UP, EXPIRY_NOTICES_UNSETTLED, MARKETPLACE_REFUSED,
    MARKETPLACE_REFUSED_OLDEST_AGE, PACKAGES, TASKS, TASKS_REPORTING_AFTER_STOP, WEBHOOK_BACKLOG,
    WEBHOOK_DEAD_LETTERS, WEBHOOK_OLDEST_AGE,
};
use crate::marketplace::params::Action;
use deadpool_postgres::Pool;
use metrics::gauge;
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

/// Refreshes the gauges forever; also runs the recorder's upkeep. `stopped_reporting_s`: how
/// long after its stop a stopped task may go on reporting before it counts as still reporting.
pub async fn refresh_forever(pool: Pool, stopped_reporting_s: u64) {
    let handle = super::install();
    let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
        match refresh(&pool, stopped_reporting_s).await {
            Ok(()) => gauge!(DATABASE_UP).set(1.0),
            Err(error) => {
                gauge!(DATABASE_UP).set(0.0);
                tracing::debug!(%error, "refreshing the metrics failed; the next round retries");
            }
        }
    }
}

async fn refresh(pool: &Pool, stopped_reporting_s: u64) -> Result<(), RefreshError> {
    let client = pool.get().await?;
    let counts = client.prepare_cached(
        "SELECT 'package', status, count(*) FROM packages GROUP BY status
         UNION ALL
         SELECT 'task', state, count(*) FROM tasks GROUP BY state",
    );
    // Undelivered entries are found by a partial index; the oldest one's age is its event's.
    let outbox = client.prepare_cached(
        "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                count(*) FILTER (WHERE dead_at IS NOT NULL),
                coalesce(extract(epoch FROM now() - (
                    SELECT e.recorded_at FROM outbox f JOIN events e ON e.position = f.position
                     WHERE f.delivered_at IS NULL ORDER BY f.position LIMIT 1)), 0)::float8,
                (SELECT position FROM ledger_head)
           FROM outbox WHERE delivered_at IS NULL",
    );
    // Unresolved refusals and unsettled notices are a handful of rows, each behind a partial
    // index (migration 13).
    let refused = client.prepare_cached(
        "SELECT action, count(*), extract(epoch FROM now() - min(first_at))::float8
           FROM marketplace_refusals WHERE resolved_at IS NULL GROUP BY action",
    );
    let unsettled = client.prepare_cached(
        "SELECT count(*) FROM events h
          WHERE h.event_type = 'OrderExpiryHeld'
            AND NOT EXISTS (SELECT 1 FROM events s
                             WHERE s.stream_id = h.stream_id AND s.position > h.position
                               AND s.event_type IN ('OrderExpired', 'OrderReleased'))",
    );
    let (counts, outbox, refused, unsettled) = tokio::join!(counts, outbox, refused, unsettled);
    let (counts, outbox, refused, unsettled) = (counts?, outbox?, refused?, unsettled?);
    let (rows, row, refused, unsettled, after_stop, protection) = tokio::join!(
        client.query(&counts, &[]),
        client.query_one(&outbox, &[]),
        client.query(&refused, &[]),
        client.query_one(&unsettled, &[]),
        tasks_reporting_after_stop(&client, stopped_reporting_s),
        crate::database::primary::protection(&**client),
    );
    let (rows, row, refused, unsettled, after_stop) =
        (rows?, row?, refused?, unsettled?, after_stop?);
    gauge!(TASKS_REPORTING_AFTER_STOP).set(after_stop as f64);
    super::protection(&protection?);
    let mut oldest = 0.0_f64;
    for action in Action::ALL
        .map(Action::name)
        .into_iter()
        .chain([OTHER_ACTION])
    {
        let (count, age) = refused
            .iter()
            .filter(|r| {
                let name: &str = r.get(0);
                name == action
                    || (action == OTHER_ACTION && Action::parse(name.as_bytes()).is_none())
            })
            .fold((0_i64, 0.0_f64), |(count, age), r| {
                (count + r.get::<_, i64>(1), age.max(r.get::<_, f64>(2)))
            });
        oldest = oldest.max(age);
        gauge!(MARKETPLACE_REFUSED, "action" => action).set(count as f64);
    }
    gauge!(MARKETPLACE_REFUSED_OLDEST_AGE).set(oldest);
    gauge!(EXPIRY_NOTICES_UNSETTLED).set(unsettled.get::<_, i64>(0) as f64);
    for (kind, name, known) in [
        ("package", PACKAGES, &PACKAGE_STATUSES[..]),
        ("task", TASKS, &TASK_STATES[..]),
    ] {
        let label = if kind == "package" { "status" } else { "state" };
        for value in known {
            let count: i64 = rows
                .iter()
                .find(|r| r.get::<_, &str>(0) == kind && r.get::<_, &str>(1) == *value)
                .map_or(0, |r| r.get(2));
            gauge!(name, label => *value).set(count as f64);
        }
    }
    gauge!(WEBHOOK_BACKLOG).set(row.get::<_, i64>(0) as f64);
    gauge!(WEBHOOK_DEAD_LETTERS).set(row.get::<_, i64>(1) as f64);
    gauge!(WEBHOOK_OLDEST_AGE).set(row.get::<_, f64>(2));
    head_at(row.get(3));
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
    client: &impl deadpool_postgres::GenericClient,
    bound_s: u64,
) -> Result<i64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT count(*) FROM tasks t
              CROSS JOIN LATERAL (SELECT e.recorded_at FROM events e
                                   WHERE ledger_stream_key(e.stream_id)
                                           = ledger_stream_key('task-' || t.task_id)
                                     AND e.stream_id = 'task-' || t.task_id
                                   ORDER BY e.version DESC LIMIT 1) l
              WHERE t.state = 'stopped'
                AND t.updated_at >= now() - make_interval(secs => $1)
                AND t.updated_at - l.recorded_at > make_interval(secs => $1)",
        )
        .await?;
    let bound_s = bound_s as f64;
    Ok(client.query_one(&statement, &[&bound_s]).await?.get(0))
}

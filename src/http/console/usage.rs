//! What the usage chart and the statement read from the ledger ([`crate::store::history`]),
//! as the console shows it: the window's days, zeros included, in China Standard Time.

use crate::store::history;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use projections::events::package_stream;
use projections::ids::InstanceId;

/// The chart's windows, in days.
pub const WINDOWS_DAYS: [u32; 2] = [30, 90];
/// Grants listed on one statement: a package is renewed at most monthly, so 1000 covers decades.
pub const GRANTS_SHOWN_MAX: i64 = 1000;

/// One day of one package (China Standard Time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub bytes: u64,
    /// A task of the package was stopped that day (used up, expired or released).
    pub stopped: bool,
}

pub use crate::store::history::{Grant, Release};
pub use crate::usage::window_start;

/// The date of an instant in China Standard Time.
pub fn cst_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&crate::usage::china_standard_time())
        .date_naive()
}

/// Daily consumption of a package over the last `days` days, one entry per day (zeros included).
pub async fn daily(
    client: &impl GenericClient,
    instance_id: &InstanceId,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Day>, tokio_postgres::Error> {
    let (start, first) = window_start(now, days);
    let used = history::days_of_use(client, &package_stream(instance_id), start).await?;
    let mut out: Vec<Day> = (0..days)
        .map(|i| Day {
            date: first + Duration::days(i64::from(i)),
            bytes: 0,
            stopped: false,
        })
        .collect();
    for used in used {
        let Ok(index) = usize::try_from((used.date - first).num_days()) else {
            continue;
        };
        if let Some(day) = out.get_mut(index) {
            day.bytes = used.bytes;
            day.stopped = used.stopped;
        }
    }
    Ok(out)
}

/// Every grant of a package, oldest first.
pub async fn grants(
    client: &impl GenericClient,
    instance_id: &InstanceId,
) -> Result<Vec<Grant>, tokio_postgres::Error> {
    history::grants(client, &package_stream(instance_id), GRANTS_SHOWN_MAX).await
}

/// When a released package was released and what it forfeited.
pub async fn release(
    client: &impl GenericClient,
    instance_id: &InstanceId,
) -> Result<Option<Release>, tokio_postgres::Error> {
    history::release(client, &package_stream(instance_id)).await
}

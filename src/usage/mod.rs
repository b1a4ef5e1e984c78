//! What a package's use says about it: when it runs out (its runway), which tasks drew from it,
//! and how many of their bytes came after it reached zero. Read from the package's own stream,
//! a bounded window at a time, never the whole of it; shared by the API, the console and the
//! runway check.
//!
//! **The runway rule.** A package's rate is the bytes its traffic consumed in the last 7 days
//! (a rolling 168 hours before `now`) divided by the span those days cover: the full 7 days when
//! the package recorded traffic before them, otherwise the time since its first traffic. With
//! less than 24 hours since its first traffic, or no traffic at all in the 7 days, there is no
//! rate and no runway (`None`): a few minutes of use say nothing about a week. Only traffic
//! counts: a grant (purchase, renewal, upgrade, expansion) adds to the remaining bytes, never
//! takes away from the rate, so a renewal moves the date out and leaves the rate alone. The
//! package runs out when its remaining bytes are used at that rate: `runs_out_on` is that
//! instant's date in China Standard Time, `days` the calendar days from today (CST) to it, and
//! `expires_first` says the package's expiry comes before that instant. Only active packages
//! with bytes left have a runway; one used up has run out already. A runway further than
//! [`RUNWAY_DAYS_MAX`] days is shown as that many.
//!
//! **Bytes after zero.** A traffic event records the package's overage right after it, so the
//! part of a report that went beyond zero is `min(bytes, bytesOverage)`: all of it when the
//! package was at zero already (in-flight bytes, or an agent that ignores `stop`), the part past
//! zero for the report that crossed it, nothing otherwise.
//!
//! **Reading windows.** Within a stream `recorded_at` rises with `version` (appends record them
//! in step), so a window starts after the last event before it, found by walking the stream
//! index (`ledger_stream_key(stream_id), version`) back from the stream's end: a read costs about
//! twice the window's events, whatever the stream's age.
//!
//! The reads themselves are the store's (the stream's traffic, [`Traffic`]) and the package rows'
//! (the balances, [`Balances`]): both lie above this module, which the decisions below them use,
//! so this module names what it reads and they answer it for every client of the pool.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use projections::events::package_stream;
use projections::ids::{InstanceId, TaskId};
use std::collections::HashMap;
use std::future::Future;

/// The rate looks back this far: a week holds every weekday's pattern once.
pub const RATE_WINDOW_HOURS: i64 = 7 * 24;
/// Traffic history a rate needs at least: one day's cycle.
pub const HISTORY_HOURS_MIN: i64 = 24;
/// A runway is never shown further out than this (a hundred years): a trickle of use on a big
/// package would otherwise name a date past anything a package lives.
pub const RUNWAY_DAYS_MAX: u32 = 36_500;
/// Tasks listed for one package, at most: the console lists at most 5,000 live tasks in all.
pub const PACKAGE_TASKS_MAX: i64 = 5_000;
/// The longest window [`daily_by_task`] reads, in days (the console's longest chart).
pub const DAYS_MAX: u32 = 90;

const SECONDS_PER_DAY: u128 = 86_400;

/// China Standard Time (UTC+8, no daylight saving): the marketplace's and the customers' clock,
/// by which days are counted.
pub fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The first instant of the `days`-day window ending today (CST), and its first date.
pub fn window_start(now: DateTime<Utc>, days: u32) -> (DateTime<Utc>, NaiveDate) {
    let today = now.with_timezone(&china_standard_time()).date_naive();
    let first = today - Duration::days(i64::from(days.saturating_sub(1)));
    let start = first
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_local_timezone(china_standard_time())
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc);
    (start, first)
}

/// When a package runs out at its recent rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runway {
    /// Bytes per day at the rate of the last 7 days (rounded down).
    pub rate_bytes_per_day: u64,
    /// The date (China Standard Time) the remaining bytes are used up at that rate.
    pub runs_out_on: NaiveDate,
    /// Calendar days from today (CST) to `runs_out_on`: 0 when it is today.
    pub days: u32,
    /// The package expires before it would run out.
    pub expires_first: bool,
}

/// What the rate is computed from: a package's balance and its traffic of the rate window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateInput {
    pub bytes_remaining: u64,
    pub expires_at: Option<DateTime<Utc>>,
    /// Traffic bytes recorded in the rate window.
    pub bytes_in_window: u64,
    /// The first traffic of the window, if any.
    pub first_traffic_at: Option<DateTime<Utc>>,
    /// The package recorded traffic before the window.
    pub traffic_before: bool,
}

/// The runway rule of this module's documentation, as a pure function.
pub fn runway(input: &RateInput, now: DateTime<Utc>) -> Option<Runway> {
    if input.bytes_remaining == 0 || input.bytes_in_window == 0 {
        return None;
    }
    let window = Duration::hours(RATE_WINDOW_HOURS);
    let span = if input.traffic_before {
        window
    } else {
        let since = now.signed_duration_since(input.first_traffic_at?);
        if since < Duration::hours(HISTORY_HOURS_MIN) {
            return None;
        }
        since.min(window)
    };
    let span_s = u128::try_from(span.num_seconds()).ok()?.max(1);
    let consumed = u128::from(input.bytes_in_window);
    let rate_bytes_per_day = u64::try_from(consumed * SECONDS_PER_DAY / span_s).unwrap_or(u64::MAX);
    // remaining / (consumed / span), in seconds, without rounding the rate first.
    let left_s = u128::from(input.bytes_remaining) * span_s / consumed;
    let left_max_s = u128::from(RUNWAY_DAYS_MAX) * SECONDS_PER_DAY;
    let left = Duration::seconds(i64::try_from(left_s.min(left_max_s)).ok()?);
    let runs_out_at = now.checked_add_signed(left)?;
    let today = now.with_timezone(&china_standard_time()).date_naive();
    let runs_out_on = runs_out_at
        .with_timezone(&china_standard_time())
        .date_naive();
    let days = u32::try_from((runs_out_on - today).num_days())
        .unwrap_or(0)
        .min(RUNWAY_DAYS_MAX);
    Some(Runway {
        rate_bytes_per_day,
        runs_out_on,
        days,
        expires_first: input.expires_at.is_some_and(|at| at < runs_out_at),
    })
}

/// A package's balance, as its runway needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub instance_id: String,
    pub bytes_remaining: u64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A package stream's traffic in the rate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// Traffic bytes recorded in the window.
    pub bytes: u64,
    /// The first traffic of the window, if any.
    pub first_at: Option<DateTime<Utc>>,
    /// The stream recorded traffic before the window.
    pub traffic_before: bool,
}

/// The package rows this module reads. They live above it (the rows are the ledger's), which
/// answers for every client of the pool (`ledger/rows/queries.rs`).
pub trait Balances: Sync {
    /// The active packages among `instance_ids` that have bytes left.
    fn active_balances(
        &self,
        instance_ids: &[&str],
    ) -> impl Future<Output = Result<Vec<Balance>, tokio_postgres::Error>> + Send;
}

/// The traffic of package streams this module reads, in bounded windows (see **Reading windows**
/// above). It lives above this module (the events are the store's), which answers for every
/// client of the pool (`store/traffic.rs`).
pub trait Traffic: Sync {
    /// The traffic of each of `streams` in the rate window `(since, now]`, in the order of
    /// `streams`.
    fn rate_windows(
        &self,
        streams: &[String],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RateWindow>, tokio_postgres::Error>> + Send;

    /// Per task id, the bytes the stream's traffic in `[since, until)` drew and of those the
    /// bytes after zero, largest first (then by task id), at most `tasks_max` tasks.
    fn task_traffic(
        &self,
        stream: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        tasks_max: i64,
    ) -> impl Future<Output = Result<Vec<(String, u64, u64)>, tokio_postgres::Error>> + Send;

    /// Per CST day and task id, the bytes the stream's traffic in `[since, until)` drew: days in
    /// order, within a day largest first (then by task id).
    fn daily_task_traffic(
        &self,
        stream: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(NaiveDate, String, u64)>, tokio_postgres::Error>> + Send;
}

/// The runway of every active package among `instance_ids` that has one: the packages' balances
/// in one statement, their streams' rate windows in another.
///
/// `None` (absent from the map) with too little history (less than 24 h of traffic), no use in
/// the last 7 days, no bytes left, or a package that is not active.
pub async fn runways(
    client: &(impl Balances + Traffic),
    instance_ids: &[InstanceId],
    now: DateTime<Utc>,
) -> Result<HashMap<InstanceId, Runway>, tokio_postgres::Error> {
    if instance_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = instance_ids.iter().map(InstanceId::as_str).collect();
    let balances: Vec<(InstanceId, Balance)> = client
        .active_balances(&ids)
        .await?
        .into_iter()
        .filter_map(|balance| {
            Some((
                InstanceId::parse(balance.instance_id.clone()).ok()?,
                balance,
            ))
        })
        .collect();
    if balances.is_empty() {
        return Ok(HashMap::new());
    }
    let streams: Vec<String> = balances.iter().map(|(id, _)| package_stream(id)).collect();
    let since = now - Duration::hours(RATE_WINDOW_HOURS);
    let windows = client.rate_windows(&streams, since, now).await?;
    let mut out = HashMap::with_capacity(balances.len());
    for ((instance_id, balance), window) in balances.into_iter().zip(windows) {
        let input = RateInput {
            bytes_remaining: balance.bytes_remaining,
            expires_at: balance.expires_at,
            bytes_in_window: window.bytes,
            first_traffic_at: window.first_at,
            traffic_before: window.traffic_before,
        };
        if let Some(runway) = runway(&input, now) {
            out.insert(instance_id, runway);
        }
    }
    Ok(out)
}

/// What one task drew from one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUsage {
    pub task_id: TaskId,
    pub bytes: u64,
    /// Of `bytes`, those recorded after the package had reached zero.
    pub bytes_after_zero: u64,
}

fn task_id_of(raw: String) -> Option<TaskId> {
    match TaskId::parse(raw) {
        Ok(id) => Some(id),
        Err(error) => {
            // Every stored traffic event names a task id that parsed when it was recorded.
            tracing::error!(%error, "a traffic event names a task id that does not parse");
            None
        }
    }
}

/// Bytes each task drew from THIS package in `[since, now)`, largest first (then by task id), at
/// most [`PACKAGE_TASKS_MAX`] tasks. A task moved onto another package keeps what it drew here.
pub async fn package_tasks(
    client: &impl Traffic,
    instance_id: &InstanceId,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<TaskUsage>, tokio_postgres::Error> {
    let drawn = client
        .task_traffic(&package_stream(instance_id), since, now, PACKAGE_TASKS_MAX)
        .await?;
    Ok(drawn
        .into_iter()
        .filter_map(|(task_id, drawn, after_zero)| {
            Some(TaskUsage {
                task_id: task_id_of(task_id)?,
                bytes: drawn,
                bytes_after_zero: after_zero,
            })
        })
        .collect())
}

/// Per CST day and task, the bytes drawn from this package in the `days`-day window ending
/// today (CST): days in order, within a day largest first. Days without traffic have no entry.
/// `days` is at most [`DAYS_MAX`] (larger values read that many).
pub async fn daily_by_task(
    client: &impl Traffic,
    instance_id: &InstanceId,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<(NaiveDate, TaskId, u64)>, tokio_postgres::Error> {
    let (start, _) = window_start(now, days.clamp(1, DAYS_MAX));
    let daily = client
        .daily_task_traffic(&package_stream(instance_id), start, now)
        .await?;
    Ok(daily
        .into_iter()
        .filter_map(|(day, task_id, drawn)| Some((day, task_id_of(task_id)?, drawn)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn windows_start_at_midnight_china_standard_time() {
        let now = at("2026-11-26T17:00:00Z");
        // 01:00 on the 27th in CST: the 30-day window runs from the 29th of October to the 27th.
        let (start, first) = window_start(now, 30);
        assert_eq!(first, NaiveDate::from_ymd_opt(2026, 10, 29).unwrap());
        assert_eq!(start.to_rfc3339(), "2026-10-28T16:00:00+00:00");
        let (_, first) = window_start(now, 1);
        assert_eq!(first, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
    }

    #[test]
    fn a_week_of_steady_use_runs_out_when_the_remaining_bytes_are_used_at_that_rate() {
        // 04:00 CST on the 1st; 70 GiB in the week: 10 GiB a day, 35 GiB left: 3.5 days, i.e.
        // 16:00 CST on the 4th.
        let now = at("2026-11-30T20:00:00Z");
        let input = RateInput {
            bytes_remaining: 35 * GIB,
            expires_at: Some(at("2027-11-30T00:00:00Z")),
            bytes_in_window: 70 * GIB,
            first_traffic_at: Some(at("2026-11-24T00:00:00Z")),
            traffic_before: true,
        };
        let runway = runway(&input, now).unwrap();
        assert_eq!(runway.rate_bytes_per_day, 10 * GIB);
        assert_eq!(
            runway.runs_out_on,
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
        );
        assert_eq!(runway.days, 3);
        assert!(!runway.expires_first);
    }

    #[test]
    fn a_young_package_is_rated_over_its_own_history_from_a_day_on() {
        let now = at("2026-11-30T00:00:00Z");
        let young = RateInput {
            bytes_remaining: 100 * GIB,
            expires_at: None,
            bytes_in_window: 20 * GIB,
            first_traffic_at: Some(at("2026-11-28T00:00:00Z")),
            traffic_before: false,
        };
        // Two days of history: 10 GiB a day (not 20/7), 10 days left.
        let runway = runway(&young, now).unwrap();
        assert_eq!(runway.rate_bytes_per_day, 10 * GIB);
        assert_eq!(runway.days, 10);
        // Under a day of history: no runway yet.
        let hours = RateInput {
            first_traffic_at: Some(at("2026-11-29T01:00:00Z")),
            ..young.clone()
        };
        assert_eq!(super::runway(&hours, now), None);
        // No use in the window, or nothing left: none either.
        let idle = RateInput {
            bytes_in_window: 0,
            traffic_before: true,
            ..young.clone()
        };
        assert_eq!(super::runway(&idle, now), None);
        let empty = RateInput {
            bytes_remaining: 0,
            ..young
        };
        assert_eq!(super::runway(&empty, now), None);
    }

    #[test]
    fn an_expiry_before_the_end_of_the_bytes_comes_first_and_a_trickle_is_capped() {
        let now = at("2026-11-30T00:00:00Z");
        let input = RateInput {
            bytes_remaining: 100 * GIB,
            expires_at: Some(at("2026-12-03T00:00:00Z")),
            bytes_in_window: 7 * GIB,
            first_traffic_at: Some(at("2026-11-23T00:00:00Z")),
            traffic_before: true,
        };
        let runway = runway(&input, now).unwrap();
        assert_eq!(runway.days, 100);
        assert!(runway.expires_first);
        let trickle = RateInput {
            bytes_remaining: i64::MAX as u64,
            bytes_in_window: 1,
            expires_at: None,
            ..input
        };
        let runway = super::runway(&trickle, now).unwrap();
        assert_eq!(runway.rate_bytes_per_day, 0);
        assert_eq!(runway.days, RUNWAY_DAYS_MAX);
    }
}

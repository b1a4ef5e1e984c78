//! The projection tables as rows: load (with locks) and save, batched with `unnest`.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use projections::events::StopReason;
use projections::ids::{Bytes, InstanceId, JdPin, SkuId, TaskId};
use projections::{Package, PackageStatus, Task, TaskState};
use rust_decimal::Decimal;
use tokio_postgres::Row;

/// A projection row that no fold could have written.
#[derive(Debug, thiserror::Error)]
#[error("projection row {table}/{key} is unreadable: {reason}")]
pub struct CorruptRow {
    pub table: &'static str,
    pub key: String,
    pub reason: String,
}

pub const PACKAGE_COLUMNS: &str =
    "instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status, \
     bytes_granted, bytes_consumed, bytes_forfeited, bytes_remaining, bytes_overage, expires_at, \
     warned_percents, created_at, updated_at";

pub const TASK_COLUMNS: &str =
    "task_id, instance_id, state, stop_reason, bytes_consumed, created_at, updated_at, destroyed_at";

fn corrupt(table: &'static str, key: &str, reason: impl ToString) -> CorruptRow {
    CorruptRow {
        table,
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

pub fn package_from_row(row: &Row) -> Result<Package, CorruptRow> {
    let key: String = row.get(0);
    let bad = |reason: &dyn std::fmt::Display| corrupt("packages", &key, reason);
    let bytes = |index: usize| Bytes::from_i64(row.get::<_, i64>(index)).map_err(|e| bad(&e));
    let status: String = row.get(6);
    let warned: Vec<i16> = row.get(13);
    Ok(Package {
        instance_id: InstanceId::parse(key.clone()).map_err(|e| bad(&e))?,
        jd_pin: JdPin::parse(row.get::<_, String>(1)).map_err(|e| bad(&e))?,
        sku_id: SkuId::parse(row.get::<_, String>(2)).map_err(|e| bad(&e))?,
        sku_bytes: bytes(3)?,
        unit_price: row.get::<_, Decimal>(4),
        units: u32::try_from(row.get::<_, i32>(5)).map_err(|e| bad(&e))?,
        status: PackageStatus::parse(&status).ok_or_else(|| bad(&"unknown status"))?,
        bytes_granted: bytes(7)?,
        bytes_consumed: bytes(8)?,
        bytes_forfeited: bytes(9)?,
        bytes_remaining: bytes(10)?,
        bytes_overage: bytes(11)?,
        expires_at: row.get(12),
        warned_percents: warned
            .into_iter()
            .map(u8::try_from)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&e))?,
        created_at: row.get(14),
        updated_at: row.get(15),
    })
}

pub fn task_from_row(row: &Row) -> Result<Task, CorruptRow> {
    let key: String = row.get(0);
    let bad = |reason: &dyn std::fmt::Display| corrupt("tasks", &key, reason);
    let state: String = row.get(2);
    let reason: Option<String> = row.get(3);
    Ok(Task {
        task_id: TaskId::parse(key.clone()).map_err(|e| bad(&e))?,
        instance_id: InstanceId::parse(row.get::<_, String>(1)).map_err(|e| bad(&e))?,
        state: TaskState::parse(&state).ok_or_else(|| bad(&"unknown state"))?,
        stop_reason: match reason {
            Some(reason) => {
                Some(StopReason::parse(&reason).ok_or_else(|| bad(&"unknown stop reason"))?)
            }
            None => None,
        },
        bytes_consumed: Bytes::from_i64(row.get(4)).map_err(|e| bad(&e))?,
        created_at: row.get(5),
        updated_at: row.get(6),
        destroyed_at: row.get(7),
    })
}

// Lists of ids are matched with `= ANY($1)` on an indexed column: an index condition (one
// descent per id) in custom and generic plans alike, where `IN (SELECT unnest($1))` leaves the
// planner a guess of the list's length and, with it, a hash join over the whole table. The updates
// join their column arrays on the id and repeat the id list as `= ANY` for the same reason. With
// the sessions' `random_page_cost` (see `crate::database::RANDOM_PAGE_COST`), the planner takes the
// index even while the tables are small.

/// Runs a prepared query whose one parameter is a list of ids.
async fn by_ids(
    client: &impl GenericClient,
    sql: &str,
    ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, &[&ids]).await
}

/// Loads and locks packages, in id order so that concurrent lockers never deadlock.
pub async fn lock_packages(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {PACKAGE_COLUMNS} FROM packages WHERE instance_id = ANY($1::text[])
          ORDER BY instance_id FOR UPDATE"
    );
    by_ids(tx, &sql, ids).await
}

/// Loads and locks the packages the given tasks are bound to, in id order.
pub async fn lock_packages_of_tasks(
    tx: &Transaction<'_>,
    task_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {PACKAGE_COLUMNS} FROM packages
          WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM tasks
                                         WHERE task_id = ANY($1::text[])))
          ORDER BY instance_id FOR UPDATE"
    );
    by_ids(tx, &sql, task_ids).await
}

/// The running tasks of the named packages.
pub async fn running_tasks_of(
    tx: &Transaction<'_>,
    instance_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks
          WHERE instance_id = ANY($1::text[]) AND state = 'running'"
    );
    by_ids(tx, &sql, instance_ids).await
}

/// Reads packages without locking them (for answers that change nothing).
pub async fn read_packages(
    client: &impl GenericClient,
    ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE instance_id = ANY($1::text[])");
    by_ids(client, &sql, ids).await
}

/// The tasks bound to these packages that are not destroyed.
pub async fn live_tasks_of(
    client: &impl GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ANY($1::text[])
            AND state <> 'destroyed'"
    );
    by_ids(client, &sql, instance_ids).await
}

/// Every task bound to these packages, destroyed ones included (for order views).
pub async fn all_tasks_of(
    client: &impl GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ANY($1::text[])
          ORDER BY task_id"
    );
    by_ids(client, &sql, instance_ids).await
}

/// The named tasks.
pub async fn read_tasks(
    client: &impl GenericClient,
    task_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ANY($1::text[])");
    by_ids(client, &sql, task_ids).await
}

/// The columns of packages as arrays, one element per package, in `PACKAGE_COLUMNS` order.
struct PackageColumns<'a> {
    ids: Vec<&'a str>,
    pins: Vec<&'a str>,
    skus: Vec<&'a str>,
    sku_bytes: Vec<i64>,
    prices: Vec<Decimal>,
    units: Vec<i32>,
    statuses: Vec<&'static str>,
    granted: Vec<i64>,
    consumed: Vec<i64>,
    forfeited: Vec<i64>,
    remaining: Vec<i64>,
    overage: Vec<i64>,
    expires: Vec<Option<DateTime<Utc>>>,
    /// Array literals (`{80,95}`): `unnest` would flatten an array of arrays.
    warned: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
}

impl<'a> PackageColumns<'a> {
    fn new(packages: &[&'a Package]) -> PackageColumns<'a> {
        let bytes = |f: fn(&Package) -> Bytes| -> Vec<i64> {
            packages.iter().map(|p| f(p).as_i64()).collect()
        };
        PackageColumns {
            ids: packages.iter().map(|p| p.instance_id.as_str()).collect(),
            pins: packages.iter().map(|p| p.jd_pin.as_str()).collect(),
            skus: packages.iter().map(|p| p.sku_id.as_str()).collect(),
            sku_bytes: bytes(|p| p.sku_bytes),
            prices: packages.iter().map(|p| p.unit_price).collect(),
            units: packages
                .iter()
                .map(|p| i32::try_from(p.units).unwrap_or(i32::MAX))
                .collect(),
            statuses: packages.iter().map(|p| p.status.as_str()).collect(),
            granted: bytes(|p| p.bytes_granted),
            consumed: bytes(|p| p.bytes_consumed),
            forfeited: bytes(|p| p.bytes_forfeited),
            remaining: bytes(|p| p.bytes_remaining),
            overage: bytes(|p| p.bytes_overage),
            expires: packages.iter().map(|p| p.expires_at).collect(),
            warned: packages
                .iter()
                .map(|p| {
                    let list: Vec<String> = p.warned_percents.iter().map(u8::to_string).collect();
                    format!("{{{}}}", list.join(","))
                })
                .collect(),
            created: packages.iter().map(|p| p.created_at).collect(),
            updated: packages.iter().map(|p| p.updated_at).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
        [
            &self.ids,
            &self.pins,
            &self.skus,
            &self.sku_bytes,
            &self.prices,
            &self.units,
            &self.statuses,
            &self.granted,
            &self.consumed,
            &self.forfeited,
            &self.remaining,
            &self.overage,
            &self.expires,
            &self.warned,
            &self.created,
            &self.updated,
        ]
    }
}

const PACKAGE_UNNEST: &str = "unnest($1::text[], $2::text[], $3::text[], $4::int8[], \
     $5::numeric[], $6::int4[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
     $12::int8[], $13::timestamptz[], $14::text[], $15::timestamptz[], $16::timestamptz[]) \
     AS u(instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status, bytes_granted, \
     bytes_consumed, bytes_forfeited, bytes_remaining, bytes_overage, expires_at, \
     warned_percents, created_at, updated_at)";

/// Runs a prepared statement over column arrays (one element per row).
async fn write_columns(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await.map(drop)
}

/// Inserts new packages, all in one statement.
pub async fn insert_packages(
    tx: &Transaction<'_>,
    packages: &[&Package],
) -> Result<(), tokio_postgres::Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO packages ({PACKAGE_COLUMNS})
             SELECT u.instance_id, u.jd_pin, u.sku_id, u.sku_bytes, u.unit_price, u.units, u.status,
                    u.bytes_granted, u.bytes_consumed, u.bytes_forfeited, u.bytes_remaining,
                    u.bytes_overage, u.expires_at, u.warned_percents::smallint[], u.created_at,
                    u.updated_at
               FROM {PACKAGE_UNNEST}"
    );
    write_columns(tx, &sql, &PackageColumns::new(packages).params()).await
}

/// Updates packages loaded (and locked) earlier in the transaction, all in one statement.
pub async fn update_packages(
    tx: &Transaction<'_>,
    packages: &[&Package],
) -> Result<(), tokio_postgres::Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE packages p SET
                 jd_pin = u.jd_pin, sku_id = u.sku_id, sku_bytes = u.sku_bytes,
                 unit_price = u.unit_price, units = u.units, status = u.status,
                 bytes_granted = u.bytes_granted, bytes_consumed = u.bytes_consumed,
                 bytes_forfeited = u.bytes_forfeited, bytes_remaining = u.bytes_remaining,
                 bytes_overage = u.bytes_overage, expires_at = u.expires_at,
                 warned_percents = u.warned_percents::smallint[],
                 created_at = u.created_at, updated_at = u.updated_at
               FROM {PACKAGE_UNNEST}
              WHERE p.instance_id = u.instance_id AND p.instance_id = ANY($1::text[])"
    );
    write_columns(tx, &sql, &PackageColumns::new(packages).params()).await
}

/// The columns of tasks as arrays, in `TASK_COLUMNS` order.
struct TaskColumns<'a> {
    ids: Vec<&'a str>,
    instances: Vec<&'a str>,
    states: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    consumed: Vec<i64>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    destroyed: Vec<Option<DateTime<Utc>>>,
}

impl<'a> TaskColumns<'a> {
    fn new(tasks: &[&'a Task]) -> TaskColumns<'a> {
        TaskColumns {
            ids: tasks.iter().map(|t| t.task_id.as_str()).collect(),
            instances: tasks.iter().map(|t| t.instance_id.as_str()).collect(),
            states: tasks.iter().map(|t| t.state.as_str()).collect(),
            reasons: tasks
                .iter()
                .map(|t| t.stop_reason.map(StopReason::as_str))
                .collect(),
            consumed: tasks.iter().map(|t| t.bytes_consumed.as_i64()).collect(),
            created: tasks.iter().map(|t| t.created_at).collect(),
            updated: tasks.iter().map(|t| t.updated_at).collect(),
            destroyed: tasks.iter().map(|t| t.destroyed_at).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.ids,
            &self.instances,
            &self.states,
            &self.reasons,
            &self.consumed,
            &self.created,
            &self.updated,
            &self.destroyed,
        ]
    }
}

const TASK_UNNEST: &str = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
     $6::timestamptz[], $7::timestamptz[], $8::timestamptz[]) \
     AS u(task_id, instance_id, state, stop_reason, bytes_consumed, created_at, updated_at, \
     destroyed_at)";

/// Inserts new tasks, all in one statement.
pub async fn insert_tasks(
    tx: &Transaction<'_>,
    tasks: &[&Task],
) -> Result<(), tokio_postgres::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let sql = format!("INSERT INTO tasks ({TASK_COLUMNS}) SELECT u.* FROM {TASK_UNNEST}");
    write_columns(tx, &sql, &TaskColumns::new(tasks).params()).await
}

/// Updates tasks loaded earlier in the transaction (under their packages' locks).
pub async fn update_tasks(
    tx: &Transaction<'_>,
    tasks: &[&Task],
) -> Result<(), tokio_postgres::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE tasks t SET
                 instance_id = u.instance_id, state = u.state, stop_reason = u.stop_reason,
                 bytes_consumed = u.bytes_consumed, created_at = u.created_at,
                 updated_at = u.updated_at, destroyed_at = u.destroyed_at
               FROM {TASK_UNNEST}
              WHERE t.task_id = u.task_id AND t.task_id = ANY($1::text[])"
    );
    write_columns(tx, &sql, &TaskColumns::new(tasks).params()).await
}

//! The projection tables as rows: load (with locks) and save, batched with `unnest`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
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

const PACKAGE_COLUMNS: &str = "instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status, \
     bytes_granted, bytes_consumed, bytes_forfeited, bytes_remaining, bytes_overage, expires_at, \
     warned_percents, created_at, updated_at";

const TASK_COLUMNS: &str =
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

/// Loads and locks packages, in id order so that concurrent lockers never deadlock.
pub async fn lock_packages(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE instance_id = ANY($1::text[]) \
             ORDER BY instance_id FOR UPDATE"
        ))
        .await?;
    tx.query(&statement, &[&ids]).await
}

/// Reads packages without locking them (for answers that change nothing).
pub async fn read_packages(
    client: &impl deadpool_postgres::GenericClient,
    ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE instance_id = ANY($1::text[])"
        ))
        .await?;
    client.query(&statement, &[&ids]).await
}

/// The tasks bound to these packages that are not destroyed.
pub async fn live_tasks_of(
    client: &impl deadpool_postgres::GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ANY($1::text[]) \
             AND state <> 'destroyed'"
        ))
        .await?;
    client.query(&statement, &[&instance_ids]).await
}

/// Every task bound to these packages, destroyed ones included (for order views).
pub async fn all_tasks_of(
    client: &impl deadpool_postgres::GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ANY($1::text[]) ORDER BY task_id"
        ))
        .await?;
    client.query(&statement, &[&instance_ids]).await
}

pub async fn read_tasks(
    client: &impl deadpool_postgres::GenericClient,
    task_ids: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ANY($1::text[])"
        ))
        .await?;
    client.query(&statement, &[&task_ids]).await
}

/// Inserts or updates packages, all in one statement.
pub async fn save_packages(
    tx: &Transaction<'_>,
    packages: &[&Package],
) -> Result<(), tokio_postgres::Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO packages ({PACKAGE_COLUMNS})
             SELECT u.instance_id, u.jd_pin, u.sku_id, u.sku_bytes, u.unit_price, u.units, u.status,
                    u.bytes_granted, u.bytes_consumed, u.bytes_forfeited, u.bytes_remaining,
                    u.bytes_overage, u.expires_at, u.warned_percents::smallint[], u.created_at,
                    u.updated_at
               FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::numeric[],
                           $6::int4[], $7::text[], $8::int8[], $9::int8[], $10::int8[],
                           $11::int8[], $12::int8[], $13::timestamptz[], $14::text[],
                           $15::timestamptz[], $16::timestamptz[])
                 AS u(instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status,
                      bytes_granted, bytes_consumed, bytes_forfeited, bytes_remaining,
                      bytes_overage, expires_at, warned_percents, created_at, updated_at)
             ON CONFLICT (instance_id) DO UPDATE SET
                 jd_pin = EXCLUDED.jd_pin, sku_id = EXCLUDED.sku_id,
                 sku_bytes = EXCLUDED.sku_bytes, unit_price = EXCLUDED.unit_price,
                 units = EXCLUDED.units, status = EXCLUDED.status,
                 bytes_granted = EXCLUDED.bytes_granted, bytes_consumed = EXCLUDED.bytes_consumed,
                 bytes_forfeited = EXCLUDED.bytes_forfeited,
                 bytes_remaining = EXCLUDED.bytes_remaining,
                 bytes_overage = EXCLUDED.bytes_overage, expires_at = EXCLUDED.expires_at,
                 warned_percents = EXCLUDED.warned_percents,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
        ))
        .await?;
    let ids: Vec<&str> = packages.iter().map(|p| p.instance_id.as_str()).collect();
    let pins: Vec<&str> = packages.iter().map(|p| p.jd_pin.as_str()).collect();
    let skus: Vec<&str> = packages.iter().map(|p| p.sku_id.as_str()).collect();
    let sku_bytes: Vec<i64> = packages.iter().map(|p| p.sku_bytes.as_i64()).collect();
    let prices: Vec<Decimal> = packages.iter().map(|p| p.unit_price).collect();
    let units: Vec<i32> = packages
        .iter()
        .map(|p| i32::try_from(p.units).unwrap_or(i32::MAX))
        .collect();
    let statuses: Vec<&str> = packages.iter().map(|p| p.status.as_str()).collect();
    let column =
        |f: fn(&Package) -> Bytes| -> Vec<i64> { packages.iter().map(|p| f(p).as_i64()).collect() };
    let granted = column(|p| p.bytes_granted);
    let consumed = column(|p| p.bytes_consumed);
    let forfeited = column(|p| p.bytes_forfeited);
    let remaining = column(|p| p.bytes_remaining);
    let overage = column(|p| p.bytes_overage);
    let expires: Vec<Option<DateTime<Utc>>> = packages.iter().map(|p| p.expires_at).collect();
    let warned: Vec<String> = packages
        .iter()
        .map(|p| {
            let list: Vec<String> = p.warned_percents.iter().map(u8::to_string).collect();
            format!("{{{}}}", list.join(","))
        })
        .collect();
    let created: Vec<DateTime<Utc>> = packages.iter().map(|p| p.created_at).collect();
    let updated: Vec<DateTime<Utc>> = packages.iter().map(|p| p.updated_at).collect();
    tx.execute(
        &statement,
        &[
            &ids, &pins, &skus, &sku_bytes, &prices, &units, &statuses, &granted, &consumed,
            &forfeited, &remaining, &overage, &expires, &warned, &created, &updated,
        ],
    )
    .await
    .map(drop)
}

/// Inserts or updates tasks, all in one statement.
pub async fn save_tasks(
    tx: &Transaction<'_>,
    tasks: &[&Task],
) -> Result<(), tokio_postgres::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO tasks ({TASK_COLUMNS})
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[],
                                  $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
             ON CONFLICT (task_id) DO UPDATE SET
                 instance_id = EXCLUDED.instance_id, state = EXCLUDED.state,
                 stop_reason = EXCLUDED.stop_reason, bytes_consumed = EXCLUDED.bytes_consumed,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                 destroyed_at = EXCLUDED.destroyed_at"
        ))
        .await?;
    let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    let instances: Vec<&str> = tasks.iter().map(|t| t.instance_id.as_str()).collect();
    let states: Vec<&str> = tasks.iter().map(|t| t.state.as_str()).collect();
    let reasons: Vec<Option<&str>> = tasks
        .iter()
        .map(|t| t.stop_reason.map(StopReason::as_str))
        .collect();
    let consumed: Vec<i64> = tasks.iter().map(|t| t.bytes_consumed.as_i64()).collect();
    let created: Vec<DateTime<Utc>> = tasks.iter().map(|t| t.created_at).collect();
    let updated: Vec<DateTime<Utc>> = tasks.iter().map(|t| t.updated_at).collect();
    let destroyed: Vec<Option<DateTime<Utc>>> = tasks.iter().map(|t| t.destroyed_at).collect();
    tx.execute(
        &statement,
        &[
            &ids, &instances, &states, &reasons, &consumed, &created, &updated, &destroyed,
        ],
    )
    .await
    .map(drop)
}

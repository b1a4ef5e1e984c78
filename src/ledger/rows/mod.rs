//! The projection tables as rows, and every statement over them: load (with locks) and save,
//! batched with `unnest` (here); the projection read or written whole, and the snapshots stored
//! in tables shaped like it (`whole.rs`); and what the workers, the metrics and the usage answers
//! ask of them (`queries.rs`). Each table's columns are listed once, each with its type and its
//! value (`PACKAGES`, `TASKS`); every statement is made from that list.

use deadpool_postgres::{GenericClient, Transaction};
use projections::events::StopReason;
use projections::ids::{Bytes, InstanceId, JdPin, SkuId, TaskId};
use projections::{Package, PackageStatus, Task, TaskState};
use rust_decimal::Decimal;
use std::sync::{LazyLock, OnceLock};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

mod queries;
mod whole;

pub use queries::{active_packages, changed_active_packages, due_packages, Active};
pub use whole::{all_rows, snapshot_rows, write_snapshot, write_to_schema, SnapshotKey};

/// A projection row that no fold could have written.
#[derive(Debug, thiserror::Error)]
#[error("projection row {table}/{key} is unreadable: {reason}")]
pub struct CorruptRow {
    pub table: &'static str,
    pub key: String,
    pub reason: String,
}

/// One column of a projection table.
struct Column<R: 'static> {
    name: &'static str,
    /// The type of the array its values are sent in, with the cast that stores them where the
    /// two differ.
    sent_as: &'static str,
    cast: &'static str,
    /// The array of its values, one per row written.
    values: for<'a> fn(&[&'a R]) -> Box<dyn ToSql + Sync + Send + 'a>,
}

/// A column whose values (each row's `value`) are sent as an array of `sent_as` and stored as
/// they are.
macro_rules! column {
    ($name:literal, $sent_as:literal, $value:expr) => {
        Column {
            name: $name,
            sent_as: $sent_as,
            cast: "",
            values: |rows| array(rows, $value),
        }
    };
}

/// The array of one column's values.
fn array<'a, R, T: ToSql + Sync + Send + 'a>(
    rows: &[&'a R],
    value: impl Fn(&'a R) -> T,
) -> Box<dyn ToSql + Sync + Send + 'a> {
    Box::new(rows.iter().map(|row| value(row)).collect::<Vec<T>>())
}

/// A projection table: its name and its columns, the key first, in the order rows are read
/// ([`package_from_row`], [`task_from_row`]) and written.
struct Table<R: 'static> {
    name: &'static str,
    columns: &'static [Column<R>],
}

impl<R> Table<R> {
    /// `each` of its columns from the `skip`-th on, joined by commas.
    fn list(&self, skip: usize, each: impl Fn(usize, &Column<R>) -> String) -> String {
        let items: Vec<String> = (1..)
            .zip(self.columns)
            .skip(skip)
            .map(|(number, column)| each(number, column))
            .collect();
        items.join(", ")
    }

    /// `unnest` of the column arrays, one parameter per column in order, as `u`.
    fn unnest(&self) -> String {
        format!(
            "unnest({}) AS u({})",
            self.list(0, |number, column| format!(
                "${number}::{}[]",
                column.sent_as
            )),
            self.list(0, |_, column| column.name.to_owned())
        )
    }

    fn insert(&self) -> String {
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            self.name,
            self.list(0, |_, column| column.name.to_owned()),
            self.list(0, |_, column| format!("u.{}{}", column.name, column.cast)),
            self.unnest()
        )
    }

    /// Sets every column but the key from the arrays, joined on the key (and the key matched
    /// with `= ANY` as well: see the note on lists of ids below).
    fn update(&self) -> String {
        let key = self.columns[0].name;
        format!(
            "UPDATE {} t SET {} FROM {} WHERE t.{key} = u.{key} AND t.{key} = ANY($1::text[])",
            self.name,
            self.list(1, |_, column| format!(
                "{0} = u.{0}{1}",
                column.name, column.cast
            )),
            self.unnest()
        )
    }
}

/// The columns of `packages`.
const PACKAGES: Table<Package> = Table {
    name: "packages",
    columns: &[
        column!("instance_id", "text", |p| p.instance_id.as_str()),
        column!("jd_pin", "text", |p| p.jd_pin.as_str()),
        column!("sku_id", "text", |p| p.sku_id.as_str()),
        column!("sku_bytes", "int8", |p| p.sku_bytes.as_i64()),
        column!("unit_price", "numeric", |p| p.unit_price),
        column!("units", "int4", |p| units(p.units)),
        column!("status", "text", |p| p.status.as_str()),
        column!("bytes_granted", "int8", |p| p.bytes_granted.as_i64()),
        column!("bytes_consumed", "int8", |p| p.bytes_consumed.as_i64()),
        column!("bytes_forfeited", "int8", |p| p.bytes_forfeited.as_i64()),
        column!("bytes_remaining", "int8", |p| p.bytes_remaining.as_i64()),
        column!("bytes_overage", "int8", |p| p.bytes_overage.as_i64()),
        column!("expires_at", "timestamptz", |p| p.expires_at),
        // Array literals (`{80,95}`): `unnest` would flatten an array of arrays.
        Column {
            cast: "::smallint[]",
            ..column!("warned_percents", "text", warned)
        },
        column!("created_at", "timestamptz", |p| p.created_at),
        column!("updated_at", "timestamptz", |p| p.updated_at),
    ],
};

/// The columns of `tasks`.
const TASKS: Table<Task> = Table {
    name: "tasks",
    columns: &[
        column!("task_id", "text", |t| t.task_id.as_str()),
        column!("instance_id", "text", |t| t.instance_id.as_str()),
        column!("state", "text", |t| t.state.as_str()),
        column!("stop_reason", "text", stop_reason),
        column!("bytes_consumed", "int8", |t| t.bytes_consumed.as_i64()),
        column!("created_at", "timestamptz", |t| t.created_at),
        column!("updated_at", "timestamptz", |t| t.updated_at),
        column!("destroyed_at", "timestamptz", |t| t.destroyed_at),
    ],
};

fn units(units: u32) -> i32 {
    i32::try_from(units).unwrap_or(i32::MAX)
}

fn stop_reason(task: &Task) -> Option<&'static str> {
    task.stop_reason.map(StopReason::as_str)
}

fn warned(package: &Package) -> String {
    let list: Vec<String> = package.warned_percents.iter().map(u8::to_string).collect();
    format!("{{{}}}", list.join(","))
}

/// A table's column names, written as a list (`instance_id, jd_pin, …`).
pub struct ColumnNames<R: 'static>(&'static Table<R>);

impl<R> std::fmt::Display for ColumnNames<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.list(0, |_, column| column.name.to_owned()))
    }
}

pub const PACKAGE_COLUMNS: ColumnNames<Package> = ColumnNames(&PACKAGES);
pub const TASK_COLUMNS: ColumnNames<Task> = ColumnNames(&TASKS);

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

/// A read of projection rows: its text, with `{packages}` and `{tasks}` standing for the tables'
/// column lists, made on first use and then kept (the locking reads run in every unit of work).
struct Read {
    template: &'static str,
    text: OnceLock<String>,
}

impl Read {
    const fn new(template: &'static str) -> Read {
        Read {
            template,
            text: OnceLock::new(),
        }
    }

    async fn query(
        &self,
        client: &impl GenericClient,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let text = self.text.get_or_init(|| {
            self.template
                .replace("{packages}", &PACKAGE_COLUMNS.to_string())
                .replace("{tasks}", &TASK_COLUMNS.to_string())
        });
        let statement = client.prepare_cached(text).await?;
        client.query(&statement, params).await
    }
}

static LOCK_PACKAGES: Read = Read::new(
    "SELECT {packages} FROM packages WHERE instance_id = ANY($1::text[])
      ORDER BY instance_id FOR UPDATE",
);
static LOCK_PACKAGES_OF_TASKS: Read = Read::new(
    "SELECT {packages} FROM packages
      WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM tasks
                                     WHERE task_id = ANY($1::text[])))
      ORDER BY instance_id FOR UPDATE",
);
static RUNNING_TASKS_OF: Read = Read::new(
    "SELECT {tasks} FROM tasks WHERE instance_id = ANY($1::text[]) AND state = 'running'",
);
static READ_PACKAGES: Read =
    Read::new("SELECT {packages} FROM packages WHERE instance_id = ANY($1::text[])");
static LIVE_TASKS_OF: Read = Read::new(
    "SELECT {tasks} FROM tasks WHERE instance_id = ANY($1::text[]) AND state <> 'destroyed'",
);
static ALL_TASKS_OF: Read =
    Read::new("SELECT {tasks} FROM tasks WHERE instance_id = ANY($1::text[]) ORDER BY task_id");
static READ_TASKS: Read = Read::new("SELECT {tasks} FROM tasks WHERE task_id = ANY($1::text[])");
static PACKAGES_OF_CUSTOMER: Read = Read::new(
    "SELECT {packages} FROM packages WHERE jd_pin = $1 ORDER BY created_at, instance_id LIMIT $2",
);
static LIVE_TASKS_LISTED: Read = Read::new(
    "SELECT {tasks} FROM tasks WHERE instance_id = ANY($1::text[])
        AND state <> 'destroyed' ORDER BY task_id LIMIT $2",
);

/// Loads and locks packages, in id order so that concurrent lockers never deadlock.
pub async fn lock_packages(tx: &Transaction<'_>, ids: &[&str]) -> Result<Vec<Row>, Error> {
    LOCK_PACKAGES.query(tx, &[&ids]).await
}

/// Loads and locks the packages the given tasks are bound to, in id order.
pub async fn lock_packages_of_tasks(
    tx: &Transaction<'_>,
    task_ids: &[&str],
) -> Result<Vec<Row>, Error> {
    LOCK_PACKAGES_OF_TASKS.query(tx, &[&task_ids]).await
}

/// The running tasks of the named packages.
pub async fn running_tasks_of(
    tx: &Transaction<'_>,
    instance_ids: &[&str],
) -> Result<Vec<Row>, Error> {
    RUNNING_TASKS_OF.query(tx, &[&instance_ids]).await
}

/// Reads packages without locking them (for answers that change nothing).
pub async fn read_packages(client: &impl GenericClient, ids: &[&str]) -> Result<Vec<Row>, Error> {
    READ_PACKAGES.query(client, &[&ids]).await
}

/// The tasks bound to these packages that are not destroyed.
pub async fn live_tasks_of(
    client: &impl GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, Error> {
    LIVE_TASKS_OF.query(client, &[&instance_ids]).await
}

/// Every task bound to these packages, destroyed ones included (for order views).
pub async fn all_tasks_of(
    client: &impl GenericClient,
    instance_ids: &[&str],
) -> Result<Vec<Row>, Error> {
    ALL_TASKS_OF.query(client, &[&instance_ids]).await
}

/// The named tasks.
pub async fn read_tasks(client: &impl GenericClient, task_ids: &[&str]) -> Result<Vec<Row>, Error> {
    READ_TASKS.query(client, &[&task_ids]).await
}

/// A customer's packages, oldest first, at most `limit` (what the console shows).
pub async fn packages_of_customer(
    client: &impl GenericClient,
    jd_pin: &str,
    limit: i64,
) -> Result<Vec<Row>, Error> {
    PACKAGES_OF_CUSTOMER.query(client, &[&jd_pin, &limit]).await
}

/// The tasks of these packages that are not destroyed, by id, at most `limit` (what the console
/// lists).
pub async fn live_tasks_listed(
    client: &impl GenericClient,
    instance_ids: &[&str],
    limit: i64,
) -> Result<Vec<Row>, Error> {
    LIVE_TASKS_LISTED
        .query(client, &[&instance_ids, &limit])
        .await
}

/// Writes `rows` with the prepared statement `sql`, one array per column of `table`.
async fn write<R>(
    tx: &Transaction<'_>,
    table: &Table<R>,
    sql: &str,
    rows: &[&R],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let arrays: Vec<Box<dyn ToSql + Sync + Send + '_>> = table
        .columns
        .iter()
        .map(|column| (column.values)(rows))
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = arrays
        .iter()
        .map(|array| -> &(dyn ToSql + Sync) { &**array })
        .collect();
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, &params).await.map(drop)
}

// The writes' statements, made from the lists once: they run in every unit of work.
static INSERT_PACKAGES: LazyLock<String> = LazyLock::new(|| PACKAGES.insert());
static UPDATE_PACKAGES: LazyLock<String> = LazyLock::new(|| PACKAGES.update());
static INSERT_TASKS: LazyLock<String> = LazyLock::new(|| TASKS.insert());
static UPDATE_TASKS: LazyLock<String> = LazyLock::new(|| TASKS.update());

/// Inserts new packages, all in one statement.
pub async fn insert_packages(
    tx: &Transaction<'_>,
    packages: &[&Package],
) -> Result<(), tokio_postgres::Error> {
    write(tx, &PACKAGES, &INSERT_PACKAGES, packages).await
}

/// Updates packages loaded (and locked) earlier in the transaction, all in one statement.
pub async fn update_packages(
    tx: &Transaction<'_>,
    packages: &[&Package],
) -> Result<(), tokio_postgres::Error> {
    write(tx, &PACKAGES, &UPDATE_PACKAGES, packages).await
}

/// Inserts new tasks, all in one statement.
pub async fn insert_tasks(
    tx: &Transaction<'_>,
    tasks: &[&Task],
) -> Result<(), tokio_postgres::Error> {
    write(tx, &TASKS, &INSERT_TASKS, tasks).await
}

/// Updates tasks loaded earlier in the transaction (under their packages' locks).
pub async fn update_tasks(
    tx: &Transaction<'_>,
    tasks: &[&Task],
) -> Result<(), tokio_postgres::Error> {
    write(tx, &TASKS, &UPDATE_TASKS, tasks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_made_from_the_one_list_of_columns() {
        assert_eq!(
            TASK_COLUMNS.to_string(),
            "task_id, instance_id, state, stop_reason, bytes_consumed, created_at, updated_at, \
             destroyed_at"
        );
        assert_eq!(
            TASKS.insert(),
            "INSERT INTO tasks (task_id, instance_id, state, stop_reason, bytes_consumed, \
             created_at, updated_at, destroyed_at) SELECT u.task_id, u.instance_id, u.state, \
             u.stop_reason, u.bytes_consumed, u.created_at, u.updated_at, u.destroyed_at FROM \
             unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[]) AS u(task_id, instance_id, \
             state, stop_reason, bytes_consumed, created_at, updated_at, destroyed_at)"
        );
        let update = PACKAGES.update();
        assert!(update.starts_with("UPDATE packages t SET jd_pin = u.jd_pin, "));
        assert!(update.contains("warned_percents = u.warned_percents::smallint[], "));
        assert!(update
            .ends_with("WHERE t.instance_id = u.instance_id AND t.instance_id = ANY($1::text[])"));
        assert_eq!(PACKAGE_COLUMNS.to_string().split(", ").count(), 16);
    }
}

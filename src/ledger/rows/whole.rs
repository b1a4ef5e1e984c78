//! The projection read or written whole: replay's read of the live tables, a scratch schema to
//! inspect a replay in, and the snapshots stored in tables shaped like the live ones.

use super::{insert_packages, insert_tasks, PACKAGE_COLUMNS, TASK_COLUMNS};
use crate::store::Connection;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use projections::{Package, Projection, Task};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Rows per statement when a whole projection is written: the arrays of one statement stay near
/// a few MiB, however many packages the projection holds.
const PROJECTION_CHUNK_ROWS: usize = 10_000;

/// Inserts every package and task of `projection`, [`PROJECTION_CHUNK_ROWS`] per statement, into
/// the tables `packages` and `tasks` the transaction's search path finds first.
async fn insert_projection(
    tx: &Transaction<'_>,
    projection: &Projection,
) -> Result<(), tokio_postgres::Error> {
    let packages: Vec<&Package> = projection.packages.values().collect();
    let tasks: Vec<&Task> = projection.tasks.values().collect();
    for chunk in packages.chunks(PROJECTION_CHUNK_ROWS) {
        insert_packages(tx, chunk).await?;
    }
    for chunk in tasks.chunks(PROJECTION_CHUNK_ROWS) {
        insert_tasks(tx, chunk).await?;
    }
    Ok(())
}

/// Every package and every task, in no order: the live projection, read whole (by replay, in its
/// snapshot).
pub async fn all_rows(
    client: &impl Connection,
) -> Result<(Vec<Row>, Vec<Row>), tokio_postgres::Error> {
    let client = client.connection();
    let packages = client
        .query(&format!("SELECT {PACKAGE_COLUMNS} FROM packages"), &[])
        .await?;
    let tasks = client
        .query(&format!("SELECT {TASK_COLUMNS} FROM tasks"), &[])
        .await?;
    Ok((packages, tasks))
}

/// Writes `projection` into new tables `packages` and `tasks`, shaped like the live ones, of a new
/// schema `schema`, in `tx`.
pub async fn write_to_schema(
    tx: &Transaction<'_>,
    schema: &str,
    projection: &Projection,
) -> Result<(), tokio_postgres::Error> {
    let schema = quote_identifier(schema);
    tx.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.packages (LIKE public.packages INCLUDING ALL);
         CREATE TABLE {schema}.tasks (LIKE public.tasks INCLUDING ALL);
         SET LOCAL search_path = {schema};"
    ))
    .await?;
    insert_projection(tx, projection).await
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The key of a stored snapshot: its checkpoint's position, key id and signing time.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotKey<'a> {
    pub position: i64,
    pub key_id: &'a str,
    pub signed_at: DateTime<Utc>,
}

impl SnapshotKey<'_> {
    fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.position, &self.key_id, &self.signed_at]
    }
}

/// The package and task rows of the snapshot under `key`.
pub async fn snapshot_rows(
    client: &impl Connection,
    key: SnapshotKey<'_>,
) -> Result<(Vec<Row>, Vec<Row>), tokio_postgres::Error> {
    let client = client.connection();
    let rows_of = |table: &str, columns: String| {
        format!(
            "SELECT {columns} FROM snapshot_{table}
              WHERE snapshot_position = $1 AND snapshot_key_id = $2 AND snapshot_signed_at = $3"
        )
    };
    let packages = client
        .query(
            &rows_of("packages", PACKAGE_COLUMNS.to_string()),
            &key.params(),
        )
        .await?;
    let tasks = client
        .query(&rows_of("tasks", TASK_COLUMNS.to_string()), &key.params())
        .await?;
    Ok((packages, tasks))
}

/// Stores `projection` as the rows of the snapshot under `key`. The rows are written with the
/// statements of the live tables into temporary tables shaped like them, then copied: one
/// definition of a row, wherever it is stored.
pub async fn write_snapshot(
    tx: &Transaction<'_>,
    key: SnapshotKey<'_>,
    projection: &Projection,
) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(
        "CREATE TEMP TABLE packages (LIKE public.packages) ON COMMIT DROP;
         CREATE TEMP TABLE tasks (LIKE public.tasks) ON COMMIT DROP;
         SET LOCAL search_path = pg_temp, public;",
    )
    .await?;
    insert_projection(tx, projection).await?;
    for (table, columns) in [
        ("packages", PACKAGE_COLUMNS.to_string()),
        ("tasks", TASK_COLUMNS.to_string()),
    ] {
        tx.execute(
            &format!(
                "INSERT INTO public.snapshot_{table}
                        (snapshot_position, snapshot_key_id, snapshot_signed_at, {columns})
                 SELECT $1, $2, $3, {columns} FROM pg_temp.{table}"
            ),
            &key.params(),
        )
        .await?;
    }
    tx.batch_execute("DROP TABLE pg_temp.packages, pg_temp.tasks; SET LOCAL search_path = public;")
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}

//! The statements a command runs on the projections find their rows through an index, whichever
//! plan PostgreSQL caches, even while the tables are small: reading a whole `tasks` table in every
//! traffic transaction cost the single-report path a tenth of its rate at the ingest benchmark's
//! size (300 packages, 3,000 tasks), which is the size used here.

use crate::helpers::TestDb;
use dts_ledger::database::Role;
use dts_ledger::ledger::rows;

/// The ingest benchmark's numbers.
const PACKAGES: i64 = 300;
const TASKS_PER_PACKAGE: i64 = 10;

/// Projection rows as many as the ingest benchmark's, with fresh statistics. They are written
/// straight into the tables: only the planner looks at them.
async fn large_projections(db: &TestDb) {
    let owner = db.client_as(Role::Owner).await;
    owner
        .batch_execute(&format!(
            "INSERT INTO packages (instance_id, jd_pin, sku_id, sku_bytes, unit_price, units, status,
                                   bytes_granted, bytes_consumed, bytes_forfeited, bytes_remaining,
                                   bytes_overage, expires_at, created_at, updated_at)
             SELECT 'pkg-' || n, 'pin-' || (n % 700), 'SKU-1', 1000, 10, 1, 'active',
                    1000, 0, 0, 1000, 0, now() + interval '30 days', now(), now()
               FROM generate_series(1, {PACKAGES}) AS n;
             INSERT INTO tasks (task_id, instance_id, state, stop_reason, bytes_consumed,
                                created_at, updated_at)
             SELECT 'task-' || n, 'pkg-' || (1 + n % {PACKAGES}),
                    CASE WHEN n % 3 = 0 THEN 'stopped' ELSE 'running' END,
                    CASE WHEN n % 3 = 0 THEN 'quota_exhausted' END, 0, now(), now()
               FROM generate_series(1, {PACKAGES} * {TASKS_PER_PACKAGE}) AS n;
             ANALYZE packages;
             ANALYZE tasks;"
        ))
        .await
        .expect("fills the projections");
}

/// Whole-table scans of `tasks` and `packages` this transaction made so far.
async fn scans(tx: &tokio_postgres::Transaction<'_>) -> (i64, i64) {
    let row = tx
        .query_one(
            "SELECT coalesce(sum(seq_scan) FILTER (WHERE relname = 'tasks'), 0)::int8,
                    coalesce(sum(seq_scan) FILTER (WHERE relname = 'packages'), 0)::int8
               FROM pg_stat_xact_user_tables",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_commands_statements_find_projection_rows_by_index_in_custom_and_generic_plans() {
    let db = TestDb::create().await;
    large_projections(&db).await;
    // The service's own pool: its role, and the transactions `rows` expects.
    let mut service = db.pool.get().await.unwrap();
    let tasks = ["task-3", "task-10", "task-11", "task-700"];
    let packages = ["pkg-4", "pkg-11", "pkg-12", "pkg-101"];
    let mut scanned = Vec::new();
    // Custom plans first, then the generic plan the cache settles on after a few executions of
    // the same prepared statements.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let tx = service.transaction().await.unwrap();
        tx.batch_execute(&format!("SET LOCAL plan_cache_mode = {mode}"))
            .await
            .unwrap();
        let mut before = scans(&tx).await;
        let mut step = |name: &'static str, after: (i64, i64)| {
            if after.0 > before.0 {
                scanned.push(format!("{mode}: {name} scanned tasks"));
            }
            if after.1 > before.1 {
                scanned.push(format!("{mode}: {name} scanned packages"));
            }
            before = after;
        };
        let locked = rows::lock_packages_of_tasks(&tx, &tasks).await.unwrap();
        assert_eq!(locked.len(), 4, "{mode}: the packages of the four tasks");
        step("lock_packages_of_tasks", scans(&tx).await);
        assert_eq!(rows::read_tasks(&tx, &tasks).await.unwrap().len(), 4);
        step("read_tasks", scans(&tx).await);
        let running = rows::running_tasks_of(&tx, &packages).await.unwrap();
        assert!(!running.is_empty(), "{mode}: running tasks of the packages");
        step("running_tasks_of", scans(&tx).await);
        assert!(rows::live_tasks_of(&tx, &packages).await.unwrap().len() >= running.len());
        step("live_tasks_of", scans(&tx).await);
        assert!(!rows::all_tasks_of(&tx, &packages).await.unwrap().is_empty());
        step("all_tasks_of", scans(&tx).await);
        let loaded_tasks: Vec<_> = running
            .iter()
            .map(|row| rows::task_from_row(row).unwrap())
            .collect();
        rows::update_tasks(&tx, &loaded_tasks.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        step("update_tasks", scans(&tx).await);
        let mut loaded_packages: Vec<_> = locked
            .iter()
            .map(|row| rows::package_from_row(row).unwrap())
            .collect();
        for package in &mut loaded_packages {
            package.updated_at += chrono::Duration::seconds(1);
        }
        rows::update_packages(&tx, &loaded_packages.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        step("update_packages", scans(&tx).await);
        assert_eq!(rows::lock_packages(&tx, &packages).await.unwrap().len(), 4);
        step("lock_packages", scans(&tx).await);
        assert_eq!(rows::read_packages(&tx, &packages).await.unwrap().len(), 4);
        step("read_packages", scans(&tx).await);
        tx.rollback().await.unwrap();
    }
    assert_eq!(scanned, Vec::<String>::new());
}

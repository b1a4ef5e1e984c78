//! Least privilege (invariant I10): the service appends and reads, the reader reads, only the
//! owner changes the schema; `serve` and `migrate` keep to their credentials.

use crate::helpers::{run_binary, spawn_app, TestDb, SMALL_SKU, TEST_ROLE_PASSWORD};
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres, SUPERUSER};
use dts_ledger::database::{migrate, roles, Role};
use tokio_postgres::NoTls;

/// The SQLSTATE of a statement refused for want of a privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Runs `sql` and returns the SQLSTATE it was refused with (None: it went through).
async fn refusal(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    match client.batch_execute(sql).await {
        Ok(()) => None,
        Err(error) => Some(
            error
                .code()
                .map_or_else(|| error.to_string(), |c| c.code().to_owned()),
        ),
    }
}

async fn event_count(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_service_role_cannot_change_erase_or_unguard_the_ledger() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    let service = app.db.client_as(Role::Service).await;
    let before = event_count(&service).await;
    assert!(before > 0);

    let attempts = [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TRIGGER events_append_only ON events",
        "SET session_replication_role = replica",
        "ALTER FUNCTION ledger_refuse_change() OWNER TO dts_ledger_service",
        "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger \
         LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TABLE public.shadow (id int)",
        "DELETE FROM ledger_head",
        "TRUNCATE packages",
        "DELETE FROM schema_migrations",
        "SET ROLE dts_ledger_owner",
    ];
    for sql in attempts {
        assert_eq!(
            refusal(&service, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the service may not: {sql}"
        );
    }
    // The same for every other table of facts that this schema has.
    for table in roles::APPEND_ONLY_TABLES {
        let exists: bool = service
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await
            .unwrap()
            .get(0);
        if !exists {
            continue;
        }
        for sql in [
            format!("UPDATE {table} SET position = position"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
            format!("ALTER TABLE {table} DISABLE TRIGGER ALL"),
        ] {
            assert_eq!(
                refusal(&service, &sql).await.as_deref(),
                Some(INSUFFICIENT_PRIVILEGE),
                "the service may not: {sql}"
            );
        }
    }
    assert_eq!(event_count(&service).await, before, "nothing was lost");
    let row = service
        .query_one(
            "SELECT r.rolsuper, pg_has_role(current_user, c.relowner, 'MEMBER')
               FROM pg_roles r, pg_class c
              WHERE r.rolname = current_user AND c.oid = 'public.events'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "the service is no superuser");
    assert!(
        !row.get::<_, bool>(1),
        "the service does not own the ledger"
    );
}

#[tokio::test]
async fn the_app_connects_as_the_service_role_and_works_with_it() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    let (status, _) = app.create_task("task-1", "biz-1").await;
    assert_eq!(status, 201);
    let result = app.report("task-1", "r-1", 1_000).await;
    assert_eq!(result["status"], "accepted", "{result}");
    let user: String = app
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, roles::SERVICE);
}

#[tokio::test]
async fn the_reader_reads_the_ledger_and_nothing_more() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    let reader = app.db.client_as(Role::Reader).await;
    assert!(event_count(&reader).await > 0);
    let attempts = [
        "INSERT INTO events (position, stream_id, version, event_type, event_version, payload, \
         metadata, recorded_at, idempotency_key, prev_hash, hash) SELECT position + 1000, stream_id, version + 1000, event_type, \
         event_version, payload, metadata, recorded_at, NULL, prev_hash, hash FROM events LIMIT 1",
        "UPDATE packages SET bytes_overage = bytes_overage",
        "UPDATE ledger_head SET position = position",
        "INSERT INTO outbox (position) VALUES (999999)",
        // Personal data is no audit's business.
        "SELECT * FROM order_details",
        "CREATE TABLE public.scratch (id int)",
    ];
    for sql in attempts {
        assert_eq!(
            refusal(&reader, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the reader may not: {sql}"
        );
    }
    for command in [
        vec!["verify"],
        vec!["replay"],
        vec!["export", "--format", "csv"],
        vec!["report", "--month", "2026-01"],
    ] {
        let (code, _, err) = app.db.run_cli_as(Role::Reader, &command);
        assert_eq!(code, 0, "{command:?} as the reader: {err}");
    }
}

#[tokio::test]
async fn a_table_added_later_gets_privileges_from_its_triggers() {
    let db = TestDb::create().await;
    let owner = db.client_as(Role::Owner).await;
    owner
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             CREATE TABLE receipts (id int PRIMARY KEY, body text);
             CREATE TRIGGER receipts_append_only BEFORE UPDATE OR DELETE ON receipts
                 FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();",
        )
        .await
        .unwrap();
    // Re-running migrate with nothing to apply still grants.
    let applied = migrate::migrate(&mut db.client_as(Role::Owner).await)
        .await
        .unwrap();
    assert!(applied.is_empty());
    let service = db.client_as(Role::Service).await;
    service
        .batch_execute(
            "INSERT INTO notes VALUES (1, 'a'); UPDATE notes SET body = 'b'; DELETE FROM notes;
             INSERT INTO receipts VALUES (1, 'a');",
        )
        .await
        .unwrap();
    for sql in [
        "UPDATE receipts SET body = 'b'",
        "DELETE FROM receipts",
        "TRUNCATE notes",
    ] {
        assert_eq!(
            refusal(&service, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the service may not: {sql}"
        );
    }
    let reader = db.client_as(Role::Reader).await;
    let rows: i64 = reader
        .query_one("SELECT count(*) FROM receipts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_table_owned_by_someone_else_is_handed_over_or_named() {
    let db = TestDb::create().await;
    let superuser = db.client().await;
    superuser
        .batch_execute("ALTER TABLE packages OWNER TO CURRENT_USER")
        .await
        .unwrap();
    // The owner role cannot take the table from the superuser: it says which and how.
    let refused = migrate::migrate(&mut db.client_as(Role::Owner).await)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("packages") && refused.contains("REASSIGN OWNED"),
        "{refused}"
    );
    // A superuser migrating hands it over.
    migrate::migrate(&mut db.client().await).await.unwrap();
    let owner: String = superuser
        .query_one(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'packages'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, roles::OWNER);
}

#[tokio::test]
async fn serve_without_the_owners_credentials_refuses_an_unmigrated_database() {
    let db = TestDb::create_unmigrated().await;
    let (code, _, err) = db.run_cli_as(Role::Service, &["serve", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("schema is at version 0") && err.contains("dts-ledger migrate"),
        "{err}"
    );
    // Nor may the service migrate by itself.
    let (code, _, err) = db.run_cli_as(Role::Service, &["migrate"]);
    assert_ne!(code, 0);
    assert!(err.contains(roles::OWNER), "{err}");

    let (code, _, err) = run_binary(
        &["migrate"],
        &[
            ("DATABASE_URL", &db.url()),
            ("LEDGER_MIGRATE_DATABASE_URL", &db.url_as(Role::Owner)),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let version = migrate::current_version(&db.client_as(Role::Reader).await)
        .await
        .unwrap();
    assert_eq!(version, migrate::latest_version());
}

#[tokio::test]
async fn the_embedded_cluster_makes_the_roles_and_serves_as_the_service() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let (code, _, err) = run_binary(&["migrate"], &[("LEDGER_DATA_DIR", data_dir)]);
    assert_eq!(code, 0, "migrate: {err}");
    let (code, out, err) = run_binary(&["verify"], &[("LEDGER_DATA_DIR", data_dir)]);
    assert_eq!(code, 0, "verify as the reader: {out} {err}");

    // A cluster made before the roles: everything belongs to the superuser.
    {
        let mut cluster =
            EmbeddedPostgres::start(data_dir.as_ref(), Durability::Throwaway).unwrap();
        let (client, connection) = cluster.config("ledger").connect(NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "REASSIGN OWNED BY {} TO {SUPERUSER}; ALTER DATABASE ledger OWNER TO {SUPERUSER}",
                roles::OWNER
            ))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
        cluster.stop().unwrap();
    }

    let settings = dts_ledger::configuration::DatabaseSettings::Embedded {
        dir: data_dir.into(),
        wal_archive_dir: None,
    };
    let database = dts_ledger::database::Database::open(&settings, 2, Durability::Throwaway)
        .await
        .unwrap();
    {
        let client = database.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT current_user::text, r.rolsuper, c.relowner::regrole::text
                   FROM pg_roles r, pg_class c
                  WHERE r.rolname = current_user AND c.oid = 'public.events'::regclass",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), roles::SERVICE);
        assert!(!row.get::<_, bool>(1));
        assert_eq!(row.get::<_, String>(2), roles::OWNER, "handed over");
        assert_eq!(
            refusal(&client, "ALTER TABLE events DISABLE TRIGGER ALL")
                .await
                .as_deref(),
            Some(INSUFFICIENT_PRIVILEGE)
        );
    }
    database.close().await;
}

#[tokio::test]
async fn serve_with_the_owners_url_migrates_then_serves_as_the_service() {
    let db = TestDb::create_unmigrated().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
        .arg("serve")
        .env_remove("LEDGER_CONFIG")
        .env("DATABASE_URL", db.url())
        .env("LEDGER_MIGRATE_DATABASE_URL", db.url_as(Role::Owner))
        .env("LEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("the binary starts");
    let http = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..600 {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if response.status() == 200 {
                ready = Some(response.json::<serde_json::Value>().await.unwrap());
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // SAFETY: signalling a child process we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let log = std::fs::read_to_string(log.path()).unwrap();
    let ready = ready.unwrap_or_else(|| panic!("serve did not become ready: {log}"));
    assert_eq!(ready["schemaVersion"], migrate::latest_version());
    // It connected as the service: no warning about too many rights, and no password logged.
    assert!(!log.contains("superuser or the schema's owner"), "{log}");
    assert!(!log.contains(TEST_ROLE_PASSWORD), "{log}");
    let owner: String = db
        .client()
        .await
        .query_one(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, roles::OWNER);
}

/// An audit by this binary of a ledger not migrated to its schema would misread the rows (their
/// columns changed type in migration 12): it refuses, saying to migrate, and so does a binary
/// older than the schema.
#[tokio::test]
async fn the_audits_refuse_a_schema_other_than_their_own() {
    let db = TestDb::create().await;
    let latest = migrate::latest_version();
    let superuser = db.client().await;
    superuser
        .execute(
            "DELETE FROM schema_migrations WHERE version = $1",
            &[&latest],
        )
        .await
        .unwrap();
    let (code, _, err) = db.run_cli(&["verify"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(&format!("this binary needs {latest}")),
        "{err}"
    );
    assert!(err.contains("dts-ledger migrate"), "{err}");

    superuser
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum)
             SELECT $1, name, checksum FROM schema_migrations ORDER BY version DESC LIMIT 1",
            &[&(latest + 1)],
        )
        .await
        .unwrap();
    let (code, _, err) = db.run_cli(&["replay"]);
    assert_ne!(code, 0, "{err}");
}

#[tokio::test]
async fn grants_follow_the_ledgers_partitions() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    let owner = app.db.client_as(Role::Owner).await;
    let partitions = dts_ledger::store::partitions::partitions(&owner)
        .await
        .unwrap();
    assert!(!partitions.is_empty());
    for partition in &partitions {
        let row = owner
            .query_one(
                "SELECT has_table_privilege($2, $1::text::regclass, 'SELECT'),
                        has_table_privilege($2, $1::text::regclass, 'INSERT'),
                        has_table_privilege($2, $1::text::regclass, 'UPDATE'),
                        has_table_privilege($2, $1::text::regclass, 'DELETE'),
                        has_table_privilege($2, $1::text::regclass, 'TRUNCATE'),
                        has_table_privilege($3, $1::text::regclass, 'SELECT'),
                        has_table_privilege($3, $1::text::regclass, 'INSERT'),
                        (SELECT relowner::regrole::text FROM pg_class
                          WHERE oid = $1::text::regclass)",
                &[&partition.name, &roles::SERVICE, &roles::READER],
            )
            .await
            .unwrap();
        let service: (bool, bool, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(
            service,
            (true, true, false, false, false),
            "{}: the service reads and appends",
            partition.name
        );
        let reader: (bool, bool) = (row.get(5), row.get(6));
        assert_eq!(
            reader,
            (true, false),
            "{}: the reader reads",
            partition.name
        );
        assert_eq!(row.get::<_, String>(7), roles::OWNER);
    }
    // The owner's function that makes partitions is the service's only way to them.
    let service = app.db.client_as(Role::Service).await;
    for sql in [
        "SELECT ledger_make_partition('events', ledger_month_start(now()))",
        "SELECT ledger_create_partitioned_events('shadow')",
        "CREATE TABLE events_p2099_01 PARTITION OF events \
         FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')",
    ] {
        assert_eq!(
            refusal(&service, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the service may not: {sql}"
        );
    }
    assert!(refusal(
        &service,
        "SELECT ledger_ensure_partitions(now() + interval '400 days', 1)"
    )
    .await
    .is_some());
}

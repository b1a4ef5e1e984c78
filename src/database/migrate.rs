//! Applies `schema/*.sql` at start-up, in order, each once.
//!
//! The files are compiled into the binary, so a deployed binary always carries the schema it needs.
//! An advisory lock serialises several processes starting at once; a checksum catches a migration
//! edited after it was applied.
//!
//! Every run acts as the owner role and ends by granting the other roles their privileges on every
//! table ([`roles::grant`]), in the same transaction: a table never exists without them.

use super::roles::{self, RolesError};
use sha2::{Digest, Sha256};

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. A new file gets the next number; applied ones are never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger",
        sql: include_str!("../../schema/0001_ledger.sql"),
    },
    Migration {
        version: 2,
        name: "projections",
        sql: include_str!("../../schema/0002_projections.sql"),
    },
    Migration {
        version: 3,
        name: "order_details",
        sql: include_str!("../../schema/0003_order_details.sql"),
    },
    Migration {
        version: 4,
        name: "outbox",
        sql: include_str!("../../schema/0004_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "recorded_at",
        sql: include_str!("../../schema/0005_recorded_at.sql"),
    },
    Migration {
        version: 6,
        name: "marketplace_hardening",
        sql: include_str!("../../schema/0006_marketplace_hardening.sql"),
    },
    Migration {
        version: 7,
        name: "outbox_order",
        sql: include_str!("../../schema/0007_outbox_order.sql"),
    },
    Migration {
        version: 8,
        name: "ledger_chain",
        sql: include_str!("../../schema/0008_ledger_chain.sql"),
    },
    Migration {
        version: 9,
        name: "checkpoints",
        sql: include_str!("../../schema/0009_checkpoints.sql"),
    },
    Migration {
        version: 11,
        name: "console",
        sql: include_str!("../../schema/0011_console.sql"),
    },
    Migration {
        version: 12,
        name: "json_text",
        sql: include_str!("../../schema/0012_json_text.sql"),
    },
    Migration {
        version: 13,
        name: "marketplace_revision",
        sql: include_str!("../../schema/0013_marketplace_revision.sql"),
    },
    Migration {
        version: 14,
        name: "bound_snapshots",
        sql: include_str!("../../schema/0014_bound_snapshots.sql"),
    },
    Migration {
        version: 15,
        name: "console_sign_ins",
        sql: include_str!("../../schema/0015_console_sign_ins.sql"),
    },
    Migration {
        version: 18,
        name: "credential_rotation",
        sql: include_str!("../../schema/0018_credential_rotation.sql"),
    },
    Migration {
        version: 19,
        name: "partitioned_ledger",
        sql: include_str!("../../schema/0019_partitioned_ledger.sql"),
    },
    Migration {
        version: 21,
        name: "archived_months",
        sql: include_str!("../../schema/0021_archived_months.sql"),
    },
    Migration {
        version: 22,
        name: "compact_rows",
        sql: include_str!("../../schema/0022_compact_rows.sql"),
    },
    Migration {
        version: 23,
        name: "checkpoint_heads",
        sql: include_str!("../../schema/0023_checkpoint_heads.sql"),
    },
    Migration {
        version: 24,
        name: "traffic_fields",
        sql: include_str!("../../schema/0024_traffic_fields.sql"),
    },
    Migration {
        version: 25,
        name: "derived_prev_hash",
        sql: include_str!("../../schema/0025_derived_prev_hash.sql"),
    },
    Migration {
        version: 26,
        name: "stream_key_index",
        sql: include_str!("../../schema/0026_stream_key_index.sql"),
    },
];

/// An arbitrary constant naming the advisory lock taken while migrating.
const MIGRATION_LOCK_ID: i64 = 0x6474_735f_6c65_6467; // "dts_ledg"

/// The schema version this binary expects; `/readyz` compares it with the database's.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {version} ({name}) was changed after it was applied")]
    Changed { version: i32, name: String },
    #[error("the database schema is at version {found}, newer than this binary's {latest}")]
    TooNew { found: i32, latest: i32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("moving the ledger to partitions failed: {0}")]
    PartitionMove(String),
    #[error(transparent)]
    Roles(#[from] RolesError),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// The version the database's schema is at (0 when it was never migrated), read with any role
/// that may read `schema_migrations`.
pub async fn current_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<i32, MigrateError> {
    let row = client
        .query_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Brings the database to [`latest_version`]; returns the versions it applied.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, MigrateError> {
    migrate_to(client, latest_version()).await
}

/// Applies the migrations up to `last` only (a database as an older release left it: tests of
/// what later migrations and commands do to it).
pub async fn migrate_to(
    client: &mut tokio_postgres::Client,
    last: i32,
) -> Result<Vec<i32>, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_ID])
        .await?;
    roles::become_owner(&tx).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             checksum   text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<(i32, String, String)> = tx
        .query("SELECT version, name, checksum FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    if let Some(found) = applied.iter().map(|(v, _, _)| *v).max() {
        if found > latest_version() {
            return Err(MigrateError::TooNew {
                found,
                latest: latest_version(),
            });
        }
    }
    let mut done = Vec::new();
    for migration in MIGRATIONS.iter().take_while(|m| m.version <= last) {
        let sum = checksum(migration.sql);
        if let Some((_, name, recorded)) = applied.iter().find(|(v, _, _)| *v == migration.version)
        {
            if *recorded != sum {
                return Err(MigrateError::Changed {
                    version: migration.version,
                    name: name.clone(),
                });
            }
            continue;
        }
        tx.batch_execute(migration.sql)
            .await
            .map_err(|source| MigrateError::Failed {
                version: migration.version,
                name: migration.name,
                source,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &sum],
        )
        .await?;
        done.push(migration.version);
    }
    roles::grant(&tx).await?;
    tx.commit().await?;
    Ok(done)
}

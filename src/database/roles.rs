//! The three database roles (invariant I10) and the privileges each one holds.
//!
//! - [`OWNER`] owns the schema: migrations run as it, and only it (or a superuser) can alter a
//!   table, drop or disable a trigger.
//! - [`SERVICE`] is what `serve` connects as: it reads everything and appends to the ledger, and
//!   may change only the tables that are projections or bookkeeping.
//! - [`READER`] is for the audit commands: it reads and nothing else.
//!
//! The privileges are not written table by table in the migrations: after every migration run,
//! [`grant`] walks every table of the `public` schema and gives each role what the rules below
//! allow, so a table added by a later migration is covered without anyone remembering to.

use tokio_postgres::GenericClient;

/// Owns every table, function and index of the ledger's schema.
pub const OWNER: &str = "dts_ledger_owner";
/// The service's role: append and read, update only what is not a recorded fact.
pub const SERVICE: &str = "dts_ledger_service";
/// The auditors' role: read only.
pub const READER: &str = "dts_ledger_reader";
pub const ALL: [&str; 3] = [OWNER, SERVICE, READER];

/// Tables of recorded facts: the service may insert and read, never update or delete. Tables
/// whose triggers refuse an operation (`ledger_refuse_change`) are treated the same way for that
/// operation, so a new append-only table is covered by its triggers alone; this list also covers
/// the facts whose triggers would be switched off.
pub const APPEND_ONLY_TABLES: &[&str] = &["events", "checkpoints"];
/// Tables only the owner writes (migrations, and `archive --drop` recording what it dropped); the
/// service and the auditors read them.
pub const MIGRATION_ONLY_TABLES: &[&str] = &[
    "schema_migrations",
    "archived_months",
    "archived_stream_heads",
];
/// Tables holding personal data the audits never need: the reader does not see them.
pub const PERSONAL_DATA_TABLES: &[&str] = &["order_details"];

/// The trigger function that refuses changes to recorded facts (schema/0001_ledger.sql).
const REFUSING_FUNCTION: &str = "public.ledger_refuse_change";
/// `pg_trigger.tgtype` bits: the trigger fires on DELETE, on UPDATE.
const TRIGGER_ON_DELETE: i16 = 1 << 3;
const TRIGGER_ON_UPDATE: i16 = 1 << 4;

/// What the service may do on one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePrivileges {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

/// The rule for one table, given the operations its triggers refuse. TRUNCATE, REFERENCES and
/// TRIGGER are never granted: nothing the service does needs them.
pub fn service_privileges(
    table: &str,
    refuses_update: bool,
    refuses_delete: bool,
) -> ServicePrivileges {
    if MIGRATION_ONLY_TABLES.contains(&table) {
        return ServicePrivileges {
            insert: false,
            update: false,
            delete: false,
        };
    }
    let append_only = APPEND_ONLY_TABLES.contains(&table);
    ServicePrivileges {
        insert: true,
        update: !append_only && !refuses_update,
        delete: !append_only && !refuses_delete,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error(
        "the database role {0} does not exist, and this connection may not create it: create the \
         roles as the server's administrator (docs/operating.md, \"Database roles\")"
    )]
    Missing(&'static str),
    #[error(
        "this connection may not act as {OWNER}: migrate as {OWNER}, a member of it, or a superuser"
    )]
    NotOwner,
    #[error(
        "{kind} {name} belongs to {owner}, not to {OWNER}, and this connection may not hand it \
         over: run `REASSIGN OWNED BY {owner} TO {OWNER}` as its owner or a superuser"
    )]
    Foreign {
        kind: &'static str,
        name: String,
        owner: String,
    },
    #[error(
        "{OWNER} may not create tables in schema public and this connection may not allow it: run \
         `GRANT USAGE, CREATE ON SCHEMA public TO {OWNER}` or make {OWNER} the database's owner"
    )]
    NoCreate,
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Creates the roles that do not exist yet, as login roles without a password (the embedded
/// cluster, reached only through its private socket) or with `password` (throwaway test
/// servers). Needs a superuser or CREATEROLE. Safe to run from several processes at once.
pub async fn create_login_roles(
    client: &impl GenericClient,
    password: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    for role in ALL {
        let password = match password {
            Some(password) => format!(" PASSWORD {}", quote_literal(password)),
            None => String::new(),
        };
        // Two processes creating the same role: the second fails on the unique index (or sees
        // the role already); either way the role is there. Roles and passwords are constants
        // of this program, never input.
        client
            .batch_execute(&format!(
                "DO $$ BEGIN
                     IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                         CREATE ROLE {role} LOGIN{password};
                     ELSIF NOT EXISTS (SELECT 1 FROM pg_roles
                                        WHERE rolname = '{role}' AND rolcanlogin) THEN
                         ALTER ROLE {role} LOGIN{password};
                     END IF;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END $$"
            ))
            .await?;
    }
    Ok(())
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Makes sure the roles exist (a superuser creates missing ones as NOLOGIN: group roles that a
/// login role joins), hands tables owned by someone else over to [`OWNER`] when this connection
/// may, and then acts as [`OWNER`] for the rest of the transaction.
pub async fn become_owner(tx: &impl GenericClient) -> Result<(), RolesError> {
    let may_create_roles: bool = tx
        .query_one(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    for role in ALL {
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        if !exists {
            if !may_create_roles {
                return Err(RolesError::Missing(role));
            }
            tx.batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} NOLOGIN;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ))
            .await?;
        }
    }
    let may_become_owner: bool = tx
        .query_one("SELECT pg_has_role(current_user, $1, 'MEMBER')", &[&OWNER])
        .await?
        .get(0);
    if !may_become_owner {
        return Err(RolesError::NotOwner);
    }
    hand_over(tx).await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {OWNER}")).await?;
    Ok(())
}

/// A schema migrated before the roles existed belongs to whoever migrated it: give its tables
/// and functions to [`OWNER`], and let [`OWNER`] create in schema public (PostgreSQL 15 no longer
/// lets everyone). Objects of extensions stay theirs, and sequences owned by a column (`serial`,
/// identity) follow their table; the ledger's monthly partitions (which depend on `events`
/// automatically) are handed over one by one like any table.
async fn hand_over(tx: &impl GenericClient) -> Result<(), RolesError> {
    let foreign = tx
        .query(
            "SELECT 'table', c.oid::regclass::text, c.relowner::regrole::text
               FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
                AND c.relowner <> $1::text::regrole
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND (d.deptype = 'e'
                                        OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
             UNION ALL
             SELECT 'function', p.oid::regprocedure::text, p.proowner::regrole::text
               FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> $1::text::regrole
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                   AND d.deptype = 'e')",
            &[&OWNER],
        )
        .await?;
    for row in foreign {
        let kind: &str = row.get(0);
        let name: String = row.get(1);
        let owner: String = row.get(2);
        // Names come from the catalog, already quoted by regclass/regprocedure.
        let statement = if kind == "table" {
            format!("ALTER TABLE {name} OWNER TO {OWNER}")
        } else {
            format!("ALTER FUNCTION {name} OWNER TO {OWNER}")
        };
        if tx.batch_execute(&statement).await.is_err() {
            return Err(RolesError::Foreign {
                kind: if kind == "table" { "table" } else { "function" },
                name,
                owner,
            });
        }
    }
    let may_create: bool = tx
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[&OWNER],
        )
        .await?
        .get(0);
    if !may_create
        && tx
            .batch_execute(&format!("GRANT USAGE, CREATE ON SCHEMA public TO {OWNER}"))
            .await
            .is_err()
    {
        return Err(RolesError::NoCreate);
    }
    Ok(())
}

/// Gives [`SERVICE`] and [`READER`] exactly their privileges on every table of schema public,
/// taking away whatever else they held. Runs as [`OWNER`] after every migration run.
pub async fn grant(tx: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let tables = tx
        .query(
            "SELECT c.relname::text,
                    coalesce(bool_or(t.tgtype & $2 <> 0), false),
                    coalesce(bool_or(t.tgtype & $3 <> 0), false)
               FROM pg_class c
               LEFT JOIN pg_trigger t
                 ON t.tgrelid = c.oid AND t.tgfoid = to_regproc($1) AND t.tgenabled <> 'D'
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              GROUP BY c.relname
              ORDER BY c.relname",
            &[&REFUSING_FUNCTION, &TRIGGER_ON_UPDATE, &TRIGGER_ON_DELETE],
        )
        .await?;
    let mut statements = vec![format!(
        "GRANT USAGE ON SCHEMA public TO {SERVICE}, {READER};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {SERVICE}, {READER};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {SERVICE};
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {READER};"
    )];
    for row in tables {
        let table: String = row.get(0);
        let privileges = service_privileges(&table, row.get(1), row.get(2));
        let quoted = format!("public.\"{}\"", table.replace('"', "\"\""));
        let mut service = vec!["SELECT"];
        if privileges.insert {
            service.push("INSERT");
        }
        if privileges.update {
            service.push("UPDATE");
        }
        if privileges.delete {
            service.push("DELETE");
        }
        statements.push(format!(
            "REVOKE ALL ON {quoted} FROM {SERVICE}, {READER};
             GRANT {} ON {quoted} TO {SERVICE};",
            service.join(", ")
        ));
        if !PERSONAL_DATA_TABLES.contains(&table.as_str()) {
            statements.push(format!("GRANT SELECT ON {quoted} TO {READER};"));
        }
    }
    tx.batch_execute(&statements.join("\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_appended_and_read_only() {
        for table in APPEND_ONLY_TABLES {
            let privileges = service_privileges(table, false, false);
            assert!(privileges.insert);
            assert!(!privileges.update && !privileges.delete, "{table}");
        }
    }

    #[test]
    fn a_refusing_trigger_takes_the_privilege_away() {
        let head = service_privileges("ledger_head", false, true);
        assert_eq!(
            head,
            ServicePrivileges {
                insert: true,
                update: true,
                delete: false
            }
        );
        let new_facts = service_privileges("snapshots", true, true);
        assert!(!new_facts.update && !new_facts.delete);
    }

    #[test]
    fn projections_may_change() {
        let packages = service_privileges("packages", false, false);
        assert!(packages.insert && packages.update && packages.delete);
    }

    #[test]
    fn migrations_are_read_only_to_the_service() {
        let migrations = service_privileges("schema_migrations", false, false);
        assert!(!migrations.insert && !migrations.update && !migrations.delete);
    }
}

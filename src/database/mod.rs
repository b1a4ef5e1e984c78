//! The connection to PostgreSQL: an external server (`DATABASE_URL`) or an embedded cluster.

pub mod backup;
pub mod embedded;
pub mod migrate;
pub mod primary;
pub mod roles;

use crate::configuration::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use embedded::{Durability, EmbeddedPostgres};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Config, NoTls};

/// How long a request waits for a pooled connection, or for a new one to be made, before it is
/// answered 503: long enough to ride out a burst, short enough that a client retries elsewhere.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("DATABASE_URL is not a valid PostgreSQL connection string")]
    BadUrl,
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    /// What failed, where, and what to check; never the password or the URL itself.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("cannot prepare the database: {0}")]
    Prepare(tokio_postgres::Error),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("LEDGER_MIGRATE_DATABASE_URL is not a valid PostgreSQL connection string")]
    BadMigrateUrl,
    #[error(
        "the database schema is at version {found}, this binary needs {latest}, and DATABASE_URL \
         may not migrate: run `dts-ledger migrate` with LEDGER_MIGRATE_DATABASE_URL set to the \
         owner's connection, or give serve LEDGER_MIGRATE_DATABASE_URL as well"
    )]
    SchemaBehind { found: i32, latest: i32 },
}

/// The pool and, with an embedded cluster, the cluster itself.
pub struct Database {
    pub pool: Pool,
    embedded: Option<EmbeddedPostgres>,
}

/// Bounds on one PostgreSQL session, so that a process that stalls (a frozen VM, a long pause, a
/// network partition) cannot hold locks that its peers wait for. PostgreSQL itself would wait for
/// a silent client until TCP gives up, which takes hours by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionBounds {
    /// `statement_timeout`; 0 for none.
    pub statement_timeout_ms: u64,
    /// `lock_timeout`; 0 for none.
    pub lock_timeout_ms: u64,
    /// `idle_in_transaction_session_timeout`: the server ends a session whose client leaves a
    /// transaction open without a word for this long, which frees every lock it held.
    pub idle_in_transaction_timeout_ms: u64,
    /// Names the service's sessions in `pg_stat_activity`, so that peers can tell them apart.
    pub application_name: &'static str,
}

/// Inside a transaction the service waits for nothing but the database: between two statements
/// it only folds and encodes, milliseconds even for the largest batch (an ingest lane's
/// largest, or one traffic request's reports taken whole). A client silent for 2 s is stalled,
/// and its peers get its locks back after that; 2 s also leaves a loaded host's scheduler a
/// thousandfold margin.
pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 2_000;
/// A lock is held by a healthy peer for one batch (tens of milliseconds). Longer than
/// [`IDLE_IN_TRANSACTION_TIMEOUT_MS`], so that a waiter outlives a frozen holder that is idle in
/// its transaction (the server ends that one first) and is then served rather than failed; short
/// enough that a lane can wait twice, reaping a holder frozen in the middle of a statement (see
/// [`reap_stalled_peers`]) in between, and still answer within 10 s.
pub const LOCK_TIMEOUT_MS: u64 = 3_000;
/// The largest batch's statements (a COPY of some 30,000 events for a request of 10,000 reports
/// taken whole, an `UPDATE … FROM unnest` of as many rows) take well under half a second on the
/// development machine; 4 s is eight times that for a loaded host, and more than
/// [`LOCK_TIMEOUT_MS`], so that a statement waiting for a lock fails as a lock timeout, which lanes
/// know how to get past.
pub const STATEMENT_TIMEOUT_MS: u64 = 4_000;
/// A service statement still running this long after it started has outlived its own
/// [`STATEMENT_TIMEOUT_MS`]: had its client kept talking, the server would have cancelled it at
/// the next message. It is waiting on a client that stopped; the extra second covers a loaded
/// host's scheduling, so that a slow but living peer is never taken for a stalled one.
pub const STALLED_AFTER_MS: u64 = STATEMENT_TIMEOUT_MS + 1_000;
/// TCP keepalives on both ends of every connection over TCP: a probe after 10 s of silence, then
/// every 5 s, 3 unanswered probes end the connection. A host that vanished (power, partition) is
/// noticed in about 25 s instead of the system default of two hours, by the server (which then
/// frees the dead session's locks even in states no timeout covers) and by the service (whose
/// pool then replaces the connection).
pub const KEEPALIVE_IDLE_S: u64 = 10;
pub const KEEPALIVE_INTERVAL_S: u64 = 5;
pub const KEEPALIVE_PROBES_MAX: u32 = 3;

impl SessionBounds {
    /// The service's sessions (`serve`: requests, lanes, the sweeper, webhook delivery).
    pub const SERVICE: SessionBounds = SessionBounds {
        statement_timeout_ms: STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: LOCK_TIMEOUT_MS,
        idle_in_transaction_timeout_ms: IDLE_IN_TRANSACTION_TIMEOUT_MS,
        application_name: "dts-ledger",
    };
    /// The audit commands stream the whole ledger with one COPY inside one snapshot (43 s for 10
    /// million events), so no statement timeout. Between statements they compare projections of
    /// millions of rows in memory, so a longer idle bound; a read-only snapshot locks no rows and
    /// blocks no writer, so a frozen audit costs its peers nothing in a minute. Their locks (to
    /// read a table) wait only behind a migration: after a minute the command fails and is run
    /// again.
    pub const AUDIT: SessionBounds = SessionBounds {
        statement_timeout_ms: 0,
        lock_timeout_ms: 60_000,
        idle_in_transaction_timeout_ms: 60_000,
        application_name: "dts-ledger-audit",
    };
    /// Migrations at start: a migration may rewrite a large table (no statement timeout), and a
    /// process waits for another one migrating at the same time (no lock timeout); the idle bound
    /// is the service's, as a migrating process frozen mid-way must not keep the tables locked.
    pub const MIGRATION: SessionBounds = SessionBounds {
        statement_timeout_ms: 0,
        lock_timeout_ms: 0,
        idle_in_transaction_timeout_ms: IDLE_IN_TRANSACTION_TIMEOUT_MS,
        application_name: "dts-ledger-migrate",
    };
}

/// What the planner is told a page read out of order costs, against 1 for one read in order.
/// PostgreSQL's default, 4, assumes spinning disks. The service's working set (the projections,
/// the ledger's recent end and their indexes) is in memory, where the two cost about the same;
/// with 4, the planner reads a whole `tasks` or `packages` table where a few index lookups do, in
/// every traffic transaction while the tables are small (a few thousand rows), which cost the
/// single-report path about a tenth of its rate.
pub const RANDOM_PAGE_COST: f64 = 1.1;

/// Applies `bounds` to every session made with `config`; settings given in `DATABASE_URL` are
/// overridden, because the service's liveness depends on them. `synchronous_commit` is set by the
/// service itself: a request is answered as recorded only once its commit is durable, whatever an
/// external server's default. The planner's [`RANDOM_PAGE_COST`] is set too.
pub fn bound_session(config: &mut tokio_postgres::Config, bounds: &SessionBounds) {
    let options = config.get_options().unwrap_or_default().to_owned();
    config.options(
        format!(
            "{options} -c synchronous_commit=on -c random_page_cost={RANDOM_PAGE_COST} \
             -c statement_timeout={} -c lock_timeout={} \
             -c idle_in_transaction_session_timeout={} -c tcp_keepalives_idle={KEEPALIVE_IDLE_S} \
             -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S} \
             -c tcp_keepalives_count={KEEPALIVE_PROBES_MAX}",
            bounds.statement_timeout_ms,
            bounds.lock_timeout_ms,
            bounds.idle_in_transaction_timeout_ms,
        )
        .trim(),
    );
    config
        .application_name(bounds.application_name)
        .connect_timeout(POOL_WAIT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(KEEPALIVE_IDLE_S))
        .keepalives_interval(Duration::from_secs(KEEPALIVE_INTERVAL_S))
        .keepalives_retries(KEEPALIVE_PROBES_MAX);
}

/// A pool of the service's sessions ([`SessionBounds::SERVICE`]), which write: a connection to
/// a read-only server is never lent, and connections made before a write met one are dropped
/// (see [`primary`]).
pub fn build_pool(config: tokio_postgres::Config, size: usize) -> Pool {
    pool_builder(config, size, &SessionBounds::SERVICE)
        .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
            Box::pin(primary::refuse_read_only(client))
        }))
        .pre_recycle(deadpool_postgres::Hook::sync_fn(primary::drop_if_suspect))
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

/// A pool of sessions bounded by `bounds`, which may be on a standby (the audits).
pub fn build_pool_with(
    config: tokio_postgres::Config,
    size: usize,
    bounds: &SessionBounds,
) -> Pool {
    pool_builder(config, size, bounds)
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

fn pool_builder(
    mut config: tokio_postgres::Config,
    size: usize,
    bounds: &SessionBounds,
) -> deadpool_postgres::PoolBuilder {
    bound_session(&mut config, bounds);
    // Every statement of the service is prepared once per connection and runs with its generic
    // plan: planning again on every execution (what PostgreSQL does while it believes a custom plan
    // is cheaper) costs more than the small batches it plans for, and the generic plans are index
    // lookups throughout.
    let options = config.get_options().unwrap_or_default().to_owned();
    config.options(format!("{options} -c plan_cache_mode=force_generic_plan").trim());
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A dead connection is noticed when it is used and then dropped; checking every
            // checkout with a query would cost a round trip on the hot path.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(POOL_WAIT_TIMEOUT))
        .recycle_timeout(Some(POOL_WAIT_TIMEOUT))
}

/// Which of the ledger's roles (see [`roles`]) a command acts as. With the embedded cluster it
/// picks the login; with `DATABASE_URL` the URL names the role and this is only the intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Service,
    Reader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => roles::OWNER,
            Role::Service => roles::SERVICE,
            Role::Reader => roles::READER,
        }
    }
}

fn parse_url(url: &crate::configuration::Secret, bad: OpenError) -> Result<Config, OpenError> {
    Config::from_str(url.expose()).map_err(|_| bad)
}

/// Ends the service sessions of this database (any process's) that are stuck in the middle of a
/// statement waiting on their client, and returns how many.
///
/// A process frozen while it streams a COPY to the server leaves its backend waiting for the
/// rest: that backend is neither idle (no idle timeout) nor able to act on its statement timeout
/// (PostgreSQL handles a cancel only once the client speaks again), and it keeps every lock of
/// its transaction, the ledger head included, for as long as the TCP connection lives. One
/// running past [`STALLED_AFTER_MS`] while it waits on its client is ended. Lanes call this when
/// a lock wait timed out, and every process once a second.
pub async fn reap_stalled_peers(pool: &Pool) -> Result<u64, ReapError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1 \
               AND pid <> pg_backend_pid() AND state = 'active' \
               AND wait_event IN ('ClientRead', 'ClientWrite') \
               AND clock_timestamp() - state_change > $2::bigint * interval '1 millisecond'",
            &[
                &SessionBounds::SERVICE.application_name,
                &(STALLED_AFTER_MS as i64),
            ],
        )
        .await?;
    let ended = rows.iter().filter(|row| row.get::<_, bool>(0)).count() as u64;
    if ended > 0 {
        tracing::warn!(
            sessions = ended,
            "ended database sessions of a process stalled in the middle of a statement"
        );
    }
    Ok(ended)
}

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("cannot end stalled sessions: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl Database {
    /// For `serve`: migrates when it holds the owner's credentials (the embedded cluster always;
    /// an external server with `LEDGER_MIGRATE_DATABASE_URL`, or when `DATABASE_URL` itself may
    /// act as the owner), otherwise refuses a schema older than this binary; then a pool as the
    /// service.
    pub async fn open(
        settings: &DatabaseSettings,
        pool_size: usize,
        durability: Durability,
    ) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External { url, migrate_url } => {
                let config = parse_url(url, OpenError::BadUrl)?;
                let privileged = connect_and(&config, |client| async move {
                    may_act_as_owner(&client).await.map_err(OpenError::Prepare)
                })
                .await?;
                if let Some(owner) = migrate_url {
                    migrate_with(&parse_url(owner, OpenError::BadMigrateUrl)?).await?;
                } else if privileged {
                    migrate_with(&config).await?;
                } else {
                    check_version(&config).await?;
                }
                if privileged {
                    tracing::warn!(
                        "DATABASE_URL connects as a superuser or the schema's owner: the service \
                         needs only the role {}; see the README, \"Database roles\"",
                        roles::SERVICE
                    );
                }
                (config, None)
            }
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let cluster = start_embedded(dir, durability, wal_archive_dir.as_deref()).await?;
                // As the superuser, which acts as the owner once it has handed over what a
                // cluster made before the roles left to itself.
                migrate_with(&cluster.config(embedded::DATABASE_NAME)).await?;
                (
                    cluster.config_as(embedded::DATABASE_NAME, roles::SERVICE),
                    Some(cluster),
                )
            }
        };
        Ok(Database {
            pool: build_pool(config, pool_size),
            embedded,
        })
    }

    /// For `dts-ledger migrate`: brings the schema up to date as its owner
    /// (`LEDGER_MIGRATE_DATABASE_URL`, else `DATABASE_URL`; in the embedded cluster the
    /// superuser, acting as the owner role).
    pub async fn migrate(settings: &DatabaseSettings) -> Result<Vec<i32>, OpenError> {
        match settings {
            DatabaseSettings::External { url, migrate_url } => {
                let config = match migrate_url {
                    Some(owner) => parse_url(owner, OpenError::BadMigrateUrl)?,
                    None => parse_url(url, OpenError::BadUrl)?,
                };
                migrate_with(&config).await
            }
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let cluster =
                    start_embedded(dir, Durability::Durable, wal_archive_dir.as_deref()).await?;
                let applied = migrate_with(&cluster.config(embedded::DATABASE_NAME)).await;
                let database = Database {
                    pool: build_pool(cluster.config(embedded::DATABASE_NAME), 1),
                    embedded: Some(cluster),
                };
                // Stops the cluster, saying so if that fails.
                database.close().await;
                applied
            }
        }
    }

    /// Brings the schema up to date as its owner (the same credentials as [`Database::migrate`]),
    /// then runs `work` on that owner's connection: for the owner's own commands
    /// (`dts-ledger migrate-partitions`).
    pub async fn as_owner<T, F, Fut>(settings: &DatabaseSettings, work: F) -> Result<T, OpenError>
    where
        F: FnOnce(tokio_postgres::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, OpenError>>,
    {
        let config = match settings {
            DatabaseSettings::External { url, migrate_url } => match migrate_url {
                Some(owner) => parse_url(owner, OpenError::BadMigrateUrl)?,
                None => parse_url(url, OpenError::BadUrl)?,
            },
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let cluster =
                    start_embedded(dir, Durability::Durable, wal_archive_dir.as_deref()).await?;
                let config = cluster.config(embedded::DATABASE_NAME);
                let done = migrated_and(&config, work).await;
                let database = Database {
                    pool: build_pool(config, 1),
                    embedded: Some(cluster),
                };
                database.close().await;
                return done;
            }
        };
        migrated_and(&config, work).await
    }

    /// Connects without migrating as `role`: an external server, the cluster of a `serve`
    /// running on the same data directory, or the embedded cluster started for the command and
    /// stopped after it.
    pub async fn open_as(settings: &DatabaseSettings, role: Role) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External { url, .. } => (parse_url(url, OpenError::BadUrl)?, None),
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let root = dir.clone();
                let archive = wal_archive_dir.clone();
                let started = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start_with(&root, Durability::Durable, archive.as_deref())
                })
                .await
                .expect("the start task does not panic");
                match started {
                    Ok(cluster) => {
                        prepare_cluster(&cluster, false).await?;
                        (
                            cluster.config_as(embedded::DATABASE_NAME, role.name()),
                            Some(cluster),
                        )
                    }
                    Err(embedded::EmbeddedError::InUse(_)) => (
                        embedded::running_cluster_config(
                            dir,
                            embedded::DATABASE_NAME,
                            role.name(),
                        )?,
                        None,
                    ),
                    Err(error) => return Err(error.into()),
                }
            }
        };
        // Fail now with a clear message rather than at the first query, and on a schema other
        // than the one this binary reads: an audit of a ledger not migrated yet (or migrated by a
        // newer release) would misread its rows.
        check_version(&config).await?;
        Ok(Database {
            pool: build_pool_with(config, 2, &SessionBounds::AUDIT),
            embedded,
        })
    }

    /// Closes the pool, then stops the embedded cluster if there is one.
    pub async fn close(mut self) {
        self.pool.close();
        if let Some(mut cluster) = self.embedded.take() {
            let stopped = tokio::task::spawn_blocking(move || cluster.stop()).await;
            match stopped {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "stopping the embedded PostgreSQL failed")
                }
                Err(error) => tracing::error!(%error, "stopping the embedded PostgreSQL panicked"),
            }
        }
    }
}

async fn start_embedded(
    dir: &std::path::Path,
    durability: Durability,
    wal_archive_dir: Option<&std::path::Path>,
) -> Result<EmbeddedPostgres, OpenError> {
    let dir = dir.to_owned();
    let archive = wal_archive_dir.map(std::path::Path::to_owned);
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start_with(&dir, durability, archive.as_deref())
    })
    .await
    .expect("the start task does not panic")?;
    prepare_cluster(&cluster, true).await?;
    Ok(cluster)
}

/// As the cluster's superuser: the ledger's roles and (with `database`) its database, owned by
/// the owner role (a cluster made before the roles existed is handed over here and by the next
/// migration).
async fn prepare_cluster(cluster: &EmbeddedPostgres, database: bool) -> Result<(), OpenError> {
    // The maintenance database, which every cluster has.
    connect_and(&cluster.config("postgres"), |client| async move {
        roles::create_login_roles(&client, None)
            .await
            .map_err(OpenError::Prepare)?;
        if !database {
            return Ok(());
        }
        let owner: Option<String> = client
            .query_opt(
                "SELECT datdba::regrole::text FROM pg_database WHERE datname = $1",
                &[&embedded::DATABASE_NAME],
            )
            .await
            .map_err(OpenError::Prepare)?
            .map(|row| row.get(0));
        let statement = match owner.as_deref() {
            None => Some(format!(
                "CREATE DATABASE {} OWNER {}",
                embedded::DATABASE_NAME,
                roles::OWNER
            )),
            Some(roles::OWNER) => None,
            Some(_) => Some(format!(
                "ALTER DATABASE {} OWNER TO {}",
                embedded::DATABASE_NAME,
                roles::OWNER
            )),
        };
        if let Some(statement) = statement {
            client
                .batch_execute(&statement)
                .await
                .map_err(OpenError::Prepare)?;
        }
        Ok(())
    })
    .await
}

/// Where a connection goes, for messages: host(s), port(s), database and user, never the
/// password.
pub fn target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host {} port {}, database {}, user {}",
        if hosts.is_empty() {
            "localhost".to_owned()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_owned()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("(the user's)"),
        config.get_user().unwrap_or("(the OS user's)"),
    )
}

/// Why connecting with `config` failed, where to, and what to check, in one line: the server's
/// own message and SQLSTATE when it answered, the operating system's reason when it did not.
pub fn connect_failure(config: &Config, error: &tokio_postgres::Error) -> String {
    let (cause, hint) = cause_and_hint(error);
    format!("{cause} ({}); {hint}", target(config))
}

/// Why taking a pooled connection failed, and what to check.
pub fn pool_failure(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => {
            let (cause, hint) = cause_and_hint(error);
            format!("cannot connect to PostgreSQL: {cause}; {hint}")
        }
        deadpool_postgres::PoolError::Timeout(_) => format!(
            "no database connection within {} s: the server is slow or unreachable, or every \
             connection is busy",
            POOL_WAIT_TIMEOUT.as_secs()
        ),
        other => format!("cannot connect to PostgreSQL: {other}"),
    }
}

fn cause_and_hint(error: &tokio_postgres::Error) -> (String, &'static str) {
    match error.as_db_error() {
        Some(db) => {
            let hint = match db.code().code() {
                "28P01" => "check the password of that user",
                "28000" => "the server's pg_hba.conf refuses this user from here, or the role may not log in",
                "3D000" => "the database does not exist: create it (README, \"Database roles\")",
                "42704" | "3F000" => "a role or schema is missing: see the README, \"Database roles\"",
                "53300" => "the server has no connection slot left: raise max_connections or lower pool sizes",
                "57P03" => "the server is starting up, shutting down or in recovery: try again shortly",
                _ => "check the connection settings and the server's log",
            };
            (format!("{} ({})", db.message(), db.code().code()), hint)
        }
        None => {
            let mut cause = error.to_string();
            let mut source = std::error::Error::source(error);
            let mut io_kind = None;
            while let Some(inner) = source {
                cause = format!("{cause}: {inner}");
                if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                    io_kind = Some(io.kind());
                }
                source = inner.source();
            }
            let hint = match io_kind {
                Some(std::io::ErrorKind::ConnectionRefused) => {
                    "nothing listens there: check that PostgreSQL runs, and the host and port"
                }
                Some(std::io::ErrorKind::NotFound) => {
                    "no such socket or host: check the host (a socket directory) and the port"
                }
                Some(std::io::ErrorKind::TimedOut) => {
                    "no answer in time: check the network and firewalls between here and there"
                }
                Some(std::io::ErrorKind::PermissionDenied) => {
                    "this OS user may not open that socket: check its directory's permissions"
                }
                _ => "check the connection settings, the network and the server's log",
            };
            (cause, hint)
        }
    }
}

/// Connects with `config`, runs `work` on the client, and closes the connection.
/// One short administrative session (migrations, role and database set-up), bounded like a
/// migration ([`SessionBounds::MIGRATION`]).
async fn connect_and<T, F, Fut>(config: &Config, work: F) -> Result<T, OpenError>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    let mut config = config.clone();
    bound_session(&mut config, &SessionBounds::MIGRATION);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|error| OpenError::Connect(connect_failure(&config, &error)))?;
    let driver = tokio::spawn(connection);
    let outcome = work(client).await;
    let _ = driver.await;
    outcome
}

async fn migrate_with(config: &Config) -> Result<Vec<i32>, OpenError> {
    connect_and(config, |mut client| async move {
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database schema migrated");
        }
        Ok(applied)
    })
    .await
}

async fn migrated_and<T, F, Fut>(config: &Config, work: F) -> Result<T, OpenError>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    connect_and(config, |mut client| async move {
        migrate::migrate(&mut client).await?;
        work(client).await
    })
    .await
}

/// Without the owner's credentials, `serve` only makes sure the schema is the one it was built
/// for.
async fn check_version(config: &Config) -> Result<(), OpenError> {
    connect_and(config, |client| async move {
        let found = migrate::current_version(&client).await?;
        let latest = migrate::latest_version();
        if found < latest {
            return Err(OpenError::SchemaBehind { found, latest });
        }
        if found > latest {
            return Err(migrate::MigrateError::TooNew { found, latest }.into());
        }
        Ok(())
    })
    .await
}

/// Whether the connection is a superuser, the owner role (or a member of it), or whoever owns
/// the ledger's table: credentials that can migrate, and more than the service needs.
async fn may_act_as_owner(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 OR coalesce(pg_has_role(current_user, to_regrole($1)::oid, 'MEMBER'), false)
                 OR coalesce((SELECT pg_has_role(current_user, relowner, 'MEMBER')
                                FROM pg_class WHERE oid = to_regclass('public.events')), false)",
            &[&roles::OWNER],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether an error means "the database is not there right now" (answered 503, retried by the
/// caller) rather than a bug or a refused statement.
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    // A write refused by a standby or a fenced primary: nothing was recorded, and the retry
    // goes to the primary on a fresh connection.
    if primary::note_if_read_only(error) {
        return true;
    }
    match error.code() {
        // Class 08: connection exception; 57P0x: shutdown / cannot connect now, or the session
        // was ended by a peer (see `reap_stalled_peers`); 53300: too many connections. And the
        // session bounds: 55P03 a lock wait timed out, 57014 a statement timed out, 25P03 the
        // session sat idle in its transaction too long (this process was stalled). Nothing of
        // the transaction was recorded; a retry will do.
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code, "53300" | "55P03" | "57014" | "25P03")
        }
        // No SQLSTATE: the failure happened below the protocol (I/O, DNS, refused connection).
        None => true,
    }
}

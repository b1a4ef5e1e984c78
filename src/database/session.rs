//! What bounds every session the service opens, so that a stalled or partitioned peer never stalls
//! the others (DESIGN §11): how long it may sit idle in a transaction, wait for a lock or run a
//! statement, how soon a dead connection is noticed, and the reaping of peers' sessions stalled
//! mid-statement.

use deadpool_postgres::Pool;
use std::time::Duration;

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
        .connect_timeout(super::POOL_WAIT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(KEEPALIVE_IDLE_S))
        .keepalives_interval(Duration::from_secs(KEEPALIVE_INTERVAL_S))
        .keepalives_retries(KEEPALIVE_PROBES_MAX);
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

//! Writing only to a primary, and knowing what protects it (DESIGN §11, I11).
//!
//! PostgreSQL does the failover (an operator's `pg_ctl promote`, or Patroni); the service lists
//! every host with `target_session_attrs=read-write`, so that each new connection goes to the
//! server that takes writes. Two things can still put a write on a read-only server: a URL
//! without `target_session_attrs` (or with one host, a standby), and a server that turned
//! read-only under open connections (`default_transaction_read_only` set and reloaded to fence
//! an old primary). Both are handled here, on the service's pool only (audits may read a
//! standby on purpose):
//!
//! - a new connection whose server answers `transaction_read_only = on` is refused before it is
//!   handed out (the request is answered 503 `database_read_only`, and retried);
//! - a write refused as read-only (SQLSTATE 25006) marks every connection made until then as
//!   suspect: the pool drops each of them when it is next taken, instead of lending it again,
//!   and makes new ones, which land on the primary. All of them, not only the one that failed,
//!   because they were all made to the server that is now read-only; a pool refill once per
//!   such event costs nothing next to a failover.

use deadpool_postgres::{HookError, Metrics};
use std::sync::Mutex;
use std::time::Instant;
use tokio_postgres::error::SqlState;

/// When a write last met a read-only server (process-wide: every service pool of the process
/// talks to the same servers).
static READ_ONLY_SEEN: Mutex<Option<Instant>> = Mutex::new(None);

/// The message of a refused connection, also how [`is_read_only_pool_error`] recognises it.
const READ_ONLY_CONNECTION: &str =
    "the server accepts no writes (transaction_read_only = on): a standby, or a primary fenced off";

/// Whether `error` is a write refused by a read-only server; if it is, every connection made
/// until now is dropped when it is next taken from a service pool (see the module's comment).
pub fn note_if_read_only(error: &tokio_postgres::Error) -> bool {
    let read_only = error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION);
    if read_only {
        let mut seen = READ_ONLY_SEEN.lock().unwrap_or_else(|e| e.into_inner());
        *seen = Some(Instant::now());
        tracing::warn!(
            "a write met a read-only database server: its connections are being replaced"
        );
    }
    read_only
}

/// Whether taking a connection failed because the server it reached is read-only.
pub fn is_read_only_pool_error(error: &deadpool_postgres::PoolError) -> bool {
    matches!(error, deadpool_postgres::PoolError::PostCreateHook(HookError::Message(message))
        if message == READ_ONLY_CONNECTION)
}

/// The pool's `pre_recycle` hook: a connection made before the last read-only refusal is
/// dropped (the pool then takes or makes another).
pub fn drop_if_suspect(
    _client: &mut deadpool_postgres::ClientWrapper,
    metrics: &Metrics,
) -> Result<(), HookError> {
    let seen = *READ_ONLY_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    match seen {
        Some(seen) if metrics.created <= seen => Err(HookError::message(
            "made before a write met a read-only server",
        )),
        _ => Ok(()),
    }
}

/// The pool's `post_create` hook: a new connection to a server that takes no writes is never
/// lent. One round trip per new connection, none per request.
pub async fn refuse_read_only(
    client: &mut deadpool_postgres::ClientWrapper,
) -> Result<(), HookError> {
    let row = client
        .query_one("SHOW transaction_read_only", &[])
        .await
        .map_err(HookError::Backend)?;
    if row.get::<_, &str>(0) == "on" {
        return Err(HookError::message(READ_ONLY_CONNECTION));
    }
    Ok(())
}

/// What protects the commits of the server a session writes to, and which server that is: what
/// `/readyz` and `/metrics` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// The server's address as the session reached it; `None` over a Unix socket.
    pub host: Option<String>,
    /// The server's port (over a Unix socket, the port of its socket file).
    pub port: i32,
    /// The server is a standby (then nothing is written there).
    pub in_recovery: bool,
    /// `synchronous_standby_names`: empty when no standby confirms commits.
    pub synchronous_standby_names: String,
    /// `synchronous_commit` of the session (the service sets `on` on every session).
    pub synchronous_commit: String,
    /// Standbys attached as synchronous (`sync` or `quorum` in `pg_stat_replication`); `None`
    /// when the role may not read their state (it needs `pg_read_all_stats`, or `pg_monitor`).
    pub synchronous_standbys: Option<i64>,
}

impl Protection {
    /// Whether a commit is acknowledged only once a synchronous standby has it: the settings
    /// say so. With no such standby attached, commits then wait (and requests are not answered)
    /// rather than being acknowledged unconfirmed; see [`Protection::synchronous_standbys`].
    pub fn commits_wait_for_standby(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(
                self.synchronous_commit.as_str(),
                "on" | "remote_write" | "remote_apply"
            )
    }
}

/// Reads [`Protection`] in one round trip, with any role.
pub async fn protection(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Protection, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT host(inet_server_addr()),
                    coalesce(inet_server_port(), current_setting('port')::int),
                    pg_is_in_recovery(),
                    current_setting('synchronous_standby_names'),
                    current_setting('synchronous_commit'),
                    CASE WHEN pg_has_role('pg_read_all_stats', 'USAGE')
                         THEN (SELECT count(*) FROM pg_stat_replication
                                WHERE sync_state IN ('sync', 'quorum'))
                    END",
            &[],
        )
        .await?;
    Ok(Protection {
        host: row.get(0),
        port: row.get(1),
        in_recovery: row.get(2),
        synchronous_standby_names: row.get(3),
        synchronous_commit: row.get(4),
        synchronous_standbys: row.get(5),
    })
}

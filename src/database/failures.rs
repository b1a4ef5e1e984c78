//! What a failure to reach PostgreSQL says to an operator: the server it tried (never a
//! password), the cause in words and what to do about it; and which failures pass with time.

use tokio_postgres::Config;

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
            super::POOL_WAIT_TIMEOUT.as_secs()
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
                "3D000" => "the database does not exist: create it (docs/operating.md, \"Database roles\")",
                "42704" | "3F000" => "a role or schema is missing: see docs/operating.md, \"Database roles\"",
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

/// Whether an error means "the database is not there right now" (answered 503, retried by the
/// caller) rather than a bug or a refused statement.
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    // A write refused by a standby or a fenced primary: nothing was recorded, and the retry
    // goes to the primary on a fresh connection.
    if super::primary::note_if_read_only(error) {
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

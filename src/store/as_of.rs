//! The ledger as of a point: the snapshot a reader reads it in, and a point named by a position or
//! a time (`replay --as-of`, `export --until`, `GET /v1/orders/{instanceId}?asOf=`), resolved to
//! the position the ledger is cut at.

use super::Connection;
use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

/// A point in the ledger, as a caller names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Every event up to this position.
    Position(i64),
    /// Every event recorded at or before this time.
    Time(DateTime<Utc>),
}

/// Why a text names no point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("position {0} is negative")]
    Negative(i64),
    #[error("{0:?} is neither a position nor an RFC 3339 time")]
    Unreadable(String),
}

impl Point {
    /// A position (an integer, 0 or more) or an RFC 3339 time.
    pub fn parse(text: &str) -> Result<Point, PointError> {
        if let Ok(position) = text.parse::<i64>() {
            if position < 0 {
                return Err(PointError::Negative(position));
            }
            return Ok(Point::Position(position));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| Point::Time(time.with_timezone(&Utc)))
            .map_err(|_| PointError::Unreadable(text.to_owned()))
    }
}

/// The ledger cut at a time: the position just before the first event recorded after `$1`, or
/// the head when there is none. The ledger is cut as a prefix in position order, so a fold of
/// everything up to it misses nothing that came before (recording times of concurrent appends
/// from several processes may interleave by microseconds).
pub const POSITION_AT: &str = "SELECT coalesce(
        (SELECT min(position) FROM events WHERE recorded_at > $1) - 1,
        (SELECT position FROM ledger_head))";

/// The last position `point` lets through: the position itself, or the ledger cut at the time
/// ([`POSITION_AT`]).
pub async fn position_of(
    client: &impl Connection,
    point: Point,
) -> Result<i64, tokio_postgres::Error> {
    match point {
        Point::Position(position) => Ok(position),
        Point::Time(time) => {
            let statement = client.prepare(POSITION_AT).await?;
            Ok(client
                .connection()
                .query_one(&statement, &[&time])
                .await?
                .get(0))
        }
    }
}

/// Starts a read of the ledger as of one instant on a pooled connection (its statements stay
/// prepared): repeatable read, read only, so what it reads stays as it was when it started even
/// while the service appends.
pub async fn read_only(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// Starts the audits' snapshot of the ledger, as of one instant like [`read_only`] and planned for
/// reading the whole ledger in position order.
pub async fn snapshot(
    client: &mut tokio_postgres::Client,
) -> Result<Transaction<'_>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // Walk the primary key in order instead of sorting the whole ledger: appends made it the
    // physical order too. No JIT: the audits' reads are index walks and lookups whose estimated
    // cost at a ledger's size makes PostgreSQL compile them, which costs more than it saves
    // (measured on 2 million events over three months: `verify --since-checkpoint` 0.85 s with
    // it, 0.42 s without; the whole `verify` no slower).
    tx.batch_execute("SET LOCAL enable_sort = off; SET LOCAL jit = off")
        .await?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_a_position_or_an_rfc_3339_time() {
        assert_eq!(Point::parse("0"), Ok(Point::Position(0)));
        assert_eq!(Point::parse("42"), Ok(Point::Position(42)));
        assert_eq!(Point::parse("-1"), Err(PointError::Negative(-1)));
        assert_eq!(
            Point::parse("2026-11-26T08:00:00+08:00"),
            Ok(Point::Time(
                DateTime::from_timestamp(1_795_651_200, 0).unwrap()
            ))
        );
        let unreadable = Point::parse("yesterday").unwrap_err();
        assert_eq!(
            unreadable.to_string(),
            "\"yesterday\" is neither a position nor an RFC 3339 time"
        );
        // Too large for a position, and no time either.
        assert!(matches!(
            Point::parse("99999999999999999999"),
            Err(PointError::Unreadable(_))
        ));
    }
}

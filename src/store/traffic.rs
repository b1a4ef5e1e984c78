//! A package stream's traffic, read a bounded window at a time for `crate::usage` (its
//! **Reading windows**: a window starts after the stream's last event before it, found by walking
//! the stream index back from the stream's end), and the last event of task streams for the
//! metrics.

use super::stored_bytes;
use crate::usage::{RateWindow, Traffic};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;

/// The traffic events of stream `$1` recorded in `[$2, $3)`.
const TRAFFIC_IN_WINDOW: &str = "FROM events
      WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
        AND version > coalesce((SELECT version FROM events
                                 WHERE ledger_stream_key(stream_id) = ledger_stream_key($1)
                                   AND stream_id = $1 AND recorded_at < $2
                                 ORDER BY version DESC LIMIT 1), 0)
        AND event_type = 'TrafficConsumed' AND recorded_at < $3";

impl<C: GenericClient> Traffic for C {
    async fn rate_windows(
        &self,
        streams: &[String],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RateWindow>, tokio_postgres::Error> {
        // Per stream: the last version before the window (walking back from the stream's end),
        // the window's traffic after it, and whether any traffic came before it (walking the
        // versions up to the boundary, which meets a traffic event within a few rows when there
        // is one).
        let statement = self
            .prepare_cached(
                "SELECT w.bytes, w.first_at,
                        EXISTS (SELECT 1 FROM events b
                                 WHERE ledger_stream_key(b.stream_id) = ledger_stream_key(s.stream)
                                   AND b.stream_id = s.stream AND b.version <= s.boundary
                                   AND b.event_type = 'TrafficConsumed')
                   FROM unnest($1::text[]) WITH ORDINALITY AS st(stream, i)
                  CROSS JOIN LATERAL (
                        SELECT st.stream,
                               coalesce((SELECT e.version FROM events e
                                          WHERE ledger_stream_key(e.stream_id)
                                                  = ledger_stream_key(st.stream)
                                            AND e.stream_id = st.stream AND e.recorded_at < $2
                                          ORDER BY e.version DESC LIMIT 1), 0) AS boundary) s
                  CROSS JOIN LATERAL (
                        SELECT coalesce(sum(traffic_bytes(e.payload)), 0)::int8 AS bytes,
                               min(e.recorded_at) AS first_at
                          FROM events e
                         WHERE ledger_stream_key(e.stream_id) = ledger_stream_key(s.stream)
                           AND e.stream_id = s.stream AND e.version > s.boundary
                           AND e.event_type = 'TrafficConsumed' AND e.recorded_at <= $3) w
                  ORDER BY st.i",
            )
            .await?;
        Ok(self
            .query(&statement, &[&streams, &since, &now])
            .await?
            .iter()
            .map(|row| RateWindow {
                bytes: stored_bytes(row.get(0)),
                first_at: row.get(1),
                traffic_before: row.get(2),
            })
            .collect())
    }

    async fn task_traffic(
        &self,
        stream: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        tasks_max: i64,
    ) -> Result<Vec<(String, u64, u64)>, tokio_postgres::Error> {
        let statement = self
            .prepare_cached(&format!(
                "SELECT traffic_task_id(payload) AS task_id,
                        sum(traffic_bytes(payload))::int8 AS bytes,
                        sum(least(traffic_bytes(payload), traffic_bytes_overage(payload)))::int8
                   {TRAFFIC_IN_WINDOW}
                  GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $4"
            ))
            .await?;
        Ok(self
            .query(&statement, &[&stream, &since, &until, &tasks_max])
            .await?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    stored_bytes(row.get(1)),
                    stored_bytes(row.get(2)),
                )
            })
            .collect())
    }

    async fn daily_task_traffic(
        &self,
        stream: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(NaiveDate, String, u64)>, tokio_postgres::Error> {
        let statement = self
            .prepare_cached(&format!(
                "SELECT ((recorded_at AT TIME ZONE 'UTC') + interval '8 hours')::date AS day,
                        traffic_task_id(payload) AS task_id,
                        sum(traffic_bytes(payload))::int8 AS bytes
                   {TRAFFIC_IN_WINDOW}
                  GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"
            ))
            .await?;
        Ok(self
            .query(&statement, &[&stream, &since, &until])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), stored_bytes(row.get(2))))
            .collect())
    }
}

/// When the last event of each of `streams` was recorded, for the streams that have one.
pub async fn last_recorded(
    client: &impl GenericClient,
    streams: &[String],
) -> Result<Vec<(String, DateTime<Utc>)>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT s.stream, l.recorded_at FROM unnest($1::text[]) AS s(stream)
              CROSS JOIN LATERAL (SELECT e.recorded_at FROM events e
                                   WHERE ledger_stream_key(e.stream_id) = ledger_stream_key(s.stream)
                                     AND e.stream_id = s.stream
                                   ORDER BY e.version DESC LIMIT 1) l",
        )
        .await?;
    Ok(client
        .query(&statement, &[&streams])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

//! What the workers and the answers that read many rows ask of them: the sweeper's due packages,
//! the runway check's changed ones, the active packages among some (for runways and notices),
//! and the metrics' counts.

use super::Read;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// One page of active packages due at `cutoff` (their `expires_at` passed), at most `limit`,
/// after the `(expires_at, instance_id)` cursor `after`, in that order.
pub async fn due_packages(
    client: &impl GenericClient,
    cutoff: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, String)>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT expires_at, instance_id FROM packages
              WHERE status = 'active' AND expires_at <= $1
                AND ($2::timestamptz IS NULL OR (expires_at, instance_id) > ($2, $3))
              ORDER BY expires_at, instance_id LIMIT $4",
        )
        .await?;
    let (after_at, after_id) = match after {
        Some((at, id)) => (Some(*at), Some(id.as_str())),
        None => (None, None),
    };
    Ok(client
        .query(&statement, &[&cutoff, &after_at, &after_id, &limit])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// One page of active packages with bytes left whose row changed at or after `since`, at most
/// `limit`, after `after` in id order.
pub async fn changed_active_packages(
    client: &impl GenericClient,
    since: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT instance_id FROM packages
              WHERE status = 'active' AND bytes_remaining > 0 AND updated_at >= $1
                AND instance_id > $2
              ORDER BY instance_id LIMIT $3",
        )
        .await?;
    Ok(client
        .query(&statement, &[&since, &after, &limit])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// An active package, as the answers about its use and its notices need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub instance_id: String,
    pub jd_pin: String,
    pub bytes_remaining: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The active packages among `ids`.
pub async fn active_packages(
    client: &impl GenericClient,
    ids: &[&str],
) -> Result<Vec<Active>, tokio_postgres::Error> {
    static ACTIVE: Read = Read::new(
        "SELECT instance_id, jd_pin, bytes_remaining, expires_at FROM packages
          WHERE instance_id = ANY($1::text[]) AND status = 'active'",
    );
    let rows = ACTIVE.query(client, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|row| Active {
            instance_id: row.get(0),
            jd_pin: row.get(1),
            bytes_remaining: row.get(2),
            expires_at: row.get(3),
        })
        .collect())
}

impl<C: GenericClient> crate::metrics::refresh::Projections for C {
    async fn counts(&self) -> Result<crate::metrics::refresh::Counts, tokio_postgres::Error> {
        let statement = self
            .prepare_cached(
                "SELECT 'package', status, count(*) FROM packages GROUP BY status
                 UNION ALL
                 SELECT 'task', state, count(*) FROM tasks GROUP BY state",
            )
            .await?;
        let mut counts = crate::metrics::refresh::Counts::default();
        for row in self.query(&statement, &[]).await? {
            let counted = (row.get(1), row.get(2));
            match row.get::<_, &str>(0) {
                "package" => counts.packages.push(counted),
                _ => counts.tasks.push(counted),
            }
        }
        Ok(counts)
    }

    async fn stopped_tasks_changed_within(
        &self,
        within_s: f64,
    ) -> Result<Vec<(String, DateTime<Utc>)>, tokio_postgres::Error> {
        let statement = self
            .prepare_cached(
                "SELECT task_id, updated_at FROM tasks
                  WHERE state = 'stopped' AND updated_at >= now() - make_interval(secs => $1)",
            )
            .await?;
        Ok(self
            .query(&statement, &[&within_s])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }
}

impl<C: GenericClient> crate::usage::Balances for C {
    async fn active_balances(
        &self,
        instance_ids: &[&str],
    ) -> Result<Vec<crate::usage::Balance>, tokio_postgres::Error> {
        Ok(active_packages(self, instance_ids)
            .await?
            .into_iter()
            .filter(|package| package.bytes_remaining > 0)
            .map(|package| crate::usage::Balance {
                instance_id: package.instance_id,
                bytes_remaining: crate::store::stored_bytes(package.bytes_remaining),
                expires_at: package.expires_at,
            })
            .collect())
    }
}

//! Replay (invariant I4): fold the whole ledger from scratch with the service's own folds and
//! compare the result with the live projection tables, row by row and field by field.

use super::source::{self, Range, Selection, Until};
use crate::ledger::rows::{self, CorruptRow};
use crate::store::FoldRow;
use projections::events::{DecodeError, Event};
use projections::{FoldError, Package, Projection, Task};
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyOutRow;
use tokio_postgres::Transaction;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("event at position {position} cannot be decoded: {source}")]
    Decode { position: i64, source: DecodeError },
    #[error("event at position {position} does not follow from the events before it: {source}")]
    Fold { position: i64, source: FoldError },
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error("{0}")]
    Snapshot(String),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// One field that differs between the live tables and the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `package <instanceId>` or `task <taskId>`.
    pub row: String,
    pub field: &'static str,
    pub live: String,
    pub replayed: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: live {} replayed {}",
            self.row, self.field, self.live, self.replayed
        )
    }
}

/// The ledger folded from scratch, with how much it took.
pub struct Folded {
    pub projection: Projection,
    pub events: u64,
    pub last_position: i64,
    pub elapsed: Duration,
}

/// Folds the events up to `until` (from the first) in the snapshot `tx`.
pub async fn fold(tx: &Transaction<'_>, until: Until) -> Result<Folded, ReplayError> {
    fold_from(tx, Projection::default(), 0, until).await
}

/// Folds the events after `after` up to `until` onto `projection`, the projections at `after`.
pub async fn fold_from(
    tx: &Transaction<'_>,
    projection: Projection,
    after: i64,
    until: Until,
) -> Result<Folded, ReplayError> {
    let started = Instant::now();
    let folding = (projection, 0, after);
    let (projection, events, last_position) = source::for_each_batch(
        tx,
        Range { after, until },
        Selection::FOLD,
        folding,
        fold_batch,
    )
    .await?;
    Ok(Folded {
        projection,
        events,
        last_position,
        elapsed: started.elapsed(),
    })
}

/// Folds one batch of rows onto `projection`, counting them in `events` and keeping the
/// `last_position`: the events are decoded on every core first, then applied in order.
fn fold_batch(
    (projection, events, last_position): &mut (Projection, u64, i64),
    batch: Vec<BinaryCopyOutRow>,
) -> Result<(), ReplayError> {
    let rows: Vec<_> = batch.iter().map(FoldRow::from_columns).collect();
    let decoded = source::map_in_parallel(&rows, |part| {
        part.iter()
            .map(|row| {
                // A row that cannot be read reports that first; nothing to decode.
                let row = row.as_ref().ok()?;
                Some(Event::decode_json(
                    row.event_type,
                    row.event_version,
                    row.stream_id,
                    &row.payload,
                ))
            })
            .collect()
    });
    for (row, event) in rows.into_iter().zip(decoded) {
        let row = row?;
        let event = event
            .expect("decoded whenever the row was read")
            .map_err(|source| ReplayError::Decode {
                position: row.position,
                source,
            })?;
        projection
            .apply(&event, row.recorded_at)
            .map_err(|source| ReplayError::Fold {
                position: row.position,
                source,
            })?;
        *last_position = row.position;
        *events += 1;
    }
    Ok(())
}

/// The live projection tables, in the same snapshot.
pub async fn live(tx: &Transaction<'_>) -> Result<Projection, ReplayError> {
    let mut live = Projection::default();
    let (packages, tasks) = rows::all_rows(tx).await?;
    for row in &packages {
        let package = rows::package_from_row(row)?;
        live.packages.insert(package.instance_id.clone(), package);
    }
    for row in &tasks {
        let task = rows::task_from_row(row)?;
        live.tasks.insert(task.task_id.clone(), task);
    }
    Ok(live)
}

macro_rules! differences {
    ($row:expr, $live:expr, $replayed:expr, $out:expr, [$($field:ident),*]) => {
        $(
            if $live.$field != $replayed.$field {
                $out.push(Difference {
                    row: $row.clone(),
                    field: stringify!($field),
                    live: format!("{:?}", $live.$field),
                    replayed: format!("{:?}", $replayed.$field),
                });
            }
        )*
    };
}

fn package_differences(row: String, live: &Package, replayed: &Package, out: &mut Vec<Difference>) {
    differences!(
        row,
        live,
        replayed,
        out,
        [
            jd_pin,
            sku_id,
            sku_bytes,
            unit_price,
            units,
            status,
            bytes_granted,
            bytes_consumed,
            bytes_forfeited,
            bytes_remaining,
            bytes_overage,
            expires_at,
            warned_percents,
            created_at,
            updated_at
        ]
    );
}

fn task_differences(row: String, live: &Task, replayed: &Task, out: &mut Vec<Difference>) {
    differences!(
        row,
        live,
        replayed,
        out,
        [
            instance_id,
            state,
            stop_reason,
            bytes_consumed,
            created_at,
            updated_at,
            destroyed_at
        ]
    );
}

fn missing(row: String, live: bool) -> Difference {
    let (live, replayed) = if live {
        ("present", "absent")
    } else {
        ("absent", "present")
    };
    Difference {
        row,
        field: "row",
        live: live.into(),
        replayed: replayed.into(),
    }
}

/// Every difference between the live tables and the replayed ones, packages first, in key order.
pub fn compare(live: &Projection, replayed: &Projection) -> Vec<Difference> {
    let mut out = Vec::new();
    let ids: std::collections::BTreeSet<_> = live
        .packages
        .keys()
        .chain(replayed.packages.keys())
        .collect();
    for id in ids {
        let row = format!("package {id}");
        match (live.packages.get(id), replayed.packages.get(id)) {
            (Some(l), Some(r)) => package_differences(row, l, r, &mut out),
            (Some(_), None) => out.push(missing(row, true)),
            (None, _) => out.push(missing(row, false)),
        }
    }
    let ids: std::collections::BTreeSet<_> =
        live.tasks.keys().chain(replayed.tasks.keys()).collect();
    for id in ids {
        let row = format!("task {id}");
        match (live.tasks.get(id), replayed.tasks.get(id)) {
            (Some(l), Some(r)) => task_differences(row, l, r, &mut out),
            (Some(_), None) => out.push(missing(row, true)),
            (None, _) => out.push(missing(row, false)),
        }
    }
    out
}

/// Writes a replayed projection into a new schema `name`, with tables shaped like the live ones,
/// for inspection with SQL.
pub async fn write_schema(
    client: &mut deadpool_postgres::Object,
    name: &str,
    projection: &Projection,
) -> Result<(), ReplayError> {
    let tx = client.transaction().await?;
    rows::write_to_schema(&tx, name, projection).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use projections::ids::{Bytes, InstanceId, JdPin, SkuId};
    use projections::PackageStatus;

    fn package() -> Package {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Package {
            instance_id: InstanceId::parse("biz-1").unwrap(),
            jd_pin: JdPin::parse("pin").unwrap(),
            sku_id: SkuId::parse("sku").unwrap(),
            sku_bytes: Bytes::new(10).unwrap(),
            unit_price: "1.00".parse().unwrap(),
            units: 1,
            status: PackageStatus::Active,
            bytes_granted: Bytes::new(10).unwrap(),
            bytes_consumed: Bytes::ZERO,
            bytes_forfeited: Bytes::ZERO,
            bytes_remaining: Bytes::new(10).unwrap(),
            bytes_overage: Bytes::ZERO,
            expires_at: None,
            warned_percents: vec![],
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn each_differing_field_and_missing_row_is_named() {
        let mut live = Projection::default();
        let mut replayed = Projection::default();
        let p = package();
        replayed.packages.insert(p.instance_id.clone(), p.clone());
        let mut changed = p.clone();
        changed.bytes_remaining = Bytes::new(9).unwrap();
        changed.status = PackageStatus::Expired;
        live.packages.insert(p.instance_id.clone(), changed);
        let mut extra = p;
        extra.instance_id = InstanceId::parse("biz-2").unwrap();
        live.packages.insert(extra.instance_id.clone(), extra);
        let found = compare(&live, &replayed);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "package biz-1 status: live Expired replayed Active",
                "package biz-1 bytes_remaining: live 9B replayed 10B",
                "package biz-2 row: live present replayed absent",
            ]
        );
    }
}

//! Projection snapshots bound to signed checkpoints: `checkpoint --snapshot` stores the packages
//! and tasks folded up to a checkpoint, and that checkpoint (signature version 2) signs the digest
//! of their rows, so `replay --since-snapshot` can start from them without trusting the database.
//!
//! A snapshot is used only when its rows hash to the digest a trusted key signed, and the ledger
//! still carries the checkpoint's ledger hash at its position. One that does not is never used:
//! the ledger is folded up to it from the newest snapshot that holds (or from the start) and every
//! forged, extra or missing row is named against that fold.
//!
//! The digest (docs/ledger.md, "Signed checkpoints"), integers big-endian,
//! `field(x) = len(x) (8) ‖ x`:
//! `"dts-ledger/snapshot/v1" 0x00 ‖ package count (8) ‖ package rows by instance id
//! ‖ task count (8) ‖ task rows by task id`, each row its columns in table order.

use super::checkpoint::{self, Checkpoint};
use super::replay::{self, Difference, ReplayError};
use super::source::Until;
use crate::ledger::rows;
use crate::store::hash::Hash;
use projections::{Package, Projection, Task};
use ring::digest::{Context, SHA256};
use tokio_postgres::Transaction;

const DIGEST_TAG: &[u8] = b"dts-ledger/snapshot/v1\0";

/// The digest of a snapshot's rows: one row per package and per task, in id order (the UTF-8
/// bytes of the id, ascending: the order of the projection's maps).
pub fn digest(projection: &Projection) -> Hash {
    let mut digest = Context::new(&SHA256);
    digest.update(DIGEST_TAG);
    digest.update(&(projection.packages.len() as u64).to_be_bytes());
    for package in projection.packages.values() {
        package_row(&mut digest, package);
    }
    digest.update(&(projection.tasks.len() as u64).to_be_bytes());
    for task in projection.tasks.values() {
        task_row(&mut digest, task);
    }
    digest
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 gives 32 bytes")
}

fn field(digest: &mut Context, bytes: &[u8]) {
    digest.update(&(bytes.len() as u64).to_be_bytes());
    digest.update(bytes);
}

fn micros(digest: &mut Context, at: chrono::DateTime<chrono::Utc>) {
    digest.update(&at.timestamp_micros().to_be_bytes());
}

/// A presence byte keeps "none" apart from any value.
fn optional<T>(digest: &mut Context, value: Option<T>, some: impl FnOnce(&mut Context, T)) {
    match value {
        None => digest.update(&[0]),
        Some(value) => {
            digest.update(&[1]);
            some(digest, value);
        }
    }
}

fn package_row(digest: &mut Context, p: &Package) {
    field(digest, p.instance_id.as_str().as_bytes());
    field(digest, p.jd_pin.as_str().as_bytes());
    field(digest, p.sku_id.as_str().as_bytes());
    digest.update(&p.sku_bytes.get().to_be_bytes());
    // The price's value, not its scale: `10.00` and `10` are one price.
    field(digest, p.unit_price.normalize().to_string().as_bytes());
    digest.update(&p.units.to_be_bytes());
    field(digest, p.status.as_str().as_bytes());
    for bytes in [
        p.bytes_granted,
        p.bytes_consumed,
        p.bytes_forfeited,
        p.bytes_remaining,
        p.bytes_overage,
    ] {
        digest.update(&bytes.get().to_be_bytes());
    }
    optional(digest, p.expires_at, micros);
    digest.update(&(p.warned_percents.len() as u64).to_be_bytes());
    digest.update(&p.warned_percents);
    micros(digest, p.created_at);
    micros(digest, p.updated_at);
}

fn task_row(digest: &mut Context, t: &Task) {
    field(digest, t.task_id.as_str().as_bytes());
    field(digest, t.instance_id.as_str().as_bytes());
    field(digest, t.state.as_str().as_bytes());
    optional(digest, t.stop_reason, |digest, reason| {
        field(digest, reason.as_str().as_bytes())
    });
    digest.update(&t.bytes_consumed.get().to_be_bytes());
    micros(digest, t.created_at);
    micros(digest, t.updated_at);
    optional(digest, t.destroyed_at, micros);
}

/// Something wrong with a snapshot a trusted checkpoint signed: it is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub position: i64,
    pub signed_at: chrono::DateTime<chrono::Utc>,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot at position {} (checkpoint signed {}): {}",
            self.position,
            self.signed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.detail
        )
    }
}

/// A snapshot as stored under its checkpoint's key.
enum Loaded {
    /// No `snapshots` row carries the checkpoint's key.
    Missing,
    Stored {
        projection: Projection,
        /// Rows that cannot be part of a snapshot: a second row for an id, an unreadable row.
        bad_rows: Vec<String>,
    },
}

/// A snapshot loaded and held against its checkpoint.
struct Held<'a> {
    checkpoint: &'a Checkpoint,
    loaded: Loaded,
    /// Why it cannot be used (empty: it holds).
    problems: Vec<String>,
}

/// Loads the snapshot `checkpoint` signed and checks it: its rows must hash to the signed digest,
/// and the ledger must carry the checkpoint's ledger hash at its position.
async fn hold<'a>(
    tx: &Transaction<'_>,
    checkpoint: &'a Checkpoint,
) -> Result<Held<'a>, ReplayError> {
    let loaded = load(tx, checkpoint).await?;
    let mut problems = Vec::new();
    match &loaded {
        Loaded::Missing => {
            problems.push("is missing: no snapshot is stored under its checkpoint".into())
        }
        Loaded::Stored {
            projection,
            bad_rows,
        } => {
            problems.extend(bad_rows.iter().cloned());
            if bad_rows.is_empty() && Some(digest(projection)) != checkpoint.snapshot_digest {
                problems.push("its rows do not hash to the digest its checkpoint signed".into());
            }
        }
    }
    if checkpoint.position > 0 {
        let stored = crate::store::chain_at(tx, checkpoint.position)
            .await?
            .and_then(|at| at.ledger_hash);
        if stored != Some(checkpoint.ledger_hash) {
            problems.push(format!(
                "the ledger does not carry the ledger hash {} its checkpoint signed at position {}",
                hex::encode(checkpoint.ledger_hash),
                checkpoint.position
            ));
        }
    }
    Ok(Held {
        checkpoint,
        loaded,
        problems,
    })
}

/// The key a snapshot is stored under: its checkpoint's.
fn key_of<'a>(checkpoint: &Checkpoint, key_id: &'a str) -> rows::SnapshotKey<'a> {
    rows::SnapshotKey {
        position: checkpoint.position,
        key_id,
        signed_at: checkpoint.signed_at,
    }
}

/// The snapshot rows stored under `checkpoint`'s key.
async fn load(tx: &Transaction<'_>, checkpoint: &Checkpoint) -> Result<Loaded, ReplayError> {
    let key_id = hex::encode(checkpoint.key_id);
    let header = tx
        .query_opt(
            "SELECT 1 FROM snapshots WHERE position = $1 AND key_id = $2 AND signed_at = $3",
            &[&checkpoint.position, &key_id, &checkpoint.signed_at],
        )
        .await?;
    if header.is_none() {
        return Ok(Loaded::Missing);
    }
    let (packages, tasks) = rows::snapshot_rows(tx, key_of(checkpoint, &key_id)).await?;
    let mut projection = Projection::default();
    let mut bad_rows = Vec::new();
    collect(
        &packages,
        "package",
        rows::package_from_row,
        |package| package.instance_id.clone(),
        &mut projection.packages,
        &mut bad_rows,
    );
    collect(
        &tasks,
        "task",
        rows::task_from_row,
        |task| task.task_id.clone(),
        &mut projection.tasks,
        &mut bad_rows,
    );
    Ok(Loaded::Stored {
        projection,
        bad_rows,
    })
}

/// Reads each of `stored` into `into` under its `key`; names in `bad_rows` each row that cannot be
/// read, and each that repeats a key (a snapshot holds one row per package and per task).
fn collect<T, K: Ord + std::fmt::Display>(
    stored: &[tokio_postgres::Row],
    kind: &str,
    read: fn(&tokio_postgres::Row) -> Result<T, rows::CorruptRow>,
    key: fn(&T) -> K,
    into: &mut std::collections::BTreeMap<K, T>,
    bad_rows: &mut Vec<String>,
) {
    for row in stored {
        match read(row) {
            Err(corrupt) => bad_rows.push(format!("{kind} {}: {}", corrupt.key, corrupt.reason)),
            Ok(found) if into.contains_key(&key(&found)) => bad_rows.push(format!(
                "{kind} {} row: stored twice, a snapshot holds one row per {kind}",
                key(&found)
            )),
            Ok(found) => {
                into.insert(key(&found), found);
            }
        }
    }
}

/// Where a fold starts: the projections at `position`, taken from the snapshot at `snapshot`
/// (`None`: folded from the first event).
pub struct Start {
    pub projection: Projection,
    pub position: i64,
    pub snapshot: Option<i64>,
    /// Events folded after `snapshot` to get to `position` (to name what is wrong with the
    /// snapshots between).
    pub events: u64,
    /// What is wrong with the snapshots newer than the one used, each named.
    pub findings: Vec<Finding>,
}

/// The newest snapshot that holds among `bound` (trusted checkpoints carrying a digest, oldest
/// first), with every newer one that does not hold named: the ledger is folded from the one that
/// holds through them, and the returned start is that fold at the newest of them.
pub async fn start(tx: &Transaction<'_>, bound: &[&Checkpoint]) -> Result<Start, ReplayError> {
    let (base, failed) = newest_holding(tx, bound.iter().rev().copied()).await?;
    name(tx, base, failed).await
}

/// Checks the snapshot of every checkpoint of `bound` at or after `after`: how many hold, and
/// what is wrong with the others (each named against the ledger folded up to it).
pub async fn check(
    tx: &Transaction<'_>,
    bound: &[&Checkpoint],
    after: i64,
) -> Result<(u64, Vec<Finding>), ReplayError> {
    let mut held = 0;
    let mut failed = Vec::new();
    for checkpoint in bound.iter().filter(|c| c.position >= after) {
        let snapshot = hold(tx, checkpoint).await?;
        if snapshot.problems.is_empty() {
            held += 1;
        } else {
            failed.push(snapshot);
        }
    }
    let Some(first) = failed.first().map(|f| f.checkpoint.position) else {
        return Ok((held, Vec::new()));
    };
    // Name them from the newest snapshot before the first that holds; older ones that do not
    // hold are named too.
    let (base, mut older) = newest_holding(
        tx,
        bound.iter().rev().copied().filter(|c| c.position < first),
    )
    .await?;
    older.reverse();
    older.extend(failed);
    older.reverse();
    let named = name(tx, base, older).await?;
    Ok((held, named.findings))
}

/// Goes through `newest_first` until a snapshot holds: that one (its position and projection),
/// and the ones before it that did not, newest first.
async fn newest_holding<'a>(
    tx: &Transaction<'_>,
    newest_first: impl Iterator<Item = &'a Checkpoint>,
) -> Result<(Option<(i64, Projection)>, Vec<Held<'a>>), ReplayError> {
    let mut failed = Vec::new();
    for checkpoint in newest_first {
        let snapshot = hold(tx, checkpoint).await?;
        match snapshot.loaded {
            Loaded::Stored { projection, .. } if snapshot.problems.is_empty() => {
                return Ok((Some((checkpoint.position, projection)), failed));
            }
            _ => failed.push(snapshot),
        }
    }
    Ok((None, failed))
}

/// Folds from `base` (the start without one) through the snapshots of `failed_newest_first`
/// in position order, naming every row of each that the fold does not reproduce.
async fn name(
    tx: &Transaction<'_>,
    base: Option<(i64, Projection)>,
    failed_newest_first: Vec<Held<'_>>,
) -> Result<Start, ReplayError> {
    let snapshot = base.as_ref().map(|(position, _)| *position);
    let (mut position, mut projection) = base.unwrap_or_default();
    let mut events = 0;
    let mut findings = Vec::new();
    for failed in failed_newest_first.into_iter().rev() {
        let at = failed.checkpoint.position;
        if at > position {
            let folded = replay::fold_from(tx, projection, position, Until::Position(at)).await?;
            projection = folded.projection;
            events += folded.events;
            position = at;
        }
        let finding = |detail: String| Finding {
            position: at,
            signed_at: failed.checkpoint.signed_at,
            detail,
        };
        // The rows named against the fold say more than "does not hash": they come first.
        if let Loaded::Stored {
            projection: stored, ..
        } = &failed.loaded
        {
            findings.extend(
                replay::compare(stored, &projection)
                    .iter()
                    .map(|difference| finding(said(difference))),
            );
        }
        findings.extend(failed.problems.iter().cloned().map(finding));
    }
    Ok(Start {
        projection,
        position,
        snapshot,
        events,
        findings,
    })
}

/// A difference between a stored snapshot and the fold, worded for a snapshot.
fn said(difference: &Difference) -> String {
    format!(
        "{} {}: stored {} replayed {}",
        difference.row, difference.field, difference.live, difference.replayed
    )
}

/// What `checkpoint --snapshot` did.
pub struct Taken {
    pub checkpoint: Checkpoint,
    /// The position the fold started after (that of the snapshot it started from, 0 without one)
    /// and the events it folded; `None` when the newest snapshot that holds is at the head
    /// already, and the checkpoint signs no new one.
    pub folded: Option<(i64, u64)>,
    /// What is wrong with the snapshots newer than the one the fold started from.
    pub findings: Vec<Finding>,
}

/// Signs the head with `key` and stores the projections folded up to it, from the newest
/// snapshot of `bound` that holds, as the snapshot of that checkpoint (signature version 2), in
/// `tx` (repeatable read: the head signed and the events folded are the same).
pub async fn take(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &ed25519_dalek::SigningKey,
    bound: &[&Checkpoint],
) -> Result<Taken, ReplayError> {
    let crate::store::Head {
        position,
        ledger_hash,
        ..
    } = crate::store::head(tx).await?;
    // A trusted checkpoint beyond the head is `verify`'s to report; nothing here builds on one.
    let usable: Vec<&Checkpoint> = bound
        .iter()
        .copied()
        .filter(|c| c.position <= position)
        .collect();
    let start = start(tx, &usable).await?;
    if start.snapshot == Some(position) {
        let checkpoint = checkpoint::take(tx, key).await?;
        return Ok(Taken {
            checkpoint,
            folded: None,
            findings: start.findings,
        });
    }
    let (after, named_events) = (start.snapshot.unwrap_or(0), start.events);
    let folded = replay::fold_from(
        tx,
        start.projection,
        start.position,
        Until::Position(position),
    )
    .await?;
    let signed = Checkpoint::sign_with(
        key,
        position,
        ledger_hash,
        chrono::Utc::now(),
        Some(digest(&folded.projection)),
    );
    checkpoint::store(tx, &signed).await?;
    write(tx, &signed, &folded.projection).await?;
    // What is signed must read back as it was folded, or no later audit could use it.
    let stored = hold(tx, &signed).await?;
    if let Some(problem) = stored.problems.first() {
        return Err(ReplayError::Snapshot(format!(
            "the snapshot just written at position {position} does not read back as folded: \
             {problem}"
        )));
    }
    Ok(Taken {
        checkpoint: signed,
        folded: Some((after, named_events + folded.events)),
        findings: start.findings,
    })
}

/// Stores `projection` as the snapshot of `checkpoint`, under its key. The rows are written with
/// the service's own row writers into temporary tables shaped like the live ones, then copied:
/// one definition of a row, wherever it is stored.
async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    checkpoint: &Checkpoint,
    projection: &Projection,
) -> Result<(), ReplayError> {
    let key_id = hex::encode(checkpoint.key_id);
    tx.execute(
        "INSERT INTO snapshots (position, key_id, signed_at, ledger_hash, taken_at)
         VALUES ($1, $2, $3, $4, now())",
        &[
            &checkpoint.position,
            &key_id,
            &checkpoint.signed_at,
            &checkpoint.ledger_hash.as_slice(),
        ],
    )
    .await?;
    rows::write_snapshot(tx, key_of(checkpoint, &key_id), projection).await?;
    Ok(())
}

#[cfg(test)]
mod ledger_doc_example {
    use super::*;
    use chrono::{DateTime, Utc};
    use projections::events::StopReason;
    use projections::ids::{Bytes, InstanceId, JdPin, SkuId, TaskId};
    use projections::{PackageStatus, TaskState};
    use std::collections::HashMap;

    /// The worked example in docs/ledger.md, read from that document so the two cannot drift apart.
    fn example() -> HashMap<String, String> {
        let doc = include_str!("../../docs/ledger.md");
        doc.split("```text\nsnapshot example\n")
            .nth(1)
            .expect("docs/ledger.md has the worked snapshot example")
            .split("```")
            .next()
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(char::is_whitespace))
            .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
            .collect()
    }

    fn time(text: &str) -> Option<DateTime<Utc>> {
        (text != "NULL").then(|| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        })
    }

    #[test]
    fn the_ledger_doc_example_hashes_as_published() {
        let example = example();
        let get = |key: &str| example.get(key).unwrap_or_else(|| panic!("{key}")).as_str();
        let bytes = |key: &str| Bytes::new(get(key).parse().unwrap()).unwrap();
        let package = Package {
            instance_id: InstanceId::parse(get("instance_id")).unwrap(),
            jd_pin: JdPin::parse(get("jd_pin")).unwrap(),
            sku_id: SkuId::parse(get("sku_id")).unwrap(),
            sku_bytes: bytes("sku_bytes"),
            unit_price: get("unit_price").parse().unwrap(),
            units: get("units").parse().unwrap(),
            status: PackageStatus::parse(get("status")).unwrap(),
            bytes_granted: bytes("bytes_granted"),
            bytes_consumed: bytes("bytes_consumed"),
            bytes_forfeited: bytes("bytes_forfeited"),
            bytes_remaining: bytes("bytes_remaining"),
            bytes_overage: bytes("bytes_overage"),
            expires_at: time(get("expires_at")),
            warned_percents: vec![get("warned_percents").parse().unwrap()],
            created_at: time(get("created_at")).unwrap(),
            updated_at: time(get("updated_at")).unwrap(),
        };
        let task = Task {
            task_id: TaskId::parse(get("task_id")).unwrap(),
            instance_id: InstanceId::parse(get("task_instance_id")).unwrap(),
            state: TaskState::parse(get("state")).unwrap(),
            stop_reason: StopReason::parse(get("stop_reason")),
            bytes_consumed: bytes("task_bytes_consumed"),
            created_at: time(get("task_created_at")).unwrap(),
            updated_at: time(get("task_updated_at")).unwrap(),
            destroyed_at: time(get("destroyed_at")),
        };
        let mut projection = Projection::default();
        projection
            .packages
            .insert(package.instance_id.clone(), package.clone());
        projection.tasks.insert(task.task_id.clone(), task);
        let published = digest(&projection);
        assert_eq!(hex::encode(published), get("digest"));

        // The price's scale is not its value; any other field is.
        let mut same = projection.clone();
        same.packages
            .values_mut()
            .for_each(|p| p.unit_price = "100".parse().unwrap());
        assert_eq!(digest(&same), published);
        let mut more = projection.clone();
        more.packages
            .values_mut()
            .for_each(|p| p.bytes_granted = Bytes::new(1).unwrap());
        assert_ne!(digest(&more), published);
        // A row more, under another id, is another snapshot.
        let mut extra = projection;
        let mut copy = package;
        copy.instance_id = InstanceId::parse("biz-2").unwrap();
        extra.packages.insert(copy.instance_id.clone(), copy);
        assert_ne!(digest(&extra), published);
    }
}

// Over 600 lines: one program, read top to bottom, whose steps share the ledger it generates.
//! Audit benchmark: `cargo bench --bench audit`.
//!
//! Generates a ledger of `AUDIT_BENCH_EVENTS` events (default 10 million) with the service's own
//! decisions (purchases, tasks, traffic that empties packages and stops their tasks, renewals),
//! hash-chained exactly as the store does, loads it and its projections into a throwaway cluster,
//! then times the real binary: `dts-ledger verify` and `dts-ledger replay`.
//!
//! Also times `dts-ledger verify --since-checkpoint` over the newest 100,000 events, after a
//! checkpoint signed at that point with the heads the service's checkpointer records there
//! (`checkpoint_heads`), and again without them, as after `dts-ledger checkpoint`. The loaded
//! ledger is vacuumed first, as one that has lived would be. `AUDIT_BENCH_ROUNDS=<n>` times each
//! command n times and reports the medians.
//!
//! Also writes the generated month to its archive and checks it with `verify --archives`.
//!
//! With `AUDIT_BENCH_MIGRATE_PARTITIONS=1` the ledger is loaded into the schema before partitions
//! (migration 18), brought up to date, and moved by `dts-ledger migrate-partitions`, timed
//! (`migrate-partitions: …`), before the audits run on the moved ledger.
//!
//! `AUDIT_BENCH_MONTHS=<n>` (default 1: the ledger lies in 2026-09) spreads the ledger's time
//! evenly over n consecutive finance months from 2026-05 (earlier when n > 7, so that the newest is
//! 2026-11: every month is closed), each with its partition made before the load. Then the oldest
//! month is the one archived and checked, and after that it is dropped (`archive --drop`, as the
//! owner, timed), and `verify --since-checkpoint` (which must need no archive) and
//! `verify --archives` (the dropped month read from its archive) run again. That prints
//! `growth: events=<n> months=<n> dropped_month=<YYYY-MM> dropped_events=<n> partitions_before=<n>
//! partitions_after=<n> verify_since_checkpoint_s=<s> verify_since_checkpoint_after_drop_s=<s>
//! archive_write_events_per_s=<n> archive_check_events_per_s=<n> drop_s=<s>
//! verify_archives_after_drop_events_per_s=<n>`, before the `audit:` line. The goal for it:
//! 50 million events over several months, the incremental audit under 2 s before and after the
//! drop. `AUDIT_BENCH_FULL_AUDITS=0` skips the full `verify` and `replay` (and the baseline), which
//! take most of the time at that size; the `audit:` line then says `skipped` for them.
//!
//! Prints, last: `audit: events=<n> verify_events_per_s=<n> replay_events_per_s=<n>
//! verify_since_checkpoint_s=<s> verify_since_checkpoint_without_heads_s=<s>`. With
//! `AUDIT_BENCH_BASELINE=<another dts-ledger binary>`, also times that binary's verify and replay
//! on the same ledger, and prints the speedups before it.

use chrono::{DateTime, Datelike, Utc};
use dts_ledger::audit::archive::finance_zone;
use dts_ledger::audit::checkpoint::{self, Checkpoint};
use dts_ledger::audit::report::Month;
use dts_ledger::configuration::Catalog;
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres, SOCKET_PORT};
use dts_ledger::database::{build_pool, migrate, roles};
use dts_ledger::domain::orders::{self, CreateOrder, RenewOrder};
use dts_ledger::domain::traffic::{self, Report, Rules};
use dts_ledger::domain::{tasks, Draft};
use dts_ledger::ledger::rows;
use dts_ledger::store::hash::{
    canonical, event_hash, ledger_hash, Hash, HashVersion, Hashed, GENESIS,
};
use dts_ledger::store::{JsonText, EVENT_COLUMNS, EVENT_COLUMN_TYPES};
use projections::events::Event;
use projections::ids::{Bytes, InstanceId, JdPin, OrderId, OrderRef, ReportId, SkuId, TaskId};
use projections::{Package, Projection, Task};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

const BINARY: &str = env!("CARGO_BIN_EXE_dts-ledger");
/// `verify --since-checkpoint` checks this many events: the newest part of the ledger.
const SINCE_EVENTS: i64 = 100_000;
/// When the generated ledger of one month starts (2026-09-21): it stays inside that closed month,
/// so the month is archived whole.
const LEDGER_START_S: i64 = 1_790_000_000;
/// The time between rounds in a ledger of one month: 10 million events take under a minute.
const ROUND_STEP_MS: i64 = 100;
/// Reports decided per round before their events are written out.
const ROUND: usize = 20_000;
/// The first month of a ledger of several months: fixed, so runs compare, and far enough back that
/// the months after it are closed (archived and dropped only once past).
const GROWTH_FIRST_MONTH: Month = Month {
    year: 2026,
    month: 5,
};
/// The newest month a ledger of several months reaches: the last month closed when this was
/// written, in 2026-12. More months than fit between the two start earlier instead.
const GROWTH_LAST_MONTH_MAX: Month = Month {
    year: 2026,
    month: 11,
};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Months counted from year 0, so that months are added and compared as numbers.
fn month_index(month: Month) -> i64 {
    i64::from(month.year) * 12 + i64::from(month.month) - 1
}

fn month_at(index: i64) -> Month {
    Month {
        year: i32::try_from(index.div_euclid(12)).unwrap(),
        month: u32::try_from(index.rem_euclid(12)).unwrap() + 1,
    }
}

/// The finance month `at` falls in.
fn month_of(at: DateTime<Utc>) -> Month {
    let local = at.with_timezone(&finance_zone());
    Month {
        year: local.year(),
        month: local.month(),
    }
}

/// When the generated events are recorded: the months they fall in, and each round's time.
struct Timeline {
    /// Oldest first.
    months: Vec<Month>,
    start: DateTime<Utc>,
    /// Several months: the end of the last. Each round then steps by its share of the months'
    /// span (span × its events / the target), so the events spread evenly over the months by
    /// time, time never goes back, and the last round still falls before this end.
    end: Option<DateTime<Utc>>,
}

impl Timeline {
    fn new(months: usize) -> Timeline {
        if months <= 1 {
            let start = DateTime::from_timestamp(LEDGER_START_S, 0).unwrap();
            return Timeline {
                months: vec![month_of(start)],
                start,
                end: None,
            };
        }
        let count = i64::try_from(months).unwrap();
        let first =
            month_index(GROWTH_FIRST_MONTH).min(month_index(GROWTH_LAST_MONTH_MAX) + 1 - count);
        let months: Vec<Month> = (first..first + count).map(month_at).collect();
        Timeline {
            start: months[0].bounds(finance_zone()).0,
            end: Some(months[months.len() - 1].bounds(finance_zone()).1),
            months,
        }
    }

    /// The time of the round after `now`, once `written` of `target` events are written
    /// (`written < target`).
    fn next(&self, now: DateTime<Utc>, written: usize, target: usize) -> DateTime<Utc> {
        let Some(end) = self.end else {
            return now + chrono::Duration::milliseconds(ROUND_STEP_MS);
        };
        // Whole microseconds, as PostgreSQL stores them: the hash covers the stored time.
        let span_us = i128::from((end - self.start).num_microseconds().unwrap());
        let offset_us = span_us * written as i128 / target as i128;
        let at = self.start + chrono::Duration::microseconds(i64::try_from(offset_us).unwrap());
        assert!(
            now <= at && at < end,
            "round at {at} after {now}, before {end}"
        );
        at
    }
}

/// The partitions of `events`, from a new session of `config`.
async fn partitions(config: &tokio_postgres::Config) -> i64 {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Hash chains and positions, as `store::append` keeps them.
struct Chains {
    /// Per stream: its last version, that event's hash and position.
    heads: HashMap<String, (i64, Hash, i64)>,
    position: i64,
    /// Where the checkpoint is signed, and the heads there once the rows reach it: what the
    /// service's checkpointer records in `checkpoint_heads` when it signs.
    checkpoint_at: i64,
    checkpoint_heads: HashMap<String, (i64, Hash, i64)>,
    /// The ledger-wide hash of the last row.
    chain: Hash,
    metadata_json: Vec<u8>,
    /// `idempotency_keys` rows: each key's digest and its event's position.
    keys: Vec<(uuid::Uuid, i64)>,
    /// The hash encoding the rows are written with: the current one, or version 3 for a ledger
    /// written before partitions (`AUDIT_BENCH_MIGRATE_PARTITIONS=1`).
    version: HashVersion,
}

impl Chains {
    /// The row's columns but payload and metadata, and the payload's canonical JSON.
    fn row(
        &mut self,
        event: &Event,
        at: DateTime<Utc>,
    ) -> (Vec<Box<dyn ToSql + Sync + Send>>, Vec<u8>) {
        self.position += 1;
        let stream = event.stream_id();
        let head = self.heads.entry(stream.clone()).or_insert((0, GENESIS, 0));
        let version = head.0 + 1;
        let payload = canonical(&event.payload());
        // Rows of version 4 store no key: `idempotency_keys` holds its digest. Version 3 rows
        // (a ledger written before migration 19) store it, and migration 19 derives the digests.
        let key = event
            .idempotency_key()
            .filter(|_| self.version.covers_key());
        if let (Some(key), false) = (event.idempotency_key(), self.version.covers_key()) {
            self.keys
                .push((dts_ledger::store::key_digest(&key), self.position));
        }
        let hash = event_hash(
            self.version,
            &head.1,
            &Hashed {
                position: self.position,
                stream_id: &stream,
                version,
                event_type: event.event_type(),
                event_version: event.event_version(),
                recorded_at: at,
                payload: &payload,
                metadata: &self.metadata_json,
                idempotency_key: key.as_deref(),
            },
        );
        self.chain = ledger_hash(&self.chain, &hash);
        let prev = head.1;
        *head = (version, hash, self.position);
        if self.position == self.checkpoint_at {
            self.checkpoint_heads = self.heads.clone();
        }
        let columns: Vec<Box<dyn ToSql + Sync + Send>> = vec![
            Box::new(self.position),
            Box::new(stream),
            Box::new(version),
            Box::new(event.event_type().to_owned()),
            Box::new(event.event_version()),
            Box::new(at),
            Box::new(key),
            // As the store writes them: rows of version 4 store no previous hash (migration 25);
            // a ledger written before partitions (version 3) stored it.
            Box::new((self.version < HashVersion::V4).then(|| prev.to_vec())),
            Box::new(hash.to_vec()),
            Box::new(self.version.column()),
            Box::new(self.chain.to_vec()),
        ];
        (columns, payload)
    }
}

/// Writes `heads` into `table` by binary COPY: each stream, its version and hash, and the position
/// too when `with_position`.
async fn copy_heads(
    client: &tokio_postgres::Client,
    table: &str,
    with_position: bool,
    heads: &HashMap<String, (i64, Hash, i64)>,
) {
    let (columns, types): (&str, &[Type]) = if with_position {
        (
            "stream_id, version, hash, position",
            &[Type::TEXT, Type::INT8, Type::BYTEA, Type::INT8],
        )
    } else {
        (
            "stream_id, version, hash",
            &[Type::TEXT, Type::INT8, Type::BYTEA],
        )
    };
    let sink = client
        .copy_in(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, types);
    futures::pin_mut!(writer);
    for (stream, (version, hash, position)) in heads {
        let hash = hash.as_slice();
        let row: [&(dyn ToSql + Sync); 4] = [stream, version, &hash, position];
        writer.as_mut().write(&row[..types.len()]).await.unwrap();
    }
    writer.as_mut().finish().await.unwrap();
}

/// The median of `rounds` timings taken by `time` (seconds): one slow round on a shared machine
/// does not move it.
fn median_of(rounds: usize, mut time: impl FnMut() -> f64) -> f64 {
    let mut seconds: Vec<f64> = (0..rounds).map(|_| time()).collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn run(args: &[&str], database_url: &str) -> (f64, String) {
    run_with(args, database_url, &[])
}

fn run_with(args: &[&str], database_url: &str, env: &[(&str, &str)]) -> (f64, String) {
    run_binary(BINARY, args, database_url, env)
}

fn run_binary(
    binary: &str,
    args: &[&str],
    database_url: &str,
    env: &[(&str, &str)],
) -> (f64, String) {
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("dts-ledger runs");
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, stdout)
}

#[tokio::main]
async fn main() {
    let target = setting("AUDIT_BENCH_EVENTS", 10_000_000);
    let packages = setting("AUDIT_BENCH_PACKAGES", 10_000);
    let tasks_per_package = 5;
    let timeline = Timeline::new(setting("AUDIT_BENCH_MONTHS", 1));
    let growth = timeline.months.len() > 1;
    let full_audits = setting("AUDIT_BENCH_FULL_AUDITS", 1) != 0;

    let dir = tempfile::Builder::new()
        .prefix("dts-ledger-audit-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let cluster_dir = dir.path().join("cluster");
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&cluster_dir, Durability::Throwaway).expect("cluster starts")
    })
    .await
    .unwrap();
    let admin_config = cluster.config("postgres");
    let (admin, connection) = admin_config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute("CREATE DATABASE audit").await.unwrap();
    let mut config = admin_config.clone();
    config.dbname("audit");
    let (mut client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    // `AUDIT_BENCH_MIGRATE_PARTITIONS=1`: the ledger is written by the schema before partitions
    // (migration 18), then brought up to date and moved by `dts-ledger migrate-partitions`, timed.
    let move_to_partitions = setting("AUDIT_BENCH_MIGRATE_PARTITIONS", 0) == 1;
    if move_to_partitions {
        migrate::migrate_to(&mut client, 18).await.unwrap();
    } else {
        migrate::migrate(&mut client).await.unwrap();
    }
    let socket = match &admin_config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(path) => path.clone(),
        _ => unreachable!("the cluster listens on a socket"),
    };
    let database_url = format!(
        "host={} port={SOCKET_PORT} user=postgres dbname=audit",
        socket.display()
    );

    // The generated ledger lies in one finance month (rounds of 20,000 events 100 ms apart), or
    // in `AUDIT_BENCH_MONTHS` of them: each month's partition is made as the service makes it, as
    // the owner, and loaded with its indexes.
    if !move_to_partitions {
        let made: Vec<String> = timeline
            .months
            .iter()
            .map(|month| {
                format!(
                    "SELECT ledger_make_partition('events', ledger_month_start('{}'));",
                    month.bounds(finance_zone()).0.to_rfc3339()
                )
            })
            .collect();
        client
            .batch_execute(&format!(
                "SET ROLE {};
                 {}
                 RESET ROLE;",
                roles::OWNER,
                made.join("\n")
            ))
            .await
            .unwrap();
    }
    let generated = Instant::now();
    let sink = client
        .copy_in(&format!(
            "COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &EVENT_COLUMN_TYPES);
    futures::pin_mut!(writer);
    let metadata =
        serde_json::json!({"actor": "bench", "requestId": "generated", "source": "bench"});
    let mut chains = Chains {
        heads: HashMap::new(),
        position: 0,
        // The ledger stops at the end of the round that reaches `target`: a little past it.
        checkpoint_at: (target as i64 - SINCE_EVENTS).max(1),
        checkpoint_heads: HashMap::new(),
        chain: GENESIS,
        keys: Vec::new(),
        version: if move_to_partitions {
            HashVersion::V3
        } else {
            HashVersion::CURRENT
        },
        metadata_json: canonical(&metadata),
    };
    let catalog = Catalog::built_in();
    let rules = Rules {
        low_balance_percents: vec![80, 95],
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut now = timeline.start;
    let mut draft = Draft::new(Projection::default(), now);
    for p in 0..packages {
        let command = CreateOrder {
            instance_id: InstanceId::parse(format!("biz-{p}")).unwrap(),
            jd_pin: JdPin::parse(format!("pin-{}", p % 500)).unwrap(),
            order: OrderRef::new(None, Some(OrderId::parse(format!("order-{p}")).unwrap()))
                .unwrap(),
            service_code: "dts".into(),
            sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
            units: 1,
            expires_at: None,
            template: None,
        };
        orders::create(&mut draft, &command, &catalog, None).unwrap();
        for t in 0..tasks_per_package {
            let task = TaskId::parse(format!("task-{p}-{t}")).unwrap();
            tasks::create(&mut draft, &task, &command.instance_id).unwrap();
        }
    }
    let mut written = 0usize;
    let mut serial = 0usize;
    loop {
        for event in draft.events.drain(..) {
            let (columns, payload) = chains.row(&event, now);
            let (payload, metadata) = (JsonText(&payload), JsonText(&chains.metadata_json));
            let mut values: Vec<&(dyn ToSql + Sync)> = columns
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            values.splice(5..5, [&payload as _, &metadata as _]);
            writer.as_mut().write(&values).await.unwrap();
            written += 1;
        }
        if written >= target {
            break;
        }
        now = timeline.next(now, written, target);
        draft = Draft::new(std::mem::take(&mut draft.projection), now);
        for _ in 0..ROUND {
            serial += 1;
            let p = rng.gen_range(0..packages);
            let instance_id = InstanceId::parse(format!("biz-{p}")).unwrap();
            if draft
                .package(&instance_id)
                .is_some_and(|pkg| pkg.bytes_remaining.is_zero())
                && rng.gen_bool(0.5)
            {
                let renewal = RenewOrder {
                    instance_id,
                    order: OrderRef::new(
                        None,
                        Some(OrderId::parse(format!("renew-{serial}")).unwrap()),
                    )
                    .unwrap(),
                    expires_at: now + chrono::Duration::days(365),
                };
                orders::renew(&mut draft, &renewal, &catalog, None, None).unwrap();
                continue;
            }
            let report = Report {
                task_id: TaskId::parse(format!("task-{p}-{}", rng.gen_range(0..tasks_per_package)))
                    .unwrap(),
                report_id: ReportId::parse(format!("r-{serial}")).unwrap(),
                bytes: Bytes::new(rng.gen_range(1u64 << 28..1u64 << 31)).unwrap(),
                period_start: None,
                period_end: now,
            };
            traffic::charge(&mut draft, &report, &rules, None).unwrap();
        }
    }
    let copied = writer.as_mut().finish().await.unwrap();
    eprintln!(
        "generated and loaded {copied} events in {:.1}s",
        generated.elapsed().as_secs_f64()
    );
    if growth {
        eprintln!(
            "over {} months, {} to {}, from {} to {now}",
            timeline.months.len(),
            timeline.months[0],
            timeline.months[timeline.months.len() - 1],
            timeline.start
        );
    }
    let indexed = Instant::now();
    if !chains.keys.is_empty() {
        let sink = client
            .copy_in("COPY idempotency_keys (key, position) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &[Type::UUID, Type::INT8]);
        futures::pin_mut!(writer);
        for (key, position) in &chains.keys {
            writer.as_mut().write(&[key, position]).await.unwrap();
        }
        writer.as_mut().finish().await.unwrap();
    }
    // Each stream's head, as the appends left it (migration 19 writes them from the events of a
    // ledger moved to partitions).
    if !move_to_partitions {
        copy_heads(&client, "stream_heads", false, &chains.heads).await;
    }
    client
        .batch_execute(&format!(
            "UPDATE ledger_head SET position = {}, ledger_hash = '\\x{}', recorded_at = '{}';",
            chains.position,
            hex::encode(chains.chain),
            now.to_rfc3339()
        ))
        .await
        .unwrap();
    eprintln!(
        "stream heads and keys written in {:.1}s",
        indexed.elapsed().as_secs_f64()
    );
    if move_to_partitions {
        let migrated = Instant::now();
        migrate::migrate(&mut client).await.unwrap();
        let migrate_s = migrated.elapsed().as_secs_f64();
        let (move_s, moved) = run(&["migrate-partitions"], &database_url);
        println!(
            "migrate-partitions: events={} migrations_after_18_s={migrate_s:.1} move_s={move_s:.1} {}",
            chains.position,
            moved.trim()
        );
    }
    // A ledger that has lived for months has been vacuumed: its pages are all-visible with their
    // hint bits set. Without this the first timed read pays for them, racing autovacuum.
    let vacuumed = Instant::now();
    client
        .batch_execute("VACUUM (FREEZE, ANALYZE) events")
        .await
        .unwrap();
    eprintln!("vacuumed in {:.1}s", vacuumed.elapsed().as_secs_f64());

    // The projections the service would have written along the way.
    let pool = build_pool(config.clone(), 1);
    {
        let mut pooled = pool.get().await.unwrap();
        let tx = pooled.transaction().await.unwrap();
        let packages: Vec<&Package> = draft.projection.packages.values().collect();
        for chunk in packages.chunks(5_000) {
            rows::insert_packages(&tx, chunk).await.unwrap();
        }
        let tasks: Vec<&Task> = draft.projection.tasks.values().collect();
        for chunk in tasks.chunks(5_000) {
            rows::insert_tasks(&tx, chunk).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    pool.close();
    drop(client);

    // A checkpoint about SINCE_EVENTS before the head, signed as the service's checkpointer
    // signs, with the heads it records there.
    let key_file = dir.path().join("signing.key");
    checkpoint::keygen(&key_file).unwrap();
    let key = checkpoint::load_signing_key(&key_file).unwrap();
    let since_position = chains.checkpoint_at;
    {
        let (client, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        let ledger_hash: Vec<u8> = client
            .query_one(
                "SELECT ledger_hash FROM events WHERE position = $1",
                &[&since_position],
            )
            .await
            .unwrap()
            .get(0);
        let signed = Checkpoint::sign(
            &key,
            since_position,
            ledger_hash.try_into().unwrap(),
            Utc::now(),
        );
        copy_heads(&client, "checkpoint_heads", true, &chains.checkpoint_heads).await;
        client
            .execute(
                "INSERT INTO checkpoints (position, ledger_hash, signed_at, key_id, signature)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &signed.position,
                    &signed.ledger_hash.as_slice(),
                    &signed.signed_at,
                    &hex::encode(signed.key_id),
                    &signed.signature.as_slice(),
                ],
            )
            .await
            .unwrap();
    }
    let key_env = key_file.display().to_string();
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_env.as_str())];
    let rounds = setting("AUDIT_BENCH_ROUNDS", 1).max(1);
    let since_checkpoint = |label: &str| {
        median_of(rounds, || {
            let (seconds, out) = run_with(
                &["verify", "--since-checkpoint", "--progress-every", "0"],
                &database_url,
                &signing,
            );
            eprintln!("{label}{}", out.trim());
            assert!(out.starts_with("verify: intact"), "{out}");
            seconds
        })
    };
    let since_seconds = since_checkpoint("");
    // The same audit after a checkpoint that recorded no heads (one `dts-ledger checkpoint` made):
    // each moved stream's head is searched for in the events, once per monthly partition.
    let without_heads_seconds = {
        let (client, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute("DELETE FROM checkpoint_heads")
            .await
            .unwrap();
        let seconds = since_checkpoint("without recorded heads: ");
        copy_heads(&client, "checkpoint_heads", true, &chains.checkpoint_heads).await;
        seconds
    };
    // `AUDIT_BENCH_FULL_AUDITS=0`: the full audits, most of the time at 50 million events, skipped.
    let full = full_audits.then(|| {
        let verify_seconds = median_of(rounds, || {
            let (seconds, out) = run_with(
                &["verify", "--progress-every", "0"],
                &database_url,
                &signing,
            );
            eprintln!("{}", out.trim());
            assert!(out.starts_with("verify: intact"), "{out}");
            seconds
        });
        let replay_seconds = median_of(rounds, || {
            let (seconds, out) = run(&["replay"], &database_url);
            eprintln!("{}", out.trim());
            assert!(out.starts_with("replay: identical"), "{out}");
            seconds
        });
        (verify_seconds, replay_seconds)
    });
    // The oldest month (the only one, by default), written to its archive (and read back) by
    // `archive`, then checked with the live ledger as one chain by `verify --archives`: the
    // archive read whole, then every event in the database.
    let month = timeline.months[0].to_string();
    let archives = dir.path().join("archives");
    std::fs::create_dir(&archives).unwrap();
    let archives = archives.display().to_string();
    let (_, archived) = run_with(
        &["archive", "--month", &month, &archives],
        &database_url,
        &signing,
    );
    eprintln!("{}", archived.trim());
    let figure = |name: &str| {
        archived
            .split_whitespace()
            .find_map(|part| part.strip_prefix(name))
            .unwrap_or("?")
            .to_owned()
    };
    let month_events: u64 = figure("events=").parse().unwrap();
    let (archives_seconds, out) = run_with(
        &["verify", "--archives", &archives, "--progress-every", "0"],
        &database_url,
        &signing,
    );
    assert!(out.starts_with("verify: intact"), "{out}");
    println!(
        "archive: month={month} events={} bytes={} write_events_per_s={} check_events_per_s={} \
         verify_archives_and_ledger_events_per_s={:.0}",
        figure("events="),
        figure("bytes="),
        figure("write_events_per_s="),
        figure("check_events_per_s="),
        (month_events as f64 + copied as f64) / archives_seconds
    );
    // Another build of the binary (an earlier commit, say), timed on the same ledger in the same
    // run: a ratio that holds even when the machine is busy. Before any month is dropped: its
    // verify and replay read the whole ledger from the database.
    let baseline = std::env::var("AUDIT_BENCH_BASELINE").ok();
    if let Some(missing) = baseline
        .as_ref()
        .filter(|b| !std::path::Path::new(b).exists())
    {
        eprintln!("baseline {missing} does not exist: not timed");
    }
    match (baseline.filter(|b| std::path::Path::new(b).exists()), full) {
        (Some(_), None) => {
            eprintln!("baseline not timed: AUDIT_BENCH_FULL_AUDITS=0 times nothing to compare")
        }
        (Some(baseline), Some((verify_seconds, replay_seconds))) => {
            let args = ["verify", "--progress-every", "0"];
            let (baseline_verify_seconds, out) =
                run_binary(&baseline, &args, &database_url, &signing);
            eprintln!("baseline {}", out.trim());
            let (baseline_replay_seconds, out) =
                run_binary(&baseline, &["replay"], &database_url, &[]);
            eprintln!("baseline {}", out.trim());
            println!(
                "baseline: verify_events_per_s={:.0} replay_events_per_s={:.0} \
                 verify_speedup={:.2} replay_speedup={:.2}",
                copied as f64 / baseline_verify_seconds,
                copied as f64 / baseline_replay_seconds,
                baseline_verify_seconds / verify_seconds,
                baseline_replay_seconds / replay_seconds
            );
        }
        (None, _) => {}
    }
    // Several months: the archived month leaves the database, as the owner drops it (the role
    // `archive --drop` needs: a login role, as the embedded cluster makes them). The incremental
    // audit then starts from the checkpoint in the newest month and needs no archive; the full
    // one reads the dropped month from its archive, then the rest of the ledger, each event once.
    if growth {
        let partitions_before = partitions(&config).await;
        roles::create_login_roles(&admin, None).await.unwrap();
        let owner_url = format!(
            "host={} port={SOCKET_PORT} user={} dbname=audit",
            socket.display(),
            roles::OWNER
        );
        let (drop_seconds, out) = run_with(
            &["archive", "--drop", "--month", &month, &archives],
            &owner_url,
            &signing,
        );
        eprintln!("{}", out.trim());
        assert!(
            out.starts_with(&format!("archive: dropped {month} ")),
            "{out}"
        );
        let partitions_after = partitions(&config).await;
        let since_after_drop_seconds = since_checkpoint("after the drop: ");
        let (archives_after_drop_seconds, out) = run_with(
            &["verify", "--archives", &archives, "--progress-every", "0"],
            &database_url,
            &signing,
        );
        eprintln!("after the drop: {}", out.trim());
        assert!(out.starts_with("verify: intact"), "{out}");
        println!(
            "growth: events={copied} months={} dropped_month={month} dropped_events={month_events} \
             partitions_before={partitions_before} partitions_after={partitions_after} \
             verify_since_checkpoint_s={since_seconds:.2} \
             verify_since_checkpoint_after_drop_s={since_after_drop_seconds:.2} \
             archive_write_events_per_s={} archive_check_events_per_s={} drop_s={drop_seconds:.1} \
             verify_archives_after_drop_events_per_s={:.0}",
            timeline.months.len(),
            figure("write_events_per_s="),
            figure("check_events_per_s="),
            copied as f64 / archives_after_drop_seconds
        );
    }
    drop(admin);
    drop(cluster);

    let per_s = |seconds: Option<f64>| {
        seconds.map_or("skipped".to_owned(), |s| {
            format!("{:.0}", copied as f64 / s)
        })
    };
    println!(
        "audit: events={copied} verify_events_per_s={} replay_events_per_s={} \
         verify_since_checkpoint_s={since_seconds:.2} \
         verify_since_checkpoint_without_heads_s={without_heads_seconds:.2}",
        per_s(full.map(|f| f.0)),
        per_s(full.map(|f| f.1))
    );
}

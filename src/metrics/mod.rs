//! Prometheus metrics: what the service counts, and `GET /metrics` (docs/operating.md, "Metrics").
//!
//! Built on `metrics` (the facade every module records through) and `metrics-exporter-prometheus`
//! (the recorder, rendered by our own route: the exporter's HTTP listener would be a second
//! server to configure and secure). The recorder is **process-global**: [`install`] sets it once
//! and every later call (several applications in one test process) shares it, so series count
//! for every application of the process and a gauge holds the value its last writer set.
//!
//! Labels are of low cardinality only: route patterns (never raw paths or ids), methods, status
//! codes, event types, worker names and fixed outcome words.
//!
//! `refresh.rs` is the worker refreshing the gauges read from the database; the middleware counting
//! requests by route, method and status is the HTTP edge's (`http/request_metrics.rs`).

pub mod refresh;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

pub const HTTP_REQUESTS: &str = "dts_ledger_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "dts_ledger_http_request_duration_seconds";
pub const INGEST_QUEUED_REPORTS: &str = "dts_ledger_ingest_queued_reports";
pub const INGEST_BATCH_REPORTS: &str = "dts_ledger_ingest_batch_reports";
pub const INGEST_BATCH_COMMIT_DURATION: &str = "dts_ledger_ingest_batch_commit_seconds";
pub const INGEST_BATCHES: &str = "dts_ledger_ingest_batches_total";
pub const INGEST_BATCH_RETRIES: &str = "dts_ledger_ingest_batch_retries_total";
pub const INGEST_REPORTS: &str = "dts_ledger_ingest_reports_total";
pub const TRANSACTION_RETRIES: &str = "dts_ledger_transaction_retries_total";
pub const EVENTS_APPENDED: &str = "dts_ledger_events_appended_total";
pub const HEAD_POSITION: &str = "dts_ledger_head_position";
pub const PACKAGES: &str = "dts_ledger_packages";
pub const TASKS: &str = "dts_ledger_tasks";
pub const WEBHOOK_BACKLOG: &str = "dts_ledger_webhook_backlog_entries";
pub const WEBHOOK_OLDEST_AGE: &str = "dts_ledger_webhook_oldest_undelivered_age_seconds";
pub const WEBHOOK_DEAD_LETTERS: &str = "dts_ledger_webhook_dead_letters";
pub const WEBHOOK_DELIVERIES: &str = "dts_ledger_webhook_deliveries_total";
pub const WEBHOOK_DELIVERY_DURATION: &str = "dts_ledger_webhook_delivery_duration_seconds";
pub const DATABASE_UP: &str = "dts_ledger_database_up";
pub const MARKETPLACE_CALLBACKS: &str = "dts_ledger_marketplace_callbacks_total";
pub const MARKETPLACE_REFUSED: &str = "dts_ledger_marketplace_refused_callbacks";
pub const MARKETPLACE_AMBIGUOUS: &str = "dts_ledger_marketplace_ambiguous_callbacks_total";
pub const MARKETPLACE_REFUSED_OLDEST_AGE: &str =
    "dts_ledger_marketplace_refused_oldest_age_seconds";
pub const EXPIRY_NOTICES_HELD: &str = "dts_ledger_expiry_notices_held_total";
pub const EXPIRY_NOTICES_UNSETTLED: &str = "dts_ledger_expiry_notices_unsettled";
pub const EXPIRY_SWEEPS: &str = "dts_ledger_expiry_sweeps_total";
pub const PACKAGES_EXPIRED: &str = "dts_ledger_packages_expired_total";
pub const CHECKPOINTS: &str = "dts_ledger_checkpoints_total";
pub const CHECKPOINT_CURRENT: &str = "dts_ledger_checkpoint_current_timestamp_seconds";
pub const CHECKPOINTS_UNTRUSTED: &str = "dts_ledger_checkpoints_untrusted_total";
pub const VERIFICATIONS: &str = "dts_ledger_verifications_total";
pub const VERIFY_INTACT: &str = "dts_ledger_verify_intact";
pub const POOL_SIZE: &str = "dts_ledger_pool_connections";
pub const POOL_AVAILABLE: &str = "dts_ledger_pool_available_connections";
pub const POOL_WAITING: &str = "dts_ledger_pool_waiting_requests";
pub const POOL_MAX: &str = "dts_ledger_pool_max_connections";
pub const WORKER_UP: &str = "dts_ledger_worker_up";
pub const DATABASE_COMMITS_WAIT_FOR_STANDBY: &str = "dts_ledger_database_commits_wait_for_standby";
pub const DATABASE_SYNCHRONOUS_STANDBYS: &str = "dts_ledger_database_synchronous_standbys";
pub const DATABASE_SERVER: &str = "dts_ledger_database_server";
pub const WORKER_RESTARTS: &str = "dts_ledger_worker_restarts_total";
pub const BYTES_AFTER_STOP: &str = "dts_ledger_bytes_after_stop_bytes";
pub const TASKS_REPORTING_AFTER_STOP: &str = "dts_ledger_tasks_reporting_after_stop";
pub const RUNWAY_CHECKS: &str = "dts_ledger_runway_checks_total";
pub const RUNWAYS_ANNOUNCED: &str = "dts_ledger_runways_announced_total";

/// Latency buckets, in seconds: the hot path's budget is 20 ms at p99, a marketplace callback's
/// a few hundred ms, and anything past 10 s has already been cut by a timeout somewhere.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bytes after a stop, in bytes: powers of 16 from 1 KiB to 1 TiB (a report's default limit), so
/// a few in-flight KiB and an agent that went on for gigabytes land in different buckets.
const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    16384.0,
    262_144.0,
    4_194_304.0,
    67_108_864.0,
    1_073_741_824.0,
    17_179_869_184.0,
    274_877_906_944.0,
    1_099_511_627_776.0,
];
/// Batch size buckets, in reports: powers of four up to the largest batch an ingest lane takes
/// (the ingest pipeline's tests hold the last bucket to its bound).
pub const BATCH_REPORTS_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 5000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// The highest head position this process committed: lanes commit concurrently, and a gauge set
/// by each would sometimes go back.
static HEAD: AtomicI64 = AtomicI64::new(0);

/// Installs the process-wide recorder on first use and returns the handle that renders it. When
/// another recorder was installed first (a host embedding the library), the metrics go there and
/// this handle renders an empty page.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(INGEST_BATCH_REPORTS.into()),
                        BATCH_REPORTS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(BYTES_AFTER_STOP.into()), BYTES_BUCKETS)
                })
                .expect("the bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            zero();
            handle
        })
        .clone()
}

/// The `# HELP` lines.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route pattern and method"
    );
    describe_gauge!(
        INGEST_QUEUED_REPORTS,
        "Traffic reports queued or in flight in the ingest pipeline"
    );
    describe_histogram!(INGEST_BATCH_REPORTS, "Reports per ingest batch");
    describe_histogram!(
        INGEST_BATCH_COMMIT_DURATION,
        Unit::Seconds,
        "Time to apply and commit one ingest batch"
    );
    describe_counter!(
        INGEST_BATCHES,
        "Ingest batches, by result (committed, unavailable, failed)"
    );
    describe_counter!(
        INGEST_BATCH_RETRIES,
        "Ingest batches redone, by reason (repeat, lock_timeout)"
    );
    describe_counter!(INGEST_REPORTS, "Traffic reports, by outcome (accepted, duplicate, rejected, unavailable, failed, overloaded)");
    describe_counter!(
        TRANSACTION_RETRIES,
        "Units of work run again after losing a race"
    );
    describe_counter!(EVENTS_APPENDED, "Events appended to the ledger, by type");
    describe_gauge!(HEAD_POSITION, "Position of the ledger head");
    describe_gauge!(PACKAGES, "Packages by status (refreshed periodically)");
    describe_gauge!(TASKS, "Tasks by state (refreshed periodically)");
    describe_gauge!(
        WEBHOOK_BACKLOG,
        "Webhook entries not delivered yet, dead letters excluded (refreshed periodically)"
    );
    describe_gauge!(
        WEBHOOK_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undelivered webhook entry, 0 without any (refreshed periodically)"
    );
    describe_gauge!(
        WEBHOOK_DEAD_LETTERS,
        "Webhook entries given up on, waiting for `outbox retry` (refreshed periodically)"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by result (delivered, failed, dead)"
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_DURATION,
        Unit::Seconds,
        "Webhook delivery attempt latency"
    );
    describe_gauge!(
        DATABASE_UP,
        "1 when the last periodic refresh reached the database, else 0"
    );
    describe_counter!(
        MARKETPLACE_CALLBACKS,
        "Marketplace callbacks, by action and outcome (ok, refused, unavailable, failed)"
    );
    describe_gauge!(
        MARKETPLACE_REFUSED,
        "Marketplace callbacks refused after their token held and not resolved by a later \
         success, by action (refreshed periodically)"
    );
    describe_gauge!(
        MARKETPLACE_REFUSED_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest unresolved refused marketplace callback, 0 without any (refreshed \
         periodically)"
    );
    describe_counter!(
        MARKETPLACE_AMBIGUOUS,
        "Marketplace callbacks whose token held but whose signed string reads as more than one \
         set of parameters (refused)"
    );
    describe_counter!(
        EXPIRY_NOTICES_HELD,
        "Marketplace expiry notices held because the package's expiresAt was still ahead"
    );
    describe_gauge!(
        EXPIRY_NOTICES_UNSETTLED,
        "Held expiry notices of packages that have not expired or been released since \
         (refreshed periodically)"
    );
    describe_counter!(EXPIRY_SWEEPS, "Expiry sweeps, by result (ok, failed)");
    describe_counter!(PACKAGES_EXPIRED, "Packages expired by the clock");
    describe_counter!(
        CHECKPOINTS,
        "Checkpoint rounds, by result (signed, unmoved, refused, failed)"
    );
    describe_gauge!(
        CHECKPOINT_CURRENT,
        Unit::Seconds,
        "Unix time the ledger head was last covered by a signed checkpoint"
    );
    describe_counter!(
        CHECKPOINTS_UNTRUSTED,
        "Stored checkpoints signed by no trusted key, ignored; each counted once per process"
    );
    describe_counter!(
        VERIFICATIONS,
        "Ledger verifications before signing, by result (intact, broken, error)"
    );
    describe_gauge!(
        VERIFY_INTACT,
        "1 when the last verification before signing found the ledger intact, 0 when broken"
    );
    describe_gauge!(POOL_SIZE, "Database connections open in the pool");
    describe_gauge!(POOL_AVAILABLE, "Idle database connections in the pool");
    describe_gauge!(POOL_WAITING, "Requests waiting for a database connection");
    describe_gauge!(POOL_MAX, "Most database connections the pool opens");
    describe_gauge!(
        WORKER_UP,
        "1 while a background worker runs, 0 while it is down and restarting"
    );
    describe_counter!(WORKER_RESTARTS, "Background worker restarts, by worker");
    describe_histogram!(
        BYTES_AFTER_STOP,
        Unit::Bytes,
        "Bytes of each traffic report recorded while its task was stopped (in-flight bytes, or \
         an agent that ignores stop)"
    );
    describe_gauge!(
        TASKS_REPORTING_AFTER_STOP,
        "Stopped tasks still reporting: their last report came more than [alerts] \
         stopped_reporting_s after their stop, and within the last stopped_reporting_s \
         (refreshed periodically)"
    );
    describe_counter!(RUNWAY_CHECKS, "Runway checks, by result (ok, failed)");
    describe_counter!(
        RUNWAYS_ANNOUNCED,
        "Runway thresholds announced (OrderRunwayShort)"
    );
    describe_gauge!(
        DATABASE_COMMITS_WAIT_FOR_STANDBY,
        "1 when the primary acknowledges a commit only once a synchronous standby has it \
         (synchronous_standby_names set, synchronous_commit on), 0 when a commit lives on the \
         primary's disk alone"
    );
    describe_gauge!(
        DATABASE_SYNCHRONOUS_STANDBYS,
        "Synchronous standbys attached to the primary (pg_stat_replication); -1 when the \
         service's role may not read their state (grant it pg_monitor)"
    );
    describe_gauge!(
        DATABASE_SERVER,
        "1 for the server (host, port) this process writes to, 0 for one it wrote to before"
    );
}

/// Counters alerts compute `increase()` over start at zero, so that their first increment is seen.
fn zero() {
    for result in ["delivered", "failed", "dead"] {
        counter!(WEBHOOK_DELIVERIES, "result" => result).increment(0);
    }
    for result in ["committed", "unavailable", "failed"] {
        counter!(INGEST_BATCHES, "result" => result).increment(0);
    }
    for result in ["ok", "failed"] {
        counter!(EXPIRY_SWEEPS, "result" => result).increment(0);
        counter!(RUNWAY_CHECKS, "result" => result).increment(0);
    }
    counter!(RUNWAYS_ANNOUNCED).increment(0);
    for result in ["signed", "unmoved", "refused", "failed"] {
        counter!(CHECKPOINTS, "result" => result).increment(0);
    }
    for result in ["intact", "broken", "error"] {
        counter!(VERIFICATIONS, "result" => result).increment(0);
    }
    for outcome in [
        "accepted",
        "duplicate",
        "rejected",
        "unavailable",
        "failed",
        "overloaded",
    ] {
        counter!(INGEST_REPORTS, "outcome" => outcome).increment(0);
    }
    for reason in ["repeat", "lock_timeout"] {
        counter!(INGEST_BATCH_RETRIES, "reason" => reason).increment(0);
    }
    counter!(PACKAGES_EXPIRED).increment(0);
    counter!(EXPIRY_NOTICES_HELD).increment(0);
    counter!(MARKETPLACE_AMBIGUOUS).increment(0);
    counter!(CHECKPOINTS_UNTRUSTED).increment(0);
    counter!(TRANSACTION_RETRIES).increment(0);
}

/// How many events of each type `types` holds: a batch holds thousands of events of a few types,
/// counted here before the append takes the events and recorded once it commits.
pub fn count_types<'a>(types: impl Iterator<Item = &'a str>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = Vec::new();
    for event_type in types {
        match counts.iter_mut().find(|(seen, _)| seen == event_type) {
            Some((_, count)) => *count += 1,
            None => counts.push((event_type.to_owned(), 1)),
        }
    }
    counts
}

/// Counts the events of one committed append, and moves the head gauge to `last_position`.
pub fn appended(types: &[(String, u64)], last_position: i64) {
    for (event_type, count) in types {
        counter!(EVENTS_APPENDED, "type" => event_type.clone()).increment(*count);
    }
    head_at(last_position);
}

/// Moves the head gauge forward to `position` (never back).
pub fn head_at(position: i64) {
    let highest = HEAD.fetch_max(position, Ordering::Relaxed).max(position);
    gauge!(HEAD_POSITION).set(highest as f64);
}

/// The server last written to, as labels of [`DATABASE_SERVER`], so that a failover moves the 1
/// to the new primary's series and leaves the old one at 0.
static SERVER: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// Reports what protects the commits of the server written to (taken by `/readyz` and by the
/// metrics refresher).
pub fn protection(protection: &crate::database::primary::Protection) {
    gauge!(DATABASE_COMMITS_WAIT_FOR_STANDBY)
        .set(f64::from(u8::from(protection.commits_wait_for_standby())));
    gauge!(DATABASE_SYNCHRONOUS_STANDBYS).set(protection.synchronous_standbys.unwrap_or(-1) as f64);
    let now = (
        protection
            .host
            .clone()
            .unwrap_or_else(|| "local socket".to_owned()),
        protection.port.to_string(),
    );
    let mut last = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((host, port)) = last.take().filter(|before| *before != now) {
        gauge!(DATABASE_SERVER, "host" => host, "port" => port).set(0.0);
    }
    gauge!(DATABASE_SERVER, "host" => now.0.clone(), "port" => now.1.clone()).set(1.0);
    *last = Some(now);
}

/// The gauges read at scrape time: the pool's status and the ingest queue cost nothing to read.
pub fn observe_now(pool: &deadpool_postgres::Pool, queued_reports: usize) {
    let status = pool.status();
    gauge!(POOL_SIZE).set(status.size as f64);
    gauge!(POOL_AVAILABLE).set(status.available as f64);
    gauge!(POOL_WAITING).set(status.waiting as f64);
    gauge!(POOL_MAX).set(status.max_size as f64);
    gauge!(INGEST_QUEUED_REPORTS).set(queued_reports as f64);
}

/// Whether a background worker runs (`true`) or is down.
pub fn worker_up(name: &str, up: bool) {
    gauge!(WORKER_UP, "worker" => name.to_owned()).set(if up { 1.0 } else { 0.0 });
}

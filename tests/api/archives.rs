//! Archives of closed months (invariant I12): written, checked as one chain with the live
//! ledger, named when tampered with, and dropped only once verified.

use crate::helpers::TestDb;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use dts_ledger::configuration::Catalog;
use dts_ledger::database::Role;
use dts_ledger::domain::orders::{self, CreateOrder};
use dts_ledger::domain::traffic::{self, Report, Rules};
use dts_ledger::domain::{tasks, Draft};
use dts_ledger::ledger::rows;
use dts_ledger::store::{Metadata, NewEvent};
use projections::ids::{Bytes, InstanceId, JdPin, OrderId, OrderRef, ReportId, SkuId, TaskId};
use projections::Projection;
use std::path::{Path, PathBuf};

/// A ledger with events in the two months before the current one (China Standard Time) and in
/// the current one, a signing key, and a directory for archives.
struct Books {
    db: TestDb,
    dir: tempfile::TempDir,
    key: PathBuf,
    /// The two closed months, oldest first, and the current one: `YYYY-MM`.
    months: [String; 3],
}

/// The first instant of the month `back` months before the current CST month, and its name.
fn month_start(back: i32) -> (DateTime<Utc>, String) {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let now = Utc::now().with_timezone(&cst);
    let mut months = now.year() * 12 + now.month0() as i32 - back;
    let year = months.div_euclid(12);
    months = months.rem_euclid(12);
    let start = cst
        .with_ymd_and_hms(year, months as u32 + 1, 1, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    (start, format!("{year:04}-{:02}", months + 1))
}

/// Appends the draft's events at `at` through the store, as the service would.
async fn append(client: &mut deadpool_postgres::Object, draft: &mut Draft, at: DateTime<Utc>) {
    let metadata = Metadata {
        request_id: "archive-test".into(),
        source: "api",
        actor: "reporter#0".into(),
    }
    .to_value();
    let events: Vec<NewEvent> = draft
        .events
        .drain(..)
        .map(|event| {
            let new = NewEvent::new(&event, &metadata);
            match event.idempotency_key() {
                Some(key) => new.with_idempotency_key(key),
                None => new,
            }
        })
        .collect();
    let tx = client.transaction().await.unwrap();
    crate::helpers::append_events(&tx, events, at)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

impl Books {
    /// Two packages bought two months ago, their tasks reporting traffic in each month since;
    /// the projections written as the service writes them.
    async fn open() -> Books {
        let db = TestDb::create().await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        dts_ledger::audit::checkpoint::keygen(&key).unwrap();
        let archives = dir.path().join("archives");
        std::fs::create_dir(&archives).unwrap();
        let (first, first_name) = month_start(2);
        let (second, second_name) = month_start(1);
        let (current, current_name) = month_start(0);
        let catalog = Catalog::built_in();
        let rules = Rules {
            low_balance_percents: vec![80, 95],
        };
        // The service makes partitions from its own month on; these books begin two months back.
        // Made as the owner, as the service's own are.
        let owner = db.client().await;
        owner
            .batch_execute("SET ROLE dts_ledger_owner")
            .await
            .unwrap();
        owner
            .execute(
                "SELECT ledger_make_partition('events', m) FROM (
                     SELECT DISTINCT ledger_month_start(day) AS m
                       FROM generate_series($1, now(), interval '1 day') AS day) AS months",
                &[&first],
            )
            .await
            .unwrap();
        let mut client = db.pool.get().await.unwrap();
        let hour = chrono::Duration::hours(1);
        let mut draft = Draft::new(Projection::default(), first + hour);
        for p in 0..2 {
            let command = CreateOrder {
                instance_id: InstanceId::parse(format!("biz-{p}")).unwrap(),
                jd_pin: JdPin::parse("pin-1".to_owned()).unwrap(),
                order: OrderRef::new(None, Some(OrderId::parse(format!("order-{p}")).unwrap()))
                    .unwrap(),
                service_code: "dts".into(),
                sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
                units: 1,
                expires_at: None,
                template: None,
            };
            orders::create(&mut draft, &command, &catalog, None).unwrap();
            let task = TaskId::parse(format!("task-{p}")).unwrap();
            tasks::create(&mut draft, &task, &command.instance_id).unwrap();
        }
        append(&mut client, &mut draft, first + hour).await;
        let mut serial = 0;
        let now = Utc::now();
        for start in [first, second, current] {
            for day in 0..3 {
                let at = (start + chrono::Duration::days(day) + hour * 2).min(now);
                draft = Draft::new(std::mem::take(&mut draft.projection), at);
                for p in 0..2 {
                    serial += 1;
                    let report = Report {
                        task_id: TaskId::parse(format!("task-{p}")).unwrap(),
                        report_id: ReportId::parse(format!("r-{serial}")).unwrap(),
                        bytes: Bytes::new(1 << 30).unwrap(),
                        period_start: None,
                        period_end: at,
                    };
                    traffic::charge(&mut draft, &report, &rules, None).unwrap();
                }
                append(&mut client, &mut draft, at).await;
            }
        }
        let tx = client.transaction().await.unwrap();
        let packages: Vec<_> = draft.projection.packages.values().collect();
        rows::insert_packages(&tx, &packages).await.unwrap();
        let tasks: Vec<_> = draft.projection.tasks.values().collect();
        rows::insert_tasks(&tx, &tasks).await.unwrap();
        tx.commit().await.unwrap();
        Books {
            db,
            dir,
            key,
            months: [first_name, second_name, current_name],
        }
    }

    fn archives(&self) -> PathBuf {
        self.dir.path().join("archives")
    }

    fn archive_of(&self, month: &str) -> PathBuf {
        self.archives().join(format!("ledger-{month}.jsonl.zst"))
    }

    /// `dts-ledger <args>` as `role`, with the signing key (the trusted key too).
    fn cli_as(&self, role: Role, args: &[&str]) -> (i32, String, String) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
            .args(args)
            .env("DATABASE_URL", self.db.url_as(role))
            .env_remove("LEDGER_MIGRATE_DATABASE_URL")
            .env_remove("LEDGER_CONFIG")
            .env("LEDGER_SIGNING_KEY_FILE", &self.key)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_as(Role::Reader, args)
    }

    /// Archives `month`; asserts it worked.
    fn archive(&self, month: &str) -> String {
        let archives = self.archives();
        let (code, out, err) = self.cli(&["archive", "--month", month, archives.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        out
    }

    fn verify_archives(&self) -> (i32, String, String) {
        let archives = self.archives();
        self.cli(&["verify", "--archives", archives.to_str().unwrap()])
    }
}

/// The lines of an archive, decompressed.
fn lines(path: &Path) -> Vec<String> {
    let text = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Changes the bytes of the first traffic report in `lines`, leaving its hashes: its position.
fn alter(lines: &mut [String]) -> i64 {
    let index = lines
        .iter()
        .position(|line| line.contains("\"eventType\":\"TrafficConsumed\""))
        .expect("the month has traffic");
    let changed = lines[index].replacen("1073741824", "1073741825", 1);
    assert_ne!(changed, lines[index], "the report's bytes are in the line");
    lines[index] = changed;
    let event: serde_json::Value = serde_json::from_str(&lines[index]).unwrap();
    event["position"].as_i64().unwrap()
}

/// Writes `lines` back as an archive, compressed.
fn write_lines(path: &Path, lines: &[String]) {
    let text = lines.join("\n") + "\n";
    std::fs::write(path, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
}

#[tokio::test]
async fn a_closed_month_is_archived_and_verifies_with_the_live_ledger_as_one_chain() {
    let books = Books::open().await;
    let [first, second, current] = books.months.clone();
    let out = books.archive(&first);
    assert!(out.contains(&format!("month={first} events=")), "{out}");
    assert!(out.contains("write_events_per_s="), "{out}");
    assert!(out.contains("check_events_per_s="), "{out}");
    books.archive(&second);

    // Readable without our code: a header, one line per event, the signed checkpoint last.
    let lines = lines(&books.archive_of(&first));
    let header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(header["format"], "dts-ledger/archive/v1");
    assert_eq!(header["month"], first.as_str());
    assert_eq!(header["firstPosition"], 1);
    assert_eq!(header["ledgerHashBefore"], "0".repeat(64));
    let events = header["events"].as_i64().unwrap() as usize;
    assert_eq!(lines.len(), events + 2);
    let event: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(event["position"], 1);
    assert!(event["payload"].as_str().unwrap().starts_with('{'));
    let trailer: serde_json::Value = serde_json::from_str(&lines[events + 1]).unwrap();
    assert_eq!(
        trailer["checkpoint"]["position"],
        header["lastPosition"].clone()
    );
    let last: serde_json::Value = serde_json::from_str(&lines[events]).unwrap();
    assert_eq!(trailer["checkpoint"]["ledgerHash"], last["ledgerHash"]);

    let (code, out, err) = books.verify_archives();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verify: intact"), "{out}");
    assert!(err.contains("archives=2"), "{err}");

    // Never the current month, never twice over the same file.
    let archives = books.archives();
    let dir = archives.to_str().unwrap();
    let (code, _, err) = books.cli(&["archive", "--month", &current, dir]);
    assert_eq!(code, 2);
    assert!(err.contains("not closed"), "{err}");
    let (code, _, err) = books.cli(&["archive", "--month", &first, dir]);
    assert_eq!(code, 2);
    assert!(err.contains("never overwritten"), "{err}");
}

#[tokio::test]
async fn verify_names_an_archive_altered_truncated_reordered_or_left_out() {
    let books = Books::open().await;
    let [first, second, _] = books.months.clone();
    books.archive(&first);
    books.archive(&second);
    let path = books.archive_of(&first);
    let original = std::fs::read(&path).unwrap();
    let name = path.display().to_string();

    // Altered: one event's bytes changed, its hashes left as they were.
    let mut altered = lines(&path);
    let position = alter(&mut altered);
    write_lines(&path, &altered);
    let (code, out, _) = books.verify_archives();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("archive {name}: altered at position {position}")),
        "{out}"
    );

    // Truncated: the file cut short.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    let (code, out, _) = books.verify_archives();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("archive {name}: truncated")), "{out}");
    // ... or its last lines gone, recompressed.
    let mut short = lines(&path_restored(&path, &original));
    short.truncate(short.len() - 2);
    write_lines(&path, &short);
    let (code, out, _) = books.verify_archives();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("archive {name}: truncated")), "{out}");

    // Reordered: two events swapped.
    let mut reordered = lines(&path_restored(&path, &original));
    reordered.swap(2, 3);
    write_lines(&path, &reordered);
    let (code, out, _) = books.verify_archives();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("archive {name}: reordered at position 3")),
        "{out}"
    );

    // Restored, it holds again.
    std::fs::write(&path, &original).unwrap();
    assert_eq!(books.verify_archives().0, 0);
}

/// Puts the original bytes back and returns the path.
fn path_restored(path: &Path, original: &[u8]) -> PathBuf {
    std::fs::write(path, original).unwrap();
    path.to_owned()
}

#[tokio::test]
async fn a_month_is_dropped_only_by_the_owner_and_only_with_a_verified_archive() {
    let books = Books::open().await;
    let [first, second, _] = books.months.clone();
    let archives = books.archives();
    let dir = archives.to_str().unwrap();
    let drop_as =
        |role, month: &str| books.cli_as(role, &["archive", "--drop", "--month", month, dir]);

    // No archive yet.
    let (code, _, err) = drop_as(Role::Owner, &first);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not dropped"), "{err}");
    assert!(err.contains(&format!("ledger-{first}.jsonl.zst")), "{err}");

    // The service's role is refused, archive or not.
    books.archive(&first);
    let (code, _, err) = drop_as(Role::Service, &first);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs the owner's role"), "{err}");

    // An archive that does not hold is refused.
    let path = books.archive_of(&first);
    let original = std::fs::read(&path).unwrap();
    let mut altered = lines(&path);
    alter(&mut altered);
    write_lines(&path, &altered);
    let (code, _, err) = drop_as(Role::Owner, &first);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("altered"), "{err}");
    std::fs::write(&path, &original).unwrap();

    // A verified archive, but no trusted checkpoint the incremental audits could start from.
    let (code, _, err) = drop_as(Role::Owner, &first);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no stored checkpoint"), "{err}");

    // The newer month cannot go before the older one.
    books.archive(&second);
    let (code, _, err) = drop_as(Role::Owner, &second);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("drop the older months first"), "{err}");

    // Nothing was dropped or recorded.
    let client = books.db.client().await;
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM archived_months", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0);
    assert_eq!(books.verify_archives().0, 0);
}

#[tokio::test]
async fn the_service_cannot_record_a_drop() {
    let books = Books::open().await;
    let client = books.db.client_as(Role::Service).await;
    let refused = client
        .execute(
            "INSERT INTO archived_stream_heads (month, stream_id, version, hash, position)
             VALUES ('2026-01', 'package-x', 1, '\\x00', 1)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_dropped_month_is_read_from_its_archive_and_the_incremental_audits_need_none() {
    let books = Books::open().await;
    let [first, second, _] = books.months.clone();
    let archives = books.archives();
    let dir = archives.to_str().unwrap();
    let (code, out, err) = books.cli(&["replay"]);
    assert_eq!(code, 0, "{out}{err}");
    let replayed = out.split(" seconds=").next().unwrap().to_owned();
    let (code, report, err) = books.cli(&["report", "--month", &first, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = books.cli_as(Role::Service, &["checkpoint", "--snapshot"]);
    assert_eq!(code, 0, "{err}");
    // Points in time inside the month to be dropped and inside the next one: the audits that stop
    // at a time stop in the archive, or go on from it into the database.
    let times: Vec<String> = {
        let client = books.db.client().await;
        let mut times = Vec::new();
        for month in [&first, &second] {
            let at: chrono::DateTime<chrono::Utc> = client
                .query_one(
                    "SELECT recorded_at FROM events
                      WHERE to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM') = $1
                      ORDER BY position OFFSET 1 LIMIT 1",
                    &[month],
                )
                .await
                .unwrap()
                .get(0);
            times.push(at.to_rfc3339());
        }
        times
    };
    let at_times = |archives: &[&str]| -> Vec<String> {
        let mut answers = Vec::new();
        for time in &times {
            for args in [
                vec!["replay", "--as-of", time, "--format", "json"],
                vec!["export", "--format", "jsonl", "--until", time],
            ] {
                let args: Vec<&str> = args.into_iter().chain(archives.iter().copied()).collect();
                let (code, out, err) = books.cli(&args);
                assert_eq!(code, 0, "{args:?}: {out}{err}");
                answers.push(out);
            }
        }
        answers
    };
    let before_drop = at_times(&[]);
    // [replay, export] at the time in the first month, then in the second: each stops there.
    let exported = |answer: &String| answer.lines().count();
    assert!(
        0 < exported(&before_drop[1]) && exported(&before_drop[1]) < exported(&before_drop[3]),
        "{before_drop:?}"
    );
    assert_ne!(before_drop[0], before_drop[2]);

    books.archive(&first);
    books.archive(&second);
    let (code, out, err) =
        books.cli_as(Role::Owner, &["archive", "--drop", "--month", &first, dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "archive: dropped {first} partition=events_p{}",
            first.replace('-', "_")
        )),
        "{out}"
    );
    let client = books.db.client().await;
    let recorded: (i64, Vec<u8>) = client
        .query_one(
            "SELECT first_position, file_sha256 FROM archived_months",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(recorded.0, 1);
    assert_eq!(
        recorded.1,
        dts_ledger::audit::archive::file_sha256(&books.archive_of(&first))
            .unwrap()
            .to_vec()
    );

    // Without the archives: each audit says which file it needs.
    let file = format!("ledger-{first}.jsonl.zst");
    for args in [
        vec!["verify"],
        vec!["replay"],
        vec!["report", "--month", &first],
        vec!["export", "--format", "jsonl"],
    ] {
        let (code, _, err) = books.cli(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("--archives DIR"), "{args:?}: {err}");
        assert!(err.contains(&file), "{args:?}: {err}");
    }
    // With them, the same answers as before the drop.
    let (code, out, err) = books.verify_archives();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = books.cli(&["replay", "--archives", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.split(" seconds=").next().unwrap(), replayed);
    let (code, after, err) = books.cli(&[
        "report",
        "--month",
        &first,
        "--format",
        "json",
        "--archives",
        dir,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(after, report);
    let (code, out, err) = books.cli(&["export", "--format", "jsonl", "--archives", dir]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().next().unwrap().contains("\"position\":1,"),
        "{out}"
    );
    assert_eq!(at_times(&["--archives", dir]), before_drop);

    // The incremental audits need no archive at all.
    let (code, out, err) = books.cli(&["verify", "--since-checkpoint"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = books.cli(&["replay", "--since-snapshot"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("replay: identical"), "{out}");

    // The dropped month's archive left out is named.
    let path = books.archive_of(&first);
    let kept = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (code, out, _) = books.verify_archives();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN missing archive"), "{out}");
    assert!(out.contains(&format!("{file} (month {first}")), "{out}");
    assert!(out.contains("is left out"), "{out}");
    std::fs::write(&path, kept).unwrap();
    assert_eq!(books.verify_archives().0, 0);
}

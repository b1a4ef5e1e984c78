// Over 600 lines: one tamperer, many attacks on the evidence; each attack is its own test.
//! Provable history: time runs forward along the ledger, a ledger-wide chain and a hash that
//! covers the idempotency key, checked by `verify` against an insider with the superuser's rights.

use crate::helpers::{report, spawn_app, TestApp};
use chrono::{DateTime, Duration, Utc};
use dts_ledger::database::Role;
use dts_ledger::store::hash::{
    canonical, event_hash, ledger_hash, Hash, HashVersion, Hashed, GENESIS,
};
use dts_ledger::store::{self, RecordedEvent};
use std::collections::HashMap;

const SKU_1TB: &str = "FW_GOODS-500232-1";

/// One package, two tasks, a few reports each.
async fn small_ledger(app: &TestApp) {
    app.buy("biz-p", "pin-p", SKU_1TB).await;
    for t in 0..2 {
        app.create_task(&format!("task-{t}"), "biz-p").await;
    }
    for round in 0..3 {
        for t in 0..2 {
            app.report(
                &format!("task-{t}"),
                &format!("r-{round}"),
                5_000 + round * 10,
            )
            .await;
        }
    }
}

async fn all_events(app: &TestApp) -> Vec<RecordedEvent> {
    let client = app.db.pool.get().await.unwrap();
    store::read_all_after(&client, 0, 10_000).await.unwrap()
}

/// Each event's payload and metadata as stored, by position: the text a version 3 or 4 hash
/// covers (a version 4 row that stores no metadata has the text of the row before it).
async fn stored_texts(app: &TestApp) -> HashMap<i64, (String, String)> {
    let client = app.db.client().await;
    let mut carried = String::new();
    client
        .query(
            "SELECT position, payload::text, metadata::text FROM events ORDER BY position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            if let Some(metadata) = row.get::<_, Option<String>>(2) {
                carried = metadata;
            }
            (row.get(0), (row.get(1), carried.clone()))
        })
        .collect()
}

/// The hash `event`'s stored content (`texts`: its payload and metadata as stored) gives under
/// `version`, after `prev_hash`: what an insider who knows the published encoding computes.
fn recomputed(
    event: &RecordedEvent,
    texts: &(String, String),
    version: HashVersion,
    prev_hash: &Hash,
) -> Hash {
    let (payload, metadata) = if version.covers_stored_text() {
        (texts.0.as_bytes().to_vec(), texts.1.as_bytes().to_vec())
    } else {
        (
            canonical(&event.payload),
            canonical(
                event
                    .metadata
                    .as_ref()
                    .expect("resolved by the page reader"),
            ),
        )
    };
    event_hash(
        version,
        prev_hash,
        &Hashed {
            position: event.position,
            stream_id: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
            payload: &payload,
            metadata: &metadata,
            idempotency_key: event.idempotency_key.as_deref(),
        },
    )
}

async fn sql(app: &TestApp, statement: &str) {
    app.db
        .client()
        .await
        .batch_execute(statement)
        .await
        .unwrap();
}

/// What an insider recomputes after changing rows behind the triggers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recompute {
    /// Only the per-stream hash of the changed rows.
    StreamHashes,
    /// Both chains of every row and the ledger head: a complete, consistent rewrite.
    Everything,
}

/// Recomputes the stored hashes of the ledger with the published encodings, as an insider with
/// the superuser's rights would after changing rows; returns the new ledger hash at the head.
async fn rehash(app: &TestApp, changed: &[i64], how: Recompute) -> Hash {
    let client = app.db.client().await;
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let mut heads: HashMap<String, Hash> = HashMap::new();
    let mut chain = GENESIS;
    let texts = stored_texts(app).await;
    for event in all_events(app).await {
        let prev_hash = heads.get(&event.stream_id).copied().unwrap_or(GENESIS);
        let version = HashVersion::from_column(event.hash_version).unwrap();
        let hash = recomputed(&event, &texts[&event.position], version, &prev_hash);
        chain = ledger_hash(&chain, &hash);
        heads.insert(event.stream_id.clone(), hash);
        let rewrite = match how {
            Recompute::StreamHashes => changed.contains(&event.position),
            Recompute::Everything => true,
        };
        if rewrite {
            let stored_chain = match (how, event.ledger_hash.is_some()) {
                (Recompute::Everything, true) => Some(chain.to_vec()),
                _ => event.ledger_hash.clone(),
            };
            client
                .execute(
                    "UPDATE events SET prev_hash = $2, hash = $3, ledger_hash = $4
                      WHERE position = $1",
                    &[
                        &event.position,
                        &prev_hash.as_slice(),
                        &hash.as_slice(),
                        &stored_chain,
                    ],
                )
                .await
                .unwrap();
        }
    }
    if how == Recompute::Everything {
        client
            .execute(
                "UPDATE ledger_head SET ledger_hash = $1",
                &[&chain.as_slice()],
            )
            .await
            .unwrap();
        for (stream, hash) in &heads {
            client
                .execute(
                    "UPDATE stream_heads SET hash = $2 WHERE stream_id = $1",
                    &[stream, &hash.as_slice()],
                )
                .await
                .unwrap();
        }
    }
    client
        .batch_execute("SET session_replication_role = origin")
        .await
        .unwrap();
    chain
}

#[tokio::test]
async fn time_never_goes_backwards_along_the_ledger_even_when_a_clock_does() {
    let app = spawn_app().await;
    app.buy("biz-a", "pin-a", SKU_1TB).await;
    // Another process whose clock runs an hour ahead appended last: ours is behind it.
    let ahead: DateTime<Utc> = store::truncate_to_micros(Utc::now() + Duration::hours(1));
    app.db
        .client()
        .await
        .execute("UPDATE ledger_head SET recorded_at = $1", &[&ahead])
        .await
        .unwrap();
    app.create_task("task-a", "biz-a").await;
    app.report("task-a", "r-1", 1_000).await;

    let events = all_events(&app).await;
    assert_eq!(events.len(), 3);
    for pair in events.windows(2) {
        assert!(
            pair[1].recorded_at >= pair[0].recorded_at,
            "position {} goes back in time",
            pair[1].position
        );
    }
    assert_eq!(events[1].recorded_at, ahead, "stamped with the later time");
    // The rows written with the clock's time were folded again with the stamped one.
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn verify_names_an_event_whose_time_goes_backwards() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    let last = all_events(&app).await.last().unwrap().position;
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET recorded_at = (SELECT recorded_at - interval '1 second'
                                                FROM events WHERE position = {last} - 1)
              WHERE position = {last};"
        ),
    )
    .await;
    rehash(&app, &[last], Recompute::Everything).await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("time goes backwards at position {last}")),
        "{out}"
    );
}

/// The last `TrafficConsumed` of the package's stream, with its task.
async fn last_traffic_of_package(app: &TestApp) -> RecordedEvent {
    all_events(app)
        .await
        .into_iter()
        .rfind(|e| e.event_type == "TrafficConsumed" && e.stream_id == "package-biz-p")
        .unwrap()
}

/// What the insider of the issue does: 1,000 bytes fewer on the last report of the package's
/// stream, its per-stream hash recomputed with the published encoding, the projections adjusted
/// to match, so that replay passes.
async fn shave_last_report(app: &TestApp) -> i64 {
    let event = last_traffic_of_package(app).await;
    let task = event.payload["t"].as_str().unwrap().to_owned();
    sql(
        app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET payload = (payload::jsonb
                    || jsonb_build_object('b', traffic_bytes(payload) - 1000,
                                          'l', traffic_bytes_remaining(payload) + 1000))::json
              WHERE position = {position};
             UPDATE packages SET bytes_consumed = bytes_consumed - 1000,
                                 bytes_remaining = bytes_remaining + 1000
              WHERE instance_id = 'biz-p';
             UPDATE tasks SET bytes_consumed = bytes_consumed - 1000 WHERE task_id = '{task}';",
            position = event.position
        ),
    )
    .await;
    rehash(app, &[event.position], Recompute::StreamHashes).await;
    event.position
}

#[tokio::test]
async fn a_shaved_report_with_its_stream_hash_recomputed_breaks_the_ledger_wide_chain() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    assert_eq!(app.db.run_cli(&["verify"]).0, 0);
    let position = shave_last_report(&app).await;
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "the projections were adjusted: {out}{err}");
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {position}")),
        "{out}"
    );
    assert!(out.contains("ledger_hash"), "{out}");
}

#[tokio::test]
async fn a_nulled_idempotency_key_is_detected() {
    // Rows of version 3 store their key, which their hash covers.
    let app = spawn_app().await;
    small_ledger(&app).await;
    crate::helpers::rewrite_as_older(&app.db, |_| HashVersion::V3).await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    let keyed = all_events(&app)
        .await
        .into_iter()
        .find(|e| e.idempotency_key.is_some())
        .unwrap();
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET idempotency_key = NULL WHERE position = {};",
            keyed.position
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {}", keyed.position)),
        "{out}"
    );
}

#[tokio::test]
async fn a_version_4_row_stores_no_key_no_repeated_metadata_and_one_ledger_hash_per_append() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    // One request of three reports: one append of three events sharing one metadata.
    let sent = serde_json::json!([
        report("task-0", "r-a", 10),
        report("task-0", "r-b", 10),
        report("task-0", "r-c", 10)
    ]);
    let results = app.traffic(sent).await;
    assert!(
        results.iter().all(|r| r["status"] == "accepted"),
        "{results:?}"
    );
    let client = app.db.client().await;
    let rows = client
        .query(
            "SELECT position, hash_version, idempotency_key IS NULL, metadata IS NULL,
                    ledger_hash IS NULL
               FROM events WHERE event_type = 'TrafficConsumed' AND traffic_report_id(payload) IN ('r-a', 'r-b', 'r-c')
              ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let shape: Vec<(i16, bool, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        shape,
        vec![
            (4, true, false, true),
            (4, true, true, true),
            (4, true, true, false)
        ],
        "key never stored; metadata on the append's first row; ledger hash on its last"
    );
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    // The admin's page shows every event with its metadata, even one starting inside the append.
    let middle: i64 = rows[1].get(0);
    let page: serde_json::Value = app
        .get_as(
            &format!("/v1/ledger?after={}&limit=2", middle - 1),
            crate::helpers::ADMIN_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"][0]["metadata"]["source"], "traffic", "{page}");
    assert_eq!(page["events"][1]["metadata"]["source"], "traffic", "{page}");
    // So does an export starting there.
    let after = (middle - 1).to_string();
    let (code, out, err) = app
        .db
        .run_cli(&["export", "--format", "jsonl", "--after", &after]);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["position"], middle, "{out}");
    assert_eq!(first["metadata"]["source"], "traffic", "{out}");
    // A repeat is still answered from the event found by its key's digest.
    let again = app
        .traffic(serde_json::json!([report("task-0", "r-b", 10)]))
        .await;
    assert_eq!(again[0]["status"], "duplicate", "{again:?}");

    // A key written into a version 4 row is out of band: its hash does not cover it.
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET idempotency_key = 'traffic/6:task-0/3:r-z' WHERE position = {middle};"
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("at position {middle}")), "{out}");
    assert!(out.contains("stores an idempotency key"), "{out}");
    // So is other metadata given to a row that shared its predecessor's.
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET idempotency_key = NULL,
                    metadata = '{{\"actor\":\"someone\",\"source\":\"traffic\"}}'
              WHERE position = {middle};"
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {middle}")),
        "{out}"
    );
}

#[tokio::test]
async fn a_migrated_ledger_of_versions_1_and_2_followed_by_version_4_rows_verifies_end_to_end() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    // Rewrite the ledger as older binaries left it once migrated: the first half hashed with
    // version 1 and no stored ledger hash, the rest with version 2; payload and metadata as
    // `jsonb` wrote them back (its own key order and spacing) when the columns became `json`. The
    // head keeps the chain over them.
    let client = app.db.client().await;
    client
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE events SET payload = payload::jsonb::json, metadata = metadata::jsonb::json;",
        )
        .await
        .unwrap();
    let events = all_events(&app).await;
    let half = events.len() / 2;
    let texts = stored_texts(&app).await;
    assert!(
        texts.values().any(|(payload, _)| payload.contains(": ")),
        "the old rows hold jsonb's rendering, not the canonical text"
    );
    crate::helpers::rewrite_as_older(&app.db, |n| {
        if n < half {
            HashVersion::V1
        } else {
            HashVersion::V2
        }
    })
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "the migrated ledger verifies: {out}");
    let old = events.len();

    // The service appends with version 4, the canonical text stored as hashed, chained onto the
    // older rows.
    app.report("task-0", "r-after", 700).await;
    let events = all_events(&app).await;
    assert!(events.len() > old);
    let versions: Vec<i16> = events.iter().map(|e| e.hash_version).collect();
    assert!(versions[..half].iter().all(|v| *v == 1), "{versions:?}");
    assert!(versions[half..old].iter().all(|v| *v == 2), "{versions:?}");
    assert!(versions[old..].iter().all(|v| *v == 4), "{versions:?}");
    let texts = stored_texts(&app).await;
    for event in &events[old..] {
        assert_eq!(
            texts[&event.position].0.as_bytes(),
            canonical(&event.payload),
            "a version 3 row stores the canonical text"
        );
    }
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");

    // A version 4 row passed off as an older version (to escape the text's coverage, or to
    // have a key trusted) is refused.
    let last = events.last().unwrap().position;
    for older in [3, 2, 1] {
        sql(
            &app,
            &format!(
                "SET session_replication_role = replica;
                 UPDATE events SET hash_version = {older} WHERE position = {last};"
            ),
        )
        .await;
        let (code, out, _) = app.db.run_cli(&["verify"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("altered at position {last}")),
            "{out}"
        );
    }
}

/// `dts-ledger <args>` against the app's database, with extra environment.
fn cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"));
    command
        .args(args)
        .env("DATABASE_URL", app.db.url())
        .env_remove("LEDGER_CONFIG")
        .env_remove("LEDGER_SIGNING_KEY_FILE")
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A directory removed when the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("ledger-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh signing key: its file and its public key.
fn keygen(app: &TestApp, scratch: &Scratch, name: &str) -> (String, String) {
    let file = scratch.path(name);
    let (code, out, err) = cli(app, &["keygen", &file], &[]);
    assert_eq!(code, 0, "{err}");
    (file, out.trim().to_owned())
}

/// `dts-ledger checkpoint` signed with `key_file`: the JSON line it printed.
fn checkpoint(app: &TestApp, key_file: &str) -> String {
    let (code, out, err) = cli(
        app,
        &["checkpoint"],
        &[("LEDGER_SIGNING_KEY_FILE", key_file)],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    out
}

#[tokio::test]
async fn keygen_writes_a_private_key_once_and_prints_its_public_key() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (file, public) = keygen(&app, &scratch, "signing.key");
    assert_eq!(public.len(), 64, "{public}");
    assert!(hex::decode(&public).is_ok());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&file).unwrap();
    let (code, _, err) = cli(&app, &["keygen", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the key is kept");
}

#[tokio::test]
async fn the_insider_is_caught_by_the_checkpoint_file_and_by_the_ledger_wide_chain() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, public) = keygen(&app, &scratch, "signing.key");
    small_ledger(&app).await;
    let line = checkpoint(&app, &key_file);
    let signed: serde_json::Value = serde_json::from_str(&line).unwrap();
    let head = all_events(&app).await.last().unwrap().position;
    assert_eq!(signed["position"], head);
    let kept = scratch.path("checkpoint.json");
    std::fs::write(&kept, &line).unwrap();
    let verifier = [("LEDGER_CONFIG", scratch.path("verifier.toml"))];
    std::fs::write(
        &verifier[0].1,
        format!("[audit]\npublic_keys = [\"{public}\"]\n"),
    )
    .unwrap();
    let env: Vec<(&str, &str)> = verifier.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, _) = cli(&app, &["verify", "--checkpoint", &kept], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoints=2"), "stored and kept: {out}");

    let position = shave_last_report(&app).await;
    let (code, out, _) = cli(&app, &["verify", "--checkpoint", &kept], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {position}")),
        "{out}"
    );
    let (code, out, _) = cli(&app, &["verify"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {position}")),
        "{out}"
    );

    // The insider goes further and recomputes both chains and the head: only the checkpoints,
    // signed with a key outside the database, still tell.
    rehash(&app, &[], Recompute::Everything).await;
    let (code, out, _) = cli(&app, &["verify", "--checkpoint", &kept], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("rewritten at position {head}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("between position 1 and {head}")),
        "{out}"
    );
}

#[tokio::test]
async fn a_consistent_rewrite_is_placed_between_the_last_checkpoint_that_holds_and_the_first_that_does_not(
) {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    app.buy("biz-p", "pin-p", SKU_1TB).await;
    app.create_task("task-0", "biz-p").await;
    app.report("task-0", "r-0", 5_000).await;
    let first: serde_json::Value = serde_json::from_str(&checkpoint(&app, &key_file)).unwrap();
    app.report("task-0", "r-1", 6_000).await;
    app.report("task-0", "r-2", 7_000).await;
    let second: serde_json::Value = serde_json::from_str(&checkpoint(&app, &key_file)).unwrap();
    app.report("task-0", "r-3", 8_000).await;
    let (code, out, _) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 0, "{out}");

    let (first, second) = (
        first["position"].as_i64().unwrap(),
        second["position"].as_i64().unwrap(),
    );
    let target = all_events(&app)
        .await
        .into_iter()
        .find(|e| e.position > first && e.event_type == "TrafficConsumed")
        .unwrap()
        .position;
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET payload = (payload::jsonb || '{{\"bytes\": 1}}')::json WHERE position = {target};"
        ),
    )
    .await;
    rehash(&app, &[], Recompute::Everything).await;
    let (code, out, _) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("rewritten at position {second}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "between position {} and {second} (the last checkpoint that holds is at position \
             {first})",
            first + 1
        )),
        "{out}"
    );
}

/// Checkpoint lines kept outside: anything but a checkpoint a trusted key signed is refused (exit
/// 2), a trusted one beyond the head fails (exit 1).
#[tokio::test]
async fn checkpoints_of_another_key_edited_truncated_or_beyond_the_head_are_refused() {
    use dts_ledger::audit::checkpoint::{load_signing_key, Checkpoint};
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    small_ledger(&app).await;
    let line = checkpoint(&app, &key_file);
    let file = scratch.path("checkpoint.json");
    let verify_with = |content: &str| {
        std::fs::write(&file, content).unwrap();
        cli(&app, &["verify", "--checkpoint", &file], &signing)
    };
    assert_eq!(verify_with(&line).0, 0);

    // Signed by another key.
    let (other_file, _) = keygen(&app, &scratch, "other.key");
    let other = load_signing_key(std::path::Path::new(&other_file)).unwrap();
    let parsed = Checkpoint::parse_line(&line).unwrap();
    let foreign = Checkpoint::sign(&other, parsed.position, parsed.ledger_hash, Utc::now());
    let (code, _, err) = verify_with(&foreign.to_json().to_string());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not among the known public keys"), "{err}");

    // Edited: another position.
    let edited = line.replace(
        &format!("\"position\":{}", parsed.position),
        &format!("\"position\":{}", parsed.position - 1),
    );
    assert_ne!(edited, line);
    let (code, _, err) = verify_with(&edited);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("signature does not hold"), "{err}");

    // Truncated.
    let (code, _, err) = verify_with(&line[..line.len() / 2]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a checkpoint line"), "{err}");

    // Beyond the head: validly signed, but the ledger ends before it.
    let key = load_signing_key(std::path::Path::new(&key_file)).unwrap();
    let beyond = Checkpoint::sign(&key, parsed.position + 5, parsed.ledger_hash, Utc::now());
    let (code, out, _) = verify_with(&beyond.to_json().to_string());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("beyond the last event"), "{out}");

    // A checkpoint forged in the database, claiming the trusted key.
    let forged = Checkpoint::sign(&other, parsed.position, parsed.ledger_hash, Utc::now());
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO checkpoints (position, ledger_hash, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &forged.position,
                &forged.ledger_hash.as_slice(),
                &forged.signed_at,
                &hex::encode(parsed.key_id),
                &forged.signature.as_slice(),
            ],
        )
        .await
        .unwrap();
    // ... and one forged in the database proves nothing either way: it is reported and ignored.
    let (code, out, _) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARNING ignored, signed by no trusted key")
            && out.contains("signature does not hold"),
        "{out}"
    );
}

#[tokio::test]
async fn checkpoints_are_append_only() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    small_ledger(&app).await;
    checkpoint(&app, &key_file);
    let client = app.db.client().await;
    // A plain TRUNCATE is refused before the trigger runs, since snapshots reference their
    // checkpoints (SQLSTATE 0A000); with CASCADE, the triggers refuse it.
    for statement in [
        "UPDATE checkpoints SET position = 1",
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints CASCADE",
        "TRUNCATE snapshots CASCADE",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(error.code().unwrap().code(), "LG001", "{statement}");
    }
    let error = client
        .batch_execute("TRUNCATE checkpoints")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "0A000", "{error}");
}

#[tokio::test]
async fn serve_checkpoints_a_moving_ledger_by_itself_and_announces_each_checkpoint() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use dts_ledger::configuration::{AuditConfig, Config, Secret, WebhookConfig};
    use std::sync::{Arc, Mutex};
    const SECRET: &str = "webhook-secret-0123456789";

    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = web::Data::from(received.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/hook",
            web::post().to(
                |body: web::Bytes, received: web::Data<Mutex<Vec<serde_json::Value>>>| async move {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    HttpResponse::NoContent().finish()
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);

    let scratch = Scratch::new();
    let key_file = scratch.0.join("signing.key");
    dts_ledger::audit::checkpoint::keygen(&key_file).unwrap();
    let app = crate::helpers::spawn_app_with(Config {
        webhook: Some(WebhookConfig {
            retry_ms_base: 50,
            retry_ms_max: 200,
            timeout_ms: 2_000,
            ..WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"), Secret::new(SECRET))
        }),
        audit: AuditConfig {
            signing_key_file: Some(key_file.clone()),
            public_keys: Vec::new(),
            checkpoint_every_s: 1,
            ..AuditConfig::default()
        },
        ..crate::helpers::test_config()
    })
    .await;
    small_ledger(&app).await;
    let head = all_events(&app).await.last().unwrap().position;
    let mut announced = None;
    for _ in 0..100 {
        announced = received
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "dts.ledger.Checkpoint" && e["data"]["position"] == head)
            .cloned();
        if announced.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let announced = announced.expect("the checkpoint of the head is announced");
    let stored: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM checkpoints WHERE position = $1",
            &[&head],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "an unmoved ledger is not checkpointed again");
    // The announced line is a checkpoint `verify --checkpoint` accepts.
    let kept = scratch.path("announced.json");
    std::fs::write(&kept, announced["data"].to_string()).unwrap();
    let (code, out, err) = cli(
        &app,
        &["verify", "--checkpoint", &kept],
        &[("LEDGER_SIGNING_KEY_FILE", &key_file.display().to_string())],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn verify_since_checkpoint_checks_only_what_follows_the_newest_valid_checkpoint() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    small_ledger(&app).await;
    let signed: serde_json::Value = serde_json::from_str(&checkpoint(&app, &key_file)).unwrap();
    let at = signed["position"].as_i64().unwrap();
    app.report("task-0", "r-new-1", 100).await;
    app.report("task-1", "r-new-2", 200).await;
    let head = all_events(&app).await.last().unwrap().position;

    let (code, out, err) = cli(&app, &["verify", "--since-checkpoint"], &signing);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("events={} streams=", head - at)),
        "only the new events: {out}"
    );
    assert!(
        out.contains(&format!("after={at} last_position={head}")),
        "{out}"
    );

    // What follows is still checked: a new event altered is named.
    sql(
        &app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE events SET payload = (payload::jsonb || '{{\"bytes\": 1}}')::json WHERE position = {head};"
        ),
    )
    .await;
    let (code, out, _) = cli(&app, &["verify", "--since-checkpoint"], &signing);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {head}")),
        "{out}"
    );

    // Without a key to trust a checkpoint with, it cannot start from one.
    let (code, _, err) = cli(&app, &["verify", "--since-checkpoint"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("public key"), "{err}");
}

/// The checkpointer records each stream's head at the checkpoint it signs (`checkpoint_heads`),
/// and `verify --since-checkpoint` starts the streams that moved from those rows: one read of a
/// small table rather than a search of each month's index. A row is a copy, never a fact: a
/// wrong one is named at the stream's first event after the checkpoint, a whole `verify` never
/// reads it, and with the rows gone the audit finds the heads in the events again.
#[tokio::test]
async fn the_heads_a_checkpoint_recorded_start_the_next_audit_and_a_wrong_one_is_named() {
    use dts_ledger::audit::checkpoint::{self as signing, Keyring, Round};
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let env = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    let key = signing::load_signing_key(std::path::Path::new(&key_file)).unwrap();
    let keyring = Keyring::new(&[], Some(&key)).unwrap();
    small_ledger(&app).await;

    let round = || async {
        let mut client = app.db.pool.get().await.unwrap();
        match signing::verify_and_take(&mut client, &key, &keyring)
            .await
            .unwrap()
            .round
        {
            Round::Signed(signed) => signed,
            other => panic!("the moved ledger is signed: {other:?}"),
        }
    };
    let recorded = || async {
        let client = app.db.client().await;
        client
            .query(
                "SELECT stream_id, version, hash, position FROM checkpoint_heads",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    (
                        row.get::<_, i64>(1),
                        row.get::<_, Vec<u8>>(2),
                        row.get::<_, i64>(3),
                    ),
                )
            })
            .collect::<HashMap<_, _>>()
    };
    // Each stream's last event at or before `at`, from the events themselves.
    let heads_at = |events: &[RecordedEvent], at: i64| {
        let mut heads = HashMap::new();
        for event in events.iter().filter(|event| event.position <= at) {
            heads.insert(
                event.stream_id.clone(),
                (event.version, event.hash.clone(), event.position),
            );
        }
        heads
    };

    let first = round().await;
    assert_eq!(
        recorded().await,
        heads_at(&all_events(&app).await, first.position)
    );

    app.report("task-0", "r-new-1", 100).await;
    app.report("task-1", "r-new-2", 200).await;
    let events = all_events(&app).await;
    let head = events.last().unwrap().position;
    let (code, out, err) = cli(&app, &["verify", "--since-checkpoint"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("events={} streams=", head - first.position)),
        "{out}"
    );

    // A row that is not the stream's head: the stream's first event after the checkpoint no
    // longer follows, and is named; the whole check, which never reads the rows, holds.
    let moved = events.last().unwrap();
    as_service(
        &app,
        &format!(
            "UPDATE checkpoint_heads SET hash = '\\x{}'::bytea WHERE stream_id = '{}'",
            "00".repeat(32),
            moved.stream_id
        ),
    )
    .await
    .expect("the service keeps the rows");
    let first_after = events
        .iter()
        .find(|event| event.stream_id == moved.stream_id && event.position > first.position)
        .unwrap();
    let (code, out, _) = cli(&app, &["verify", "--since-checkpoint"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("position {}", first_after.position)),
        "the stream's next event is named: {out}"
    );
    let (code, out, err) = cli(&app, &["verify"], &env);
    assert_eq!(code, 0, "{out}{err}");

    // The remedy: without the rows, the audit finds each head in the events.
    as_service(&app, "DELETE FROM checkpoint_heads")
        .await
        .expect("the service may empty the rows");
    let (code, out, err) = cli(&app, &["verify", "--since-checkpoint"], &env);
    assert_eq!(code, 0, "{out}{err}");

    // The next round records the heads it ended at; a stream that did not move keeps its row,
    // which is still its head.
    let second = round().await;
    assert!(second.position > first.position);
    let recorded_now = recorded().await;
    let expected = heads_at(&all_events(&app).await, second.position);
    for (stream, row) in &recorded_now {
        assert_eq!(Some(row), expected.get(stream), "{stream}");
    }
    assert!(recorded_now.contains_key(&moved.stream_id));
}

#[tokio::test]
async fn replay_since_snapshot_folds_only_what_follows_a_signed_checkpoint() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    small_ledger(&app).await;
    let (code, first, err) = cli(&app, &["checkpoint", "--snapshot"], &signing);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let first = first["position"].as_i64().unwrap();
    assert!(
        err.contains("after position 0"),
        "the first folds everything: {err}"
    );
    app.report("task-0", "r-new-1", 100).await;
    app.report("task-1", "r-new-2", 200).await;
    let (code, second, err) = cli(&app, &["checkpoint", "--snapshot"], &signing);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("after position {first}")),
        "the next one starts from the first: {err}"
    );
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let second = second["position"].as_i64().unwrap();
    app.report("task-0", "r-new-3", 300).await;
    let head = all_events(&app).await.last().unwrap().position;

    let (code, out, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("starting from the snapshot at position {second}")),
        "{err}"
    );
    assert!(
        out.contains(&format!(
            "identical events={} last_position={head}",
            head - second
        )),
        "{out}"
    );

    // A live row that no longer follows from the ledger is still found.
    sql(
        &app,
        "UPDATE packages SET bytes_consumed = bytes_consumed - 1000,
                             bytes_remaining = bytes_remaining + 1000
          WHERE instance_id = 'biz-p'",
    )
    .await;
    let (code, out, _) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DIFFERENT package biz-p bytes_consumed"),
        "{out}"
    );

    // Snapshots cannot be changed in place.
    let error = app
        .db
        .client()
        .await
        .batch_execute("UPDATE snapshot_packages SET bytes_consumed = 0")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "LG001");
}

/// Appends `checkpoint` to `checkpoints` as the service's database role can: it may append to
/// the table, and nothing checks a signature on the way in.
async fn append_as_service(app: &TestApp, checkpoint: &dts_ledger::audit::checkpoint::Checkpoint) {
    app.db
        .client_as(Role::Service)
        .await
        .execute(
            "INSERT INTO checkpoints (position, ledger_hash, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &checkpoint.position,
                &checkpoint.ledger_hash.as_slice(),
                &checkpoint.signed_at,
                &hex::encode(checkpoint.key_id),
                &checkpoint.signature.as_slice(),
            ],
        )
        .await
        .unwrap();
}

/// The ledger head: its position and ledger hash.
async fn head(app: &TestApp) -> (i64, Hash) {
    let row = app
        .db
        .client()
        .await
        .query_one("SELECT position, ledger_hash FROM ledger_head", &[])
        .await
        .unwrap();
    (row.get(0), row.get::<_, Vec<u8>>(1).try_into().unwrap())
}

/// Issue 18, item 12: checkpoints the service role appends, signed by a key nobody trusts (or
/// claiming a trusted key under a signature that does not hold), are reported and ignored; they
/// can no longer fail every later `verify` for good, nor steer `--since-checkpoint`.
#[tokio::test]
async fn checkpoints_signed_by_no_trusted_key_are_reported_and_ignored() {
    use dts_ledger::audit::checkpoint::{key_id, load_signing_key, Checkpoint};
    use ed25519_dalek::SigningKey;
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    let ours = load_signing_key(std::path::Path::new(&key_file)).unwrap();
    small_ledger(&app).await;
    let trusted: serde_json::Value = serde_json::from_str(&checkpoint(&app, &key_file)).unwrap();
    let at = trusted["position"].as_i64().unwrap();
    app.report("task-0", "r-after", 100).await;
    let (head, head_hash) = head(&app).await;
    assert!(head > at);

    let stranger = SigningKey::from_bytes(&[42; 32]);
    let mut claims_ours = Checkpoint::sign(&stranger, head, [7; 32], Utc::now());
    claims_ours.key_id = key_id(&ours.verifying_key());
    let forged = [
        // The right ledger hash at the head, from a key nobody trusts.
        Checkpoint::sign(&stranger, head, head_hash, Utc::now()),
        // A ledger hash the ledger never had, at the trusted checkpoint's position.
        Checkpoint::sign(&stranger, at, [7; 32], Utc::now()),
        // Beyond the head, as if events had been removed from the end.
        Checkpoint::sign(&stranger, head + 1_000, head_hash, Utc::now()),
        claims_ours,
    ];
    for checkpoint in &forged {
        append_as_service(&app, checkpoint).await;
    }

    let (code, out, err) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verify: intact"), "{out}");
    assert!(
        out.contains("checkpoints=1 "),
        "only the trusted one holds: {out}"
    );
    let warnings: Vec<&str> = out
        .lines()
        .filter(|line| line.starts_with("verify: WARNING ignored, signed by no trusted key"))
        .collect();
    assert_eq!(warnings.len(), forged.len(), "{out}");
    assert!(
        out.contains(&hex::encode(key_id(&stranger.verifying_key())))
            && out.contains("not among the known public keys"),
        "{out}"
    );
    assert!(out.contains("signature does not hold"), "{out}");

    // The incremental check starts from the trusted checkpoint, not from one of the forged ones.
    let (code, out, err) = cli(&app, &["verify", "--since-checkpoint"], &signing);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("after={at} last_position={head}")),
        "{out}"
    );

    // Without any key, no stored checkpoint is trusted: all are ignored, and it says so.
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "WARNING {} stored checkpoints are ignored: no public key",
            forged.len() + 1
        )),
        "{out}"
    );

    // A FILE that is not a checkpoint a trusted key signed is still refused: exit 2.
    let file = scratch.path("stranger.json");
    std::fs::write(&file, forged[0].to_json().to_string()).unwrap();
    let (code, _, err) = cli(&app, &["verify", "--checkpoint", &file], &signing);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not among the known public keys"), "{err}");

    // A trusted key's checkpoint that the ledger does not reach still fails.
    append_as_service(
        &app,
        &Checkpoint::sign(&ours, head + 5, head_hash, Utc::now()),
    )
    .await;
    let (code, out, _) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("beyond the last event"), "{out}");
}

/// Ten tebibytes: what the insider of issue 18 grants themselves.
const TEN_TIB: i64 = 10 << 40;

/// `sql` as the service's database role: what an insider with the service's credentials runs.
async fn as_service(app: &TestApp, statement: &str) -> Result<(), tokio_postgres::Error> {
    app.db
        .client_as(Role::Service)
        .await
        .batch_execute(statement)
        .await
}

/// Issue 18, item 11: the snapshot tables are no longer trusted as stored. A second row for a
/// package of a snapshot is refused; an extra row the database admits, a forged row, a missing
/// row or a missing snapshot is named, against the ledger folded up to the snapshot, and the
/// snapshot is not used.
#[tokio::test]
async fn a_forged_snapshot_is_refused_or_named_and_never_used() {
    let app = spawn_app().await;
    let scratch = Scratch::new();
    let (key_file, _) = keygen(&app, &scratch, "signing.key");
    let signing = [("LEDGER_SIGNING_KEY_FILE", key_file.as_str())];
    small_ledger(&app).await;
    let (code, line, err) = cli(&app, &["checkpoint", "--snapshot"], &signing);
    assert_eq!(code, 0, "{err}");
    let snapshotted: serde_json::Value = serde_json::from_str(&line).unwrap();
    let at = snapshotted["position"].as_i64().unwrap();

    // The insider: a copy of biz-p's row in the trusted snapshot with 10 TiB more granted
    // and remaining, and the live row adjusted to match.
    let copied = as_service(
        &app,
        &format!(
            "INSERT INTO snapshot_packages
             SELECT (jsonb_populate_record(s, jsonb_build_object(
                        'bytes_granted', s.bytes_granted + {TEN_TIB},
                        'bytes_remaining', s.bytes_remaining + {TEN_TIB}))).*
               FROM snapshot_packages s
              WHERE snapshot_position = {at} AND instance_id = 'biz-p'"
        ),
    )
    .await;
    as_service(
        &app,
        &format!(
            "UPDATE packages SET bytes_granted = bytes_granted + {TEN_TIB},
                                 bytes_remaining = bytes_remaining + {TEN_TIB}
              WHERE instance_id = 'biz-p'"
        ),
    )
    .await
    .unwrap();
    let (code, out, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert_eq!(code, 1, "the 10 TiB follow from no event: {out}{err}");
    assert!(
        out.contains("DIFFERENT package biz-p bytes_granted: live"),
        "{out}"
    );
    let refused = copied.expect_err("a second row for one package of one snapshot is refused");
    assert_eq!(refused.code().unwrap().code(), "23505", "{refused}");
    assert!(
        snapshotted["snapshotDigest"]
            .as_str()
            .is_some_and(|d| d.len() == 64),
        "the checkpoint signs the snapshot's digest: {line}"
    );
    let (code, out, err) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 0, "the snapshot itself is intact: {out}{err}");
    assert!(out.contains("snapshots=1 "), "{out}");
    // Its version 2 line, kept outside, is a checkpoint `verify --checkpoint` holds the ledger to.
    let kept = scratch.path("snapshot-checkpoint.json");
    std::fs::write(&kept, &line).unwrap();
    let (code, out, err) = cli(&app, &["verify", "--checkpoint", &kept], &signing);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checkpoints=2 "), "{out}");

    // A row the database admits, under the snapshot's key: a package the snapshot never had.
    as_service(
        &app,
        &format!(
            "INSERT INTO snapshot_packages
             SELECT (jsonb_populate_record(s, jsonb_build_object(
                        'instance_id', 'biz-forged', 'bytes_granted', {TEN_TIB},
                        'bytes_consumed', 0, 'bytes_forfeited', 0,
                        'bytes_remaining', {TEN_TIB}, 'bytes_overage', 0))).*
               FROM snapshot_packages s
              WHERE snapshot_position = {at} AND instance_id = 'biz-p';
             INSERT INTO packages
             SELECT (jsonb_populate_record(p, jsonb_build_object(
                        'instance_id', 'biz-forged', 'bytes_granted', {TEN_TIB},
                        'bytes_consumed', 0, 'bytes_forfeited', 0,
                        'bytes_remaining', {TEN_TIB}, 'bytes_overage', 0))).*
               FROM packages p WHERE instance_id = 'biz-p';"
        ),
    )
    .await
    .unwrap();
    let extra = format!("snapshot at position {at} (checkpoint signed ");
    let (code, out, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("DIFFERENT {extra}")), "{out}");
    assert!(
        out.contains("package biz-forged row: stored present replayed absent"),
        "{out}"
    );
    assert!(
        !err.contains("starting from the snapshot"),
        "the forged snapshot is not used: {err}"
    );
    assert!(err.contains("folding everything"), "{err}");
    assert!(
        out.contains("DIFFERENT package biz-forged row: live present replayed absent"),
        "{out}"
    );
    let (code, out, err) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("BROKEN {extra}"))
            && out.contains("package biz-forged row: stored present replayed absent"),
        "{out}"
    );

    // A snapshot in the old shape, with no checkpoint's key, at a checkpoint that signed no
    // snapshot: never read. (The live row of biz-p is put back first: the service would charge
    // the next report against it, and that event could not follow from the ledger.)
    as_service(
        &app,
        &format!(
            "UPDATE packages SET bytes_granted = bytes_granted - {TEN_TIB},
                                 bytes_remaining = bytes_remaining - {TEN_TIB}
              WHERE instance_id = 'biz-p'"
        ),
    )
    .await
    .unwrap();
    app.report("task-0", "r-after", 100).await;
    let plain: serde_json::Value = serde_json::from_str(&checkpoint(&app, &key_file)).unwrap();
    let plain_at = plain["position"].as_i64().unwrap();
    as_service(
        &app,
        &format!(
            "INSERT INTO snapshots (position, ledger_hash, taken_at)
             SELECT position, ledger_hash, now() FROM ledger_head;
             INSERT INTO snapshot_packages
             SELECT (jsonb_populate_record(s, jsonb_build_object(
                        'snapshot_position', {plain_at}, 'snapshot_key_id', NULL,
                        'snapshot_signed_at', NULL))).*
               FROM snapshot_packages s
              WHERE snapshot_position = {at} AND instance_id = 'biz-forged';"
        ),
    )
    .await
    .unwrap();
    let (_, _, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert!(!err.contains("starting from the snapshot"), "{err}");

    // The superuser edits one row, removes another and, without the index, adds a second row for
    // a package: each named.
    sql(
        &app,
        &format!(
            "ALTER TABLE snapshot_packages DISABLE TRIGGER snapshot_packages_append_only;
             ALTER TABLE snapshot_tasks DISABLE TRIGGER snapshot_tasks_append_only;
             UPDATE snapshot_packages SET bytes_consumed = bytes_consumed - 1000
              WHERE snapshot_position = {at} AND instance_id = 'biz-p';
             DELETE FROM snapshot_tasks WHERE snapshot_position = {at} AND task_id = 'task-1';
             DROP INDEX snapshot_packages_one_per_package;
             INSERT INTO snapshot_packages SELECT * FROM snapshot_packages
              WHERE snapshot_position = {at} AND instance_id = 'biz-p';"
        ),
    )
    .await;
    let (code, out, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("package biz-p bytes_consumed: stored"),
        "{out}"
    );
    assert!(
        out.contains("task task-1 row: stored absent replayed present"),
        "{out}"
    );
    assert!(
        out.contains("package biz-p row: stored twice"),
        "a later row no longer overrides an earlier one: {out}"
    );

    // A new snapshot builds on none of that, and is used; `verify` still names the old one.
    let (code, _, err) = cli(&app, &["checkpoint", "--snapshot"], &signing);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("not used, {extra}")), "{err}");
    assert!(err.contains("folded after position 0"), "{err}");
    let (_, out, err) = cli(&app, &["replay", "--since-snapshot"], &signing);
    assert!(
        err.contains("starting from the snapshot at position"),
        "{err}"
    );
    assert!(!out.contains(&extra), "{out}");
    let (code, out, err) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("package biz-p bytes_consumed: stored"),
        "{out}"
    );

    // A snapshot gone altogether is missing.
    sql(
        &app,
        &format!(
            "ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only;
             DELETE FROM snapshot_packages WHERE snapshot_position = {at};
             DELETE FROM snapshot_tasks WHERE snapshot_position = {at};
             DELETE FROM snapshots WHERE position = {at};"
        ),
    )
    .await;
    let (code, out, err) = cli(&app, &["verify"], &signing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("BROKEN {extra}")) && out.contains("is missing"),
        "{out}"
    );
}

/// Snapshots stored before version 2 checkpoints existed carry no checkpoint's key and no
/// signature covers them: the migration keeps them as they are (a second row for one package
/// included, which it could not refuse without rewriting facts), and the audits never use them.
#[tokio::test]
async fn snapshots_from_before_migration_14_are_kept_and_never_used() {
    use crate::helpers::{run_binary, TestDb};
    use dts_ledger::audit::checkpoint::{self, Checkpoint};
    use dts_ledger::database::migrate;
    use sha2::{Digest, Sha256};
    const BEFORE: [(i32, &str, &str); 11] = [
        (1, "ledger", include_str!("../../schema/0001_ledger.sql")),
        (
            2,
            "projections",
            include_str!("../../schema/0002_projections.sql"),
        ),
        (
            3,
            "order_details",
            include_str!("../../schema/0003_order_details.sql"),
        ),
        (4, "outbox", include_str!("../../schema/0004_outbox.sql")),
        (
            5,
            "recorded_at",
            include_str!("../../schema/0005_recorded_at.sql"),
        ),
        (
            6,
            "marketplace_hardening",
            include_str!("../../schema/0006_marketplace_hardening.sql"),
        ),
        (
            7,
            "outbox_order",
            include_str!("../../schema/0007_outbox_order.sql"),
        ),
        (
            8,
            "ledger_chain",
            include_str!("../../schema/0008_ledger_chain.sql"),
        ),
        (
            9,
            "checkpoints",
            include_str!("../../schema/0009_checkpoints.sql"),
        ),
        (11, "console", include_str!("../../schema/0011_console.sql")),
        (
            12,
            "json_text",
            include_str!("../../schema/0012_json_text.sql"),
        ),
    ];
    let db = TestDb::create_unmigrated().await;
    let mut owner = db.client_as(Role::Owner).await;
    owner
        .batch_execute(
            "CREATE TABLE schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 checksum   text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .unwrap();
    for (version, name, sql) in BEFORE {
        owner.batch_execute(sql).await.unwrap();
        owner
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    &version,
                    &name,
                    &hex::encode(Sha256::digest(sql.as_bytes())),
                ],
            )
            .await
            .unwrap();
    }
    // A trusted checkpoint of the empty ledger with a snapshot, as the earlier release stored
    // them, and a second row for its package that nothing refused then.
    let scratch = Scratch::new();
    let key_file = scratch.path("signing.key");
    checkpoint::keygen(std::path::Path::new(&key_file)).unwrap();
    let key = checkpoint::load_signing_key(std::path::Path::new(&key_file)).unwrap();
    let genesis: Vec<u8> = owner
        .query_one("SELECT ledger_hash FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    let signed = Checkpoint::sign(&key, 0, genesis.clone().try_into().unwrap(), Utc::now());
    owner
        .execute(
            "INSERT INTO checkpoints (position, ledger_hash, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &signed.position,
                &genesis,
                &signed.signed_at,
                &hex::encode(signed.key_id),
                &signed.signature.as_slice(),
            ],
        )
        .await
        .unwrap();
    owner
        .execute(
            "INSERT INTO snapshots (position, ledger_hash, taken_at) VALUES (0, $1, now())",
            &[&genesis],
        )
        .await
        .unwrap();
    for granted in [1_000_i64, 1_000 + TEN_TIB] {
        owner
            .execute(
                "INSERT INTO snapshot_packages (snapshot_position, instance_id, jd_pin, sku_id,
                        sku_bytes, unit_price, units, status, bytes_granted, bytes_consumed,
                        bytes_forfeited, bytes_remaining, bytes_overage, warned_percents,
                        created_at, updated_at)
                 VALUES (0, 'biz-old', 'pin-old', 'sku', 1000, 1, 1, 'active', $1, 0, 0, $1, 0,
                         '{}', now(), now())",
                &[&granted],
            )
            .await
            .unwrap();
    }

    let applied = migrate::migrate(&mut owner).await.unwrap();
    assert!(applied.contains(&14), "{applied:?}");
    let kept: i64 = owner
        .query_one("SELECT count(*) FROM snapshot_packages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "facts are never rewritten");

    let url = db.url_as(Role::Reader);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LEDGER_SIGNING_KEY_FILE", key_file.as_str()),
    ];
    let (code, out, err) = run_binary(&["replay", "--since-snapshot"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("folding everything"), "{err}");
    assert!(
        out.contains("identical") && out.contains("packages=0"),
        "{out}"
    );
    let (code, out, err) = run_binary(&["verify"], &env);
    assert_eq!(
        code, 0,
        "the version 1 checkpoint still verifies: {out}{err}"
    );
    assert!(out.contains("snapshots=0 "), "{out}");
}

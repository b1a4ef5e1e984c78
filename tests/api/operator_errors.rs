//! What a newcomer operator meets when a setting is wrong: the command says what failed, where,
//! and what to check, once, and never acts on another database than the one named.

use crate::helpers::TestDb;
use dts_ledger::database::Role;
use std::path::Path;

/// Runs `dts-ledger <args>` in `dir` with exactly `env` as its database settings.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dts-ledger"))
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_MIGRATE_DATABASE_URL")
        .env_remove("LEDGER_CONFIG")
        .env_remove("LEDGER_DATA_DIR")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_with_only_the_owners_url_migrates_that_server_and_no_embedded_cluster() {
    let db = TestDb::create_unmigrated().await;
    let dir = tempfile::tempdir().unwrap();
    let owner = db.url_as(Role::Owner);
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &["migrate"],
        &[("LEDGER_MIGRATE_DATABASE_URL", &owner)],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "no embedded cluster was made"
    );
    let applied: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(applied > 0, "the named server was migrated");

    // Any other command with only the owner's URL refuses, rather than use ./data.
    for command in [&["verify"][..], &["serve"][..]] {
        let (code, _, stderr) = run_in(
            dir.path(),
            command,
            &[("LEDGER_MIGRATE_DATABASE_URL", &owner)],
        );
        assert_eq!(code, 2, "{command:?}: {stderr}");
        assert!(stderr.contains("DATABASE_URL is not"), "{stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{command:?} made no cluster"
        );
        assert!(!stderr.contains(dts_ledger_test_password()), "{stderr}");
    }
}

fn dts_ledger_test_password() -> &'static str {
    crate::helpers::TEST_ROLE_PASSWORD
}

#[tokio::test]
async fn a_closed_port_is_named_with_its_cause_and_what_to_check() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://dts_ledger_reader:hunter2-secret@127.0.0.1:{port}/ledger");
    let (code, _, stderr) = run_in(dir.path(), &["verify"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 2, "{stderr}");
    for said in [
        "cannot connect to PostgreSQL",
        "127.0.0.1",
        &format!("port {port}"),
        "database ledger",
        "user dts_ledger_reader",
        "refused",
        "check that PostgreSQL runs",
    ] {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );
    assert_eq!(
        stderr.matches("cannot connect").count(),
        1,
        "said once: {stderr}"
    );
}

#[tokio::test]
async fn a_refused_login_says_the_servers_reason_not_db_error() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db
        .url_as(Role::Reader)
        .replace("user=dts_ledger_reader", "user=no_such_role");
    let (code, _, stderr) = run_in(dir.path(), &["verify"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("db error"), "{stderr}");
    assert!(stderr.contains("no_such_role"), "{stderr}");
    assert!(stderr.contains("28000"), "the SQLSTATE: {stderr}");
    assert!(stderr.contains("user no_such_role"), "where: {stderr}");

    let url = db
        .url_as(Role::Reader)
        .replace(&format!("dbname={}", db.name), "dbname=no_such_database");
    let (code, _, stderr) = run_in(dir.path(), &["verify"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("3D000") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains(dts_ledger_test_password()), "{stderr}");
}

#[test]
fn a_configuration_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dts-ledger.toml");
    std::fs::write(&file, "[marketplace]\nverify_window_s = 0\n").unwrap();
    let (code, _, stderr) = run_in(
        dir.path(),
        &["--config", file.to_str().unwrap(), "verify"],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("verify_window_s"), "{stderr}");
    assert_eq!(
        stderr.matches("verify_window_s").count(),
        1,
        "once: {stderr}"
    );
}

//! Failover by an operator: `kill -9` the primary, `pg_ctl promote` the standby.

use crate::cluster::{create_ledger, scratch_dir, Node, STANDBY_NAME};
use crate::service::{
    check_after_failover, checkpoint, cli, first_answer_after, keygen, multi_host_url,
    set_up_packages, write_config, Agents, Serve,
};
use dts_ledger::database::roles;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_promotion_after_the_primary_is_lost_loses_and_doubles_nothing() {
    let dir = scratch_dir("dts-ledger-failover-");
    let mut primary = Node::primary(dir.path(), "primary");
    let standby = Node::standby_of(&primary, dir.path(), "standby");
    primary.wait_sync_standby(WAIT).await;
    create_ledger(&primary).await;
    let config = write_config(dir.path());
    let url = multi_host_url(roles::SERVICE, &[&primary, &standby]);
    let a = Serve::start(dir.path(), "serve-a", &config, &url).await;
    let b = Serve::start(dir.path(), "serve-b", &config, &url).await;

    // The service knows what protects it: the primary it writes to, and a standby that
    // confirms every commit.
    let (status, ready) = a.readiness().await;
    assert_eq!(status, 200, "{ready}");
    let database = &ready["database"];
    assert_eq!(database["host"], "127.0.0.1");
    assert_eq!(database["port"], primary.port);
    assert_eq!(database["inRecovery"], false);
    assert_eq!(database["synchronousStandbyNames"], STANDBY_NAME);
    assert_eq!(database["synchronousCommit"], "on");
    assert_eq!(database["commitsWaitForStandby"], true);
    // The service's role may not read pg_stat_replication's state (no pg_monitor here).
    assert!(database["synchronousStandbys"].is_null(), "{database}");
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("dts_ledger_database_commits_wait_for_standby 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "dts_ledger_database_server{{host=\"127.0.0.1\",port=\"{}\"}} 1",
        primary.port
    )));
    assert!(metrics.contains("dts_ledger_database_synchronous_standbys -1"));

    let tasks = set_up_packages(&a, 4, 2).await;
    let agents = Agents::start(vec![a.address.clone(), b.address.clone()], tasks, 4);
    agents.wait_for_reports(0, 100, WAIT).await;

    // Audits read the hot standby while the primary takes traffic.
    let on_standby = standby.url(roles::READER);
    let month = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m")
        .to_string();
    let before_audits = agents.reports();
    for args in [
        vec!["verify"],
        vec!["replay"],
        vec!["report", "--month", &month],
        vec!["export", "--format", "csv"],
    ] {
        let (code, out, err) = cli(&on_standby, &args, &[]);
        assert_eq!(code, 0, "{args:?} on the standby: {out}{err}");
        assert!(!out.is_empty(), "{args:?} printed nothing");
    }
    assert!(
        agents.reports() > before_audits,
        "the primary took traffic while the audits ran"
    );

    let key = keygen(dir.path());
    let checkpoint_file = dir.path().join("checkpoint.json");
    checkpoint(&url, &key, &checkpoint_file);
    let at_checkpoint = agents.reports();
    agents.wait_for_reports(at_checkpoint, 50, WAIT).await;

    let before_loss = agents.reports();
    let killed_at = Instant::now();
    primary.kill_9();
    standby.promote();
    let promoted_in = killed_at.elapsed();
    standby.wait_primary(WAIT).await;
    agents.wait_for_reports(agents.reports(), 100, WAIT).await;
    let acknowledged = agents.stop().await;
    let answered_in = first_answer_after(&acknowledged, killed_at);

    // Both processes followed the promoted standby by themselves.
    for serve in [&a, &b] {
        let (status, ready) = serve.readiness().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["database"]["port"], standby.port);
        // Alone now: nothing confirms its commits, and it says so.
        assert_eq!(ready["database"]["commitsWaitForStandby"], false);
    }
    assert!(a.metrics().await.contains(&format!(
        "dts_ledger_database_server{{host=\"127.0.0.1\",port=\"{}\"}} 1",
        standby.port
    )));

    let events = check_after_failover(&standby, &acknowledged, &checkpoint_file, &key).await;
    println!(
        "operator failover: kill -9 to promoted {:.2} s, kill -9 to the first answer {:.2} s; \
         {} reports acknowledged ({before_loss} before the loss), {} orders, {} retried \
         requests, {events} events checked",
        promoted_in.as_secs_f64(),
        answered_in.as_secs_f64(),
        acknowledged.reports.len(),
        acknowledged.orders.len(),
        acknowledged.faults,
    );
}

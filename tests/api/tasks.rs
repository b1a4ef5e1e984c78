//! The task API: create, read, renew from the task list (R5), destroy (R6), and who may call it.

use crate::helpers::{
    cst, spawn_app, TestApp, ADMIN_TOKEN, REPORTER_TOKEN, SMALL_SKU, SMALL_SKU_BYTES,
};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

const SKU_1TB: &str = "FW_GOODS-500232-1";

async fn renew_task(app: &TestApp, task_id: &str, instance_id: &str) -> (u16, Value) {
    let response = app
        .post_as(
            &format!("/v1/tasks/{task_id}/renew"),
            REPORTER_TOKEN,
            &json!({ "instanceId": instance_id }),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_task_is_created_once_and_stays_on_its_package() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.buy("biz-2", "pin-a", SKU_1TB).await;
    let (status, task) = app.create_task("task-1", "biz-1").await;
    assert_eq!(status, 201);
    assert_eq!(task["taskId"], "task-1");
    assert_eq!(task["instanceId"], "biz-1");
    assert_eq!(task["state"], "running");
    assert_eq!(task["bytesConsumed"], 0);
    let (status, again) = app.create_task("task-1", "biz-1").await;
    assert_eq!(status, 200);
    assert_eq!(again, task);
    let (status, elsewhere) = app.create_task("task-1", "biz-2").await;
    assert_eq!(status, 409);
    assert_eq!(elsewhere["error"]["code"], "task_exists");
    assert_eq!(app.task("task-1").await, task);
    assert_eq!(app.events_of("TaskCreated").await.len(), 1);
    let order = app.order("biz-1").await;
    assert_eq!(order["tasks"][0]["taskId"], "task-1");

    let (status, missing) = app.create_task("task-2", "biz-none").await;
    assert_eq!(
        (status, missing["error"]["code"].clone()),
        (404, json!("order_not_found"))
    );
    let (status, bad) = app.create_task("", "biz-1").await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (400, json!("invalid_task_id"))
    );
}

#[tokio::test]
async fn a_task_on_an_empty_package_starts_stopped() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    app.create_task("task-1", "biz-1").await;
    let result = app.report("task-1", "r-1", SMALL_SKU_BYTES).await;
    assert_eq!(result["action"], "stop");
    let (status, task) = app.create_task("task-2", "biz-1").await;
    assert_eq!(status, 201);
    assert_eq!(task["state"], "stopped");
    assert_eq!(task["stopReason"], "quota_exhausted");
}

#[tokio::test]
async fn tasks_cannot_be_bound_to_expired_or_released_packages() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.buy("biz-2", "pin-a", SKU_1TB).await;
    app.callback(&[("action", "expiredInstance"), ("instanceId", "biz-1")])
        .await;
    app.callback(&[("action", "releaseInstance"), ("instanceId", "biz-2")])
        .await;
    for instance in ["biz-1", "biz-2"] {
        let (status, body) = app.create_task("task-1", instance).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "order_not_usable");
    }
}

#[tokio::test]
async fn renewing_from_the_task_list_moves_a_stopped_task_to_a_fresh_package() {
    let app = spawn_app().await;
    app.buy("biz-old", "pin-a", SMALL_SKU).await;
    app.buy("biz-new", "pin-a", SKU_1TB).await;
    app.buy("biz-other", "pin-b", SKU_1TB).await;
    app.create_task("task-1", "biz-old").await;
    let result = app.report("task-1", "r-1", SMALL_SKU_BYTES + 5).await;
    assert_eq!(result["action"], "stop");
    assert_eq!(app.task("task-1").await["state"], "stopped");

    let (status, body) = renew_task(&app, "task-1", "biz-other").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("other_customer"))
    );
    let (status, body) = renew_task(&app, "task-1", "biz-missing").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("order_not_found"))
    );

    let (status, task) = renew_task(&app, "task-1", "biz-new").await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["instanceId"], "biz-new");
    assert_eq!(task["state"], "running");
    let result = app.report("task-1", "r-2", 1_000).await;
    assert_eq!(result["action"], "continue");
    assert_eq!(result["bytesRemaining"], (1i64 << 40) - 1_000);
    // The old package keeps its overage; the new one pays for the new traffic only.
    assert_eq!(app.order("biz-old").await["bytesOverage"], 5);
    assert_eq!(app.order("biz-new").await["bytesConsumed"], 1_000);
    assert_eq!(
        app.task("task-1").await["bytesConsumed"],
        SMALL_SKU_BYTES + 5 + 1_000
    );
    assert_eq!(app.events_of("TaskRebound").await.len(), 1);
    assert_eq!(app.events_of("TaskResumed").await.len(), 1);
}

#[tokio::test]
async fn a_destroyed_task_is_gone_for_good() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let destroy = || {
        app.http
            .delete(format!("{}/v1/tasks/task-1", app.address))
            .bearer_auth(REPORTER_TOKEN)
            .send()
    };
    let first = destroy().await.unwrap();
    assert_eq!(first.status(), 200);
    let task: Value = first.json().await.unwrap();
    assert_eq!(task["state"], "destroyed");
    assert!(task["destroyedAt"].is_string());
    assert_eq!(destroy().await.unwrap().status(), 200);
    assert_eq!(app.events_of("TaskDestroyed").await.len(), 1);
    let (status, body) = app.create_task("task-1", "biz-1").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("task_destroyed"))
    );
    let (status, body) = renew_task(&app, "task-1", "biz-1").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("task_destroyed"))
    );
}

#[tokio::test]
async fn tokens_decide_who_may_do_what() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    let body = json!({"taskId": "task-1", "instanceId": "biz-1"});
    let anonymous = app
        .http
        .post(format!("{}/v1/tasks", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        app.post_as("/v1/tasks", "wrong-token-0123456789", &body)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_as("/v1/tasks", ADMIN_TOKEN, &body).await.status(),
        201
    );
    // A reporter token opens tasks and traffic, not the admin or order routes.
    let ledger = app.get_as("/v1/ledger", REPORTER_TOKEN).await;
    assert_eq!(ledger.status(), 403);
    let body: Value = ledger.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        app.get_as("/v1/orders/biz-1", REPORTER_TOKEN)
            .await
            .status(),
        403
    );
    let traffic = app
        .http
        .post(format!("{}/v1/traffic", app.address))
        .json(&json!({"reports": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(traffic.status(), 401);
}

#[tokio::test]
async fn an_expired_package_stops_its_tasks_and_a_renewal_resumes_them() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    app.callback(&[("action", "expiredInstance"), ("instanceId", "biz-1")])
        .await;
    let task = app.task("task-1").await;
    assert_eq!(
        (task["state"].clone(), task["stopReason"].clone()),
        (json!("stopped"), json!("order_expired"))
    );
    let result = app.report("task-1", "r-1", 10).await;
    assert_eq!(
        (result["action"].clone(), result["reason"].clone()),
        (json!("stop"), json!("order_expired"))
    );
    let later = cst(Utc::now() + Duration::days(30));
    app.callback(&[
        ("action", "renewInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-2"),
        ("expiredOn", &later),
    ])
    .await;
    assert_eq!(app.task("task-1").await["state"], "running");
    app.callback(&[("action", "releaseInstance"), ("instanceId", "biz-1")])
        .await;
    let task = app.task("task-1").await;
    assert_eq!(task["stopReason"], "order_released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_task_created_on_two_packages_at_once_lands_on_one() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.buy("biz-2", "pin-a", SKU_1TB).await;
    for round in 0..5 {
        let task = format!("task-{round}");
        let (a, b) = tokio::join!(
            app.create_task(&task, "biz-1"),
            app.create_task(&task, "biz-2")
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
    }
    assert_eq!(app.events_of("TaskCreated").await.len(), 5);
}

#[tokio::test]
async fn a_retried_expiry_does_not_undo_a_renewal() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let expire = [("action", "expiredInstance"), ("instanceId", "biz-1")];
    assert_eq!(app.callback(&expire).await.status(), 200);
    let later = cst(Utc::now() + Duration::days(30));
    app.callback(&[
        ("action", "renewInstance"),
        ("instanceId", "biz-1"),
        ("orderId", "order-2"),
        ("expiredOn", &later),
    ])
    .await;
    // The marketplace retries the expiry whose answer it lost.
    let retried = app.callback(&expire).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(app.order("biz-1").await["status"], "active");
    assert_eq!(app.task("task-1").await["state"], "running");
    assert_eq!(app.events_of("OrderExpired").await.len(), 1);
}

/// Polls of `pg_stat_activity` while waiting for the command to block on a lock; 10 ms apart,
/// so 1,000 of them give a loaded host 10 s to get the request that far.
const LOCK_WAIT_POLLS_MAX: u32 = 1_000;

#[tokio::test]
async fn a_command_that_loses_a_deadlock_while_locking_is_retried_whole() {
    let app = spawn_app().await;
    app.buy("biz-a", "pin-a", SKU_1TB).await;
    app.buy("biz-b", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-a").await;

    // An insider holds biz-b, the second package the renewal locks (in id order, after the
    // task's own biz-a). Its own deadlock check is put off, so that the renewal's backend, which
    // waits first, is the one the database aborts.
    let mut insider = app.db.client().await;
    insider
        .batch_execute("SET deadlock_timeout = '60s'")
        .await
        .unwrap();
    let tx = insider.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM packages WHERE instance_id = 'biz-b' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();

    let deadlock = async move {
        let mut polls = 0;
        loop {
            let waiting = crate::helpers::sessions_waiting_on_locks(&tx).await;
            if waiting > 0 {
                break;
            }
            polls += 1;
            assert!(
                polls < LOCK_WAIT_POLLS_MAX,
                "the renewal never waited for biz-b"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The renewal holds biz-a and waits for biz-b: taking biz-a closes the cycle. This lock
        // is granted only once the database has aborted the renewal's transaction.
        tx.execute(
            "SELECT 1 FROM packages WHERE instance_id = 'biz-a' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
        // Let the renewal's retry through.
        tx.rollback().await.unwrap();
    };
    let ((status, task), ()) = tokio::join!(renew_task(&app, "task-1", "biz-b"), deadlock);

    assert_eq!(status, 200, "{task}");
    assert_eq!(task["instanceId"], "biz-b");
    assert_eq!(app.task("task-1").await["instanceId"], "biz-b");
}

//! `GET /v1/orders/{instanceId}` (with or without `asOf`),
//! `DELETE /v1/orders/{instanceId}/details`, and the task body the task routes answer.

use chrono::{DateTime, NaiveDate, Utc};
use projections::{Package, Task};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One DTS task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"taskId": "task-1", "instanceId": "dts-1", "state": "running", "stopReason": null, "bytesConsumed": 1048576, "createdAt": "2026-11-26T08:00:00Z", "updatedAt": "2026-11-26T09:00:00Z", "destroyedAt": null})))]
pub struct TaskResponse {
    pub task_id: String,
    pub instance_id: String,
    /// `running`, `stopped` or `destroyed`.
    pub state: String,
    /// Why a stopped task stopped: `quota_exhausted`, `order_expired`, `order_released`.
    pub stop_reason: Option<String>,
    pub bytes_consumed: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub destroyed_at: Option<DateTime<Utc>>,
}

impl From<&Task> for TaskResponse {
    fn from(task: &Task) -> TaskResponse {
        TaskResponse {
            task_id: task.task_id.as_str().to_owned(),
            instance_id: task.instance_id.as_str().to_owned(),
            state: task.state.as_str().to_owned(),
            stop_reason: task.stop_reason.map(|r| r.as_str().to_owned()),
            bytes_consumed: task.bytes_consumed.get(),
            created_at: task.created_at,
            updated_at: task.updated_at,
            destroyed_at: task.destroyed_at,
        }
    }
}

/// A package's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "jdPin": "jd_user", "skuId": "FW_GOODS-500232-1", "status": "active", "bytesGranted": 536870912000u64, "bytesConsumed": 1048576, "bytesRemaining": 536869863424u64, "bytesOverage": 0, "bytesForfeited": 0, "expiresAt": "2027-11-26T00:00:00Z", "createdAt": "2026-11-26T08:00:00Z", "updatedAt": "2026-11-26T09:00:00Z"})))]
pub struct PackageBalance {
    pub instance_id: String,
    pub jd_pin: String,
    pub sku_id: String,
    /// `active`, `expired` or `released`.
    pub status: String,
    pub bytes_granted: u64,
    pub bytes_consumed: u64,
    pub bytes_remaining: u64,
    pub bytes_overage: u64,
    pub bytes_forfeited: u64,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Package> for PackageBalance {
    fn from(package: &Package) -> PackageBalance {
        PackageBalance {
            instance_id: package.instance_id.as_str().to_owned(),
            jd_pin: package.jd_pin.as_str().to_owned(),
            sku_id: package.sku_id.as_str().to_owned(),
            status: package.status.as_str().to_owned(),
            bytes_granted: package.bytes_granted.get(),
            bytes_consumed: package.bytes_consumed.get(),
            bytes_remaining: package.bytes_remaining.get(),
            bytes_overage: package.bytes_overage.get(),
            bytes_forfeited: package.bytes_forfeited.get(),
            expires_at: package.expires_at,
            created_at: package.created_at,
            updated_at: package.updated_at,
        }
    }
}

/// `GET /v1/orders/{instanceId}`: the package now, with its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "jdPin": "jd_user", "skuId": "FW_GOODS-500232-1", "status": "active", "bytesGranted": 536870912000u64, "bytesConsumed": 1048576, "bytesRemaining": 536869863424u64, "bytesOverage": 0, "bytesForfeited": 0, "expiresAt": "2027-11-26T00:00:00Z", "createdAt": "2026-11-26T08:00:00Z", "updatedAt": "2026-11-26T09:00:00Z", "tasks": [{"taskId": "task-1", "instanceId": "dts-1", "state": "running", "stopReason": null, "bytesConsumed": 1048576, "createdAt": "2026-11-26T08:00:00Z", "updatedAt": "2026-11-26T09:00:00Z", "destroyedAt": null}], "runway": {"ratePerDay": 10737418240u64, "runsOutOn": "2026-12-20", "days": 20, "expiresFirst": false}})))]
pub struct OrderResponse {
    #[serde(flatten)]
    pub package: PackageBalance,
    pub tasks: Vec<TaskResponse>,
    /// When the package runs out at the last 7 days' rate; `null` with less than 24 hours of
    /// traffic, no traffic in the last 7 days, no bytes left, or a package that is not active.
    pub runway: Option<RunwayResponse>,
}

/// When a package runs out at its recent rate (the rule: docs/api.md, "Runway").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"ratePerDay": 10737418240u64, "runsOutOn": "2026-12-20", "days": 20, "expiresFirst": false})))]
pub struct RunwayResponse {
    /// Bytes per day: the traffic of the last 7 days over the span they cover (at least 24 hours
    /// since the package's first traffic), rounded down.
    pub rate_per_day: u64,
    /// The date, in China Standard Time, the remaining bytes are used up at that rate.
    pub runs_out_on: NaiveDate,
    /// Calendar days (CST) from today to `runsOutOn`: 0 when it is today; at most 36500.
    pub days: u32,
    /// The package's expiry comes before it would run out.
    pub expires_first: bool,
}

impl From<&crate::usage::Runway> for RunwayResponse {
    fn from(runway: &crate::usage::Runway) -> RunwayResponse {
        RunwayResponse {
            rate_per_day: runway.rate_bytes_per_day,
            runs_out_on: runway.runs_out_on,
            days: runway.days,
            expires_first: runway.expires_first,
        }
    }
}

/// What one task drew from the package in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"taskId": "task-1", "bytes": 1048576, "bytesAfterZero": 0})))]
pub struct TaskUsageResponse {
    pub task_id: String,
    /// Bytes the task drew from this package in the window (not its lifetime total).
    pub bytes: u64,
    /// Of those, the bytes recorded after the package had reached zero (in-flight bytes, or an
    /// agent that ignored `stop`).
    pub bytes_after_zero: u64,
}

/// One task's bytes on one day (China Standard Time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"date": "2026-11-26", "taskId": "task-1", "bytes": 1048576})))]
pub struct DailyTaskUsage {
    pub date: NaiveDate,
    pub task_id: String,
    pub bytes: u64,
}

/// `GET /v1/orders/{instanceId}/usage`: what each task drew from the package in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "days": 30, "from": "2026-10-28", "to": "2026-11-26", "bytes": 1048576, "bytesAfterZero": 0, "tasks": [{"taskId": "task-1", "bytes": 1048576, "bytesAfterZero": 0}], "daily": [{"date": "2026-11-26", "taskId": "task-1", "bytes": 1048576}]})))]
pub struct UsageResponse {
    pub instance_id: String,
    /// The window: the last `days` days, today (CST) included.
    pub days: u32,
    /// The window's first day (CST).
    pub from: NaiveDate,
    /// Its last day: today (CST).
    pub to: NaiveDate,
    /// Everything the package's tasks drew in the window.
    pub bytes: u64,
    /// Of that, the bytes recorded after the package had reached zero.
    pub bytes_after_zero: u64,
    /// Per task, largest first (at most 5000 tasks).
    pub tasks: Vec<TaskUsageResponse>,
    /// Per day and task, days in order and within a day largest first; days without traffic
    /// are left out.
    pub daily: Vec<DailyTaskUsage>,
}

/// `GET /v1/orders/{instanceId}?asOf=…`: the package as the ledger left it at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "jdPin": "jd_user", "skuId": "FW_GOODS-500232-1", "status": "active", "bytesGranted": 536870912000u64, "bytesConsumed": 1048576, "bytesRemaining": 536869863424u64, "bytesOverage": 0, "bytesForfeited": 0, "expiresAt": "2027-11-26T00:00:00Z", "createdAt": "2026-11-26T08:00:00Z", "updatedAt": "2026-11-26T09:00:00Z", "asOfPosition": 42})))]
pub struct OrderAsOfResponse {
    #[serde(flatten)]
    pub package: PackageBalance,
    pub as_of_position: i64,
}

/// `DELETE /v1/orders/{instanceId}/details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "dts-1", "ordersErased": 1})))]
pub struct DetailsErased {
    pub instance_id: String,
    /// Orders whose personal data this call erased (0 when already erased).
    pub orders_erased: u64,
}

/// What `GET /v1/orders/{instanceId}` answers: the package now, or at `asOf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OrderReply {
    /// At `asOf` (tried first: it is the one with `asOfPosition`).
    AsOf(OrderAsOfResponse),
    Now(OrderResponse),
}

/// `POST /v1/orders/{instanceId}/expire`: why an operator applies a held expiry notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(examples(json!({"reason": "refund"})))]
pub struct ExpireRequest {
    /// `refund`, the only reason today: the marketplace's notice followed a refund.
    #[schema(value_type = String, pattern = "^refund$")]
    pub reason: projections::events::ExpiryReason,
}

/// A held expiry notice applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "1001", "status": "expired", "reason": "refund", "expiredNow": true})))]
pub struct OrderExpiredByOperator {
    pub instance_id: String,
    /// Always `expired`.
    pub status: String,
    #[schema(value_type = String)]
    pub reason: projections::events::ExpiryReason,
    /// `false` when the package had expired already (nothing new was recorded).
    pub expired_now: bool,
}

/// `GET /v1/expiry-notices`: a page of held expiry notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"notices": [{"position": 4711, "instanceId": "1001", "jdPin": "alice", "heldAt": "2026-11-26T08:00:00Z", "heldAgainst": "2027-11-26T08:00:00Z", "expiresAt": "2027-11-26T08:00:00Z"}], "next": null})))]
pub struct HeldNoticesPage {
    pub notices: Vec<crate::ledger::orders::HeldNotice>,
    /// The `after` of the next page when more notices follow; `null` on the last page.
    pub next: Option<i64>,
}

/// `GET /v1/marketplace/refused`: the unresolved refused callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"refused": [{"action": "createInstance", "subject": "1001", "reason": "unknown_sku", "status": 422, "message": "skuId FW_GOODS-500232-9 is not in the SKU catalog", "firstAt": "2026-11-26T08:00:00Z", "lastAt": "2026-11-26T08:20:00Z", "calls": 21}], "total": 1})))]
pub struct RefusedPage {
    /// Oldest first, at most `limit`.
    pub refused: Vec<crate::marketplace::refusals::RefusedCallback>,
    /// How many are unresolved in all.
    pub total: i64,
}

/// `POST /v1/orders/{instanceId}/credential`: the package's new order credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"instanceId": "1001", "authCode": "5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d", "generation": 1, "sessionsEnded": 2})))]
pub struct CredentialRotated {
    pub instance_id: String,
    /// The new `authCode`, 128 bits in hex: give it to the customer; nothing stores it.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub auth_code: String,
    /// 1 for the first rotation, one more each time.
    pub generation: u32,
    /// Console sessions the old credential had opened, ended now.
    pub sessions_ended: u64,
}

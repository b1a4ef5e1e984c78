//! How a traffic event is stored: version 2, one-letter keys and the package taken from the
//! stream (every traffic event appended since), and version 1, every field spelt out (decoded
//! only).

use super::payload::Body;
use super::{ReportAction, StopReason, TrafficConsumed};
use crate::ids::{Bytes, InstanceId, ReportId, TaskId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A traffic event's payload as version 2 stores it (docs/ledger.md): `a` action (absent:
/// `continue`), `b` bytes, `e` periodEnd, `l` bytesRemaining ("left"), `o` bytesOverage (absent:
/// 0), `r` reportId, `s` periodStart (absent: none), `t` taskId, `w` reason ("why"; absent: none).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConsumedV2 {
    #[serde(rename = "t")]
    task_id: TaskId,
    #[serde(rename = "r")]
    report_id: ReportId,
    #[serde(rename = "b")]
    bytes: Bytes,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    period_start: Option<DateTime<Utc>>,
    #[serde(rename = "e")]
    period_end: DateTime<Utc>,
    #[serde(rename = "a", default, skip_serializing_if = "continues")]
    action: ReportAction,
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    reason: Option<StopReason>,
    #[serde(rename = "l")]
    bytes_remaining: Bytes,
    #[serde(rename = "o", default, skip_serializing_if = "none")]
    bytes_overage: Bytes,
}

/// What version 2 of a traffic event leaves out (serde passes a reference).
fn continues(action: &ReportAction) -> bool {
    *action == ReportAction::Continue
}

fn none(bytes: &Bytes) -> bool {
    bytes.is_zero()
}

/// A traffic event's payload as version 1 stored it: camelCase keys, `action` and `bytesOverage`
/// always present, the package named. Only decoded: nothing writes version 1 any more.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficConsumedV1 {
    task_id: TaskId,
    report_id: ReportId,
    instance_id: InstanceId,
    bytes: Bytes,
    /// Absent or null: version 1 rows written before absent options were left out hold nulls.
    #[serde(default)]
    period_start: Option<DateTime<Utc>>,
    period_end: DateTime<Utc>,
    action: ReportAction,
    #[serde(default)]
    reason: Option<StopReason>,
    bytes_remaining: Bytes,
    bytes_overage: Bytes,
}

impl Body for TrafficConsumed {
    fn to_payload(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(TrafficConsumedV2 {
            task_id: self.task_id.clone(),
            report_id: self.report_id.clone(),
            bytes: self.bytes,
            period_start: self.period_start,
            period_end: self.period_end,
            action: self.action,
            reason: self.reason,
            bytes_remaining: self.bytes_remaining,
            bytes_overage: self.bytes_overage,
        })
    }

    fn from_payload(version: i32, stream_id: &str, payload: &[u8]) -> serde_json::Result<Self> {
        if version == 1 {
            let v1: TrafficConsumedV1 = serde_json::from_slice(payload)?;
            return Ok(TrafficConsumed {
                task_id: v1.task_id,
                report_id: v1.report_id,
                instance_id: v1.instance_id,
                bytes: v1.bytes,
                period_start: v1.period_start,
                period_end: v1.period_end,
                action: v1.action,
                reason: v1.reason,
                bytes_remaining: v1.bytes_remaining,
                bytes_overage: v1.bytes_overage,
            });
        }
        let v2: TrafficConsumedV2 = serde_json::from_slice(payload)?;
        let instance_id = stream_id
            .strip_prefix(super::PACKAGE_STREAM_PREFIX)
            .and_then(|id| InstanceId::parse(id).ok())
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "a version 2 traffic event belongs to a package's stream, package-<instanceId>",
                )
            })?;
        Ok(TrafficConsumed {
            task_id: v2.task_id,
            report_id: v2.report_id,
            instance_id,
            bytes: v2.bytes,
            period_start: v2.period_start,
            period_end: v2.period_end,
            action: v2.action,
            reason: v2.reason,
            bytes_remaining: v2.bytes_remaining,
            bytes_overage: v2.bytes_overage,
        })
    }
}

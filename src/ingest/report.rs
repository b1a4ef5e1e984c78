//! One traffic report from JSON, checked on its own: a bad report is rejected with a stable code,
//! its neighbours proceed.

use crate::domain::traffic::Report;
use chrono::{DateTime, Utc};
use projections::ids::{Bytes, ReportId, TaskId};
use serde_json::Value;

/// How far in the future `periodEnd` may lie: agents' clocks drift, but not by an hour.
pub const PERIOD_END_SKEW_MAX: chrono::Duration = chrono::Duration::hours(1);

/// A report that cannot be charged, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

fn text<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report.get(name).and_then(Value::as_str)
}

fn time(report: &Value, name: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
    match report.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => DateTime::parse_from_rfc3339(value)
            .map(|t| Some(crate::store::truncate_to_micros(t.with_timezone(&Utc))))
            .map_err(|_| {
                reject(
                    "invalid_period",
                    format!("{name} {value:?} is not an RFC 3339 time"),
                )
            }),
        Some(_) => Err(reject(
            "invalid_period",
            format!("{name} must be an RFC 3339 string"),
        )),
    }
}

/// Checks one report. `now` bounds `periodEnd` both ways: no more than
/// [`PERIOD_END_SKEW_MAX`] ahead, and no more than `key_retention` behind (an older report's key
/// may have been removed, so it is refused as `report_too_late` rather than risk charging it
/// twice, invariant I13); `bytes_max` is the per-report maximum.
pub fn parse(
    report: &Value,
    bytes_max: Bytes,
    now: DateTime<Utc>,
    key_retention: chrono::Duration,
) -> Result<Report, Rejection> {
    if !report.is_object() {
        return Err(reject("invalid_report", "a report must be a JSON object"));
    }
    let task_id = TaskId::parse(text(report, "taskId").unwrap_or_default())
        .map_err(|e| reject("invalid_task_id", format!("taskId {e}")))?;
    let report_id = ReportId::parse(text(report, "reportId").unwrap_or_default())
        .map_err(|e| reject("invalid_report_id", format!("reportId {e}")))?;
    let bytes = match report.get("bytes") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(value) => value,
            None if n.as_i64().is_some_and(|v| v < 0) => {
                return Err(reject("invalid_bytes", format!("bytes {n} is negative")))
            }
            None => {
                return Err(reject(
                    "invalid_bytes",
                    format!("bytes {n} is not a whole number"),
                ))
            }
        },
        Some(other) => {
            return Err(reject(
                "invalid_bytes",
                format!("bytes must be an integer, not {other}"),
            ))
        }
        None => return Err(reject("invalid_bytes", "bytes is missing")),
    };
    if bytes > bytes_max.get() {
        return Err(reject(
            "bytes_too_large",
            format!("bytes {bytes} is above the per-report maximum {bytes_max}"),
        ));
    }
    let bytes = Bytes::new(bytes).expect("at most the maximum, which fits");
    let period_end = time(report, "periodEnd")?
        .ok_or_else(|| reject("invalid_period", "periodEnd is missing"))?;
    let period_start = time(report, "periodStart")?;
    if period_start.is_some_and(|start| start > period_end) {
        return Err(reject("invalid_period", "periodStart is after periodEnd"));
    }
    if period_end > now + PERIOD_END_SKEW_MAX {
        return Err(reject(
            "invalid_period",
            "periodEnd is more than an hour in the future",
        ));
    }
    if period_end < now - key_retention {
        return Err(reject(
            "report_too_late",
            format!(
                "periodEnd is more than {} days ago: reports are taken for as long as their \
                 idempotency keys are kept",
                key_retention.num_days()
            ),
        ));
    }
    Ok(Report {
        task_id,
        report_id,
        bytes,
        period_start,
        period_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The store removes a traffic key only once every retry of its report is refused as too
    /// late: its slack covers how far a report's `periodEnd` may lie ahead of the clock.
    #[test]
    fn the_store_keeps_keys_longer_than_a_report_may_be_ahead() {
        assert!(crate::store::partitions::EXPIRY_SLACK > PERIOD_END_SKEW_MAX);
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn retention() -> chrono::Duration {
        chrono::Duration::days(45)
    }

    fn code(report: Value) -> &'static str {
        parse(&report, Bytes::new(1000).unwrap(), now(), retention())
            .unwrap_err()
            .code
    }

    #[test]
    fn a_good_report_parses() {
        let report = parse(
            &json!({"taskId": "t", "reportId": "r", "bytes": 1000,
                    "periodStart": "2026-11-26T07:59:00Z", "periodEnd": "2026-11-26T16:00:00+08:00"}),
            Bytes::new(1000).unwrap(),
            now(),
            retention(),
        )
        .unwrap();
        assert_eq!(report.bytes.get(), 1000);
        assert_eq!(report.period_end, now());
    }

    #[test]
    fn each_flaw_has_its_code() {
        let base = |patch: Value| {
            let mut report = json!({"taskId": "t", "reportId": "r", "bytes": 1,
                                    "periodEnd": "2026-11-26T08:00:00Z"});
            for (k, v) in patch.as_object().unwrap() {
                report[k] = v.clone();
            }
            report
        };
        assert_eq!(code(json!(5)), "invalid_report");
        assert_eq!(code(base(json!({"taskId": ""}))), "invalid_task_id");
        assert_eq!(code(base(json!({"taskId": 7}))), "invalid_task_id");
        assert_eq!(
            code(base(json!({"reportId": "x".repeat(200)}))),
            "invalid_report_id"
        );
        assert_eq!(code(base(json!({"bytes": -1}))), "invalid_bytes");
        assert_eq!(code(base(json!({"bytes": 1.5}))), "invalid_bytes");
        assert_eq!(code(base(json!({"bytes": "10"}))), "invalid_bytes");
        assert_eq!(code(base(json!({"bytes": 1001}))), "bytes_too_large");
        assert_eq!(code(base(json!({"bytes": 1e30}))), "invalid_bytes");
        assert_eq!(
            code(base(json!({"periodEnd": "yesterday"}))),
            "invalid_period"
        );
        assert_eq!(code(base(json!({"periodEnd": null}))), "invalid_period");
        assert_eq!(
            code(base(json!({"periodStart": "2026-11-26T09:00:00Z"}))),
            "invalid_period"
        );
        assert_eq!(
            code(base(json!({"periodEnd": "2026-11-26T10:00:01Z"}))),
            "invalid_period"
        );
        assert_eq!(
            code(base(json!({"periodEnd": "2026-10-12T07:59:59Z"}))),
            "report_too_late"
        );
        assert!(parse(
            &base(json!({"periodEnd": "2026-10-12T08:00:00Z"})),
            Bytes::new(1000).unwrap(),
            now(),
            retention()
        )
        .is_ok());
    }
}
